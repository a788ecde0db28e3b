"""What the registry does on assistance's events (it consumes assistance.decisions and
assistance.findings): 纳入监测 and 风险消除 change the household's monitoring status, a
finding applies guarantees, income and schooling. The handlers get the consumer's session
and never commit."""

from __future__ import annotations

import uuid
from typing import Any, cast

from sqlalchemy import delete, insert, update
from sqlalchemy.ext.asyncio import AsyncSession

from backstop import outbox
from backstop.contracts import registry as contract
from backstop.contracts.assistance import FindingObserved, MonitoringStarted, RiskEliminated
from backstop.events import CloudEvent
from services.registry import domain
from services.registry.views import (
    INC,
    HouseholdView,
    P,
    bump,
    guarantee_changes,
    guarantees_of,
    load_views,
    log,
    record_history,
    registry_event,
    snapshot,
)


async def _view_or_none(session: AsyncSession, household_id: str) -> HouseholdView | None:
    try:
        hid = uuid.UUID(household_id)
    except ValueError:
        return None
    views = await load_views(session, [hid], for_update=True)
    return views.get(hid)


def _state(view: HouseholdView) -> domain.MonitoringState:
    h = view.household
    return domain.MonitoringState(
        status=h["monitoring_status"],
        type=h["type"],
        since=h["monitoring_since"],
        ended_on=h["monitoring_ended_on"],
        elimination_method=h["elimination_method"],
        case_id=h["monitoring_case_id"],
    )


async def on_monitoring_started(session: AsyncSession, event: CloudEvent) -> None:
    """纳入监测, decided by assistance: the household becomes monitored."""
    data = event.payload()
    assert isinstance(data, MonitoringStarted)
    view = await _view_or_none(session, data.household_id)
    if view is None:
        log.warning("monitoring decision for unknown household %s ignored", data.household_id)
        return
    before = _state(view)
    after = domain.start_monitoring(
        before,
        monitoring_type=data.monitoring_type,
        decided_on=data.decided_on,
        case_id=data.case_id,
    )
    if after is None:
        return
    await _apply_monitoring(
        session, view, before, after, actor=data.approved_by, reason=None, factors=data.risk_factors
    )


async def on_risk_eliminated(session: AsyncSession, event: CloudEvent) -> None:
    """风险消除, decided by assistance: the household leaves monitoring."""
    data = event.payload()
    assert isinstance(data, RiskEliminated)
    view = await _view_or_none(session, data.household_id)
    if view is None:
        log.warning("elimination for unknown household %s ignored", data.household_id)
        return
    before = _state(view)
    after = domain.eliminate_risk(
        before, method=data.method, decided_on=data.decided_on, case_id=data.case_id
    )
    if after is None:
        return
    await _apply_monitoring(
        session, view, before, after, actor=data.approved_by, reason=data.reason, factors=[]
    )


async def _apply_monitoring(
    session: AsyncSession,
    view: HouseholdView,
    before: domain.MonitoringState,
    after: domain.MonitoringState,
    *,
    actor: str,
    reason: str | None,
    factors: list[str],
) -> None:
    values = {
        "monitoring_status": after.status,
        "type": after.type,
        "monitoring_since": after.since,
        "monitoring_ended_on": after.ended_on,
        "elimination_method": after.elimination_method,
        "elimination_reason": reason,
        "monitoring_case_id": after.case_id,
    }
    await bump(session, view, values)
    changes: dict[str, Any] = {
        "monitoring_status": {"from": before.status, "to": after.status},
        "case_id": after.case_id,
    }
    if before.type != after.type:
        changes["type"] = {"from": before.type, "to": after.type}
    if after.elimination_method:
        changes["elimination_method"] = after.elimination_method
        changes["reason"] = reason
    if factors:
        changes["risk_factors"] = factors
    await record_history(session, view, actor=actor, action="monitoring.changed", changes=changes)
    await outbox.publish(
        session,
        registry_event(
            contract.MonitoringChanged(
                household=snapshot(view),
                changed_by=actor,
                previous_status=cast(Any, before.status),
                elimination_method=cast(Any, after.elimination_method),
            ),
            view.id,
        ),
    )


async def on_finding_observed(session: AsyncSession, event: CloudEvent) -> None:
    """A visit, verification or review saw a change: apply guarantees, income and schooling
    to the household (the field is a source of risk, like the departments)."""
    data = event.payload()
    assert isinstance(data, FindingObserved)
    view = await _view_or_none(session, data.household_id)
    if view is None:
        log.warning("finding for unknown household %s ignored", data.household_id)
        return
    changes: dict[str, Any] = {}
    changed_fields: set[str] = set()
    for person_id, schooling in data.schooling.items():
        member = next((m for m in view.members if str(m["id"]) == person_id), None)
        if member is None or schooling not in domain.SCHOOLING:
            log.warning("finding names unknown person or schooling %r; skipped", schooling)
            continue
        if member["schooling"] != schooling:
            changes[f"members.{person_id}.schooling"] = {
                "from": member["schooling"],
                "to": schooling,
            }
            member["schooling"] = schooling
            changed_fields.add("members.schooling")
            await session.execute(
                update(P).where(P.c.id == member["id"]).values(schooling=schooling)
            )
    current = guarantees_of(view)
    merged = dict(current)
    verified = data.observed_on.isoformat()
    for item, status in data.guarantees.items():
        if item in domain.GUARANTEE_ITEMS:
            merged[item] = {"status": status, "verified_on": verified}
    if changed_fields and "compulsory_education" not in data.guarantees:
        derived = domain.schooling_guarantee(
            [(m["birth_date"], m["schooling"]) for m in view.members], data.observed_on
        )
        if derived is not None:
            merged["compulsory_education"] = {"status": derived, "verified_on": verified}
    changed_guarantees = guarantee_changes(current, merged)
    values: dict[str, Any] = {}
    if changed_guarantees:
        changes |= changed_guarantees
        values["guarantees"] = merged
        changed_fields.add("guarantees")
    if data.income is not None:
        income = domain.Income(year=data.income.year, total=max(0.0, data.income.total))
        row = next((i for i in view.incomes if i["year"] == income.year), None)
        if row is None or row["total"] != income.total:
            await session.execute(
                delete(INC).where(
                    INC.c.household_id == view.household["id"], INC.c.year == income.year
                )
            )
            new_row = {"household_id": view.household["id"], **income.__dict__}
            await session.execute(insert(INC).values(**new_row))
            view.incomes = sorted(
                [i for i in view.incomes if i["year"] != income.year] + [new_row],
                key=lambda i: -i["year"],
            )
            changes[f"income.{income.year}"] = {"from": row and row["total"], "to": income.total}
            changed_fields.add("incomes")
    if not changes:
        return
    await bump(session, view, values)
    changes["origin"] = data.origin
    await record_history(
        session, view, actor=data.observed_by, action="finding.applied", changes=changes
    )
    await outbox.publish(
        session,
        registry_event(
            contract.HouseholdUpdated(
                household=snapshot(view),
                changed_by=data.observed_by,
                changed_fields=sorted(changed_fields),
            ),
            view.id,
        ),
    )
