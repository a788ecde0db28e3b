"""Reads of the register: households with their members, filters with keyset pagination,
people by ID number, regions and history. Nothing here writes."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

import asyncpg
import orjson
from asyncpg import Record
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from backstop import grouping
from backstop.auth import Principal
from backstop.contracts.policy import contact_missing
from backstop.db import SessionFactory, bind, driver_connection
from backstop.idnumber import mask_id, mask_phone
from backstop.pagination import decode_cursor, encode_cursor
from services.registry import domain
from services.registry.models import NATIONAL_MEMBER_FIELDS, HistoryPublic, RegionPublic
from services.registry.views import HIST, VIEW_COLUMNS, VIEWS_SQL, H, P, R, year_size

_READS = "registry_household_reads"  # the session factory's Grouped reads, in its info
# Statements in flight at most: one more request waiting batches with the others, and
# one reading an uncommon large household does not hold up the rest. Two read ~15 % less
# CPU per GET than one statement each at 32 connections, one a little less again.
READ_STATEMENTS = 2


async def household_row(sessions: SessionFactory, household_id: uuid.UUID) -> Record | None:
    """One household's row of `VIEW_COLUMNS` for its GET, read in one statement with the
    households other requests of this process ask for at the same moment
    (`backstop.grouping`), on a read connection; None when there is none."""
    reads = grouping.shared(
        sessions,
        _READS,
        lambda: grouping.Grouped(
            functools.partial(_read_households, sessions),
            in_flight=READ_STATEMENTS,
            max_batch=64,
        ),
    )
    return await reads.submit(household_id)


async def _read_households(sessions: SessionFactory, ids: list[uuid.UUID]) -> list[Record | None]:
    async with driver_connection(sessions) as pg:
        rows = {row["id"]: row for row in await pg.fetch(VIEWS_SQL, ids)}
    return [rows.get(i) for i in ids]


def to_public(row: Mapping[str, Any], *, pii: bool) -> dict[str, Any]:
    """The household as the API shows it (the JSON of `HouseholdPublic`), from a row of
    `VIEW_COLUMNS`, built as plain values straight from the row's JSON (ids, dates and
    amounts stay as they came): the GET routes serialise it once, with orjson, instead of
    validating a model of it again. ID numbers and phones masked unless `pii`."""
    members = orjson.loads(row["members_json"])
    members.sort(key=_member_order)
    size = len(members)
    incomes = [
        {
            "year": i["year"],
            "total": i["total"],
            "wage": i["wage"],
            "business": i["business"],
            "transfer": i["transfer"],
            "property": i["property"],
            "per_capita": float(domain.per_capita(domain.money(i["total"]), year_size(i, size))),
        }
        for i in orjson.loads(row["incomes_json"])
    ]
    contacts = orjson.loads(row["contacts_json"])
    return {
        "id": str(row["id"]),
        "household_number": row["household_number"],
        "region_code": row["region_code"],
        "town_code": row["town_code"],
        "type": row["type"],
        "policy_enjoying": row["policy_enjoying"],
        "exit_year": row["exit_year"],
        "monitoring_status": row["monitoring_status"],
        "monitoring": {
            "status": row["monitoring_status"],
            "since": row["monitoring_since"],
            "ended_on": row["monitoring_ended_on"],
            "elimination_method": row["elimination_method"],
            "elimination_reason": row["elimination_reason"],
            "case_id": row["monitoring_case_id"],
        },
        "annual_income": incomes[0] if incomes else None,
        "incomes": incomes,
        "members": [
            {
                "person_id": m["id"],
                "id_number": m["id_number"] if pii else mask_id(m["id_number"]),
                "name": m["name"],
                "relation": m["relation"],
                "sex": m["sex"],
                "birth_date": m["birth_date"] if pii else None,
                "birth_year": int(m["birth_date"][:4]),
                "special_groups": m["special_groups"] or [],
                "labor_capacity": m["labor_capacity"],
                "schooling": m["schooling"],
                "medical_insurance": m["medical_insurance"],
                **{k: m.get(k) for k in NATIONAL_MEMBER_FIELDS},
            }
            for m in members
        ],
        "guarantees": {
            k: {
                "status": v["status"],
                "verified_on": date.fromisoformat(v["verified_on"])
                if v.get("verified_on")
                else None,
            }
            for k, v in (row["guarantees"] or {}).items()
        },
        "contacts": [
            {
                "role": c["role"],
                "name": c["name"],
                "phone": c["phone"] if pii else mask_phone(c["phone"]),
                "unit": c.get("unit"),
            }
            for c in contacts
        ],
        "contact_missing": contact_missing(
            row["type"], row["monitoring_status"], [c["role"] for c in contacts]
        ),
        "version": row["version"],
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
    }


def _member_order(m: dict[str, Any]) -> tuple[bool, str]:
    """`views.member_order` on the JSON: ISO dates sort as the dates do."""
    return m["relation"] != "head", m["birth_date"]


async def list_households(
    pg: asyncpg.Connection,
    *,
    principal: Principal,
    region: str | None,
    type: str | None,
    monitoring: str | None,
    special_group: str | None,
    limit: int,
    cursor: str | None,
    updated_since: datetime | None = None,
) -> tuple[list[asyncpg.Record], str | None]:
    """Households matching the filters, ordered by id, one page after `cursor`, on a read
    connection. With `updated_since`: those changed at or after it, oldest change first
    (an incremental sync: the next sync passes the last `updated_at` it saw)."""
    params: list[Any] = []
    keys: tuple[str, ...]  # the columns of the page's order, which the cursor carries

    param = functools.partial(bind, params)

    visible = principal.region_condition("h.region_code", params)
    conditions = [visible] if visible else []
    # `region` is digits (checked on the query), so LIKE needs no escaping.
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
        order, keys = "h.updated_at, h.id", ("updated_at", "id")
    else:
        after = decode_cursor(cursor, uuid.UUID)
        if after is not None:
            conditions.append(f"h.id > {param(after[0])}")
        order, keys = "h.id", ("id",)
    where = " AND ".join(conditions) or "true"
    rows = await pg.fetch(
        f"SELECT {VIEW_COLUMNS} FROM household h WHERE {where} ORDER BY {order}"
        f" LIMIT {param(limit + 1)}",
        *params,
    )
    next_cursor = encode_cursor(*(rows[limit - 1][c] for c in keys)) if len(rows) > limit else None
    return rows[:limit], next_cursor


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
