"""Reading a department's upload one record at a time: JSON arrays, CSV (UTF-8 or
GB18030, comma or tab) and XLSX, with Chinese or English headers.

Every reader yields `(raw, row)` pairs: `raw` is the record as the department wrote it
(kept for audit), `row` the same values under canonical field names. Nothing holds more
than one record at a time, so a 200k-row file streams from the spooled upload.
"""

from __future__ import annotations

import codecs
import csv
import io
import zipfile
from collections.abc import Iterator
from functools import lru_cache
from operator import itemgetter
from typing import IO, Any

from services.datasync.domain import FIELD_ALIASES, column_map, missing_columns, normalize_header

Row = tuple[dict[str, Any], dict[str, Any]]
_SCAN = 1 << 20


class FileProblem(ValueError):
    """The file as a whole cannot be read (no header, missing column, not a spreadsheet)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def detect_encoding(file: IO[bytes]) -> str:
    """UTF-8 (with or without BOM) when the whole file decodes as UTF-8, else GB18030
    (a superset of GBK/GB2312, what Chinese office software exports)."""
    file.seek(0)
    head = file.read(3)
    if head == codecs.BOM_UTF8:
        file.seek(0)
        return "utf-8-sig"
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        decoder.decode(head)
        while chunk := file.read(_SCAN):
            decoder.decode(chunk)
        decoder.decode(b"", final=True)
        encoding = "utf-8"
    except UnicodeDecodeError:
        encoding = "gb18030"
    file.seek(0)
    return encoding


def csv_rows(file: IO[bytes], source: str) -> Iterator[Row]:
    encoding = detect_encoding(file)
    text = io.TextIOWrapper(file, encoding=encoding, errors="replace", newline="")
    try:
        first = text.readline()
        while first and not first.strip():
            first = text.readline()
        if not first:
            raise FileProblem("file", "the file is empty")
        delimiter = "\t" if first.count("\t") > first.count(",") else ","
        headers = next(csv.reader([first], delimiter=delimiter))
        yield from _table_rows(source, headers, csv.reader(text, delimiter=delimiter))
    finally:
        text.detach()


def xlsx_rows(file: IO[bytes], source: str) -> Iterator[Row]:
    from openpyxl import load_workbook
    from openpyxl.utils.exceptions import InvalidFileException

    file.seek(0)
    try:
        book = load_workbook(file, read_only=True, data_only=True)
    except (InvalidFileException, zipfile.BadZipFile, KeyError, OSError, ValueError) as exc:
        raise FileProblem("file", f"not a readable XLSX workbook: {type(exc).__name__}") from None
    try:
        sheet = book.worksheets[0]
        rows = sheet.iter_rows(values_only=True)
        for header_row in rows:
            if any(v is not None and str(v).strip() for v in header_row):
                headers = ["" if v is None else str(v) for v in header_row]
                yield from _table_rows(source, headers, rows)
                return
        raise FileProblem("file", "the first sheet is empty")
    finally:
        book.close()


def _table_rows(source: str, headers: list[str], rows: Iterator[Any]) -> Iterator[Row]:
    mapping = column_map(source, headers)
    missing = missing_columns(source, set(mapping.values()))
    if missing:
        raise FileProblem(
            missing[0],
            f"missing column(s) {', '.join(missing)}; found {', '.join(h for h in headers if h)}",
        )
    width = len(headers)
    names = [h.strip() or f"column_{i + 1}" for i, h in enumerate(headers)]
    fields = list(mapping.values())
    pick = itemgetter(*mapping) if len(mapping) > 1 else (lambda v: (v[next(iter(mapping))],))
    # Headers that are exactly the field names: a full line's raw record is its row.
    canonical = names == [mapping.get(i) for i in range(width)]
    for values in rows:
        if not values or not any(values):  # a blank line (",,,," included)
            continue
        n = len(values)
        if n == width:
            raw = dict(zip(names, values, strict=True))
            yield raw, raw if canonical else dict(zip(fields, pick(values), strict=True))
            continue
        if n < width:  # a short line's missing cells are empty; extra cells are kept
            values = [*values, *([None] * (width - n))]
        else:
            names += [f"column_{i + 1}" for i in range(len(names), n)]
        yield dict(zip(names, values, strict=False)), dict(zip(fields, pick(values), strict=True))


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
            yield record, record
        else:
            yield record, {canonical: record[key] for key, canonical in mapping}
