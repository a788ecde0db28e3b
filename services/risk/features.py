"""A household's features, read back from risk's read model (registry snapshots and
datasync records): one round trip gives the snapshot, the records still in the rules'
windows and the current assessment; households are locked in id order before that read.
Also the features as inspectors see them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from sqlalchemy import Text, TextClause, bindparam, func, or_, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from services.risk import models as m
from services.risk.domain import (
    Assessment,
    Features,
    FeedRecord,
    Income,
    Level,
    Member,
    Policy,
    assess,
    build_features,
    previous_window_start,
    window_start,
)

COUNTY_TZ = ZoneInfo("Asia/Shanghai")


def json_param(value: Any) -> str:
    """A statement parameter as one JSON text. Bulk statements take their rows this way,
    not as arrays: asyncpg checks every element of an array parameter against the
    collections.abc classes, which costs more than the rest of the statement."""
    return orjson.dumps(value).decode()


def is_one_of(column: str, ids: Sequence[str]) -> TextClause:
    """`<column> = ANY(<ids>)`, the ids sent as one JSON array."""
    return text(
        f"{column} = ANY(ARRAY(SELECT json_array_elements_text(CAST(:ids AS json))))"
    ).bindparams(bindparam("ids", json_param(list(ids)), unique=True))


def county_today() -> date:
    """Windows (12 months, ages) are counted in the county's calendar."""
    return datetime.now(COUNTY_TZ).date()


async def lock_households(
    session: AsyncSession,
    *,
    after: str | None = None,
    limit: int | None = None,
    ids: Sequence[str] | None = None,
) -> list[str]:
    """Lock households in id order and return their ids: those in `ids`, or the first
    `limit` after `after`. Read them afterwards, in a new statement: one that waited
    for a lock here would otherwise see what was there before the wait."""
    h = m.households.c
    stmt = select(h.household_id).order_by(h.household_id).with_for_update()
    if ids is not None:
        stmt = stmt.where(is_one_of("risk_households.household_id", ids))
    if after is not None:
        stmt = stmt.where(h.household_id > after)
    if limit is not None:
        stmt = stmt.limit(limit)
    return list((await session.execute(stmt)).scalars())


_HOUSEHOLD_COLUMNS = (
    m.households.c.household_id,
    m.households.c.region_code,
    m.households.c.town_code,
    m.households.c.source_event_id,
    # As text, parsed with orjson: several times faster than the driver's json codec.
    m.households.c.members.cast(Text).label("members"),
    m.households.c.incomes.cast(Text).label("incomes"),
    m.households.c.guarantees.cast(Text).label("guarantees"),
)


def _records_json(since: date) -> Any:
    """The household's live records the rules can still look at (two years: the rolling
    12 months, and the latest civil-affairs and school status before it), as JSON text.
    Every column here is in ix_risk_records_household_features (partial: live records):
    an index-only scan."""
    r = m.records.c
    return (
        select(
            func.json_agg(
                func.json_build_array(
                    r.source,
                    r.record_id,
                    r.occurred_on,
                    r.amount,
                    r.id_hash,
                    r.housing_damaged,
                    r.kind,
                    r.status,
                    r.enrolled,
                )
            )
        )
        .where(
            r.household_id == m.households.c.household_id,
            r.occurred_on >= since,
            ~r.voided,  # 作废: a tombstone, counted nowhere (the index's own predicate)
        )
        .scalar_subquery()
        .cast(Text)
        .label("records")
    )


async def household_rows(
    session: AsyncSession,
    *,
    as_of: date,
    ids: Sequence[str] | None = None,
    after: str | None = None,
    limit: int | None = None,
    region_prefixes: Sequence[str] | None = None,
) -> list[HouseholdRow]:
    """Households with everything an assessment needs in one round trip: the snapshot,
    their records and the current assessment (`prev_*`). Deciding from them needs the
    households locked first (`lock_households`, `_keep_records_and_lock`)."""
    h, c = m.households.c, m.current.c
    stmt = (
        select(
            *_HOUSEHOLD_COLUMNS,
            _records_json(previous_window_start(as_of)),
            c.level.label("prev_level"),
            c.score.label("prev_score"),
            c.factors.cast(Text).label("prev_factors"),
            c.policy_version.label("prev_version"),
            select(func.max(m.policies.c.version)).scalar_subquery().label("policy_now"),
        )
        .select_from(m.households.outerjoin(m.current, c.household_id == h.household_id))
        .order_by(h.household_id)
    )
    if ids is not None:
        stmt = stmt.where(is_one_of("risk_households.household_id", ids))
    if after is not None:
        stmt = stmt.where(h.household_id > after)
    if region_prefixes:
        stmt = stmt.where(or_(*(h.region_code.startswith(p) for p in region_prefixes)))
    if limit is not None:
        stmt = stmt.limit(limit)
    # Plain slotted objects: a SQLAlchemy Row's attribute access costs more than the
    # conversion, and every household's row is read a dozen times.
    return [HouseholdRow(*row) for row in (await session.execute(stmt)).all()]


@dataclass(slots=True)
class HouseholdRow:
    """One row of `household_rows`, its columns in order."""

    household_id: str
    region_code: str
    town_code: str
    source_event_id: str
    members: str
    incomes: str
    guarantees: str
    records: str | None
    prev_level: Level | None
    prev_score: int | None
    prev_factors: str | None
    prev_version: int | None
    policy_now: int

    @property
    def previous(self) -> _Previous | None:
        """The current assessment, if the household has one (all its columns are set)."""
        if self.prev_level is None or self.prev_score is None or self.prev_factors is None:
            return None
        return _Previous(self.prev_level, self.prev_score, self.prev_factors)


@dataclass(slots=True)
class _Previous:
    level: Level
    score: int
    factors: str  # JSON


def _feed_records(raw: str | None) -> list[FeedRecord]:
    if not raw:
        return []
    # Positional, in FeedRecord's field order (the json_build_array in _records_json).
    return [
        FeedRecord(
            source,
            record_id,
            _day(occurred_on),
            float(amount),
            id_hash,
            housing_damaged,
            kind,
            status,
            enrolled,
        )
        for (
            source,
            record_id,
            occurred_on,
            amount,
            id_hash,
            housing_damaged,
            kind,
            status,
            enrolled,
        ) in orjson.loads(raw)
    ]


_day = date.fromisoformat


def features_of(row: HouseholdRow, as_of: date) -> Features:
    # Positional arguments, in the dataclasses' field order: a re-score builds 300k.
    members = [
        Member(
            p["person_id"],
            p.get("id_hash", ""),
            _day(p["birth_date"]),
            tuple(p.get("special_groups") or ()),
            p.get("labor_capacity") or "full",
            p.get("schooling"),
            p.get("medical_insurance", True),
        )
        for p in orjson.loads(row.members)
    ]
    incomes = [
        Income(int(i["year"]), float(i["total"]), float(i["per_capita"]))
        for i in orjson.loads(row.incomes)
    ]
    return build_features(
        household_id=row.household_id,
        region_code=row.region_code,
        as_of=as_of,
        members=members,
        incomes=incomes,
        guarantees=orjson.loads(row.guarantees),
        records=_feed_records(row.records),
        snapshot_source=row.source_event_id,
    )


async def features_for(session: AsyncSession, household_id: str) -> Features | None:
    as_of = county_today()
    rows = await household_rows(session, ids=[household_id], as_of=as_of)
    return features_of(rows[0], as_of) if rows else None


def assess_rows(
    rows: Sequence[HouseholdRow], policy: Policy, as_of: date
) -> list[tuple[HouseholdRow, Assessment]]:
    return [(row, assess(features_of(row, as_of), policy)) for row in rows]


def features_public(f: Features) -> dict[str, Any]:
    """Features as JSON for inspectors: facts and where they came from."""

    def spending(s: Any) -> dict[str, Any]:
        return {"amount_12m": s.amount, "records": s.count, "sources": list(s.sources)}

    return {
        "household_id": f.household_id,
        "region_code": f.region_code,
        "as_of": f.as_of.isoformat(),
        "window_from": window_start(f.as_of).isoformat(),
        "snapshot_source": f"registry:{f.snapshot_source}",
        "size": f.size,
        "members": [
            {
                "person_id": p.person_id,
                "birth_date": p.birth_date.isoformat(),
                "special_groups": list(p.special_groups),
                "labor_capacity": p.labor_capacity,
                "schooling": p.schooling,
                "medical_insurance": p.medical_insurance,
                "enrolled": (f.enrolment.get(p.id_hash) or (None, None))[0],
            }
            for p in f.members
        ],
        "income": None if f.income is None else asdict(f.income),
        "previous_income": None if f.previous_income is None else asdict(f.previous_income),
        "guarantees": dict(f.guarantees),
        "medical": spending(f.medical),
        "disaster": spending(f.disaster),
        "school": spending(f.school),
        "housing_damaged": list(f.housing_damaged),
        "temporary_assistance": spending(f.temporary_assistance),
        "civil_affairs": {
            kind: {"status": v[0], "on": v[1].isoformat(), "source": v[2]}
            for kind, v in f.civil_affairs.items()
        },
    }
