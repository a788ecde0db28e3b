"""月汇报: computing one town's monthly report (contacts, problems, measures, people and the
visit-quality signals) beside the contact-compliance report of the same town and month
(the baseline: the same household read model and visits, counts only).

.venv/bin/python -m bench.monthly [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import text

from backstop.auth import Principal
from backstop.db import make_engine, make_session_factory, unit_of_work
from backstop.requests import Period
from bench.common import median, scratch_stack
from services.assistance import monthly_reports, visits

TOWN = "441881101"
PERIOD = Period(2026, 11)
# Alleviated households of one town, 1 in 9 monitored, each with its 帮扶责任人 (one per 40
# households); 1.2 visits per household in the month, 1 in 20 finding a problem.
HOUSEHOLD_SQL = """
INSERT INTO households (household_id, region_code, town_code, type, monitoring_status,
                        version, snapshot)
SELECT md5('hh' || g)::uuid::text, :town || lpad((1 + g % 15)::text, 3, '0'), :town,
       'alleviated', CASE WHEN g % 9 = 0 THEN 'monitored' ELSE 'none' END, 1,
       jsonb_build_object('contacts', jsonb_build_array(jsonb_build_object(
         'name', '干部' || (g / 40), 'role', 'assistance_officer', 'phone', '')))
FROM generate_series(1, CAST(:n AS int)) AS g
"""
VISIT_SQL = """
INSERT INTO visits (id, household_id, region_code, channel, visitor, visited_on, findings,
                    guarantees, recorded_at)
SELECT md5('v' || g)::uuid::text, md5('hh' || (1 + g % CAST(:n AS int)))::uuid::text,
       :town || '001', CASE WHEN g % 4 = 0 THEN 'phone' ELSE 'home' END,
       '干部' || ((1 + g % CAST(:n AS int)) / 40), DATE '2026-11-01' + (g % 30),
       '走访记录' || g, CASE WHEN g % 20 = 0 THEN '{"housing": "possible_issue"}'::jsonb
                           ELSE '{}'::jsonb END, now()
FROM generate_series(1, CAST(:visits AS int)) AS g
"""


async def timed(fn: Callable[[], Awaitable[Any]], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        await fn()
        times.append(time.perf_counter() - started)
    return median(times)


async def run(quick: bool = False) -> dict[str, object]:
    n = 2_000 if quick else 10_000
    n_visits = n * 6 // 5
    rounds = 3 if quick else 5
    stack = scratch_stack()
    try:
        settings = await stack.create_database("assistance")
        engine = make_engine(settings.db_url, 2)
        sessions = make_session_factory(engine)
        async with unit_of_work(sessions) as session:
            params = {"town": TOWN, "n": n, "visits": n_visits}
            await session.execute(text(HOUSEHOLD_SQL), params)
            await session.execute(text(VISIT_SQL), params)
        county = Principal(sub="bench", scopes=frozenset(), regions=("*",))

        async def compliance() -> None:
            async with sessions() as session:
                await visits.contact_compliance(
                    session, principal=county, period=str(PERIOD), region=TOWN
                )

        async def report() -> None:
            async with sessions() as session:
                await monthly_reports.one_town(session, PERIOD, TOWN)

        await report()  # warm up
        base_s = await timed(compliance, rounds)
        report_s = await timed(report, rounds)
        print(f"{n:,} households, {n_visits:,} visits in one town, median of {rounds}")
        print(f"contact compliance (baseline) {base_s * 1000:>7.0f} ms")
        print(f"monthly report               {report_s * 1000:>7.0f} ms "
              f"(ratio to the baseline {report_s / base_s:.2f})")  # fmt: skip
        await engine.dispose()
        return {
            "households": n,
            "visits": n_visits,
            "compliance_ms": round(base_s * 1000),
            "monthly_report_ms": round(report_s * 1000),
            "report_to_compliance_ratio": round(report_s / base_s, 2),
        }
    finally:
        await stack.destroy()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    asyncio.run(run(quick=args.quick))
