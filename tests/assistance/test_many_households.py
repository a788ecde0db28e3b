"""County-wide reads over more households than one statement may bind parameters
(PostgreSQL's protocol takes at most 32,767): each sends its household ids as one."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from sqlalchemy import text

from backstop.auth import Principal
from backstop.db import SessionFactory, make_engine, make_session_factory
from backstop.requests import Period
from services.assistance import domain
from services.assistance.models import Task
from services.assistance.monthly_reports import gather
from services.assistance.plans import measure_gaps
from services.assistance.visits import contact_compliance
from tests.assistance.conftest import TOWN, VILLAGE
from tests.support import Stack

MANY = 33_000  # more than 32,767
COUNTY = Principal(sub="county", scopes=frozenset({"assistance:read"}), regions=("*",))


@pytest.fixture(scope="module")
async def sessions(stack: Stack) -> AsyncIterator[SessionFactory]:
    """Its own database: MANY monitored households, identified long ago and visited this
    month (each visit saw a problem); the first has a measure and a task."""
    settings = await stack.create_database("assistance", label="many")
    engine = make_engine(settings.db_url, pool_size=2)
    today = domain.today()
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO households (household_id, region_code, town_code, type,"
                " monitoring_status, monitoring_since, version, snapshot)"
                " SELECT 'h' || n, :village, :town, 'marginal', 'monitored', :since, 1,"
                ' \'{"contacts": [{"name": "李干部", "role": "cadre"}]}\''
                " FROM generate_series(1, :many) AS n"
            ),
            {"village": VILLAGE, "town": TOWN, "since": today - timedelta(days=90), "many": MANY},
        )
        await conn.execute(
            text(
                "INSERT INTO visits (id, household_id, region_code, channel, visitor,"
                " visited_on, findings, guarantees, recorded_at)"
                " SELECT 'v' || n, 'h' || n, :village, 'home', '李干部', :today, '',"
                ' \'{"housing": "possible_issue"}\', now()'
                " FROM generate_series(1, :many) AS n"
            ),
            {"village": VILLAGE, "today": today, "many": MANY},
        )
        await conn.execute(
            text(
                "INSERT INTO plans (id, household_id, region_code, tier, year, created_by,"
                " created_at) VALUES ('p1', 'h1', :village, 'monitored', 2026, 'test', now());"
            ),
            {"village": VILLAGE},
        )
        await conn.execute(
            text(
                "INSERT INTO measures (id, plan_id, household_id, category, description,"
                " start_on, end_on, amount, responsible_unit)"
                " VALUES ('m1', 'p1', 'h1', 'industry', '', :today, :today, 0, 'town')"
            ),
            {"today": today},
        )
    factory = make_session_factory(engine)
    async with factory() as session:
        session.add(
            Task(
                kind="verification",
                household_id="h1",
                region_code=VILLAGE,
                assignee_type="town",
                assignee_code=TOWN,
                due_on=today,
                reason="test",
                origin="alert",
            )
        )
        await session.commit()
    yield factory
    await engine.dispose()


async def test_measure_gaps_over_many_households(sessions: SessionFactory) -> None:
    async with sessions() as session:
        gaps = await measure_gaps(session, principal=COUNTY, region=None)
    assert len(gaps) == MANY - 1
    assert "h1" not in {g["household_id"] for g in gaps}


async def test_contact_compliance_over_many_households(sessions: SessionFactory) -> None:
    async with sessions() as session:
        report = await contact_compliance(
            session, principal=COUNTY, period=str(Period.of(domain.today())), region=None
        )
    assert (report.due, report.contacted) == (MANY, MANY)


async def test_monthly_facts_over_many_households(sessions: SessionFactory) -> None:
    async with sessions() as session:
        towns = await gather(
            session, period=Period.of(domain.today()), where=lambda c: c.startswith(TOWN)
        )
    month = towns[TOWN]
    assert len(month.visits) == MANY
    assert list(month.tasks) == ["h1"]
