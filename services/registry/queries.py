"""Reads of the register: households with their members, filters with keyset pagination,
people by ID number, regions and history. Nothing here writes."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, exists, false, or_, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from backstop.contracts.policy import contact_missing
from backstop.idnumber import mask_id, mask_phone
from backstop.pagination import decode_cursor, encode_cursor
from services.registry import domain
from services.registry.models import (
    NATIONAL_MEMBER_FIELDS,
    ContactPublic,
    GuaranteeIn,
    HistoryPublic,
    HouseholdPublic,
    IncomePublic,
    MemberPublic,
    MonitoringPublic,
    RegionPublic,
)
from services.registry.views import (
    HIST,
    H,
    HouseholdView,
    P,
    R,
    guarantees_of,
    load_views,
    year_size,
)


def to_public(view: HouseholdView, *, pii: bool) -> HouseholdPublic:
    """The household as the API shows it; ID numbers masked unless `pii`."""
    h = view.household
    size = len(view.members)
    incomes = [
        IncomePublic(
            year=i["year"],
            total=i["total"],
            wage=i["wage"],
            business=i["business"],
            transfer=i["transfer"],
            property=i["property"],
            per_capita=domain.per_capita(i["total"], year_size(i, size)),
        )
        for i in view.incomes
    ]
    return HouseholdPublic(
        id=view.id,
        household_number=h["household_number"],
        region_code=h["region_code"],
        town_code=h["town_code"],
        type=h["type"],
        policy_enjoying=h["policy_enjoying"],
        exit_year=h.get("exit_year"),
        monitoring_status=h["monitoring_status"],
        monitoring=MonitoringPublic(
            status=h["monitoring_status"],
            since=h["monitoring_since"],
            ended_on=h["monitoring_ended_on"],
            elimination_method=h["elimination_method"],
            elimination_reason=h["elimination_reason"],
            case_id=h["monitoring_case_id"],
        ),
        annual_income=incomes[0] if incomes else None,
        incomes=incomes,
        members=[
            MemberPublic(
                person_id=str(m["id"]),
                id_number=m["id_number"] if pii else mask_id(m["id_number"]),
                name=m["name"],
                relation=m["relation"],
                sex=m["sex"],
                birth_date=m["birth_date"] if pii else None,
                birth_year=m["birth_date"].year,
                special_groups=list(m["special_groups"] or []),
                labor_capacity=m["labor_capacity"],
                schooling=m["schooling"],
                medical_insurance=m["medical_insurance"],
                **{k: m.get(k) for k in NATIONAL_MEMBER_FIELDS},
            )
            for m in view.members
        ],
        guarantees={k: GuaranteeIn(**v) for k, v in guarantees_of(view).items()},
        contacts=[
            ContactPublic(
                role=c["role"],
                name=c["name"],
                phone=c["phone"] if pii else mask_phone(c["phone"]),
                unit=c.get("unit"),
            )
            for c in view.contacts
        ],
        contact_missing=contact_missing(
            h["type"], h["monitoring_status"], [c["role"] for c in view.contacts]
        ),
        version=h["version"],
        created_at=h["created_at"],
        updated_at=h["updated_at"],
    )


def _prefix(column: Any, prefixes: Sequence[str]) -> ColumnElement[bool]:
    if not prefixes:
        return false()
    return or_(*[column.like(f"{p}%") for p in prefixes])


async def list_households(
    session: AsyncSession,
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
    """Households matching the filters, ordered by id, one page after `cursor`. With
    `updated_since`: those changed at or after it, oldest change first (an incremental
    sync: the next sync passes the last `updated_at` it saw)."""
    conditions: list[ColumnElement[bool]] = []
    if visible is not None:
        conditions.append(_prefix(H.c.region_code, visible))
    if region:
        conditions.append(H.c.region_code.like(f"{region}%"))
    if type:
        conditions.append(H.c.type == type)
    if monitoring:
        conditions.append(H.c.monitoring_status == monitoring)
    if special_group:
        conditions.append(
            exists().where(P.c.household_id == H.c.id, P.c.special_groups.contains([special_group]))
        )
    if updated_since is not None:
        conditions.append(H.c.updated_at >= updated_since)
        since = decode_cursor(cursor, datetime.fromisoformat, uuid.UUID)
        if since is not None:
            conditions.append(tuple_(H.c.updated_at, H.c.id) > tuple_(*since))
        query = select(H.c.updated_at, H.c.id).order_by(H.c.updated_at, H.c.id)
    else:
        after = decode_cursor(cursor, uuid.UUID)
        if after is not None:
            conditions.append(H.c.id > after[0])
        query = select(H.c.id).order_by(H.c.id)
    rows = list((await session.execute(query.where(and_(*conditions)).limit(limit + 1))).all())
    # Each row is its sort key, the household id last.
    next_cursor = encode_cursor(*rows[limit - 1]) if len(rows) > limit else None
    ids = [r[-1] for r in rows[:limit]]
    views = await load_views(session, ids)
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
