"""Commands and event handlers of the risk service. Each public function either owns its
unit of work or, for the consumer's batch handler, runs inside the one the consumer
opened; nothing here commits on its own.

Scoring is set-based: a batch of households is locked, its features loaded with two
queries, assessed in Python, and the changes written back with a few bulk statements.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from sqlalchemy import Text, TextClause, bindparam, func, insert, or_, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from backstop import outbox
from backstop.contracts import datasync as datasync_contract
from backstop.contracts import registry as registry_contract
from backstop.contracts.risk import (
    AlertCleared,
    AlertRaised,
    AssessmentChanged,
)
from backstop.db import SessionFactory, unit_of_work
from backstop.errors import Problem
from backstop.events import CloudEvent, make_event, registered_types
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
    transition,
    window_start,
)

log = logging.getLogger("backstop.risk")

SERVICE = "risk"
COUNTY_TZ = ZoneInfo("Asia/Shanghai")
RECORDS_MATCHED = "backstop.datasync.records.matched.v1"
REGISTRY_TYPES = frozenset(
    name for name, spec in registered_types().items() if spec.topic == registry_contract.TOPIC
)
CONSUMED_TYPES = REGISTRY_TYPES | {RECORDS_MATCHED}
RESCORE_CHUNK = 5000


def _json(value: Any) -> str:
    """A statement parameter as one JSON text. Bulk statements take their rows this way,
    not as arrays: asyncpg checks every element of an array parameter against the
    collections.abc classes, which costs more than the rest of the statement."""
    return orjson.dumps(value).decode()


def _is_one_of(column: str, ids: Sequence[str]) -> TextClause:
    """`<column> = ANY(<ids>)`, the ids sent as one JSON array."""
    return text(
        f"{column} = ANY(ARRAY(SELECT json_array_elements_text(CAST(:ids AS json))))"
    ).bindparams(bindparam("ids", _json(list(ids)), unique=True))


def county_today() -> date:
    """Windows (12 months, ages) are counted in the county's calendar."""
    return datetime.now(COUNTY_TZ).date()


# --- policy ---------------------------------------------------------------------------

# Parsed policies by their stored JSON (not by version number alone: tests and benches
# run several databases in one process).
_policy_cache: dict[bytes, Policy] = {}


async def current_policy(session: AsyncSession) -> tuple[int, Policy]:
    row = (
        await session.execute(
            select(m.policies.c.version, m.policies.c.policy)
            .order_by(m.policies.c.version.desc())
            .limit(1)
        )
    ).one()
    return row.version, _parse_policy(row.version, row.policy)


async def policy_version(session: AsyncSession, version: int) -> Policy | None:
    raw = await session.scalar(select(m.policies.c.policy).where(m.policies.c.version == version))
    return None if raw is None else _parse_policy(version, raw)


def _parse_policy(version: int, raw: dict[str, Any]) -> Policy:
    return _parse_policy_text(version, orjson.dumps(raw, option=orjson.OPT_SORT_KEYS).decode())


def _parse_policy_text(version: int, raw: str) -> Policy:
    """`raw` is the stored JSON as PostgreSQL prints jsonb (keys in a fixed order)."""
    key = version.to_bytes(4, "big") + raw.encode()
    policy = _policy_cache.get(key)
    if policy is None:
        if len(_policy_cache) > 64:
            _policy_cache.clear()
        policy = _policy_cache[key] = Policy.model_validate_json(raw)
    return policy


async def put_policy(
    sessions: SessionFactory, *, policy: Policy, author: str, note: str | None
) -> tuple[dict[str, Any], int]:
    """A new policy version (old ones are never edited) and the re-score job that brings
    every household onto it. Returns the version row and the job id."""
    async with unit_of_work(sessions) as session:
        # One writer at a time picks the next version number.
        await session.execute(text("LOCK TABLE risk_policies IN SHARE ROW EXCLUSIVE MODE"))
        latest = await session.scalar(select(func.max(m.policies.c.version)))
        version = int(latest or 0) + 1
        row = (
            await session.execute(
                insert(m.policies)
                .values(
                    version=version,
                    policy=policy.model_dump(mode="json"),
                    author=author,
                    note=note,
                )
                .returning(*m.policies.c)
            )
        ).one()
        await session.execute(
            update(m.rescore_jobs)
            .where(m.rescore_jobs.c.status.in_(("pending", "running")))
            .values(status="superseded", finished_at=func.now(), updated_at=func.now())
        )
        job_id = await session.scalar(
            insert(m.rescore_jobs)
            .values(policy_version=version, status="pending")
            .returning(m.rescore_jobs.c.id)
        )
        log.info("policy version %d by %s; re-score job %s queued", version, author, job_id)
        return dict(row._mapping), int(job_id or 0)


# --- consuming registry and datasync events -----------------------------------------


@dataclass
class _Trigger:
    """Why a household is being re-scored: the last event about it in the batch."""

    label: str
    correlation_id: str | None


@dataclass
class _Batch:
    snapshots: dict[str, tuple[CloudEvent, registry_contract.HouseholdSnapshot]] = field(
        default_factory=dict
    )
    records: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    triggers: dict[str, _Trigger] = field(default_factory=dict)


def _record_row(
    event: CloudEvent, data: datasync_contract.RecordsMatched, rec: Any
) -> dict[str, Any]:
    row: dict[str, Any] = {
        "source": rec.source,
        "record_id": rec.record_id,
        "household_id": data.household_id,
        "id_hash": rec.id_hash,
        "housing_damaged": False,
        "kind": None,
        "status": None,
        "enrolled": None,
        "batch_id": data.batch_id,
        "event_id": event.id,
    }
    if isinstance(rec, datasync_contract.MedicalRecordData):
        row.update(occurred_on=rec.settled_on, amount=rec.out_of_pocket)
    elif isinstance(rec, datasync_contract.DisasterRecordData):
        row.update(
            occurred_on=rec.occurred_on,
            amount=rec.loss_amount,
            housing_damaged=rec.housing_damaged,
        )
    elif isinstance(rec, datasync_contract.CivilAffairsRecordData):
        on = (rec.end_on if rec.status == "terminated" else rec.start_on) or _period_start(
            data.period
        )
        row.update(occurred_on=on, amount=rec.amount, kind=rec.kind, status=rec.status)
    else:  # education records carry no date: the feed's period dates them
        row.update(
            occurred_on=_period_start(data.period), amount=rec.out_of_pocket, enrolled=rec.enrolled
        )
    return row


def _period_start(period: str) -> date:
    try:
        year, month = period.split("-")[:2]
        return date(int(year), int(month), 1)
    except ValueError:
        return county_today()


def _collect(events: Sequence[CloudEvent]) -> _Batch:
    batch = _Batch()
    for event in events:
        if event.type == RECORDS_MATCHED:
            data = event.payload()
            assert isinstance(data, datasync_contract.RecordsMatched)
            for rec in data.records:
                # Same (source, record_id) twice in one batch: the first one wins, as
                # it would across batches.
                batch.records.setdefault((rec.source, rec.record_id), _record_row(event, data, rec))
            household_id = data.household_id
        elif event.type in REGISTRY_TYPES:
            payload = event.payload()
            assert isinstance(payload, registry_contract.HouseholdEvent)
            snapshot = payload.household
            household_id = snapshot.household_id
            seen = batch.snapshots.get(household_id)
            if seen is None or seen[1].version < snapshot.version:
                batch.snapshots[household_id] = (event, snapshot)
        else:
            continue
        batch.triggers[household_id] = _Trigger(f"{event.type}:{event.id}", event.correlationid)
    return batch


def _snapshot_row(event: CloudEvent, s: registry_contract.HouseholdSnapshot) -> dict[str, Any]:
    return {
        "household_id": s.household_id,
        "region_code": s.region_code,
        "town_code": s.town_code or s.region_code[:9],
        "type": s.type,
        "snapshot_version": s.version,
        "source_event_id": event.id,
        "members": [
            {
                "person_id": p.person_id,
                "id_hash": p.id_hash,
                "birth_date": p.birth_date.isoformat(),
                "special_groups": p.special_groups,
                "labor_capacity": p.labor_capacity,
                "schooling": p.schooling,
                "medical_insurance": p.medical_insurance,
            }
            for p in s.members
        ],
        "incomes": [i.model_dump() for i in s.incomes],
        "guarantees": dict(s.guarantees),
    }


async def apply_events(session: AsyncSession, events: Sequence[CloudEvent]) -> None:
    """The consumer's batch handler: keep the newest household snapshots and every
    department record (once per (source, record_id)), then re-score the households
    they touch. A record for a household not yet known is kept and counts as soon as
    its snapshot arrives."""
    batch = _collect(events)
    if not batch.triggers:
        return
    ids = sorted(batch.triggers)
    # One statement: keep the records and lock the known households in id order, as
    # the re-score does, so the two never deadlock and never interleave on one
    # household. Records need no lock: a re-score running now cannot see them before
    # this commits, and this batch re-scores their households after it.
    locked, version, policy = await _keep_records_and_lock(
        session, ids=ids, records=list(batch.records.values())
    )
    if batch.snapshots:
        table = m.households
        stmt = pg_insert(table)
        stmt = stmt.on_conflict_do_update(
            index_elements=[table.c.household_id],
            set_={
                c: stmt.excluded[c]
                for c in (
                    "region_code",
                    "town_code",
                    "type",
                    "snapshot_version",
                    "source_event_id",
                    "members",
                    "incomes",
                    "guarantees",
                )
            }
            | {"updated_at": func.now()},
            # A stale or replayed snapshot changes nothing (the row is locked all the
            # same; a new household's row is this transaction's own until it commits).
            where=table.c.snapshot_version < stmt.excluded.snapshot_version,
        )
        await session.execute(
            stmt, [_snapshot_row(e, s) for _, (e, s) in sorted(batch.snapshots.items())]
        )
        locked = sorted({*locked, *batch.snapshots})
    if not locked:
        return
    # Read only now, in a statement that starts once every lock is held, so it sees the
    # assessment a concurrent re-score or batch committed while this one waited: the
    # previous level an alert is decided from is never stale.
    as_of = county_today()
    rows = await _household_rows(session, ids=locked, as_of=as_of)
    if rows and rows[0].policy_now != version:  # a new policy came while this one waited
        version, policy = await current_policy(session)
    await score(
        session,
        rows,
        policy=policy,
        version=version,
        triggers=batch.triggers,
        as_of=as_of,
    )


# Keeps the batch's records, locks the known households among `ids` in id order and
# reads the current policy, in one round trip.
_KEEP_RECORDS_AND_LOCK = text(
    """
    WITH kept AS (
        INSERT INTO risk_records (source, record_id, household_id, id_hash, occurred_on,
                                  amount, housing_damaged, kind, status, enrolled, batch_id,
                                  event_id)
        SELECT * FROM json_to_recordset(CAST(:records AS json)) AS r(
            source varchar, record_id varchar, household_id varchar, id_hash varchar,
            occurred_on date, amount float8, housing_damaged bool, kind varchar,
            status varchar, enrolled bool, batch_id varchar, event_id varchar)
        ON CONFLICT (source, record_id) DO NOTHING
    ), locked AS MATERIALIZED (
        SELECT household_id FROM risk_households
        WHERE household_id = ANY(ARRAY(SELECT json_array_elements_text(CAST(:ids AS json))))
        ORDER BY household_id
        FOR UPDATE
    )
    SELECT ARRAY(SELECT household_id FROM locked ORDER BY household_id) AS locked,
           p.version, CAST(p.policy AS text) AS policy
    FROM (SELECT version, policy FROM risk_policies ORDER BY version DESC LIMIT 1) AS p
    """
)


async def _keep_records_and_lock(
    session: AsyncSession, *, ids: Sequence[str], records: Sequence[dict[str, Any]]
) -> tuple[list[str], int, Policy]:
    """Insert `records` (a record already kept is left as it is), lock the households
    among `ids` that exist, in id order; return their ids and the current policy."""
    row = (
        await session.execute(
            _KEEP_RECORDS_AND_LOCK, {"records": _json(records), "ids": _json(list(ids))}
        )
    ).one()
    return list(row.locked), row.version, _parse_policy_text(row.version, row.policy)


async def _lock_households(
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
        stmt = stmt.where(_is_one_of("risk_households.household_id", ids))
    if after is not None:
        stmt = stmt.where(h.household_id > after)
    if limit is not None:
        stmt = stmt.limit(limit)
    return list((await session.execute(stmt)).scalars())


# --- features -------------------------------------------------------------------------

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
    """The household's records the rules can still look at (two years: the rolling 12
    months, and the latest civil-affairs and school status before it), as JSON text.
    Every column here is in ix_risk_records_household_features: an index-only scan."""
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
        .where(r.household_id == m.households.c.household_id, r.occurred_on >= since)
        .scalar_subquery()
        .cast(Text)
        .label("records")
    )


async def _household_rows(
    session: AsyncSession,
    *,
    as_of: date,
    ids: Sequence[str] | None = None,
    after: str | None = None,
    limit: int | None = None,
    region_prefixes: Sequence[str] | None = None,
) -> list[_HouseholdRow]:
    """Households with everything an assessment needs in one round trip: the snapshot,
    their records and the current assessment (`prev_*`). Deciding from them needs the
    households locked first (`_lock_households`, `_keep_records_and_lock`)."""
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
        stmt = stmt.where(_is_one_of("risk_households.household_id", ids))
    if after is not None:
        stmt = stmt.where(h.household_id > after)
    if region_prefixes:
        stmt = stmt.where(or_(*(h.region_code.startswith(p) for p in region_prefixes)))
    if limit is not None:
        stmt = stmt.limit(limit)
    # Plain slotted objects: a SQLAlchemy Row's attribute access costs more than the
    # conversion, and every household's row is read a dozen times.
    return [_HouseholdRow(*row) for row in (await session.execute(stmt)).all()]


@dataclass(slots=True)
class _HouseholdRow:
    """One row of `_household_rows`, its columns in order."""

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


def features_of(row: _HouseholdRow, as_of: date) -> Features:
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
    rows = await _household_rows(session, ids=[household_id], as_of=as_of)
    return features_of(rows[0], as_of) if rows else None


def assess_rows(
    rows: Sequence[_HouseholdRow], policy: Policy, as_of: date
) -> list[tuple[_HouseholdRow, Assessment]]:
    return [(row, assess(features_of(row, as_of), policy)) for row in rows]


# --- scoring and its outputs ----------------------------------------------------------

# Bulk writes as one statement over rows sent as JSON (json_to_recordset): one round
# trip and no per-row statement work, whatever the batch size.
# The history row and the current assessment in one statement.
_WRITE_ASSESSMENTS = text(
    """
    WITH saved AS (
        INSERT INTO risk_assessments (household_id, region_code, level, previous_level, score,
            previous_score, factors, per_capita_income, income_line, policy_version,
            assessed_at, trigger, correlation_id)
        SELECT household_id, region_code, level, previous_level, score, previous_score,
               factors, per_capita_income, income_line, :version, :now, trigger,
               correlation_id
        FROM json_to_recordset(CAST(:assessments AS json)) AS t(
            household_id varchar, region_code varchar, level varchar, previous_level varchar,
            score int, previous_score int, factors jsonb, per_capita_income float8,
            income_line float8, trigger varchar, correlation_id varchar)
        RETURNING id, household_id, region_code, level, score, factors, per_capita_income,
                  income_line
    )
    INSERT INTO risk_current (household_id, region_code, level, score, factors,
        per_capita_income, income_line, policy_version, assessed_at, assessment_id)
    SELECT household_id, region_code, level, score, factors, per_capita_income, income_line,
           :version, :now, id
    FROM saved
    ON CONFLICT (household_id) DO UPDATE SET
        region_code = excluded.region_code, level = excluded.level, score = excluded.score,
        factors = excluded.factors, per_capita_income = excluded.per_capita_income,
        income_line = excluded.income_line, policy_version = excluded.policy_version,
        assessed_at = excluded.assessed_at, assessment_id = excluded.assessment_id
    """
)


def _factor_json(a: Assessment) -> list[dict[str, Any]]:
    return [
        {"code": f.code, "points": f.points, "evidence": f.evidence, "sources": list(f.sources)}
        for f in a.factors
    ]


async def score(
    session: AsyncSession,
    rows: Sequence[_HouseholdRow],
    *,
    policy: Policy,
    version: int,
    triggers: dict[str, _Trigger] | None = None,
    default_trigger: _Trigger | None = None,
    as_of: date,
) -> int:
    """Assess the households in `rows` (already locked by the caller) and write what
    changed: a history row, the current assessment, `risk.assessments` when the level
    or score moved, and `risk.alerts` on a transition into or out of `at_risk`.
    Returns how many households changed level or score."""
    if not rows:
        return 0
    assessed = assess_rows(rows, policy, as_of)
    now = datetime.now(UTC)
    history: list[dict[str, Any]] = []
    version_only: list[str] = []
    events: list[CloudEvent] = []
    changed = 0
    for row, a in assessed:
        hid = row.household_id
        trigger = (triggers or {}).get(hid) or default_trigger or _Trigger("unknown", None)
        prev = row.previous
        factors = _factor_json(a)
        if (
            prev is not None
            and prev.level == a.level
            and prev.score == a.score
            and orjson.loads(prev.factors) == factors
        ):
            if row.prev_version != version:
                version_only.append(hid)
            continue
        history.append(
            {
                "household_id": hid,
                "region_code": row.region_code,
                "level": a.level,
                "previous_level": prev.level if prev else None,
                "score": a.score,
                "previous_score": prev.score if prev else None,
                "factors": factors,
                "per_capita_income": a.per_capita_income,
                "income_line": a.income_line,
                "trigger": trigger.label[:200],
                "correlation_id": trigger.correlation_id,
            }
        )
        move = transition((prev.level, prev.score) if prev else ("none", 0), a)
        if not move.changed:
            continue
        changed += 1
        events.append(
            make_event(
                SERVICE,
                AssessmentChanged(
                    household_id=hid,
                    region_code=row.region_code,
                    level=a.level,
                    previous_level=prev.level if prev else None,
                    score=a.score,
                    previous_score=prev.score if prev else None,
                    factors=factors,  # validated into FactorData by pydantic itself
                    per_capita_income=a.per_capita_income,
                    income_line=a.income_line,
                    policy_version=version,
                    assessed_at=now,
                ),
                subject=hid,
                correlation_id=trigger.correlation_id,
                time=now,
            )
        )
        if move.alert is not None:
            alert_type = AlertRaised if move.alert == "raised" else AlertCleared
            events.append(
                make_event(
                    SERVICE,
                    alert_type(
                        household_id=hid,
                        region_code=row.region_code,
                        level=a.level,
                        previous_level=prev.level if prev else None,
                        score=a.score,
                        factors=a.codes,
                        assessed_at=now,
                        policy_version=version,
                    ),
                    subject=hid,
                    correlation_id=trigger.correlation_id,
                    time=now,
                )
            )
    if history:
        await session.execute(
            _WRITE_ASSESSMENTS,
            {"assessments": _json(history), "version": version, "now": now},
        )
    if version_only:
        # Same decision under a new policy version: record the version it now rests on.
        await session.execute(
            update(m.current)
            .where(_is_one_of("risk_current.household_id", version_only))
            .values(policy_version=version)
        )
    await outbox.publish_many(session, events)
    return changed


# --- re-score after a policy change ---------------------------------------------------


async def rescore_step(session: AsyncSession, *, chunk: int = RESCORE_CHUNK) -> bool:
    """Advance the oldest open re-score job by one chunk of households, in the caller's
    transaction: the job row, its cursor and the chunk's assessments commit together,
    so a crash resumes at the cursor. Returns False when there is nothing left to do."""
    j = m.rescore_jobs.c
    job = (
        await session.execute(
            select(m.rescore_jobs)
            .where(j.status.in_(("pending", "running")))
            .order_by(j.id)
            .limit(1)
            .with_for_update(skip_locked=True)
        )
    ).one_or_none()
    if job is None:
        return False
    now = func.now()
    latest, _ = await current_policy(session)
    if job.policy_version < latest:
        await session.execute(
            update(m.rescore_jobs)
            .where(j.id == job.id)
            .values(status="superseded", finished_at=now, updated_at=now)
        )
        return True
    policy = await policy_version(session, job.policy_version)
    assert policy is not None
    values: dict[str, Any] = {"updated_at": now}
    if job.status == "pending":
        total = await session.scalar(select(func.count()).select_from(m.households))
        values.update(status="running", started_at=now, total=int(total or 0))
    trigger = _Trigger(f"rescore:{job.id}", f"policy-v{job.policy_version}")
    as_of = county_today()
    if job.phase == "scan":
        ids = await _lock_households(session, after=job.cursor, limit=chunk)
        rows = await _household_rows(session, ids=ids, as_of=as_of) if ids else []
        if rows:
            changed = await score(
                session,
                rows,
                policy=policy,
                version=job.policy_version,
                default_trigger=trigger,
                as_of=as_of,
            )
            values.update(
                cursor=rows[-1].household_id,
                processed=job.processed + len(rows),
                changed=job.changed + changed,
            )
        else:
            values.update(phase="stragglers", cursor="")
    else:
        # Households a concurrent consumer batch re-scored under the old version while
        # the scan passed them.
        h, c = m.households.c, m.current.c
        stale = (
            select(h.household_id)
            .join(m.current, c.household_id == h.household_id)
            .where(c.policy_version < job.policy_version)
            .order_by(h.household_id)
            .limit(chunk)
        )
        ids = list((await session.execute(stale)).scalars())
        ids = await _lock_households(session, ids=ids) if ids else []
        rows = await _household_rows(session, ids=ids, as_of=as_of) if ids else []
        if rows:
            changed = await score(
                session,
                rows,
                policy=policy,
                version=job.policy_version,
                default_trigger=trigger,
                as_of=as_of,
            )
            values.update(changed=job.changed + changed)
        else:
            values.update(status="done", finished_at=now)
    await session.execute(update(m.rescore_jobs).where(j.id == job.id).values(**values))
    return True


async def run_rescore(sessions: SessionFactory, *, chunk: int = RESCORE_CHUNK) -> None:
    """Run open re-score jobs to the end, one committed chunk at a time."""
    while True:
        async with unit_of_work(sessions) as session:
            more = await rescore_step(session, chunk=chunk)
        if not more:
            return


async def rescore_status(session: AsyncSession) -> dict[str, Any] | None:
    row = (
        await session.execute(select(m.rescore_jobs).order_by(m.rescore_jobs.c.id.desc()).limit(1))
    ).one_or_none()
    if row is None:
        return None
    progress = 1.0 if row.status == "done" else (row.processed / row.total if row.total else 0.0)
    return {
        "job_id": row.id,
        "policy_version": row.policy_version,
        "status": row.status,
        "phase": row.phase,
        "total": row.total,
        "processed": row.processed,
        "changed": row.changed,
        "progress": round(min(progress, 1.0), 4),
        "created_at": row.created_at,
        "started_at": row.started_at,
        "finished_at": row.finished_at,
    }


# --- what-if --------------------------------------------------------------------------


async def simulate(
    session: AsyncSession,
    *,
    policy: Policy,
    region_prefixes: Sequence[str] | None,
    sample_size: int,
    chunk: int = 5000,
) -> dict[str, Any]:
    """Assess every household (in the client's regions) under `policy` without writing
    anything: counts per level and per town (first 9 digits of the region code), the
    moves from the current level, and a sample of each level."""
    version, _ = await current_policy(session)
    as_of = county_today()
    by_level = {"none": 0, "watch": 0, "at_risk": 0}
    by_town: dict[str, dict[str, int]] = {}
    changes: dict[str, int] = {}
    samples: dict[str, list[dict[str, Any]]] = {k: [] for k in by_level}
    total = 0
    after = ""
    while True:
        rows = await _household_rows(
            session, after=after, limit=chunk, region_prefixes=region_prefixes, as_of=as_of
        )
        if not rows:
            break
        after = rows[-1].household_id
        for row, a in assess_rows(rows, policy, as_of):
            total += 1
            by_level[a.level] += 1
            town = by_town.setdefault(row.town_code, {"none": 0, "watch": 0, "at_risk": 0})
            town[a.level] += 1
            now_level = row.prev_level
            move = f"{now_level or 'unassessed'}→{a.level}"
            changes[move] = changes.get(move, 0) + 1
            if len(samples[a.level]) < sample_size:
                samples[a.level].append(
                    {
                        "household_id": row.household_id,
                        "region_code": row.region_code,
                        "level": a.level,
                        "score": a.score,
                        "factors": a.codes,
                        "current_level": now_level,
                    }
                )
    return {
        "households": total,
        "policy_version_current": version,
        "by_level": by_level,
        "by_town": dict(sorted(by_town.items())),
        "changes": dict(sorted(changes.items())),
        "samples": samples,
    }


def not_found(household_id: str) -> Problem:
    return Problem(404, f"household {household_id} has no risk assessment")


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
