"""Commands and event handlers of the quality service.

The consumer keeps each household's snapshot from registry, datasync, risk and
assistance events and re-checks the households a batch touched in the same transaction.
A sweep re-checks every household (or a region's), chunk by chunk, each chunk in its own
transaction, resuming at its cursor. Both go through `recheck`, which runs the rules
and moves each finding along its lifecycle: opened when a rule fires, closed when it no
longer does; an accepted exception is left alone.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from sqlalchemy import bindparam, func, insert, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from backstop import outbox
from backstop.auth import Level, Principal
from backstop.contracts import assistance as assistance_contract
from backstop.contracts import datasync as datasync_contract
from backstop.contracts import quality as quality_contract
from backstop.contracts import registry as registry_contract
from backstop.contracts import risk as risk_contract
from backstop.db import SessionFactory, unit_of_work
from backstop.errors import Problem
from backstop.events import CloudEvent, make_event, registered_types
from backstop.logs import correlation_id
from services.quality import domain
from services.quality import models as m

log = logging.getLogger("backstop.quality")

SERVICE = "quality"
COUNTY_TZ = ZoneInfo("Asia/Shanghai")
REGISTRY_TYPES = frozenset(
    name for name, spec in registered_types().items() if spec.topic == registry_contract.TOPIC
)
RECORDS_MATCHED = "backstop.datasync.records.matched.v1"
ASSESSMENT_CHANGED = "backstop.risk.assessment.changed.v1"
TASK_OPENED = "backstop.assistance.task.opened.v1"
TASK_COMPLETED = "backstop.assistance.task.completed.v1"
TASK_OVERDUE = "backstop.assistance.task.overdue.v1"
MONITORING_STARTED = "backstop.assistance.monitoring.started.v1"
RISK_ELIMINATED = "backstop.assistance.risk.eliminated.v1"
PLAN_CREATED = "backstop.assistance.plan.created.v1"
GRANT_PAID = "backstop.assistance.grant.paid.v1"
VISIT_RECORDED = "backstop.assistance.visit.recorded.v1"
CONSUMED_TYPES = REGISTRY_TYPES | {
    RECORDS_MATCHED,
    ASSESSMENT_CHANGED,
    TASK_OPENED,
    TASK_COMPLETED,
    TASK_OVERDUE,
    MONITORING_STARTED,
    RISK_ELIMINATED,
    PLAN_CREATED,
    GRANT_PAID,
    VISIT_RECORDED,
}
CONSUMED_TOPICS = [
    registry_contract.TOPIC,
    datasync_contract.TOPIC,
    risk_contract.ASSESSMENTS_TOPIC,
    assistance_contract.TASKS_TOPIC,
    assistance_contract.DECISIONS_TOPIC,
]


def county_today() -> date:
    return datetime.now(COUNTY_TZ).date()


def _json(value: Any) -> str:
    return orjson.dumps(value, default=str).decode()


def _any(column: str) -> str:
    """`<column> = ANY(:ids)`, the ids bound as one JSON array (cheaper than an array
    parameter, whose elements asyncpg checks one by one)."""
    return f"{column} = ANY(ARRAY(SELECT json_array_elements_text(CAST(:ids AS json))))"


def _ids(ids: Iterable[str]) -> dict[str, str]:
    return {"ids": _json(list(ids))}


def _dec(value: Any) -> Decimal:
    """An amount in yuan as an exact decimal: JSON numbers through their shortest text,
    so 0.1 stays 0.1."""
    return value if isinstance(value, Decimal) else Decimal(str(value))


def _dec_or_none(value: Any) -> Decimal | None:
    return None if value is None else _dec(value)


# --- keeping the snapshot ---------------------------------------------------------------


@dataclass
class _Batch:
    snapshots: dict[str, tuple[int, dict[str, Any]]] = field(default_factory=dict)
    departed: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    records: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    risks: list[dict[str, Any]] = field(default_factory=list)
    decisions: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    tasks: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    measures: dict[str, dict[str, Any]] = field(default_factory=dict)
    grants: dict[str, dict[str, Any]] = field(default_factory=dict)
    visits: set[tuple[str, date]] = field(default_factory=set)
    touched: set[str] = field(default_factory=set)


def _stored_snapshot(s: registry_contract.HouseholdSnapshot) -> dict[str, Any]:
    """What the audit keeps of a registry snapshot: contacts only by role (their names
    and phones are not the audit's business)."""
    data = s.model_dump(mode="json", exclude={"contacts"})
    data["contact_roles"] = sorted({c.role for c in s.contacts})
    return data


def _period_start(period: str, fallback: date) -> date:
    try:
        year, month = period.split("-")[:2]
        return date(int(year), int(month), 1)
    except ValueError:
        return fallback


def _record_row(data: datasync_contract.RecordsMatched, rec: Any, today: date) -> dict[str, Any]:
    detail: dict[str, Any]
    if isinstance(rec, datasync_contract.MedicalRecordData):
        on, amount = rec.settled_on, rec.out_of_pocket
        detail = {
            "total_cost": str(_dec(rec.total_cost)),
            "insurance_paid": str(_dec(rec.insurance_paid)),
            "assistance_paid": str(_dec(rec.assistance_paid)),
        }
    elif isinstance(rec, datasync_contract.DisasterRecordData):
        on, amount = rec.occurred_on, rec.loss_amount
        detail = {"housing_damaged": rec.housing_damaged, "disaster_type": rec.disaster_type}
    elif isinstance(rec, datasync_contract.CivilAffairsRecordData):
        on = (rec.end_on if rec.status == "terminated" else rec.start_on) or _period_start(
            data.period, today
        )
        amount = rec.amount
        detail = {"kind": rec.kind, "status": rec.status}
    else:  # education records carry no date: the feed's period dates them
        on, amount = _period_start(data.period, today), rec.out_of_pocket
        detail = {"enrolled": rec.enrolled, "stage": rec.stage}
    return {
        "source": rec.source,
        "record_id": rec.record_id,
        "household_id": data.household_id,
        "id_hash": rec.id_hash,
        "occurred_on": on,
        "amount": _dec(amount).quantize(domain.CENT),
        "detail": detail,
    }


def _collect(events: Sequence[CloudEvent], today: date) -> _Batch:
    batch = _Batch()
    for event in events:
        payload = event.payload()
        if isinstance(payload, registry_contract.HouseholdEvent):
            s = payload.household
            seen = batch.snapshots.get(s.household_id)
            if seen is None or seen[0] < s.version:
                batch.snapshots[s.household_id] = (s.version, _stored_snapshot(s))
            if isinstance(payload, registry_contract.MemberRemoved):
                batch.departed[(s.household_id, payload.id_hash)] = {
                    "household_id": s.household_id,
                    "id_hash": payload.id_hash,
                    "removed_on": event.time.astimezone(COUNTY_TZ).date(),
                    "reason": (payload.reason or "")[:200] or None,
                }
            batch.touched.add(s.household_id)
        elif isinstance(payload, datasync_contract.RecordsMatched):
            for rec in payload.records:
                batch.records.setdefault(
                    (rec.source, rec.record_id), _record_row(payload, rec, today)
                )
            batch.touched.add(payload.household_id)
        elif isinstance(payload, risk_contract.AssessmentChanged):
            at = payload.assessed_at
            batch.risks.append(
                {
                    "household_id": payload.household_id,
                    "level": payload.level,
                    "factors": sorted({f.code for f in payload.factors}),
                    "assessed_at": at,
                    "at_risk_since": at.astimezone(COUNTY_TZ).date(),
                }
            )
            batch.touched.add(payload.household_id)
        elif isinstance(payload, assistance_contract.PlanCreated):
            for measure in payload.measures:
                batch.measures[measure.measure_id] = {
                    "measure_id": measure.measure_id,
                    "household_id": payload.household_id,
                    "category": measure.category,
                    "start_on": measure.start_on,
                    "end_on": measure.end_on,
                    "amount": measure.amount,
                }
            batch.touched.add(payload.household_id)
        elif isinstance(payload, assistance_contract.GrantPaid):
            batch.grants[payload.grant_id] = {
                "grant_id": payload.grant_id,
                "household_id": payload.household_id,
                "amount": payload.amount,
                "granted_on": payload.granted_on,
            }
            batch.touched.add(payload.household_id)
        elif isinstance(payload, assistance_contract.VisitRecorded):
            batch.visits.add((payload.household_id, payload.visited_on))
            batch.touched.add(payload.household_id)
        elif isinstance(payload, assistance_contract.TaskData):
            row = {
                "task_id": payload.task_id,
                "household_id": payload.household_id,
                "kind": payload.kind,
                "status": "done" if event.type == TASK_COMPLETED else "open",
                "opened_on": event.time.astimezone(COUNTY_TZ).date(),
                "due_on": payload.due_on,
                "overdue": event.type == TASK_OVERDUE,
            }
            batch.tasks.append((event.type, row))
            batch.touched.add(payload.household_id)
        elif isinstance(payload, assistance_contract.MonitoringStarted):
            batch.decisions[(payload.case_id, "monitoring_started")] = {
                "case_id": payload.case_id,
                "kind": "monitoring_started",
                "household_id": payload.household_id,
                "decided_on": payload.decided_on,
                "method": None,
                "risk_factors": sorted(payload.risk_factors),
            }
            batch.touched.add(payload.household_id)
        elif isinstance(payload, assistance_contract.RiskEliminated):
            batch.decisions[(payload.case_id, "risk_eliminated")] = {
                "case_id": payload.case_id,
                "kind": "risk_eliminated",
                "household_id": payload.household_id,
                "decided_on": payload.decided_on,
                "method": payload.method,
                "risk_factors": [],
            }
            batch.touched.add(payload.household_id)
    return batch


async def apply_events(
    session: AsyncSession,
    events: Sequence[CloudEvent],
    *,
    thresholds: domain.Thresholds | None = None,
) -> None:
    """The consumer's batch handler: keep what the events say about each household, then
    re-check every household they touched (and those sharing a person with it)."""
    today = county_today()
    batch = _collect(events, today)
    if not batch.touched:
        return
    ids = sorted(batch.touched)
    # Lock the known households in id order first, as a sweep chunk does, so the two
    # never deadlock and never check one household at once.
    await _lock(session, ids)
    sharing = await _sharing(session, ids)
    if batch.snapshots:
        await _keep_snapshots(session, batch.snapshots)
    if batch.departed:
        stmt = pg_insert(m.departed).on_conflict_do_nothing()
        await session.execute(stmt, list(batch.departed.values()))
    if batch.records:
        stmt = pg_insert(m.records).on_conflict_do_nothing()
        await session.execute(stmt, list(batch.records.values()))
    for row in batch.risks:  # in order: each one moves `at_risk_since` along
        await _keep_risk(session, row)
    if batch.decisions:
        stmt = pg_insert(m.decisions).on_conflict_do_nothing()
        await session.execute(stmt, list(batch.decisions.values()))
    for event_type, row in batch.tasks:
        await _keep_task(session, event_type, row)
    for table, rows in (
        (m.measures, list(batch.measures.values())),
        (m.grants, list(batch.grants.values())),
        (m.visits, [{"household_id": h, "visited_on": on} for h, on in sorted(batch.visits)]),
    ):
        if rows:
            await session.execute(pg_insert(table).on_conflict_do_nothing(), rows)
    sharing |= await _sharing(session, ids)
    result = await recheck(session, sorted(set(ids) | sharing), today=today, thresholds=thresholds)
    await publish_new_errors(session, result)


async def _lock(session: AsyncSession, ids: Sequence[str]) -> None:
    await session.execute(
        text(
            f"SELECT household_id FROM quality_households WHERE {_any('household_id')} "
            "ORDER BY household_id FOR UPDATE"
        ),
        _ids(ids),
    )


async def _sharing(session: AsyncSession, ids: Sequence[str]) -> set[str]:
    """Other households listing a person that one of `ids` lists."""
    rows = await session.execute(
        text(
            "SELECT DISTINCT q.household_id FROM quality_persons p "
            "JOIN quality_persons q ON q.id_hash = p.id_hash AND q.household_id <> p.household_id "
            f"WHERE {_any('p.household_id')}"
        ),
        _ids(ids),
    )
    return {r[0] for r in rows}


async def _keep_snapshots(
    session: AsyncSession, snapshots: dict[str, tuple[int, dict[str, Any]]]
) -> None:
    t = m.households
    upsert = pg_insert(t)
    stmt = upsert.on_conflict_do_update(
        index_elements=[t.c.household_id],
        set_={
            "region_code": upsert.excluded.region_code,
            "town_code": upsert.excluded.town_code,
            "snapshot_version": upsert.excluded.snapshot_version,
            "snapshot": upsert.excluded.snapshot,
            "updated_at": func.now(),
        },
        # A stale or replayed snapshot changes nothing.
        where=t.c.snapshot_version < upsert.excluded.snapshot_version,
    ).returning(t.c.household_id)
    applied: list[str] = []
    for household_id, (version, snapshot) in sorted(snapshots.items()):
        row = {
            "household_id": household_id,
            "region_code": snapshot["region_code"],
            "town_code": snapshot.get("town_code") or snapshot["region_code"][:9],
            "snapshot_version": version,
            "snapshot": snapshot,
        }
        if (await session.execute(stmt, row)).first() is not None:
            applied.append(household_id)
    if not applied:
        return
    await session.execute(
        text(f"DELETE FROM quality_persons WHERE {_any('household_id')}"), _ids(applied)
    )
    people = {
        (hid, member["id_hash"]) for hid in applied for member in snapshots[hid][1]["members"]
    }
    if people:  # a household whose last member left has none
        await session.execute(
            insert(m.persons), [{"household_id": h, "id_hash": i} for h, i in sorted(people)]
        )


async def _keep_risk(session: AsyncSession, row: dict[str, Any]) -> None:
    """The newest assessment; `at_risk_since` is when the current at_risk spell began."""
    await session.execute(
        text(
            """
            INSERT INTO quality_risk (household_id, level, factors, assessed_at, at_risk_since)
            VALUES (:household_id, CAST(:level AS varchar), CAST(:factors AS jsonb),
                    :assessed_at,
                    CASE WHEN CAST(:level AS varchar) = 'at_risk'
                         THEN CAST(:at_risk_since AS date) END)
            ON CONFLICT (household_id) DO UPDATE SET
                level = excluded.level,
                factors = excluded.factors,
                assessed_at = excluded.assessed_at,
                at_risk_since = CASE
                    WHEN excluded.level <> 'at_risk' THEN NULL
                    WHEN quality_risk.level = 'at_risk' THEN quality_risk.at_risk_since
                    ELSE excluded.at_risk_since END
            WHERE quality_risk.assessed_at <= excluded.assessed_at
            """
        ),
        {**row, "factors": _json(row["factors"])},
    )


async def _keep_task(session: AsyncSession, event_type: str, row: dict[str, Any]) -> None:
    t = m.tasks
    stmt = pg_insert(t).values(**row)
    if event_type == TASK_OPENED:
        await session.execute(stmt.on_conflict_do_nothing())
    elif event_type == TASK_COMPLETED:
        await session.execute(
            stmt.on_conflict_do_update(index_elements=[t.c.task_id], set_={"status": "done"})
        )
    else:
        await session.execute(
            stmt.on_conflict_do_update(index_elements=[t.c.task_id], set_={"overdue": True})
        )


# --- building the snapshot and checking it ---------------------------------------------


# Everything the rules read about a household, one row each, the parts as JSON text that
# one orjson.loads turns into plain values (amounts as decimal text). One statement per
# chunk: PostgreSQL assembles the parts, Python builds no row objects per record.
HOUSEHOLD_SELECT = """
SELECT h.household_id, h.region_code, h.town_code, h.snapshot::text AS snapshot,
  (SELECT json_build_array(r.level, r.factors, (r.assessed_at AT TIME ZONE 'Asia/Shanghai')::date,
                           r.at_risk_since)
     FROM quality_risk r WHERE r.household_id = h.household_id)::text AS risk,
  (SELECT json_agg(json_build_array(r.source, r.record_id, r.id_hash, r.occurred_on,
                                    r.amount::text, r.detail))
     FROM quality_records r WHERE r.household_id = h.household_id)::text AS records,
  (SELECT json_agg(json_build_array(d.kind, d.decided_on, d.method, d.risk_factors)
                   ORDER BY d.decided_on, d.kind)
     FROM quality_decisions d WHERE d.household_id = h.household_id)::text AS decisions,
  (SELECT json_agg(json_build_array(t.kind, t.status, t.opened_on, t.due_on, t.overdue))
     FROM quality_tasks t WHERE t.household_id = h.household_id)::text AS tasks,
  (SELECT json_agg(json_build_array(d.id_hash, d.removed_on, d.reason))
     FROM quality_departed d WHERE d.household_id = h.household_id)::text AS departed,
  (SELECT json_agg(json_build_array(p.id_hash, q.household_id))
     FROM quality_persons p JOIN quality_persons q
       ON q.id_hash = p.id_hash AND q.household_id <> p.household_id
     WHERE p.household_id = h.household_id)::text AS shared,
  (SELECT json_agg(json_build_array(x.category, x.start_on, x.end_on, x.amount::text))
     FROM quality_measures x WHERE x.household_id = h.household_id)::text AS measures,
  (SELECT json_agg(json_build_array(g.amount::text, g.granted_on))
     FROM quality_grants g WHERE g.household_id = h.household_id)::text AS grants,
  (SELECT json_agg(v.visited_on) FROM quality_visits v
     WHERE v.household_id = h.household_id AND v.visited_on >= current_date - 70)::text AS visits
FROM quality_households h
"""


def _day(value: str | None) -> date | None:
    return date.fromisoformat(value) if value else None


def household_of(row: Any) -> domain.Household:
    """A `domain.Household` from one row of `HOUSEHOLD_SELECT`."""
    s = orjson.loads(row.snapshot)
    members = tuple(
        domain.Member(
            person_id=p["person_id"],
            id_hash=p["id_hash"],
            relation=p["relation"],
            sex=p["sex"],
            birth_date=date.fromisoformat(p["birth_date"]),
            special_groups=frozenset(p.get("special_groups") or ()),
            labor_capacity=p.get("labor_capacity") or "full",
            schooling=p.get("schooling"),
            medical_insurance=p.get("medical_insurance", True),
        )
        for p in s["members"]
    )
    incomes = tuple(
        domain.Income(
            year=i["year"],
            total=_dec(i["total"]),
            per_capita=_dec(i["per_capita"]),
            wage=_dec_or_none(i.get("wage")),
            business=_dec_or_none(i.get("business")),
            transfer=_dec_or_none(i.get("transfer")),
            property_income=_dec_or_none(i.get("property")),
        )
        for i in s.get("incomes") or ()
    )
    records = tuple(
        domain.FeedRecord(
            source=source,
            record_id=record_id,
            id_hash=id_hash,
            on=date.fromisoformat(on),
            amount=Decimal(amount),
            kind=detail.get("kind"),
            status=detail.get("status"),
            enrolled=detail.get("enrolled"),
            housing_damaged=bool(detail.get("housing_damaged", False)),
            total_cost=_dec_or_none(detail.get("total_cost")),
            insurance_paid=_dec_or_none(detail.get("insurance_paid")),
            assistance_paid=_dec_or_none(detail.get("assistance_paid")),
        )
        for source, record_id, id_hash, on, amount, detail in orjson.loads(row.records or "[]")
    )
    risk = None
    if row.risk:
        level, factors, assessed_on, since = orjson.loads(row.risk)
        risk = domain.Risk(level, frozenset(factors), date.fromisoformat(assessed_on), _day(since))
    shared: dict[str, list[str]] = defaultdict(list)
    for id_hash, other in orjson.loads(row.shared or "[]"):
        shared[id_hash].append(other)
    return domain.Household(
        household_id=row.household_id,
        region_code=row.region_code,
        type=s["type"],
        members=members,
        policy_enjoying=bool(s.get("policy_enjoying")),
        monitoring_status=s.get("monitoring_status") or "none",
        monitoring_since=_day(s.get("monitoring_since")),
        monitoring_ended_on=_day(s.get("monitoring_ended_on")),
        elimination_method=s.get("elimination_method"),
        incomes=incomes,
        guarantees=s.get("guarantees") or {},
        guarantees_verified_on={
            k: date.fromisoformat(v) for k, v in (s.get("guarantees_verified_on") or {}).items()
        },
        contact_roles=frozenset(s.get("contact_roles") or ()),
        records=records,
        risk=risk,
        decisions=tuple(
            domain.Decision(kind, date.fromisoformat(on), method, frozenset(factors))
            for kind, on, method, factors in orjson.loads(row.decisions or "[]")
        ),
        tasks=tuple(
            domain.Task(kind, status, date.fromisoformat(opened), date.fromisoformat(due), overdue)
            for kind, status, opened, due, overdue in orjson.loads(row.tasks or "[]")
        ),
        departed=tuple(
            domain.Departed(id_hash, date.fromisoformat(on), reason)
            for id_hash, on, reason in orjson.loads(row.departed or "[]")
        ),
        measures=tuple(
            domain.AidMeasure(
                category, date.fromisoformat(start), date.fromisoformat(end), Decimal(amount)
            )
            for category, start, end, amount in orjson.loads(row.measures or "[]")
        ),
        grants=tuple(
            domain.Grant(Decimal(amount), date.fromisoformat(on))
            for amount, on in orjson.loads(row.grants or "[]")
        ),
        visits=tuple(date.fromisoformat(on) for on in orjson.loads(row.visits or "[]")),
        shared_id_hashes={k: tuple(sorted(v)) for k, v in shared.items()},
    )


@dataclass
class CheckResult:
    households: int = 0
    opened: int = 0
    closed: int = 0
    # New error-level findings by town and rule: what notify reminds the town of.
    new_errors: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))


async def publish_new_errors(session: AsyncSession, result: CheckResult) -> None:
    """One event per town with new error-level findings, in the check's transaction."""
    events = [
        make_event(
            SERVICE,
            quality_contract.ErrorFindingsOpened(
                town_code=town, opened=sum(rules.values()), rules=dict(sorted(rules.items()))
            ),
            subject=town,
            correlation_id=correlation_id.get(),
        )
        for town, rules in sorted(result.new_errors.items())
    ]
    await outbox.publish_many(session, events)


async def recheck(
    session: AsyncSession,
    ids: Sequence[str],
    *,
    today: date,
    thresholds: domain.Thresholds | None = None,
) -> CheckResult:
    """Run the catalogue over `ids` (locking them) and move their findings along."""
    if not ids:
        return CheckResult()
    rows = list(
        await session.execute(
            text(
                f"{HOUSEHOLD_SELECT} WHERE {_any('h.household_id')} "
                "ORDER BY h.household_id FOR UPDATE OF h"
            ),
            _ids(ids),
        )
    )
    return await _check_rows(session, rows, today=today, thresholds=thresholds)


async def _check_rows(
    session: AsyncSession,
    rows: Sequence[Any],
    *,
    today: date,
    thresholds: domain.Thresholds | None,
) -> CheckResult:
    limits = thresholds or domain.Thresholds()
    loaded = [(row, household_of(row)) for row in rows]
    ids = [r.household_id for r in rows]
    live: dict[str, dict[str, Any]] = defaultdict(dict)
    for f in await session.execute(
        text(
            "SELECT id, household_id, rule_code, status, message, region_code FROM "
            f"quality_findings WHERE status IN ('open', 'accepted') AND {_any('household_id')}"
        ),
        _ids(ids),
    ):
        live[f.household_id][f.rule_code] = f
    now = datetime.now(UTC)
    new: list[dict[str, Any]] = []
    changed: list[dict[str, Any]] = []
    to_close: list[int] = []
    moved: list[str] = []
    new_errors: dict[str, Counter[str]] = defaultdict(Counter)
    for row, household in loaded:
        fired = {f.rule.code: f for f in domain.check(household, today, limits)}
        hid = row.household_id
        known = live.get(hid, {})
        for code, finding in fired.items():
            current = known.get(code)
            message = finding.message
            if current is None:
                if finding.rule.severity == "error":
                    new_errors[row.town_code][code] += 1
                new.append(
                    {
                        "household_id": hid,
                        "region_code": row.region_code,
                        "town_code": row.town_code,
                        "rule_code": code,
                        "category": finding.rule.category,
                        "severity": finding.rule.severity,
                        "status": "open",
                        "message": message,
                        "evidence": finding.evidence,
                        "ruleset_version": domain.RULESET_VERSION,
                        "opened_at": now,
                    }
                )
            elif current.status == "open" and current.message != message:
                changed.append(
                    {"fid": current.id, "message": message, "evidence": finding.evidence}
                )
        for code, current in known.items():
            if current.region_code != row.region_code:
                moved.append(hid)
            if code not in fired and current.status == "open":
                to_close.append(current.id)
    if new:
        await session.execute(insert(m.findings), new)
    if changed:
        table = m.findings
        await session.execute(
            update(table)
            .where(table.c.id == bindparam("fid"))
            .values(message=bindparam("message"), evidence=bindparam("evidence")),
            changed,
        )
    if to_close:
        await session.execute(
            update(m.findings)
            .where(m.findings.c.id.in_(to_close))
            .values(status="closed", closed_at=now)
        )
    if moved:  # the household moved to another village: its live findings follow it
        await session.execute(
            text(
                "UPDATE quality_findings f SET region_code = h.region_code, "
                "town_code = h.town_code FROM quality_households h "
                "WHERE f.household_id = h.household_id AND f.status IN ('open', 'accepted') "
                f"AND {_any('f.household_id')}"
            ),
            _ids(sorted(set(moved))),
        )
    return CheckResult(
        households=len(loaded), opened=len(new), closed=len(to_close), new_errors=new_errors
    )


# --- exceptions ---------------------------------------------------------------------------


async def accept_exception(
    sessions: SessionFactory,
    *,
    finding_id: int,
    accepted_by: str,
    reason: str,
    principal: Principal,
) -> dict[str, Any]:
    """County staff mark an open finding as an accepted exception (例外): it stays out of
    the lists of open findings, through later checks and sweeps, with who and why."""
    principal.require_level(Level.COUNTY, "accepting a data-quality exception")
    async with unit_of_work(sessions) as session:
        f = m.findings
        row = (
            await session.execute(select(f).where(f.c.id == finding_id).with_for_update())
        ).one_or_none()
        if row is None or not principal.can_see(row.region_code):
            raise Problem(404, f"no finding {finding_id}")
        if row.status != "open":
            raise Problem(
                409, f"finding {finding_id} is {row.status}; only an open one can be accepted"
            )
        updated = (
            await session.execute(
                update(f)
                .where(f.c.id == finding_id)
                .values(
                    status="accepted",
                    accepted_by=accepted_by,
                    accepted_client=principal.sub,
                    accepted_reason=reason,
                    accepted_at=datetime.now(UTC),
                )
                .returning(*f.c)
            )
        ).one()
        log.info("finding %s (%s) accepted as an exception", finding_id, row.rule_code)
        return dict(updated._mapping)


# --- sweeps ---------------------------------------------------------------------------------


async def request_sweep(
    sessions: SessionFactory, *, region_prefix: str, principal: Principal
) -> dict[str, Any]:
    principal.require_level(Level.COUNTY, "a full sweep")
    if region_prefix:
        principal.require_region(region_prefix)
    async with unit_of_work(sessions) as session:
        row = (
            await session.execute(
                insert(m.sweeps)
                .values(
                    trigger="manual",
                    run_on=county_today(),
                    region_prefix=region_prefix,
                    requested_by=principal.sub,
                    status="pending",
                )
                .returning(*m.sweeps.c)
            )
        ).one()
        return dict(row._mapping)


async def schedule_nightly(
    sessions: SessionFactory, *, hour: int, now: datetime | None = None
) -> bool:
    """Queue tonight's sweep once the county's clock has passed `hour` (once a day, however
    many replicas ask). Rules that depend on the date (overdue, a month at risk) change
    with no event, so the nightly sweep is what notices them."""
    local = (now or datetime.now(UTC)).astimezone(COUNTY_TZ)
    if local.hour < hour:
        return False
    async with unit_of_work(sessions) as session:
        stmt = (
            pg_insert(m.sweeps)
            .values(
                trigger="nightly",
                run_on=local.date(),
                region_prefix="",
                requested_by="nightly",
                status="pending",
            )
            .on_conflict_do_nothing(
                index_elements=[m.sweeps.c.run_on], index_where=text("trigger = 'nightly'")
            )
            .returning(m.sweeps.c.id)
        )
        return (await session.execute(stmt)).first() is not None


async def run_sweeps(
    sessions: SessionFactory, *, chunk: int = 2000, thresholds: domain.Thresholds | None = None
) -> int:
    """Work through pending sweeps, one chunk per transaction; returns households checked.
    A crash resumes at the cursor; two replicas never work on one sweep at once."""
    checked = 0
    while True:
        async with unit_of_work(sessions) as session:
            s = m.sweeps
            sweep = (
                await session.execute(
                    select(s)
                    .where(s.c.status.in_(("pending", "running")))
                    .order_by(s.c.id)
                    .limit(1)
                    .with_for_update(skip_locked=True)
                )
            ).one_or_none()
            if sweep is None:
                return checked
            rows = list(
                await session.execute(
                    text(
                        f"{HOUSEHOLD_SELECT} WHERE h.household_id > :cursor "
                        "AND h.region_code LIKE :prefix "
                        "ORDER BY h.household_id LIMIT :n FOR UPDATE OF h"
                    ),
                    {"cursor": sweep.cursor, "prefix": sweep.region_prefix + "%", "n": chunk},
                )
            )
            result = await _check_rows(session, rows, today=county_today(), thresholds=thresholds)
            checked += result.households
            await publish_new_errors(session, result)
            values: dict[str, Any] = {
                "households": s.c.households + result.households,
                "opened": s.c.opened + result.opened,
                "closed": s.c.closed + result.closed,
            }
            if sweep.status == "pending":
                values["status"], values["started_at"] = "running", func.now()
            if len(rows) < chunk:
                values.update(
                    status="done",
                    finished_at=func.now(),
                    counts=await open_counts(session, sweep.region_prefix),
                )
            if rows:
                values["cursor"] = rows[-1].household_id
            await session.execute(update(s).where(s.c.id == sweep.id).values(**values))
            if len(rows) < chunk:
                log.info("sweep %s done", sweep.id)


async def escalate_overdue(
    sessions: SessionFactory, *, days: int, hour: int = 9, now: datetime | None = None
) -> int:
    """Once a county day, after `hour` (office hours): for each town with error-level
    findings open more than `days`, an event notify escalates (督办). Returns the towns
    escalated."""
    moment = now or datetime.now(UTC)
    if moment.astimezone(COUNTY_TZ).hour < hour:
        return 0
    today = moment.astimezone(COUNTY_TZ).date()
    async with unit_of_work(sessions) as session:
        claimed = await session.execute(
            pg_insert(m.escalations)
            .values(run_on=today)
            .on_conflict_do_nothing()
            .returning(m.escalations.c.run_on)
        )
        if claimed.first() is None:
            return 0  # another replica, or an earlier run today
        rows = list(
            await session.execute(
                text(
                    "SELECT town_code, count(*) AS n, min(opened_at) AS oldest "
                    "FROM quality_findings WHERE status = 'open' AND severity = 'error' "
                    "AND opened_at < :before GROUP BY town_code ORDER BY town_code"
                ),
                {"before": moment - timedelta(days=days)},
            )
        )
        await outbox.publish_many(
            session,
            [
                make_event(
                    SERVICE,
                    quality_contract.ErrorFindingsOverdue(
                        town_code=r.town_code,
                        count=r.n,
                        days=days,
                        oldest_opened_on=r.oldest.astimezone(COUNTY_TZ).date(),
                    ),
                    subject=r.town_code,
                )
                for r in rows
            ],
        )
        return len(rows)


async def open_counts(session: AsyncSession, region_prefix: str = "") -> dict[str, dict[str, int]]:
    """Open findings by town and category: {town_code: {category: n, "error": n}}."""
    counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for r in await session.execute(
        text(
            "SELECT town_code, category, severity, count(*) AS n FROM quality_findings "
            "WHERE status = 'open' AND region_code LIKE :prefix "
            "GROUP BY town_code, category, severity"
        ),
        {"prefix": region_prefix + "%"},
    ):
        counts[r.town_code][r.category] += r.n
        if r.severity == "error":
            counts[r.town_code]["error"] += r.n
    return {t: dict(c) for t, c in counts.items()}
