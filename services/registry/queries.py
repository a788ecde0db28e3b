"""Reads of the register: households with their members, filters with keyset pagination,
people by ID number, regions and history. Nothing here writes."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import asyncpg
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from backstop.contracts.policy import contact_missing
from backstop.idnumber import mask_id, mask_phone
from backstop.pagination import decode_cursor, encode_cursor
from services.registry import domain
from services.registry.models import NATIONAL_MEMBER_FIELDS, HistoryPublic, RegionPublic
from services.registry.views import (
    HIST,
    H,
    HouseholdView,
    P,
    R,
    fetch_views,
    guarantees_of,
    year_size,
)


def to_public(view: HouseholdView, *, pii: bool) -> dict[str, Any]:
    """The household as the API shows it (the JSON of `HouseholdPublic`, built as plain
    values: the GET routes serialise it once, with orjson, instead of validating a model
    of it again); ID numbers masked unless `pii`."""
    h = view.household
    size = len(view.members)
    incomes = [
        {
            "year": i["year"],
            "total": float(i["total"]),
            "wage": _float(i["wage"]),
            "business": _float(i["business"]),
            "transfer": _float(i["transfer"]),
            "property": _float(i["property"]),
            "per_capita": float(domain.per_capita(i["total"], year_size(i, size))),
        }
        for i in view.incomes
    ]
    return {
        "id": view.id,
        "household_number": h["household_number"],
        "region_code": h["region_code"],
        "town_code": h["town_code"],
        "type": h["type"],
        "policy_enjoying": h["policy_enjoying"],
        "exit_year": h.get("exit_year"),
        "monitoring_status": h["monitoring_status"],
        "monitoring": {
            "status": h["monitoring_status"],
            "since": h["monitoring_since"],
            "ended_on": h["monitoring_ended_on"],
            "elimination_method": h["elimination_method"],
            "elimination_reason": h["elimination_reason"],
            "case_id": h["monitoring_case_id"],
        },
        "annual_income": incomes[0] if incomes else None,
        "incomes": incomes,
        "members": [
            {
                "person_id": str(m["id"]),
                "id_number": m["id_number"] if pii else mask_id(m["id_number"]),
                "name": m["name"],
                "relation": m["relation"],
                "sex": m["sex"],
                "birth_date": m["birth_date"] if pii else None,
                "birth_year": m["birth_date"].year,
                "special_groups": list(m["special_groups"] or []),
                "labor_capacity": m["labor_capacity"],
                "schooling": m["schooling"],
                "medical_insurance": m["medical_insurance"],
                **{k: m.get(k) for k in NATIONAL_MEMBER_FIELDS},
            }
            for m in view.members
        ],
        "guarantees": {
            k: {
                "status": v["status"],
                "verified_on": date.fromisoformat(v["verified_on"])
                if v.get("verified_on")
                else None,
            }
            for k, v in guarantees_of(view).items()
        },
        "contacts": [
            {
                "role": c["role"],
                "name": c["name"],
                "phone": c["phone"] if pii else mask_phone(c["phone"]),
                "unit": c.get("unit"),
            }
            for c in view.contacts
        ],
        "contact_missing": contact_missing(
            h["type"], h["monitoring_status"], [c["role"] for c in view.contacts]
        ),
        "version": h["version"],
        "created_at": h["created_at"],
        "updated_at": h["updated_at"],
    }


def _float(value: Decimal | None) -> float | None:
    return float(value) if value is not None else None


async def list_households(
    pg: asyncpg.Connection,
    *,
    visible: Sequence[str] | None,  # the token's region prefixes; None = all
    region: str | None,
    type: str | None,
    monitoring: str | None,
    special_group: str | None,
    limit: int,
    cursor: str | None,
    updated_since: datetime | None = None,
) -> tuple[list[HouseholdView], str | None]:
    """Households matching the filters, ordered by id, one page after `cursor`, on a read
    connection. With `updated_since`: those changed at or after it, oldest change first
    (an incremental sync: the next sync passes the last `updated_at` it saw)."""
    conditions: list[str] = []
    params: list[Any] = []

    def param(value: Any) -> str:
        params.append(value)
        return f"${len(params)}"

    # Region prefixes are digits (checked on the token and the query), so LIKE needs no
    # escaping.
    if visible is not None:
        conditions.append(f"h.region_code LIKE ANY({param([f'{p}%' for p in visible])}::text[])")
    if region:
        conditions.append(f"h.region_code LIKE {param(f'{region}%')}")
    if type:
        conditions.append(f"h.type = {param(type)}")
    if monitoring:
        conditions.append(f"h.monitoring_status = {param(monitoring)}")
    if special_group:
        conditions.append(
            "EXISTS (SELECT 1 FROM person p WHERE p.household_id = h.id"
            f" AND p.special_groups @> ARRAY[{param(special_group)}]::varchar[])"
        )
    if updated_since is not None:
        conditions.append(f"h.updated_at >= {param(updated_since)}")
        since = decode_cursor(cursor, datetime.fromisoformat, uuid.UUID)
        if since is not None:
            conditions.append(f"(h.updated_at, h.id) > ({param(since[0])}, {param(since[1])})")
        columns = order = "h.updated_at, h.id"
    else:
        after = decode_cursor(cursor, uuid.UUID)
        if after is not None:
            conditions.append(f"h.id > {param(after[0])}")
        columns = order = "h.id"
    where = " AND ".join(conditions) or "true"
    rows = await pg.fetch(
        f"SELECT {columns} FROM household h WHERE {where} ORDER BY {order}"
        f" LIMIT {param(limit + 1)}",
        *params,
    )
    # Each row is its sort key, the household id last.
    next_cursor = encode_cursor(*rows[limit - 1]) if len(rows) > limit else None
    ids = [r[-1] for r in rows[:limit]]
    views = await fetch_views(pg, ids)
    return [views[i] for i in ids if i in views], next_cursor


async def find_person(
    session: AsyncSession, id_number: str
) -> tuple[uuid.UUID, uuid.UUID, str] | None:
    """(household id, person id, region code) of the household the person belongs to."""
    row = (
        await session.execute(
            select(P.c.household_id, P.c.id, H.c.region_code)
            .join(H, H.c.id == P.c.household_id)
            .where(P.c.id_number == id_number)
        )
    ).first()
    return (row[0], row[1], row[2]) if row else None


async def regions(session: AsyncSession, parent: str) -> list[RegionPublic]:
    rows = await session.execute(select(R).where(R.c.parent_code == parent).order_by(R.c.code))
    return [RegionPublic(**r) for r in rows.mappings()]


async def region_exists(session: AsyncSession, code: str) -> bool:
    return (await session.scalar(select(R.c.code).where(R.c.code == code))) is not None


async def household_region(session: AsyncSession, household_id: uuid.UUID) -> str | None:
    return await session.scalar(select(H.c.region_code).where(H.c.id == household_id))


async def history(
    session: AsyncSession, household_id: uuid.UUID, *, limit: int, cursor: str | None
) -> tuple[list[HistoryPublic], str | None]:
    """The household's changes, oldest first."""
    query = select(HIST).where(HIST.c.household_id == household_id)
    after = decode_cursor(cursor, int)
    if after is not None:
        query = query.where(HIST.c.id > after[0])
    rows = list((await session.execute(query.order_by(HIST.c.id).limit(limit + 1))).mappings())
    next_cursor = encode_cursor(rows[limit - 1]["id"]) if len(rows) > limit else None
    items = [
        HistoryPublic(
            id=r["id"],
            at=r["at"],
            actor=r["actor"],
            action=r["action"],
            person_id=str(r["person_id"]) if r["person_id"] else None,
            changes=r["changes"],
            version=r["version"],
        )
        for r in rows[:limit]
    ]
    return items, next_cursor


async def region_rows(session: AsyncSession) -> list[tuple[str, str, str, str]]:
    """(code, name, level, parent code) of every town and village of the county."""
    rows = await session.execute(select(R.c.code, R.c.name, R.c.level, R.c.parent_code))
    return [(r[0], r[1], r[2], r[3]) for r in rows]
