"""Two of every process, against the real broker and database (docs/scaling.md): two
relays never reorder one household's events, two risk workers never score one event twice
in effect, two notify workers never send one reminder twice."""

from __future__ import annotations

import asyncio
import functools
import random
import uuid
from collections import defaultdict

import pytest
from aiokafka import AIOKafkaProducer
from sqlalchemy import func, insert, select, text

from backstop.app import Runtime
from backstop.bus import ensure_topics
from backstop.contracts.datasync import TOPIC as RECORDS_TOPIC
from backstop.contracts.kernel import PROBE_TOPIC, ProbeEmitted
from backstop.settings import Settings
from backstop.tables import inbox
from bench.risk import HOUSEHOLD_SQL, household_id, records_event
from services.notify.app import create as create_notify
from services.notify.models import REMINDER_ATTEMPTS, REMINDERS
from services.risk import models as risk_models
from services.risk import policies as risk_policies
from services.risk.app import SPEC as RISK
from tests.kernel.test_outbox_consumer import emit, probe_spec
from tests.notify.conftest import fast, send_events
from tests.notify.test_reminders_from_events import ADMIN, task_opened
from tests.support import Stack, read_topic, serve, wait_for

pytestmark = pytest.mark.integration


async def test_two_relays_never_reorder_one_households_events(kernel_settings: Settings) -> None:
    spec = probe_spec("unused")
    first, second = Runtime(spec, kernel_settings), Runtime(spec, kernel_settings)
    households = [str(uuid.uuid4()) for _ in range(6)]
    per_household = 60
    await first.start(consumers=False, jobs=False)
    await second.start(consumers=False, jobs=False)
    try:

        async def writer(index: int, household: str) -> None:
            # One household's changes are serial (the registry locks its row), each in its
            # own transaction, written through both processes in turn.
            for seq in range(per_household):
                await emit((first, second)[(seq + index) % 2], household, range(seq, seq + 1))
                if seq % 7 == index % 7:
                    await asyncio.sleep(0.01)

        await asyncio.gather(*(writer(i, h) for i, h in enumerate(households)))
        sent = await read_topic(
            kernel_settings,
            PROBE_TOPIC,
            min_count=len(households) * per_household,
            timeout=60,
            match=lambda e: e.subject in households,
        )
    finally:
        await first.stop()
        await second.stop()
    order: dict[str, list[int]] = defaultdict(list)
    for event in sent:
        data = event.payload()
        assert isinstance(data, ProbeEmitted)
        if data.seq not in order[data.household_id]:  # a resend after an outage may repeat
            order[data.household_id].append(data.seq)
    assert all(order[h] == list(range(per_household)) for h in households), order


async def test_two_risk_workers_never_score_one_event_twice(stack: Stack) -> None:
    settings = await stack.create_database("risk", label="_two")
    # Topics of its own: on the run's topics the two workers would also apply what other
    # tests publish there (registry households), and re-score more than its households.
    settings = settings.model_copy(update={"topic_prefix": f"{stack.prefix}two-risk."})
    n_households, n_events = 300, 3000
    async with Runtime(RISK, settings).sessions() as session:
        await session.execute(text(HOUSEHOLD_SQL), {"lo": 0, "hi": n_households - 1})
        await session.execute(
            insert(risk_models.rescore_jobs).values(policy_version=1, status="pending")
        )
        await session.commit()
    scorer = Runtime(RISK, settings)
    try:
        await risk_policies.run_rescore(scorer.sessions)
    finally:
        await scorer.stop()
    await ensure_topics(settings)
    rng = random.Random(3)
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers)
    await producer.start()
    try:
        for i in range(n_events):
            hid = household_id(rng.randrange(n_households))
            event = records_event(hid, round(rng.uniform(100, 25_000), 2), rng, f"two{i // 100}")
            await producer.send(
                settings.topic(RECORDS_TOPIC), value=event.to_bytes(), key=hid.encode()
            )
        await producer.flush()
    finally:
        await producer.stop()

    first, second = Runtime(RISK, settings), Runtime(RISK, settings)

    async def consumed() -> int:
        async with first.sessions() as session:
            return int(await session.scalar(select(func.count()).select_from(inbox)) or 0)

    try:
        await first.start(jobs=False)
        # The second joins while the first is consuming: the group rebalances mid-stream,
        # so batches the first had not committed are delivered to the second again.
        await wait_for(lambda: consumed(), timeout=60, message="the first worker's progress")
        await second.start(jobs=False)
        await wait_for(
            lambda: _at_least(consumed, n_events), timeout=180, message="every event consumed"
        )
        async with first.sessions() as session:
            records = int(
                await session.scalar(select(func.count()).select_from(risk_models.records)) or 0
            )
            # In effect: scoring every household again from its records changes nothing,
            # so no event counted twice in a score.
            await session.execute(
                insert(risk_models.rescore_jobs).values(policy_version=1, status="pending")
            )
            await session.commit()
        await risk_policies.run_rescore(first.sessions)
        async with first.sessions() as session:
            status = await risk_policies.rescore_status(session)
    finally:
        await first.stop()
        await second.stop()
    assert records == n_events
    assert status is not None and status["processed"] == n_households
    assert status["changed"] == 0, status


async def _at_least(count: object, n: int) -> bool:
    return await count() >= n  # type: ignore[operator]


async def test_two_notify_workers_never_send_one_reminder_twice(stack: Stack) -> None:
    settings = await stack.create_database("notify", label="_two")
    town = "441881101"
    create = functools.partial(create_notify, notify=fast())
    async with serve(create, settings) as (client, first), serve(create, settings) as (_, second):
        put = await client.put(
            f"/v1/recipients/town/{town}",
            json={"name": "石马镇政府", "channel": "local"},
            headers=stack.headers(*ADMIN),
        )
        assert put.status_code == 200, put.text
        tasks = [(str(uuid.uuid4()), str(uuid.uuid4())) for _ in range(120)]
        events = [task_opened(task_id, household, town) for task_id, household in tasks]
        # Each event delivered twice, as after a consumer crash before its offset commit.
        await send_events(settings, *events, *events)

        # Other tests' task events share the topic: only this test's tasks are counted.
        ours = [task_id for task_id, _ in tasks]

        async def all_sent() -> bool:
            async with first.sessions() as session:
                sent = await session.scalar(
                    select(func.count())
                    .select_from(REMINDERS)
                    .where(
                        REMINDERS.c.status == "sent",
                        REMINDERS.c.kind == "task_opened",
                        REMINDERS.c.ref.in_(ours),
                    )
                )
            return sent == len(tasks)

        await wait_for(all_sent, timeout=180, message="a reminder sent for every task")
        async with second.sessions() as session:
            reminders = (
                await session.execute(
                    select(REMINDERS.c.ref, func.count())
                    .where(REMINDERS.c.kind == "task_opened", REMINDERS.c.ref.in_(ours))
                    .group_by(REMINDERS.c.ref)
                )
            ).all()
            attempts = (
                await session.execute(
                    select(REMINDER_ATTEMPTS.c.reminder_id, func.count())
                    .join(REMINDERS, REMINDERS.c.id == REMINDER_ATTEMPTS.c.reminder_id)
                    .where(REMINDERS.c.kind == "task_opened", REMINDERS.c.ref.in_(ours))
                    .group_by(REMINDER_ATTEMPTS.c.reminder_id)
                )
            ).all()
    assert sorted(ref for ref, _ in reminders) == sorted(task_id for task_id, _ in tasks)
    assert all(n == 1 for _, n in reminders)
    assert len(attempts) == len(tasks) and all(n == 1 for _, n in attempts)


async def test_the_role_says_what_a_process_runs(kernel_settings: Settings) -> None:
    from tests.kernel.test_auth_health import create as create_kernel

    for role, routes, background in (("api", True, False), ("worker", False, True),
                                     ("all", True, True)):  # fmt: skip
        settings = kernel_settings.model_copy(update={"role": role})
        async with serve(create_kernel, settings) as (client, runtime):
            assert (await client.get("/healthz")).status_code == 200
            assert (await client.get("/metrics")).status_code == 200
            echo = await client.post("/v1/echo", json={"v": "x"})
            assert (echo.status_code == 200) is routes, (role, echo.status_code)
            relay = any(task.get_name() == "outbox-relay" for task in runtime._tasks)
            assert relay is background, role
