"""Notify throughput on the real PostgreSQL (and a real local HTTP receiver).

.venv/bin/python -m bench.notify [--quick]

Baselines run in the same process: raw INSERTs of the same reminder rows, and raw
httpx POSTs to the same receiver.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import func, insert, select

import backstop.contracts  # noqa: F401 - registers event types
from backstop.contracts import assistance, registry, risk
from backstop.db import make_engine, make_session_factory, unit_of_work
from backstop.events import make_event
from services.notify import delivery, scheduler
from services.notify.domain import TZ
from services.notify.models import RECIPIENTS, REMINDERS, SUBSCRIPTIONS
from services.notify.reactions import EventHandlers
from services.notify.subscriptions import queue_alert
from tests.notify.conftest import Gateway, fast, fresh_database
from tests.support import Stack
from tests.support import serving as running

BATCH = 500  # events per consumer transaction, as the consumer batches a partition


async def run(quick: bool = False) -> dict[str, object]:
    n_tasks = 2_000 if quick else 20_000
    n_households = 2_000 if quick else 30_000
    n_alerts = 200 if quick else 2_000
    stack = Stack()
    settings = await fresh_database(stack, "notify_bench")
    config = fast(batch_size=500, webhook_per_subscription=500)
    engine = make_engine(settings.db_url, 5)
    sessions = make_session_factory(engine)
    handlers = EventHandlers(config)
    result: dict[str, object] = {}
    try:
        # -- baseline: the same number of reminder rows, plain INSERT.
        rows = [
            {
                "id": uuid.uuid4(),
                "dedup_key": f"raw:{i}",
                "kind": "raw",
                "region_code": "441881101001",
                "recipient": "town:441881101",
                "title": "t",
                "body": "b" * 80,
                "status": "cancelled",
                "next_attempt_at": datetime.now(UTC),
            }
            for i in range(n_tasks)
        ]
        started = time.perf_counter()
        for i in range(0, n_tasks, BATCH):
            async with unit_of_work(sessions) as session:
                await session.execute(insert(REMINDERS), rows[i : i + BATCH])
        raw_s = time.perf_counter() - started

        # Every town registered, so the task reminders are pending (then delivered below).
        async with unit_of_work(sessions) as session:
            await session.execute(
                insert(RECIPIENTS),
                [
                    {
                        "kind": "town",
                        "code": f"4418811{t:02d}",
                        "name": f"镇{t}",
                        "region_code": f"4418811{t:02d}",
                        "channel": "local",
                        "address": "",
                    }
                    for t in range(50)
                ],
            )

        # -- task.opened events through the handler (lookup, message, dedup insert).
        events = [
            make_event(
                "assistance",
                assistance.TaskOpened(
                    task_id=str(uuid.uuid4()),
                    kind="verification",
                    household_id=str(uuid.uuid4()),
                    region_code=f"4418811{i % 50:02d}001",
                    assignee=assistance.Assignee(type="town", code=f"4418811{i % 50:02d}"),
                    due_on=date.today() + timedelta(days=7),
                    reason="医疗自付费用超过家庭年收入50%",
                ),
                subject=str(i),
            )
            for i in range(n_tasks)
        ]

        async def apply_all() -> float:
            t0 = time.perf_counter()
            for i in range(0, n_tasks, BATCH):
                async with unit_of_work(sessions) as session:
                    # As the consumer applies one partition batch.
                    await handlers.remind(session, events[i : i + BATCH])
            return time.perf_counter() - t0

        handler_s = await apply_all()
        redelivered_s = await apply_all()  # every one a duplicate: no new rows
        async with sessions() as session:
            created = await session.scalar(
                select(func.count()).select_from(REMINDERS).where(REMINDERS.c.kind == "task_opened")
            )
        assert created == n_tasks
        result |= {
            "task_events": n_tasks,
            "raw_insert_rows_per_s": round(n_tasks / raw_s),
            "task_opened_events_per_s": round(n_tasks / handler_s),
            "handler_to_raw_insert_ratio": round(raw_s / handler_s, 3),
            "redelivered_events_per_s": round(n_tasks / redelivered_s),
        }

        # -- the monthly contact lists for a county's worth of households.
        async with unit_of_work(sessions) as session:
            for i in range(n_households):
                hid = str(uuid.uuid4())
                snap = registry.HouseholdSnapshot(
                    household_id=hid,
                    region_code=f"4418811{i % 50:02d}{i % 30:03d}",
                    town_code=f"4418811{i % 50:02d}",
                    type="marginal" if i % 3 else "alleviated",
                    monitoring_status="monitored" if i % 3 == 0 else "none",
                    members=[],
                    contacts=[
                        registry.ContactSnapshot(
                            role="cadre", name="干部", phone=f"139{i % (n_households // 5):08d}"
                        )
                    ],
                )
                await handlers.household_changed(
                    session,
                    make_event("registry", registry.HouseholdCreated(household=snap), subject=hid),
                )
        started = time.perf_counter()
        fired = await scheduler.run_schedules(
            sessions, config, worker="bench", now=datetime(2026, 12, 1, 9, tzinfo=TZ)
        )
        schedule_s = time.perf_counter() - started
        assert "monthly_contacts:2026-12" in fired
        result |= {
            "households": n_households,
            "monthly_lists": n_households // 5,
            "monthly_schedule_fire_s": round(schedule_s, 3),
        }

        # -- delivering every pending reminder on the local channel.
        started = time.perf_counter()
        delivered = 0
        while n := await delivery.deliver_reminders(sessions, config, worker="bench"):
            delivered += n
        deliver_s = time.perf_counter() - started
        result |= {
            "reminders_delivered": delivered,
            "local_channel_reminders_per_s": round(delivered / deliver_s),
        }

        # -- webhooks: one live receiver and one dead subscriber, against raw POSTs.
        gateway = Gateway(script={"/hook": [(200, {})]})
        async with running(gateway) as base:
            body = _alert().to_bytes()  # the same size as a delivery
            async with httpx.AsyncClient() as client:
                gate = asyncio.Semaphore(16)

                async def post() -> None:
                    async with gate:
                        await client.post(f"{base}/hook", content=body)

                started = time.perf_counter()
                await asyncio.gather(*(post() for _ in range(n_alerts)))
                raw_post_s = time.perf_counter() - started
            async with unit_of_work(sessions) as session:
                for url in (f"{base}/hook", "http://127.0.0.1:9/dead"):
                    await session.execute(
                        insert(SUBSCRIPTIONS).values(
                            id=uuid.uuid4(),
                            callback_url=url,
                            event_types=["backstop.risk.alert.raised.v1"],
                            region_prefix="4418",
                            secret="s" * 64,
                            created_by="bench",
                        )
                    )
            alerts = [_alert() for _ in range(n_alerts)]
            for i in range(0, n_alerts, BATCH):
                async with unit_of_work(sessions) as session:
                    for a in alerts[i : i + BATCH]:
                        await queue_alert(session, a)
            gateway.requests.clear()
            started = time.perf_counter()
            while len(gateway.requests) < n_alerts:
                await delivery.deliver_webhooks(sessions, config)
            webhook_s = time.perf_counter() - started
        result |= {
            "alerts": n_alerts,
            "raw_post_per_s": round(n_alerts / raw_post_s),
            "signed_webhook_deliveries_per_s": round(n_alerts / webhook_s),
            "webhook_to_raw_post_ratio": round(raw_post_s / webhook_s, 3),
        }
    finally:
        await engine.dispose()
        await stack.destroy()
    print("notify:", ", ".join(f"{k}={v}" for k, v in result.items()))
    return result


def _alert() -> Any:
    hid = str(uuid.uuid4())
    return make_event(
        "risk",
        risk.AlertRaised(
            household_id=hid,
            region_code="441881101001",
            level="at_risk",
            previous_level="watch",
            score=70,
            factors=["illness"],
            assessed_at=datetime.now(UTC),
            policy_version=1,
        ),
        subject=hid,
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    asyncio.run(run(quick=parser.parse_args().quick))
