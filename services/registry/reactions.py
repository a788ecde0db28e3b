"""What the registry does on assistance's events (it consumes assistance.decisions and
assistance.findings): 纳入监测 and 风险消除 change the household's monitoring status, a
finding applies guarantees, income and schooling. The handlers get the consumer's session
and never commit."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any, cast

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from backstop.contracts import registry as contract
from backstop.contracts.assistance import FindingObserved, MonitoringStarted, RiskEliminated
from backstop.contracts.policy import GUARANTEE_ITEMS
from backstop.events import CloudEvent
from services.registry import domain
from services.registry.views import (
    HouseholdView,
    P,
    guarantee_changes,
    guarantees_of,
    load_views,
    log,
    record_change,
    write_income,
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
    await _apply_decision(
        session,
        data.household_id,
        "monitoring decision",
        lambda before: domain.start_monitoring(
            before,
            monitoring_type=data.monitoring_type,
            decided_on=data.decided_on,
            case_id=data.case_id,
        ),
        actor=data.approved_by,
        reason=None,
        factors=data.risk_factors,
    )


async def on_risk_eliminated(session: AsyncSession, event: CloudEvent) -> None:
    """风险消除, decided by assistance: the household leaves monitoring."""
    data = event.payload()
    assert isinstance(data, RiskEliminated)
    await _apply_decision(
        session,
        data.household_id,
        "elimination",
        lambda before: domain.eliminate_risk(
            before, method=data.method, decided_on=data.decided_on, case_id=data.case_id
        ),
        actor=data.approved_by,
        reason=data.reason,
        factors=[],
    )


async def _apply_decision(
    session: AsyncSession,
    household_id: str,
    decision: str,
    decide: Callable[[domain.MonitoringState], domain.MonitoringState | None],
    *,
    actor: str,
    reason: str | None,
    factors: list[str],
) -> None:
    """Apply one of assistance's monitoring decisions: `decide` gives the household's next
    monitoring state from its current one, or None when there is nothing to change (a
    replayed or out-of-order decision)."""
    view = await _view_or_none(session, household_id)
    if view is None:
        log.warning("%s for unknown household %s ignored", decision, household_id)
        return
    before = _state(view)
    after = decide(before)
    if after is None:
        return
    values = {
        "monitoring_status": after.status,
        "type": after.type,
        "monitoring_since": after.since,
        "monitoring_ended_on": after.ended_on,
        "elimination_method": after.elimination_method,
        "elimination_reason": reason,
        "monitoring_case_id": after.case_id,
    }
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
    await record_change(
        session,
        view,
        values,
        actor=actor,
        action="monitoring.changed",
        changes=changes,
        event=lambda snap: contract.MonitoringChanged(
            household=snap,
            changed_by=actor,
            previous_status=cast(Any, before.status),
            elimination_method=cast(Any, after.elimination_method),
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
        if item in GUARANTEE_ITEMS:
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
        income = domain.Income(
            year=data.income.year, total=domain.money(max(0.0, data.income.total))
        )
        row = next((i for i in view.incomes if i["year"] == income.year), None)
        if row is None or row["total"] != income.total:
            await write_income(session, view, income)
            changes[f"income.{income.year}"] = domain.income_change(
                row["total"] if row else None, income.total
            )
            changed_fields.add("incomes")
    if not changes:
        return
    changes["origin"] = data.origin
    await record_change(
        session,
        view,
        values,
        actor=data.observed_by,
        action="finding.applied",
        changes=changes,
        event=lambda snap: contract.HouseholdUpdated(
            household=snap,
            changed_by=data.observed_by,
            changed_fields=sorted(changed_fields),
        ),
    )
