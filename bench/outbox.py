"""Outbox-to-Kafka throughput against a plain aiokafka producer, in the same run.

.venv/bin/python -m bench.outbox [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid

from aiokafka import AIOKafkaProducer
from sqlalchemy import insert, text
from sqlalchemy.ext.asyncio import create_async_engine

import backstop.contracts  # noqa: F401 - registers event types
from backstop.bus import ensure_topics
from backstop.contracts.kernel import PROBE_TOPIC, ProbeEmitted
from backstop.db import make_session_factory
from backstop.events import make_event
from backstop.outbox import OutboxRelay, outbox_row
from backstop.tables import kernel_metadata, outbox
from bench.common import scratch_stack


async def run(quick: bool = False) -> dict[str, object]:
    n = 5_000 if quick else 100_000
    stack = scratch_stack()
    settings = await stack.create_database("kernel", migrate=False)
    await ensure_topics(settings, {PROBE_TOPIC: 6})
    engine = create_async_engine(settings.db_url)
    async with engine.begin() as conn:
        await conn.run_sync(kernel_metadata.create_all)
    households = [str(uuid.uuid4()) for _ in range(1000)]
    events = [
        make_event(
            "bench",
            ProbeEmitted(household_id=households[i % 1000], seq=i),
            subject=households[i % 1000],
        )
        for i in range(n)
    ]
    try:
        # Baseline: a plain idempotent producer sending the same serialized events.
        producer = AIOKafkaProducer(
            bootstrap_servers=settings.kafka_bootstrap_servers,
            enable_idempotence=True,
            linger_ms=5,
            max_batch_size=512 * 1024,
        )
        await producer.start()
        values = [(e.subject or "", e.to_bytes()) for e in events]
        started = time.perf_counter()
        futures = [
            await producer.send(settings.topic(PROBE_TOPIC), value=v, key=k.encode())
            for k, v in values
        ]
        await asyncio.gather(*futures)
        plain_s = time.perf_counter() - started
        await producer.stop()

        # Outbox: the rows are committed first (the business transactions), then timed
        # from the relay's first claim to the last row sent and deleted.
        async with engine.begin() as conn:
            for i in range(0, n, 5000):
                await conn.execute(
                    insert(outbox), [outbox_row(e, None) for e in events[i : i + 5000]]
                )
        relay = OutboxRelay(sessions=make_session_factory(engine), settings=settings)
        started = time.perf_counter()
        sent = 0
        while sent < n:
            sent += await relay.relay_once()
        outbox_s = time.perf_counter() - started
        await relay.producer.stop()
        async with engine.connect() as conn:
            left = (await conn.execute(text("SELECT count(*) FROM outbox"))).scalar_one()
        assert left == 0
    finally:
        await engine.dispose()
        await stack.destroy()
    result = {
        "events": n,
        "plain_producer_events_per_s": round(n / plain_s),
        "outbox_relay_events_per_s": round(n / outbox_s),
        "outbox_to_producer_ratio": round(plain_s / outbox_s, 3),
    }
    print(
        f"outbox: {n} events; plain producer {result['plain_producer_events_per_s']}/s, "
        f"outbox relay {result['outbox_relay_events_per_s']}/s, "
        f"ratio {result['outbox_to_producer_ratio']} (aim >= 0.5)"
    )
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    asyncio.run(run(quick=parser.parse_args().quick))
