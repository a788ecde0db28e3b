"""The gauges behind the dashboard and the alerts, computed from the services' own tables
on the real PostgreSQL: households per town and risk level, open and overdue tasks,
service readiness."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import delete, insert

from backstop.db import unit_of_work
from services.assistance import app as assistance_app
from services.assistance.models import Task
from services.risk import app as risk_app
from services.risk.models import current
from tests.support import Stack, serve

pytestmark = pytest.mark.integration
VILLAGE = "441881101201"


def sample(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


def assessed(household: str, level: str) -> dict[str, object]:
    return {"household_id": household, "region_code": VILLAGE, "level": level, "score": 50,
            "factors": [], "income_line": 6000.0, "policy_version": 1,
            "assessed_at": datetime.now(UTC), "assessment_id": 1}  # fmt: skip


async def test_households_per_town_and_level(stack: Stack) -> None:
    settings = await stack.create_database("risk", label="_gauges")
    async with serve(risk_app.create, settings, background=False) as (_, runtime):
        async with unit_of_work(runtime.sessions) as session:
            await session.execute(insert(current), [assessed("h1", "at_risk"),
                                  assessed("h2", "at_risk"), assessed("h3", "watch")])  # fmt: skip
        await risk_app.level_gauges_job(runtime)
        assert sample("backstop_risk_households", town=VILLAGE[:9], level="at_risk") == 2
        assert sample("backstop_risk_households", town=VILLAGE[:9], level="watch") == 1
        async with unit_of_work(runtime.sessions) as session:
            await session.execute(delete(current).where(current.c.level == "watch"))
        await risk_app.level_gauges_job(runtime)  # a level no household has any more drops out
        assert sample("backstop_risk_households", town=VILLAGE[:9], level="watch") is None


async def test_open_and_overdue_tasks_by_kind(stack: Stack) -> None:
    settings = await stack.create_database("assistance", label="_gauges")
    async with serve(assistance_app.create, settings, background=False) as (_, runtime):
        today = date.today()
        async with unit_of_work(runtime.sessions) as session:
            for n, (due, status) in enumerate(
                [(today + timedelta(days=5), "open"), (today - timedelta(days=3), "open"),
                 (today - timedelta(days=3), "done")]
            ):  # fmt: skip
                session.add(Task(kind="verification", household_id=f"h{n}", region_code=VILLAGE,
                                 status=status, assignee_type="town", assignee_code=VILLAGE[:9],
                                 due_on=due, reason="test", origin="alert"))  # fmt: skip
        await assistance_app.task_gauges_job(runtime)
        assert sample("backstop_assistance_tasks", kind="verification", state="open") == 2
        assert sample("backstop_assistance_tasks", kind="verification", state="overdue") == 1


async def test_readiness_gauge_follows_the_checks(stack: Stack) -> None:
    settings = await stack.create_database("risk", label="_ready")
    async with serve(risk_app.create, settings, background=False) as (client, _):
        assert (await client.get("/readyz")).status_code == 200
        assert sample("backstop_service_ready", service="risk") == 1
    broken = settings.model_copy(update={"kafka_bootstrap_servers": "127.0.0.1:1"})
    async with serve(risk_app.create, broken, background=False) as (client, _):
        assert (await client.get("/readyz")).status_code == 503
        assert sample("backstop_service_ready", service="risk") == 0
