"""Quality service (数据质量核查): a full sweep over the county as households/s, beside a
read-only pass over the same snapshots (the floor: loading without the rules), and the
time from a register change to the finding's open or closed state through Kafka.

.venv/bin/python -m bench.quality [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
import uuid
from datetime import UTC, date, datetime

from sqlalchemy import insert, select, text

import backstop.contracts  # noqa: F401 - registers event types
from backstop.app import Runtime
from backstop.bus import TOPICS, ensure_topics, make_producer
from backstop.contracts.registry import (
    HouseholdSnapshot,
    HouseholdUpdated,
    IncomeSnapshot,
    MemberSnapshot,
)
from backstop.db import make_engine, make_session_factory, unit_of_work
from backstop.events import make_event
from bench.common import percentile, scratch_stack
from services.quality import households, reactions, sweeps
from services.quality import models as m
from services.quality.app import build_spec
from services.quality.config import QualitySettings

YEAR = datetime.now(UTC).year - 1
# 300k households with 3 or 4 members (1M people); a few percent trip a rule or two.
HOUSEHOLD_SQL = """
INSERT INTO quality_households (household_id, region_code, town_code, snapshot_version, snapshot)
SELECT md5('hh' || g)::uuid::text, v, left(v, 9), 1, jsonb_build_object(
  'type', CASE WHEN g % 9 = 0 THEN 'unstable' ELSE 'alleviated' END,
  'monitoring_status', CASE WHEN g % 9 = 0 THEN 'monitored' ELSE 'none' END,
  'monitoring_since', CASE WHEN g % 9 = 0 THEN '2025-06-01' END,
  'contact_roles', CASE WHEN g % 9 = 0 AND g % 5 <> 0 THEN '["town_leader"]'::jsonb ELSE '[]'::jsonb END,
  'members', jsonb_build_array(
     jsonb_build_object('person_id', md5('p1' || g)::uuid::text, 'id_hash', md5('h1' || g),
       'relation', 'head', 'sex', 'male', 'birth_date', '1968-03-01', 'special_groups', '[]'::jsonb,
       'labor_capacity', CASE WHEN g % 13 = 0 THEN 'none' ELSE 'full' END, 'schooling', 'none',
       'medical_insurance', g % 211 <> 0),
     jsonb_build_object('person_id', md5('p2' || g)::uuid::text, 'id_hash', md5('h2' || g),
       'relation', 'spouse', 'sex', CASE WHEN g % 401 = 0 THEN 'male' ELSE 'female' END,
       'birth_date', '1971-07-15', 'special_groups', '[]'::jsonb, 'labor_capacity', 'full',
       'schooling', 'none', 'medical_insurance', true),
     jsonb_build_object('person_id', md5('p3' || g)::uuid::text, 'id_hash', md5('h3' || g),
       'relation', 'child', 'sex', 'female', 'birth_date', '2014-09-01', 'special_groups', '[]'::jsonb,
       'labor_capacity', CASE WHEN g % 307 = 0 THEN 'full' ELSE 'none' END,
       'schooling', CASE WHEN g % 997 = 0 THEN 'out_of_school' ELSE 'primary' END,
       'medical_insurance', true))
   || CASE WHEN g % 3 = 0 THEN jsonb_build_array(
     jsonb_build_object('person_id', md5('p4' || g)::uuid::text, 'id_hash', md5('h4' || g),
       'relation', 'parent', 'sex', 'female', 'birth_date', '1948-01-01', 'special_groups', '[]'::jsonb,
       'labor_capacity', CASE WHEN g % 4 = 0 THEN 'full' ELSE 'none' END, 'schooling', 'none',
       'medical_insurance', true)) ELSE '[]'::jsonb END,
  'incomes', jsonb_build_array(
     jsonb_build_object('year', CAST(:year AS int), 'total', 30000 + g % 50000,
       'per_capita', round((30000 + g % 50000) / (3 + (g % 3 = 0)::int)::numeric, 2)),
     jsonb_build_object('year', CAST(:year AS int) - 1, 'total', 28000 + g % 50000,
       'per_capita', round((28000 + g % 50000) / (3 + (g % 3 = 0)::int)::numeric, 2))),
  'guarantees', '{"food": "ok", "clothing": "ok", "compulsory_education": "ok",
                  "basic_medical": "ok", "housing": "ok", "drinking_water": "ok"}'::jsonb)
FROM (SELECT g, '441881' || (100 + g % 20)::text || lpad((1 + g % 15)::text, 3, '0') AS v
      FROM generate_series(CAST(:lo AS int), CAST(:hi AS int)) AS g) s
"""
PERSONS_SQL = """
INSERT INTO quality_persons (household_id, id_hash)
SELECT h.household_id, p ->> 'id_hash' FROM quality_households h,
       jsonb_array_elements(h.snapshot -> 'members') p
"""
RISK_SQL = """
INSERT INTO quality_risk (household_id, level, factors, assessed_at)
SELECT household_id, 'none', '[]'::jsonb, now() FROM quality_households
"""
RECORDS_SQL = """
INSERT INTO quality_records (source, record_id, household_id, id_hash, occurred_on, amount, detail)
SELECT 'medical', 'm' || g, md5('hh' || g)::uuid::text, md5('h1' || g), current_date - 30,
       (g % 40000)::numeric,
       jsonb_build_object('total_cost', (g % 40000) * 2, 'insurance_paid', g % 40000,
                          'assistance_paid', 0)
FROM generate_series(1, :n, 7) AS g
"""


# Most households were visited last month; most monitored ones have a measure.
HELP_SQL = """
INSERT INTO quality_visits (household_id, visited_on)
SELECT md5('hh' || g)::uuid::text, date_trunc('month', current_date)::date - 15
FROM generate_series(1, :n) AS g WHERE g % 10 <> 0;
INSERT INTO quality_measures (measure_id, household_id, category, start_on, end_on, amount)
SELECT md5('m' || g)::uuid::text, md5('hh' || g)::uuid::text, 'industry', '2025-07-01',
       '2027-06-30', 5000
FROM generate_series(1, :n) AS g WHERE g % 9 = 0 AND g % 4 <> 0
"""


async def seed(sessions: object, n: int) -> int:
    step = 50_000
    async with unit_of_work(sessions) as session:  # type: ignore[arg-type]
        for lo in range(1, n + 1, step):
            await session.execute(
                text(HOUSEHOLD_SQL), {"lo": lo, "hi": min(lo + step - 1, n), "year": YEAR}
            )
        await session.execute(text(PERSONS_SQL))
        await session.execute(text(RISK_SQL))
        await session.execute(text(RECORDS_SQL), {"n": n})
        for statement in HELP_SQL.split(";"):
            await session.execute(text(statement), {"n": n})
        members = await session.scalar(text("SELECT count(*) FROM quality_persons"))
        await session.execute(text("ANALYZE"))
    return int(members or 0)


async def timed_sweep(sessions: object, chunk: int) -> tuple[float, int, int]:
    async with unit_of_work(sessions) as session:  # type: ignore[arg-type]
        sweep_id = await session.scalar(
            insert(m.sweeps)
            .values(trigger="manual", run_on=date.today(), requested_by="bench", status="pending")
            .returning(m.sweeps.c.id)
        )
    started = time.perf_counter()
    checked = await sweeps.run_sweeps(sessions, chunk=chunk)  # type: ignore[arg-type]
    elapsed = time.perf_counter() - started
    async with sessions() as session:  # type: ignore[operator]
        opened = await session.scalar(select(m.sweeps.c.opened).where(m.sweeps.c.id == sweep_id))
    return elapsed, checked, int(opened or 0)


async def timed_read(sessions: object, chunk: int) -> float:
    """The floor: the same chunks and queries as a sweep, without the rules or writes."""
    started = time.perf_counter()
    cursor = ""
    while True:
        async with unit_of_work(sessions) as session:  # type: ignore[arg-type]
            rows = await households.load(
                session,
                "WHERE h.household_id > :c ORDER BY h.household_id LIMIT :n FOR UPDATE OF h",
                {"c": cursor, "n": chunk},
            )
            for row in rows:
                households.household_of(row)
        if len(rows) < chunk:
            return time.perf_counter() - started
        cursor = rows[-1].household_id


def snapshot(household_id: str, version: int, *, same_sex: bool) -> HouseholdSnapshot:
    members = [
        MemberSnapshot(person_id=f"{household_id}-1", id_hash=f"lat1-{household_id}",
                       relation="head", sex="male", birth_date=date(1970, 1, 1), schooling="none"),
        MemberSnapshot(person_id=f"{household_id}-2", id_hash=f"lat2-{household_id}",
                       relation="spouse", sex="male" if same_sex else "female",
                       birth_date=date(1972, 1, 1), schooling="none"),
    ]  # fmt: skip
    return HouseholdSnapshot(
        household_id=household_id,
        region_code="441881101001",
        town_code="441881101",
        type="alleviated",
        members=members,
        incomes=[IncomeSnapshot(year=YEAR, total=30000, per_capita=15000)],
        version=version,
    )


async def change_latency(settings: object, sessions: object, n: int) -> list[float]:
    """Register change (a snapshot event on `registry.households`) → the finding's state
    in the quality database, with the consumer running as deployed."""
    runtime = Runtime(build_spec(QualitySettings()), settings)  # type: ignore[arg-type]
    await runtime.start(relay=False, consumers=True, jobs=False)
    producer = make_producer(settings)  # type: ignore[arg-type]
    await producer.start()
    topic = settings.topic("registry.households")  # type: ignore[attr-defined]
    samples: list[float] = []
    try:
        for i in range(n + 5):  # the first few warm the consumer up and are not counted
            hid = str(uuid.uuid4())
            for version, same_sex, want in ((1, True, "open"), (2, False, "closed")):
                event = make_event(
                    "bench", HouseholdUpdated(household=snapshot(hid, version, same_sex=same_sex)),
                    subject=hid,
                )  # fmt: skip
                started = time.perf_counter()
                await producer.send_and_wait(topic, event.to_bytes(), key=hid.encode())
                while True:
                    async with sessions() as session:  # type: ignore[operator]
                        state = await session.scalar(
                            select(m.findings.c.status).where(
                                m.findings.c.household_id == hid, m.findings.c.rule_code == "ID003"
                            ).order_by(m.findings.c.id.desc()).limit(1)
                        )  # fmt: skip
                    if state == want:
                        break
                    if time.perf_counter() - started > 30:
                        raise TimeoutError(f"finding not {want} after 30 s")
                    await asyncio.sleep(0.01)
                if i >= 5:
                    samples.append(time.perf_counter() - started)
    finally:
        await producer.stop()
        await runtime.stop()
    return samples


async def run(quick: bool = False) -> dict[str, object]:
    n = 30_000 if quick else 300_000
    n_latency = 20 if quick else 60
    chunk = 2000
    stack = scratch_stack()
    try:
        settings = await stack.create_database("quality")
        await ensure_topics(settings, {t: TOPICS[t] for t in reactions.CONSUMED_TOPICS})
        engine = make_engine(settings.db_url, 5)
        sessions = make_session_factory(engine)
        started = time.perf_counter()
        members = await seed(sessions, n)
        print(
            f"seeded {n:,} households, {members:,} members in {time.perf_counter() - started:.0f} s"
        )

        # The floor is timed on either side of the steady sweep and averaged: on a shared
        # machine the load moves within minutes, and a ratio of two passes run far apart
        # measured the load more than the code.
        load_before = os.getloadavg()[0]
        await timed_read(sessions, chunk)  # warms the cache as the sweeps find it
        first_s, checked, opened = await timed_sweep(sessions, chunk)
        read_before = await timed_read(sessions, chunk)
        again_s, _, _ = await timed_sweep(sessions, chunk)
        read_after = await timed_read(sessions, chunk)
        read_s = (read_before + read_after) / 2
        load_after = os.getloadavg()[0]
        print(f"read-only pass     {n / read_s:>9,.0f} households/s (floor: "
              f"{n / read_before:,.0f} before and {n / read_after:,.0f} after the steady sweep)")  # fmt: skip
        print(
            f"first sweep        {checked / first_s:>9,.0f} households/s ({opened:,} findings opened)"
        )
        print(f"steady sweep       {n / again_s:>9,.0f} households/s "
              f"(ratio to the read-only pass {read_s / again_s:.2f}; "
              f"load average {load_before:.1f} → {load_after:.1f})")  # fmt: skip

        latency = await change_latency(settings, sessions, n_latency)
        p50, p95 = percentile(latency, 50), percentile(latency, 95)
        print(f"change → finding   p50 {p50 * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms "
              f"({len(latency)} open and close transitions)")  # fmt: skip
        await engine.dispose()
        return {
            "households": n,
            "members": members,
            "read_only_households_per_s": round(n / read_s),
            "first_sweep_households_per_s": round(checked / first_s),
            "first_sweep_findings_opened": opened,
            "steady_sweep_households_per_s": round(n / again_s),
            "steady_sweep_to_read_ratio": round(read_s / again_s, 2),
            "load_average": [round(load_before, 1), round(load_after, 1)],
            "change_to_finding_p50_ms": round(p50 * 1000),
            "change_to_finding_p95_ms": round(p95 * 1000),
        }
    finally:
        await stack.destroy()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    asyncio.run(run(quick=args.quick))
