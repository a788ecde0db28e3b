"""Mapping profiles (映射配置): the county's column mapping for one source's files,
versioned, so a new export layout from a department is a mapping change, not a code
change. Files are read with the newest version; each batch records the version it used.
"""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from backstop.db import SessionFactory, raw_connection, unit_of_work
from backstop.errors import invalid
from services.datasync.columns import MappingProfile, fields_of, normalize_header
from services.datasync.models import ProfileCreate, ProfilePublic

_COLUMNS = "source, version, columns::text AS columns, header_row, header_rows, sheet, note,"
_COLUMNS += " created_by, created_at"


def _public(row: Any) -> ProfilePublic:
    return ProfilePublic(
        source=row.source,
        version=row.version,
        columns=orjson.loads(row.columns),
        header_row=row.header_row,
        header_rows=row.header_rows,
        sheet=row.sheet,
        note=row.note,
        created_by=row.created_by,
        created_at=row.created_at,
    )


async def get_profile(
    *, session: AsyncSession, source: str, version: int | None = None
) -> ProfilePublic | None:
    """The newest profile of `source` (or the given version); None when it has none."""
    row = (
        await session.execute(
            text(
                f"SELECT {_COLUMNS} FROM mapping_profiles WHERE source = :s"
                " AND (CAST(:v AS int) IS NULL OR version = :v) ORDER BY version DESC LIMIT 1"
            ),
            {"s": source, "v": version},
        )
    ).first()
    return _public(row) if row else None


async def list_profiles(*, session: AsyncSession, source: str) -> list[ProfilePublic]:
    rows = (
        await session.execute(
            text(
                f"SELECT {_COLUMNS} FROM mapping_profiles WHERE source = :s"
                " ORDER BY version DESC LIMIT 100"
            ),
            {"s": source},
        )
    ).all()
    return [_public(r) for r in rows]


def as_mapping(profile: ProfilePublic | None) -> MappingProfile | None:
    if profile is None:
        return None
    return MappingProfile(
        version=profile.version,
        columns=profile.columns,
        header_row=profile.header_row,
        header_rows=profile.header_rows,
        sheet=profile.sheet,
    )


async def save_profile(
    *, sessions: SessionFactory, source: str, body: ProfileCreate, created_by: str
) -> ProfilePublic:
    """A new version of `source`'s profile. Every target must be a field of the source;
    two headers may not name the same field."""
    known = fields_of(source)
    seen: dict[str, str] = {}
    for header, field in body.columns.items():
        if field not in known:
            raise invalid(
                ["body", "columns", header],
                f"{field!r} is not a field of {source}; fields: {', '.join(sorted(known))}",
            )
        if not normalize_header(header):
            raise invalid(["body", "columns", header], "a header may not be blank")
        if field in seen:
            raise invalid(
                ["body", "columns", header], f"{field} is already mapped from {seen[field]!r}"
            )
        seen[field] = header
    async with unit_of_work(sessions) as session:
        conn = await raw_connection(session)
        # One writer at a time per source, so versions follow each other.
        await conn.execute(
            "SELECT pg_advisory_xact_lock(hashtext('mapping_profiles:' || $1::text))", source
        )
        version = await conn.fetchval(
            "INSERT INTO mapping_profiles (source, version, columns, header_row, header_rows,"
            " sheet, note, created_by) SELECT $1::text, coalesce(max(version), 0) + 1, $2::jsonb,"
            " $3, $4, $5, $6, $7 FROM mapping_profiles WHERE source = $1 RETURNING version",
            source,
            orjson.dumps(body.columns).decode(),
            body.header_row,
            body.header_rows,
            body.sheet,
            body.note,
            created_by[:200],
        )
        saved = await get_profile(session=session, source=source, version=version)
    assert saved is not None
    return saved
