"""Preview of a department file (报送前预览): how it would be read and what it would
give, with nothing stored. The data officer fixes the file or asks for a mapping change
before the real upload."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from backstop.idnumber import mask_id
from services.datasync.domain import (
    REQUIRED,
    Context,
    FieldError,
    missing_columns,
    validate_record,
)
from services.datasync.ingest import rejection
from services.datasync.models import Preview, PreviewColumn, RecordError
from services.datasync.parsing import FileLayout, Row

PREVIEW_ROWS = 20


def preview_file(
    *, layout: FileLayout, rows: Iterator[Row], ctx: Context, max_errors: int
) -> Preview:
    """Read and check every row of the file as the upload would (not the checks that
    need the database: a record id already received is found only on upload)."""
    table = layout.table
    mapped = set(table.fields.values())
    shown: list[dict[str, Any]] = []
    errors: list[RecordError] = []
    received = valid = rejected = 0
    for index, (_, row, line) in enumerate(rows):
        received += 1
        try:
            record = validate_record(row, ctx)
        except FieldError as exc:
            rejected += 1
            if len(errors) < max_errors:
                errors.append(rejection(index, row, line, exc, ctx, "").error())
            continue
        valid += 1
        if len(shown) < PREVIEW_ROWS:
            shown.append(
                {
                    "row": line,
                    "record_id": record.record_id,
                    "id_number": mask_id(record.id_number),
                    **{k: v for k, v in record.data.items() if k not in ("source", "id_hash")},
                }
            )
    return Preview(
        source=ctx.source,
        format=table.format,
        encoding=table.encoding,
        sheets=table.sheets,
        sheet=table.sheet,
        header_row=table.header.row,
        header_rows=table.header.depth,
        columns=[
            PreviewColumn(column=i + 1, header=h, field=table.fields.get(i))
            for i, h in enumerate(table.headers)
            if h or i in table.fields
        ],
        unmapped=[h for i, h in enumerate(table.headers) if h and i not in table.fields],
        missing=missing_columns(ctx.source, mapped, derive=True),
        derived=[
            f
            for f in REQUIRED[ctx.source]
            if f not in mapped and f not in missing_columns(ctx.source, mapped, derive=True)
        ],
        record_id_rule=layout.record_id_rule,
        profile_version=layout.profile_version,
        received=received,
        valid=valid,
        rejected=rejected,
        skipped=table.skipped,
        rows=shown,
        errors=errors,
    )
