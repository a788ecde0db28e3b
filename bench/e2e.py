"""End-to-end latency, the five services as processes: from a medical record's commit in
datasync (its batch POST returned) to the verification task visible in assistance, p50 and
p95, at idle and while other departments' batches stream in.

    .venv/bin/python -m bench.e2e [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
import uuid
from typing import Any

from bench.common import percentile, scratch_stack
from tests.e2e import flows
from tests.e2e.conftest import FAST
from tests.e2e.system import System


async def _sample(system: System, household: dict[str, Any]) -> float:
    record = flows.medical_records([household], per_household=1, amount=40000)[0]
    async with (
        system.client("datasync", "feeds:medical") as datasync,
        system.client("assistance", "assistance:read") as assistance,
    ):
        batch = {
            "batch_id": f"lat-{uuid.uuid4().hex[:10]}",
            "period": "2026-11",
            "records": [record],
        }
        r = await datasync.post("/v1/feeds/medical/batches", json=batch)
        assert r.status_code == 201, r.text
        committed = time.perf_counter()
        while True:
            body = (
                await assistance.get("/v1/tasks", params={"household_id": household["id"]})
            ).json()
            if body["items"]:
                return time.perf_counter() - committed
            if time.perf_counter() - committed > 60:
                raise TimeoutError(f"no task for {household['id']} after 60 s")
            await asyncio.sleep(0.02)


async def _load(system: System, households: list[dict[str, Any]], stop: asyncio.Event) -> int:
    """Other departments' traffic, back to back: 2,000-record batches, a quarter of them
    small bills of registered households, the rest people the register does not know."""
    rng = random.Random(7)
    sent = 0
    while not stop.is_set():
        records = flows.medical_records(households, per_household=1, amount=5)
        strangers = [
            {"head": flows.id_number(rng, 1960 + i % 40)} for i in range(2000 - len(records))
        ]
        records += flows.medical_records(strangers, per_household=1, amount=5)
        await flows.post_medical(system, records, batch_size=2000)
        sent += len(records)
    return sent


async def run(quick: bool = False) -> dict[str, object]:
    samples = 10 if quick else 40
    stack = scratch_stack()
    await stack.create_topics()
    system = System(stack=stack, label="_bench", env=dict(FAST))
    await system.setup()
    await system.start_all()
    try:
        targets = await flows.register(system, 2 * samples, income=30000)
        background = await flows.register(system, 500, income=500000)
        await flows.wait_known_to_risk(system, targets + background, timeout=300)
        idle = [await _sample(system, h) for h in targets[:samples]]

        stop = asyncio.Event()
        load = asyncio.create_task(_load(system, background, stop))
        await asyncio.sleep(3)
        loaded = [await _sample(system, h) for h in targets[samples:]]
        stop.set()
        load_records = await load
    finally:
        system.stop_all()
        await stack.destroy()
    result = {
        "samples": samples,
        "idle_p50_ms": round(percentile(idle, 50) * 1000),
        "idle_p95_ms": round(percentile(idle, 95) * 1000),
        "load_p50_ms": round(percentile(loaded, 50) * 1000),
        "load_p95_ms": round(percentile(loaded, 95) * 1000),
        "load_records_sent": load_records,
    }
    print(
        f"e2e record→task: idle p50 {result['idle_p50_ms']} ms, p95 {result['idle_p95_ms']} ms; "
        f"under load p50 {result['load_p50_ms']} ms, p95 {result['load_p95_ms']} ms "
        f"({load_records} background records)"
    )
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    asyncio.run(run(quick=parser.parse_args().quick))
