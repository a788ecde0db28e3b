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
from sqlalchemy import String, Text, any_, bindparam, func, insert, or_, select, text, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from backstop import outbox
from backstop.contracts import datasync as datasync_contract
from backstop.contracts import registry as registry_contract
from backstop.contracts.risk import (
    AlertCleared,
    AlertRaised,
    AssessmentChanged,
    FactorData,
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


def _any(ids: Sequence[str]) -> Any:
    """`= ANY($1::varchar[])`: one array parameter instead of thousands of IN binds."""
    return any_(bindparam(None, list(ids), type_=ARRAY(String)))


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
    key = version.to_bytes(4, "big") + orjson.dumps(raw, option=orjson.OPT_SORT_KEYS)
    policy = _policy_cache.get(key)
    if policy is None:
        if len(_policy_cache) > 64:
            _policy_cache.clear()
        policy = _policy_cache[key] = Policy.model_validate(raw)
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
    period_start = _period_start(data.period)
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
        on = (rec.end_on if rec.status == "terminated" else rec.start_on) or period_start
        row.update(occurred_on=on, amount=rec.amount, kind=rec.kind, status=rec.status)
    else:  # education records carry no date: the feed's period dates them
        row.update(occurred_on=period_start, amount=rec.out_of_pocket, enrolled=rec.enrolled)
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
    if batch.records:
        # Records need no household lock: a re-score running now cannot see them before
        # this commits, and this batch re-scores their households after it.
        await session.execute(
            _INSERT_RECORDS, _columns(list(batch.records.values()), _RECORD_COLUMNS)
        )
    if batch.snapshots:
        # Lock the households in id order first, as the re-score does, so the two never
        # deadlock and never interleave on one household.
        await _lock_households(session, ids)
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
            # A stale or replayed snapshot changes nothing.
            where=table.c.snapshot_version < stmt.excluded.snapshot_version,
        )
        await session.execute(
            stmt, [_snapshot_row(e, s) for _, (e, s) in sorted(batch.snapshots.items())]
        )
    version, policy = await current_policy(session)
    # Locked in id order (again, for households just inserted): one decision at a time
    # per household, never interleaved with the re-score.
    rows = await _household_rows(session, ids=ids, lock=True, as_of=county_today())
    await score(
        session,
        rows,
        policy=policy,
        version=version,
        triggers=batch.triggers,
        as_of=county_today(),
    )


async def _lock_households(session: AsyncSession, ids: Sequence[str]) -> None:
    await session.execute(
        select(m.households.c.household_id)
        .where(m.households.c.household_id == _any(ids))
        .order_by(m.households.c.household_id)
        .with_for_update()
    )


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
    months, and the latest civil-affairs and school status before it), as JSON text."""
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
    lock: bool = False,
) -> list[Any]:
    """Households with everything an assessment needs in one round trip: the snapshot,
    their records and the current assessment (`prev_*`). `lock` locks the households
    in id order, which serializes decisions per household."""
    h, c = m.households.c, m.current.c
    stmt = (
        select(
            *_HOUSEHOLD_COLUMNS,
            _records_json(window_start(window_start(as_of))),
            c.level.label("prev_level"),
            c.score.label("prev_score"),
            c.factors.cast(Text).label("prev_factors"),
        )
        .select_from(m.households.outerjoin(m.current, c.household_id == h.household_id))
        .order_by(h.household_id)
    )
    if ids is not None:
        stmt = stmt.where(h.household_id == _any(ids))
    if after is not None:
        stmt = stmt.where(h.household_id > after)
    if region_prefixes:
        stmt = stmt.where(or_(*(h.region_code.startswith(p) for p in region_prefixes)))
    if limit is not None:
        stmt = stmt.limit(limit)
    if lock:
        stmt = stmt.with_for_update(of=m.households)
    return list((await session.execute(stmt)).all())


def _feed_records(raw: str | None) -> list[FeedRecord]:
    if not raw:
        return []
    return [
        FeedRecord(
            source=source,
            record_id=record_id,
            occurred_on=date.fromisoformat(occurred_on),
            amount=float(amount),
            id_hash=id_hash,
            housing_damaged=housing_damaged,
            kind=kind,
            status=status,
            enrolled=enrolled,
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


def features_of(row: Any, as_of: date) -> Features:
    members = [
        Member(
            person_id=p["person_id"],
            id_hash=p.get("id_hash", ""),
            birth_date=date.fromisoformat(p["birth_date"]),
            special_groups=tuple(p.get("special_groups") or ()),
            labor_capacity=p.get("labor_capacity") or "full",
            schooling=p.get("schooling"),
            medical_insurance=p.get("medical_insurance", True),
        )
        for p in orjson.loads(row.members)
    ]
    incomes = [
        Income(year=int(i["year"]), total=float(i["total"]), per_capita=float(i["per_capita"]))
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


def assess_rows(rows: Sequence[Any], policy: Policy, as_of: date) -> list[tuple[Any, Assessment]]:
    return [(row, assess(features_of(row, as_of), policy)) for row in rows]


# --- scoring and its outputs ----------------------------------------------------------

# Bulk writes as one statement over arrays (unnest): one round trip and no per-row
# statement work, whatever the batch size.
_RECORD_COLUMNS = (
    "source",
    "record_id",
    "household_id",
    "id_hash",
    "occurred_on",
    "amount",
    "housing_damaged",
    "kind",
    "status",
    "enrolled",
    "batch_id",
    "event_id",
)
_INSERT_RECORDS = text(
    """
    INSERT INTO risk_records (source, record_id, household_id, id_hash, occurred_on, amount,
                              housing_damaged, kind, status, enrolled, batch_id, event_id)
    SELECT * FROM unnest(CAST(:source AS varchar[]), CAST(:record_id AS varchar[]),
                         CAST(:household_id AS varchar[]), CAST(:id_hash AS varchar[]),
                         CAST(:occurred_on AS date[]), CAST(:amount AS float8[]),
                         CAST(:housing_damaged AS bool[]), CAST(:kind AS varchar[]),
                         CAST(:status AS varchar[]), CAST(:enrolled AS bool[]),
                         CAST(:batch_id AS varchar[]), CAST(:event_id AS varchar[]))
    ON CONFLICT (source, record_id) DO NOTHING
    """
)
_HISTORY_COLUMNS = (
    "household_id",
    "region_code",
    "level",
    "previous_level",
    "score",
    "previous_score",
    "per_capita_income",
    "income_line",
    "trigger",
    "correlation_id",
)
# The history row and the current assessment in one statement.
_WRITE_ASSESSMENTS = text(
    """
    WITH new AS (
        SELECT * FROM unnest(
            CAST(:household_id AS varchar[]), CAST(:region_code AS varchar[]),
            CAST(:level AS varchar[]), CAST(:previous_level AS varchar[]),
            CAST(:score AS int[]), CAST(:previous_score AS int[]),
            CAST(:factors AS text[]), CAST(:per_capita_income AS float8[]),
            CAST(:income_line AS float8[]), CAST(:trigger AS varchar[]),
            CAST(:correlation_id AS varchar[]))
        AS t(household_id, region_code, level, previous_level, score, previous_score,
             factors, per_capita_income, income_line, trigger, correlation_id)
    ), saved AS (
        INSERT INTO risk_assessments (household_id, region_code, level, previous_level, score,
            previous_score, factors, per_capita_income, income_line, policy_version,
            assessed_at, trigger, correlation_id)
        SELECT household_id, region_code, level, previous_level, score, previous_score,
               CAST(factors AS jsonb), per_capita_income, income_line, :version, :now,
               trigger, correlation_id
        FROM new
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


def _columns(rows: Sequence[dict[str, Any]], names: Sequence[str]) -> dict[str, list[Any]]:
    return {name: [row[name] for row in rows] for name in names}


@dataclass(slots=True)
class _Previous:
    level: Level
    score: int


def _factor_json(a: Assessment) -> list[dict[str, Any]]:
    return [
        {"code": f.code, "points": f.points, "evidence": f.evidence, "sources": list(f.sources)}
        for f in a.factors
    ]


async def score(
    session: AsyncSession,
    rows: Sequence[Any],
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
    c = m.current.c
    now = datetime.now(UTC)
    history: list[dict[str, Any]] = []
    version_only: list[str] = []
    events: list[CloudEvent] = []
    changed = 0
    for row, a in assessed:
        hid = row.household_id
        trigger = (triggers or {}).get(hid) or default_trigger or _Trigger("unknown", None)
        prev = _Previous(row.prev_level, row.prev_score) if row.prev_level else None
        factors = _factor_json(a)
        if (
            prev is not None
            and prev.level == a.level
            and prev.score == a.score
            and orjson.loads(row.prev_factors) == factors
        ):
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
                "policy_version": version,
                "assessed_at": now,
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
                    factors=[FactorData(**f) for f in factors],
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
            {
                **_columns(history, _HISTORY_COLUMNS),
                "factors": [orjson.dumps(h["factors"]).decode() for h in history],
                "version": version,
                "now": now,
            },
        )
    if version_only:
        # Same decision under a new policy version: record the version it now rests on.
        await session.execute(
            update(m.current)
            .where(c.household_id == _any(version_only), c.policy_version != version)
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
        rows = await _household_rows(session, after=job.cursor, limit=chunk, lock=True, as_of=as_of)
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
        rows = await _household_rows(session, ids=ids, lock=True, as_of=as_of) if ids else []
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
