"""帮扶计划: assistance plans by tier with their measures, and monitored households still
without a measure."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from backstop import outbox
from backstop.auth import Principal
from backstop.contracts.assistance import MeasureData, PlanCreated
from backstop.db import SessionFactory, one_of, unit_of_work
from backstop.errors import invalid
from services.assistance import domain
from services.assistance.common import (
    household_in_region,
    load_policy,
    make_assistance_event,
    narrowed,
)
from services.assistance.models import (
    Household,
    Measure,
    MeasurePublic,
    Plan,
    PlanCreate,
    PlanPublic,
)


def plan_public(plan: Plan, measures: Sequence[Measure]) -> PlanPublic:
    return PlanPublic(
        id=plan.id,
        household_id=plan.household_id,
        region_code=plan.region_code,
        tier=plan.tier,
        year=plan.year,
        created_by=plan.created_by,
        created_at=plan.created_at,
        measures=[
            MeasurePublic.model_validate(m).model_copy(
                update={"label": domain.MEASURES.get(m.category, m.category)}
            )
            for m in measures
        ],
    )


async def create_plan(
    sessions: SessionFactory, *, body: PlanCreate, principal: Principal
) -> PlanPublic:
    async with unit_of_work(sessions) as session:
        household = await household_in_region(session, body.household_id, principal)
        tier = domain.tier_of(
            household_type=household.type,
            policy_enjoying=bool(household.snapshot.get("policy_enjoying")),
            monitoring_status=household.monitoring_status,
        )
        if tier is None:
            raise invalid(
                ["body", "household_id"],
                "the household is not a 脱贫户, 监测户 or 边缘户: no plan by tier",
            )
        if body.tier is not None and body.tier != tier:
            raise invalid(
                ["body", "tier"], f"the household's tier is {tier} ({domain.TIERS[tier]})"
            )
        for i, m in enumerate(body.measures):
            problem = domain.measure_problem(tier, m.category)
            if problem:
                raise invalid(["body", "measures", i, "category"], problem)
            if m.end_on < m.start_on:
                raise invalid(["body", "measures", i, "end_on"], "ends before it starts")
        plan = Plan(
            household_id=household.household_id,
            region_code=household.region_code,
            tier=tier,
            year=body.year,
            created_by=body.created_by,
        )
        session.add(plan)
        await session.flush()  # the plan row before its measures (no ORM relationship)
        measures = [
            Measure(plan_id=plan.id, household_id=plan.household_id, **m.model_dump())
            for m in body.measures
        ]
        session.add_all(measures)
        event = PlanCreated(
            plan_id=plan.id,
            household_id=plan.household_id,
            region_code=plan.region_code,
            tier=plan.tier,
            year=plan.year,
            measures=[
                MeasureData(
                    measure_id=m.id,
                    category=m.category,
                    start_on=m.start_on,
                    end_on=m.end_on,
                    amount=m.amount,
                )
                for m in measures
            ],
        )
        await outbox.publish(session, make_assistance_event(event, plan.household_id))
    return plan_public(plan, measures)


async def list_plans(
    session: AsyncSession, *, principal: Principal, household_id: str | None, limit: int
) -> list[PlanPublic]:
    query = select(Plan).where(principal.region_clause(col(Plan.region_code)))
    if household_id:
        query = query.where(col(Plan.household_id) == household_id)
    plans = list(
        (await session.execute(query.order_by(col(Plan.created_at).desc()).limit(limit))).scalars()
    )
    measures = list(
        (
            await session.execute(
                select(Measure).where(col(Measure.plan_id).in_([p.id for p in plans]))
            )
        ).scalars()
    )
    return [plan_public(p, [m for m in measures if m.plan_id == p.id]) for p in plans]


async def measure_gaps(
    session: AsyncSession, *, principal: Principal, region: str | None
) -> list[dict[str, Any]]:
    """Monitored households with no measure a month after identification."""
    policy = await load_policy(session)
    on = domain.today()
    query = select(Household).where(
        principal.region_clause(col(Household.region_code)),
        col(Household.monitoring_status) == "monitored",
    )
    query = narrowed(query, Household, region=region)
    households = list((await session.execute(query)).scalars())
    rows = await session.execute(
        select(col(Measure.household_id), func.count())
        .where(one_of(col(Measure.household_id), (h.household_id for h in households)))
        .group_by(col(Measure.household_id))
    )
    counts: dict[str, int] = {household_id: n for household_id, n in rows.all()}
    return [
        {
            "household_id": h.household_id,
            "region_code": h.region_code,
            "town_code": h.town_code,
            "monitoring_since": h.monitoring_since,
        }
        for h in households
        if domain.lacks_measures(
            monitored_since=h.monitoring_since,
            measure_count=counts.get(h.household_id, 0),
            on=on,
            policy=policy,
        )
    ]
