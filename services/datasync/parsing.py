"""Reading a department's upload one record at a time: JSON arrays, and files (CSV,
XLSX, .xls) as their systems export them, through the kernel's `backstop.sheets`
(header row found among titles and notes, layered headers flattened, totals and
footers skipped, the sheet picked).

Every reader yields `(raw, row, line)`: `raw` is the record as the department wrote it
(kept for audit), `row` the same values under canonical field names, `line` its Excel
row number (None for JSON). Nothing holds more than one record at a time, so a 200k-row
file streams from the spooled upload.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from operator import itemgetter
from typing import IO, Any

from backstop.sheets import Limits, Table, open_table
from services.datasync.columns import (
    FIELD_ALIASES,
    MappingProfile,
    header_matcher,
    normalize_header,
)
from services.datasync.domain import (
    missing_columns,
    record_id_rule,
)

Row = tuple[dict[str, Any], dict[str, Any], int | None]


@dataclass
class FileLayout:
    """How a file was read: its table, the header of each field, how ids are made."""

    table: Table
    source: str
    profile_version: int | None

    @property
    def column_of(self) -> dict[str, str]:
        """field → its column's header as written."""
        return {f: self.table.headers[i] for i, f in self.table.fields.items()}

    @property
    def record_id_rule(self) -> str:
        return record_id_rule(self.source, self.column_of.get("record_id"))

    def describe(self) -> dict[str, Any]:
        """What the batch summary and the preview say about the file (after reading it,
        `skipped` is the count of totals and footer rows)."""
        table = self.table
        return {
            "format": table.format,
            "encoding": table.encoding,
            "sheet": table.sheet,
            "header_row": table.header.row,
            "header_rows": table.header.depth,
            "skipped": table.skipped,
            "record_id_rule": self.record_id_rule,
            "profile_version": self.profile_version,
        }


def open_file(
    file: IO[bytes],
    fmt: str,
    source: str,
    *,
    profile: MappingProfile | None = None,
    sheet: str | None = None,
    limits: Limits | None = None,
) -> tuple[FileLayout, Iterator[Row]]:
    """Find the table of a `fmt` file (`csv`, `xlsx`, `xls`) for `source`, read with its
    mapping profile when it has one; raises `backstop.sheets.SheetProblem` when the file
    cannot be read (with why: encoding, no header row and the closest candidates)."""
    table = open_table(
        file,
        fmt,
        header_matcher(source, profile.columns if profile else None),
        lambda mapped: missing_columns(source, mapped, derive=True),
        limits=limits,
        sheet=sheet or (profile.sheet if profile else None),
        header_row=profile.header_row if profile else None,
        header_rows=profile.header_rows if profile else None,
    )
    layout = FileLayout(table, source, profile.version if profile else None)
    return layout, _table_rows(table)


def _table_rows(table: Table) -> Iterator[Row]:
    headers, mapping = table.headers, table.fields
    width = len(headers)
    names = [h or f"column_{i + 1}" for i, h in enumerate(headers)]
    fields = list(mapping.values())
    pick = itemgetter(*mapping) if len(mapping) > 1 else (lambda v: (v[next(iter(mapping))],))
    # Headers that are exactly the field names: a full line's raw record is its row.
    canonical = names == [mapping.get(i) for i in range(width)]
    for line, values in table.rows:
        n = len(values)
        if n == width:
            raw = dict(zip(names, values, strict=True))
            yield raw, raw if canonical else dict(zip(fields, pick(values), strict=True)), line
            continue
        if n < width:  # a short line's missing cells are empty; extra cells are kept
            values = [*values, *([None] * (width - n))]
        else:
            names += [f"column_{i + 1}" for i in range(len(names), n)]
        raw = dict(zip(names, values, strict=False))
        yield raw, dict(zip(fields, pick(values), strict=True)), line


@lru_cache(maxsize=512)
def _canonical(source: str, key: str) -> str | None:
    target = normalize_header(key)
    for canonical, aliases in FIELD_ALIASES[source].items():
        if any(normalize_header(a) == target for a in aliases):
            return canonical
    return None


@lru_cache(maxsize=256)
def _key_map(source: str, keys: tuple[str, ...]) -> tuple[tuple[str, str], ...] | None:
    """(key, canonical field) for a record's keys; the first key naming a field wins.
    None when every key is a field name already: the record is its own row."""
    found: dict[str, str] = {}
    for key in keys:
        canonical = _canonical(source, str(key))
        if canonical is not None and canonical not in found:
            found[canonical] = key
    if len(found) == len(keys) and all(key == canonical for canonical, key in found.items()):
        return None
    return tuple((key, canonical) for canonical, key in found.items())


def json_rows(records: list[Any], source: str) -> Iterator[Row | None]:
    """JSON records, keyed by canonical or Chinese field names; `None` for an element
    that is not an object (reported as a bad record)."""
    for record in records:
        if not isinstance(record, dict):
            yield None
            continue
        mapping = _key_map(source, tuple(record))
        if mapping is None:
            yield record, record, None
        else:
            yield record, {canonical: record[key] for key, canonical in mapping}, None
