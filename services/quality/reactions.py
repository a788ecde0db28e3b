"""The consumer (the batch handler): keeps each household's snapshot from registry,
datasync, risk and assistance events and re-checks the households a batch touched in the
same transaction."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from sqlalchemy import func, insert, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from backstop.contracts import assistance as assistance_contract
from backstop.contracts import datasync as datasync_contract
from backstop.contracts import registry as registry_contract
from backstop.contracts import risk as risk_contract
from backstop.events import CloudEvent, registered_types
from services.quality import domain
from services.quality import models as m
from services.quality.checks import publish_new_errors, recheck
from services.quality.common import COUNTY_TZ, any_of, county_today, dec, ids_param, json_text

REGISTRY_TYPES = frozenset(
    name for name, spec in registered_types().items() if spec.topic == registry_contract.TOPIC
)
RECORDS_MATCHED = "backstop.datasync.records.matched.v1"
RECORDS_VOIDED = "backstop.datasync.records.voided.v1"  # 作废
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
    RECORDS_VOIDED,
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
            "total_cost": str(dec(rec.total_cost)),
            "insurance_paid": str(dec(rec.insurance_paid)),
            "assistance_paid": str(dec(rec.assistance_paid)),
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
        "amount": dec(amount).quantize(domain.CENT),
        "detail": detail,
        "revision": rec.revision,
        "voided": False,
    }


def _tombstone(
    data: datasync_contract.RecordsVoided, gone: datasync_contract.VoidedRecord, today: date
) -> dict[str, Any]:
    """A voided record: the rules skip it; it stays so no older version comes back."""
    return {
        "source": gone.source,
        "record_id": gone.record_id,
        "household_id": data.household_id,
        "id_hash": gone.id_hash,
        "occurred_on": _period_start(data.period, today),
        "amount": dec(0).quantize(domain.CENT),
        "detail": {},
        "revision": gone.revision,
        "voided": True,
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
                datasync_contract.keep_newest(batch.records, _record_row(payload, rec, today))
            batch.touched.add(payload.household_id)
        elif isinstance(payload, datasync_contract.RecordsVoided):
            for gone in payload.records:
                datasync_contract.keep_newest(batch.records, _tombstone(payload, gone, today))
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
        stmt = pg_insert(m.records)
        stmt = stmt.on_conflict_do_update(
            index_elements=[m.records.c.source, m.records.c.record_id],
            set_={c.name: stmt.excluded[c.name] for c in m.records.c if not c.primary_key},
            # Only a newer version (a correction, a void) replaces a record: a replayed or
            # late older one changes nothing, so no record is counted twice or rolled back.
            where=m.records.c.revision < stmt.excluded.revision,
        )
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
            f"SELECT household_id FROM quality_households WHERE {any_of('household_id')} "
            "ORDER BY household_id FOR UPDATE"
        ),
        ids_param(ids),
    )


async def _sharing(session: AsyncSession, ids: Sequence[str]) -> set[str]:
    """Other households listing a person that one of `ids` lists."""
    rows = await session.execute(
        text(
            "SELECT DISTINCT q.household_id FROM quality_persons p "
            "JOIN quality_persons q ON q.id_hash = p.id_hash AND q.household_id <> p.household_id "
            f"WHERE {any_of('p.household_id')}"
        ),
        ids_param(ids),
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
        text(f"DELETE FROM quality_persons WHERE {any_of('household_id')}"), ids_param(applied)
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
        {**row, "factors": json_text(row["factors"])},
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
