"""The risk consumer scaled by processes: events/s with one and with two worker processes
(`BACKSTOP_ROLE=worker`, uvicorn, one consumer group), each on a fresh backlog of
datasync.records events, back to back in one run. The core count is reported beside it:
two workers can only beat one where there are cores for both, PostgreSQL and Kafka.

CPU per event is the workers' CPU time over the events they applied. `--profile FILE`
samples the one-worker run with py-spy and writes its top frames there (sampling slows the
worker a little: take the figures from a run without it).

.venv/bin/python -m bench.scaling [--quick] [--workers 1 2] [--profile FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from sqlalchemy import func, insert, select, text
from sqlalchemy.ext.asyncio import create_async_engine

import backstop.contracts  # noqa: F401 - registers event types
from backstop.bus import TOPICS, make_producer
from backstop.contracts.datasync import TOPIC as RECORDS_TOPIC
from backstop.db import make_session_factory, unit_of_work
from backstop.outbox import OutboxRelay
from backstop.settings import Settings
from backstop.tables import inbox
from bench.common import scratch_stack
from bench.http import start_py_spy, summarize_profile
from bench.risk import HOUSEHOLD_SQL, ensure_risk_topics, household_id, records_event
from services.risk import models as m
from services.risk import policies
from tests.support import ROOT, free_port, wait_for


async def _produce(settings: Settings, n_events: int, n_households: int, seed: int) -> None:
    rng = random.Random(seed)
    producer = make_producer(settings)
    await producer.start()
    try:
        futures = []
        for i in range(n_events):
            hid = household_id(rng.randrange(n_households))
            event = records_event(
                hid, round(rng.uniform(100, 25_000), 2), rng, f"s{seed}-{i // 1000}"
            )
            futures.append(
                await producer.send(
                    settings.topic(RECORDS_TOPIC), value=event.to_bytes(), key=hid.encode()
                )
            )
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


def _start_workers(settings: Settings, workers: int) -> list[subprocess.Popen[bytes]]:
    env = {
        **os.environ,
        "BACKSTOP_SERVICE": "risk",
        "BACKSTOP_ROLE": "worker",
        "DATABASE_URL": settings.db_url,
        "BACKSTOP_TOPIC_PREFIX": settings.topic_prefix,
        "BACKSTOP_DB_POOL_SIZE": "10",
        "BACKSTOP_LOG_JSON": "false",
        "BACKSTOP_LOG_LEVEL": "WARNING",
    }
    command = [sys.executable, "-m", "uvicorn", "services.risk.app:create", "--factory",
               "--host", "127.0.0.1", "--loop", "uvloop", "--log-level", "warning",
               "--no-access-log", "--port"]  # fmt: skip
    return [
        subprocess.Popen([*command, str(free_port())], cwd=ROOT, env=env) for _ in range(workers)
    ]


async def _consume_with(
    settings: Settings,
    workers: int,
    n_events: int,
    count: Callable[[], Awaitable[int]],
    profile: Path | None = None,
) -> dict[str, object]:
    """Start `workers` risk worker processes; events/s from the first event applied to
    the last of `n_events` (the group's join is not counted), the cores each worker and
    PostgreSQL (the database's backends) kept busy meanwhile, and the workers' CPU µs
    per event applied."""
    base = await count()
    processes = _start_workers(settings, workers)
    database = settings.db_url.rsplit("/", 1)[1]
    try:
        first = await wait_for(
            lambda: _above(count, base), timeout=300, interval=0.2, message="a first event"
        )
        if profile is not None:
            raw = Path(tempfile.mkstemp(suffix=".txt")[1])
            spy = start_py_spy(processes[0].pid, raw)
        started = time.perf_counter()
        cpu = [_cpu_seconds(p.pid) for p in processes]
        postgres = _backends_cpu(database)
        done = await wait_for(
            lambda: _above(count, base + n_events - 1), timeout=1800, interval=0.2,
            message="every event",
        )  # fmt: skip
        elapsed = time.perf_counter() - started
        used = [_cpu_seconds(p.pid) - c for p, c in zip(processes, cpu, strict=True)]
        postgres_used = sum(
            s - postgres.get(pid, 0.0) for pid, s in _backends_cpu(database).items()
        )
        if profile is not None:
            _write_profile(spy, raw, profile)
        applied = done - first
        return {
            "events_per_s": round(applied / elapsed),
            # A worker near one core is bound by its own CPU (one process, one core).
            "worker_cores": [round(u / elapsed, 2) for u in used],
            "cpu_us_per_event": round(1e6 * sum(used) / applied),
            # Includes this bench's own count of the inbox every 0.2 s.
            "postgres_cores": round(postgres_used / elapsed, 2),
            "postgres_cpu_us_per_event": round(1e6 * postgres_used / applied),
        }
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=60)


def _write_profile(spy: subprocess.Popen[bytes], raw: Path, profile: Path) -> None:
    spy.send_signal(signal.SIGINT)  # py-spy writes what it sampled and exits
    spy.wait(timeout=60)
    profile.write_text("\n".join(summarize_profile(raw)) + "\n")
    raw.unlink()


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _backends_cpu(database: str) -> dict[int, float]:
    """CPU seconds of each PostgreSQL backend connected to `database` (by process title)."""
    found: dict[int, float] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            title = (proc / "cmdline").read_bytes()
            if title.startswith(b"postgres: ") and f" {database} ".encode() in title:
                found[int(proc.name)] = _cpu_seconds(int(proc.name))
        except OSError:  # gone meanwhile
            continue
    return found


async def _above(count: Callable[[], Awaitable[int]], n: int) -> int:
    """The count when it is above `n`, else 0."""
    value = await count()
    return value if value > n else 0


async def run(
    quick: bool = False, sizes: tuple[int, ...] = (1, 2), profile: Path | None = None
) -> dict[str, object]:
    n_households = 20_000 if quick else 100_000
    n_events = 10_000 if quick else 50_000
    stack = scratch_stack()
    settings = await stack.create_database("risk")
    await ensure_risk_topics(settings)
    engine = create_async_engine(settings.db_url, pool_size=3)
    sessions = make_session_factory(engine)
    result: dict[str, object] = {
        "cores": os.cpu_count(),
        "households": n_households,
        "events_per_run": n_events,
        "partitions": TOPICS[RECORDS_TOPIC],
    }
    try:
        async with engine.begin() as conn:
            await conn.execute(text(HOUSEHOLD_SQL), {"lo": 0, "hi": n_households - 1})
            await conn.execute(text("ANALYZE risk_households"))
        async with unit_of_work(sessions) as session:
            await session.execute(insert(m.rescore_jobs).values(policy_version=1, status="pending"))
        await policies.run_rescore(sessions)
        relay = OutboxRelay(sessions=sessions, settings=settings)
        while await relay.relay_once():
            pass  # the first scoring's events, sent before the figure starts
        await relay.producer.stop()

        async def count() -> int:
            async with sessions() as session:
                return int(await session.scalar(select(func.count()).select_from(inbox)) or 0)

        for workers in sizes:
            await _produce(settings, n_events, n_households, seed=workers)
            figures = await _consume_with(
                settings, workers, n_events, count, profile if workers == 1 else None
            )
            name = f"{workers}_worker{'s' if workers > 1 else ''}"
            result.update({f"{key}_{name}": value for key, value in figures.items()})
            result[f"load_average_{name}"] = round(os.getloadavg()[0], 1)
            print(
                f"risk consumer, {workers} worker(s): {figures['events_per_s']} events/s",
                flush=True,
            )
        if {1, 2} <= set(sizes):
            result["two_to_one_ratio"] = round(
                float(result["events_per_s_2_workers"]) / float(result["events_per_s_1_worker"]),  # type: ignore[arg-type]
                2,
            )
    finally:
        await engine.dispose()
        await stack.destroy()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.scaling")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="run sizes")
    parser.add_argument("--profile", type=Path, help="py-spy the one-worker run into FILE")
    args = parser.parse_args()
    print(asyncio.run(run(quick=args.quick, sizes=tuple(args.workers), profile=args.profile)))


if __name__ == "__main__":
    main()
