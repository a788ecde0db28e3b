"""Reminders from the other services' events, through the real Kafka and PostgreSQL."""

from __future__ import annotations

import functools
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from backstop.contracts import assistance, quality, registry
from backstop.db import unit_of_work
from backstop.events import CloudEvent, make_event
from backstop.settings import Settings
from services.notify.app import create
from services.notify.models import RECIPIENTS, REMINDER_ATTEMPTS, REMINDERS
from services.notify.reactions import EventHandlers
from tests.notify.conftest import fast, send_events
from tests.support import Stack, read_topic, serve, wait_for

pytestmark = pytest.mark.integration

ADMIN = ("notify:admin", "notify:read")


def task_opened(task_id: str, household_id: str, town: str = "441881101") -> CloudEvent:
    return make_event(
        "assistance",
        assistance.TaskOpened(
            task_id=task_id,
            kind="verification",
            household_id=household_id,
            region_code=f"{town}001",
            assignee=assistance.Assignee(type="town", code=town),
            due_on=date.today() + timedelta(days=7),
            reason="医疗自付费用超过家庭年收入50%",
            factors=["illness"],
        ),
        subject=household_id,
    )


async def test_a_task_event_yields_exactly_one_reminder_even_redelivered(
    stack: Stack, notify_settings: Settings
) -> None:
    town = "441881101"
    household_id = str(uuid.uuid4())
    task_id = str(uuid.uuid4())
    async with serve(functools.partial(create, notify=fast()), notify_settings) as (
        client,
        runtime,
    ):
        put = await client.put(
            f"/v1/recipients/town/{town}",
            json={"name": "石马镇政府", "channel": "local"},
            headers=stack.headers(*ADMIN),
        )
        assert put.status_code == 200, put.text
        first = task_opened(task_id, household_id, town)
        # Re-delivered as is (same event id), and re-emitted for the same task (new id).
        again = task_opened(task_id, household_id, town)
        await send_events(notify_settings, first, first, again)
        # A marker on the same partition: once it is applied, so are the three before it.
        marker_task = str(uuid.uuid4())
        await send_events(notify_settings, task_opened(marker_task, household_id, town))

        async def sent(ref: str) -> bool:
            async with runtime.sessions() as session:
                status = await session.scalar(
                    select(REMINDERS.c.status).where(REMINDERS.c.ref == ref)
                )
            return status == "sent"

        await wait_for(lambda: sent(marker_task), message="marker reminder sent")
        await wait_for(lambda: sent(task_id), message="task reminder sent")
        async with runtime.sessions() as session:
            count = await session.scalar(
                select(func.count()).select_from(REMINDERS).where(REMINDERS.c.ref == task_id)
            )
            attempts = await session.scalar(
                select(func.count())
                .select_from(REMINDER_ATTEMPTS.join(REMINDERS))
                .where(REMINDERS.c.ref == task_id)
            )
        assert count == 1 and attempts == 1

        listed = await client.get(
            "/v1/reminders",
            params={"recipient": f"town:{town}", "status": "sent"},
            headers=stack.headers("notify:read", regions=[town]),
        )
        assert listed.status_code == 200
        mine = [r for r in listed.json()["items"] if r["ref"] == task_id]
        assert len(mine) == 1 and "入户核实" in mine[0]["body"]
        log = await client.get(
            f"/v1/reminders/{mine[0]['id']}/deliveries", headers=stack.headers("notify:read")
        )
        assert [a["ok"] for a in log.json()] == [True]
        # Another town's token does not see it.
        other = await client.get(
            "/v1/reminders",
            params={"recipient": f"town:{town}"},
            headers=stack.headers("notify:read", regions=["441882"]),
        )
        assert other.json()["items"] == []

    delivered = await read_topic(
        notify_settings,
        "notify.reminders",
        match=lambda e: e.data.get("reminder_id") == mine[0]["id"],
    )
    assert delivered[0].data["status"] == "sent" and delivered[0].subject == household_id


async def test_the_insurer_is_reminded_when_the_county_hands_a_case_over(
    stack: Stack, notify_settings: Settings
) -> None:
    """集中交由人保公司: the handover event, through Kafka and the consumer, reminds the
    insurer with the due date counted from the handover."""
    insurer = "picc"
    household_id, task_id = str(uuid.uuid4()), str(uuid.uuid4())
    data = task_opened(task_id, household_id).data
    due = date.today() + timedelta(days=7)
    handed = make_event(
        "assistance",
        assistance.TaskHandedOver(
            **{**data, "assignee": {"type": "insurer", "code": insurer}, "due_on": due},
            handed_over_by="县扶贫办",
            handed_over_at=datetime.now(UTC),
        ),
        subject=household_id,
    )
    async with serve(functools.partial(create, notify=fast()), notify_settings) as (
        client,
        runtime,
    ):
        put = await client.put(
            f"/v1/recipients/insurer/{insurer}",
            json={"name": "人保公司", "channel": "local"},
            headers=stack.headers(*ADMIN),
        )
        assert put.status_code == 200, put.text
        await send_events(notify_settings, handed)

        async def sent() -> list[Any]:
            async with runtime.sessions() as session:
                rows = (
                    await session.execute(select(REMINDERS).where(REMINDERS.c.ref == task_id))
                ).all()
            return rows if rows and all(r.status == "sent" for r in rows) else []

        [reminder] = await wait_for(sent, message="the insurer's reminder sent")
    assert (reminder.kind, reminder.recipient) == ("task_handed_over", f"insurer:{insurer}")
    assert "集中交由" in reminder.body and f"{due:%Y年%m月%d日}" in reminder.body


async def test_overdue_task_goes_to_assignee_then_town_leader_unknown_recipient_recorded(
    stack: Stack, notify_settings: Settings
) -> None:
    """Handlers straight on the database (the consumer path is covered above)."""
    async with serve(
        functools.partial(create, notify=fast(escalation_delay_s=3600)),
        notify_settings,
        background=False,
    ) as (_, runtime):
        handlers = EventHandlers(fast(escalation_delay_s=3600))
        household_id, task_id = str(uuid.uuid4()), str(uuid.uuid4())
        data = task_opened(task_id, household_id, "441881199").data
        overdue = make_event(
            "assistance",
            assistance.TaskOverdue(**data, days_overdue=2),
            subject=household_id,
        )
        async with unit_of_work(runtime.sessions) as session:
            await handlers.task_overdue(session, overdue)
            await handlers.task_overdue(session, overdue)  # seen twice: still one each
        async with runtime.sessions() as session:
            rows = (
                await session.execute(
                    select(REMINDERS).where(REMINDERS.c.ref == task_id).order_by(REMINDERS.c.seq)
                )
            ).all()
        assert [(r.kind, r.recipient, r.status) for r in rows] == [
            # Nobody registered town 441881199: recorded, failed, with the reason.
            ("task_overdue", "town:441881199", "failed"),
            ("task_escalated", "town_leader:441881199", "failed"),
        ]
        assert rows[0].failure_reason == "unknown_recipient" and "未登记" in rows[0].last_error

        # With a registered leader, the escalation waits, and completing the task cancels it.
        task2 = str(uuid.uuid4())
        async with unit_of_work(runtime.sessions) as session:
            await session.execute(
                RECIPIENTS.insert().values(
                    kind="town_leader",
                    code="441881198",
                    name="镇长",
                    region_code="441881198",
                    channel="sms",
                    address="13900000000",
                )
            )
        data2 = task_opened(task2, household_id, "441881198").data
        async with unit_of_work(runtime.sessions) as session:
            await handlers.task_overdue(
                session,
                make_event(
                    "assistance",
                    assistance.TaskOverdue(**data2, days_overdue=1),
                    subject=household_id,
                ),
            )
            await handlers.task_completed(
                session,
                make_event(
                    "assistance",
                    assistance.TaskCompleted(**data2, outcome="confirmed", verified_by="x"),
                    subject=household_id,
                ),
            )
        async with runtime.sessions() as session:
            escalation = (
                await session.execute(
                    select(REMINDERS).where(
                        REMINDERS.c.ref == task2, REMINDERS.c.kind == "task_escalated"
                    )
                )
            ).one()
        assert escalation.status == "cancelled" and escalation.recipient_name == "镇长"


async def test_monitoring_decision_goes_to_the_key_contacts_from_the_registry_snapshot(
    stack: Stack, notify_settings: Settings
) -> None:
    async with serve(
        functools.partial(create, notify=fast()), notify_settings, background=False
    ) as (_, runtime):
        handlers = EventHandlers(fast())
        household_id = str(uuid.uuid4())

        def snapshot(version: int, phone: str) -> CloudEvent:
            return make_event(
                "registry",
                registry.HouseholdUpdated(
                    household=registry.HouseholdSnapshot(
                        household_id=household_id,
                        household_number="HN-001",
                        region_code="441881101001",
                        town_code="441881101",
                        type="marginal",
                        members=[],
                        contacts=[
                            registry.ContactSnapshot(role="cadre", name="李干部", phone=phone)
                        ],
                        version=version,
                    )
                ),
                subject=household_id,
            )

        async with unit_of_work(runtime.sessions) as session:
            await handlers.household_changed(session, snapshot(2, "13700000002"))
            await handlers.household_changed(session, snapshot(1, "13700000001"))  # stale
            await handlers.monitoring_started(
                session,
                make_event(
                    "assistance",
                    assistance.MonitoringStarted(
                        household_id=household_id,
                        region_code="441881101001",
                        case_id="case-1",
                        monitoring_type="marginal",
                        risk_factors=["illness"],
                        decided_on=date.today(),
                        approved_by="county",
                    ),
                    subject=household_id,
                ),
            )
        async with runtime.sessions() as session:
            rows = (
                await session.execute(
                    select(REMINDERS).where(REMINDERS.c.subject_id == household_id)
                )
            ).all()
        assert [(r.recipient, r.channel, r.address, r.status) for r in rows] == [
            ("contact:13700000002", "sms", "13700000002", "pending")
        ]
        assert "户编号HN-001" in rows[0].body and "边缘易致贫户" in rows[0].body


async def test_overdue_rectifications_and_clues_go_to_the_town_then_its_leader(
    stack: Stack, notify_settings: Settings
) -> None:
    async with serve(
        functools.partial(create, notify=fast()), notify_settings, background=False
    ) as (_, runtime):
        handlers = EventHandlers(fast())
        issue, clue = str(uuid.uuid4()), str(uuid.uuid4())
        events = [
            make_event(
                "assistance",
                assistance.RectificationOverdue(
                    issue_id=issue,
                    region_code="441881170003",
                    responsible_unit="石马镇",
                    deadline=date.today() - timedelta(days=3),
                    summary="监测户帮扶措施未落实",
                ),
                subject=issue,
            ),
            make_event(
                "assistance",
                assistance.ClueOverdue(
                    clue_id=clue,
                    region_code="441881170",
                    household_id=None,
                    source="12317热线",
                    received_at=datetime.now(UTC),
                ),
                subject=clue,
            ),
        ]
        facts = {"issue_id": issue, "region_code": "441881170003", "responsible_unit": "石马镇",
                 "deadline": date.today() - timedelta(days=3), "summary": "监测户帮扶措施未落实"}  # fmt: skip
        raised = make_event(
            "assistance",
            assistance.RectificationRaised(**facts, found_on=date.today() - timedelta(days=20)),
            subject=issue,
        )
        async with unit_of_work(runtime.sessions) as session:
            await handlers.remind(session, [raised, *events, *events])  # with duplicates
        async with runtime.sessions() as session:
            rows = (
                await session.execute(
                    select(REMINDERS.c.kind, REMINDERS.c.recipient)
                    .where(REMINDERS.c.ref.in_([issue, clue]))
                    .order_by(REMINDERS.c.seq)
                )
            ).all()
        assert [tuple(r) for r in rows] == [
            # 发现问题及时反馈镇村: the town and the village are told when it is raised
            ("rectification_raised", "town:441881170"),
            ("rectification_raised", "village:441881170003"),
            ("rectification_overdue", "town:441881170"),
            ("rectification_escalated", "town_leader:441881170"),
            ("clue_overdue", "town:441881170"),
            ("clue_escalated", "town_leader:441881170"),
        ]
        # Reminded again until closed: the next round is a reminder of its own; closing
        # the issue cancels the escalation still pending.
        again = make_event(
            "assistance", assistance.RectificationOverdue(**facts, reminder=2), subject=issue
        )
        closed = make_event(
            "assistance",
            assistance.RectificationClosed(**facts, rectified_on=date.today(), days_late=3),
            subject=issue,
        )
        waiting = EventHandlers(fast(escalation_delay_s=3600.0))  # escalation still pending
        async with unit_of_work(runtime.sessions) as session:
            await session.execute(
                RECIPIENTS.insert().values(
                    kind="town_leader", code="441881170", name="镇长", region_code="441881170",
                    channel="sms", address="13900000000",
                )
            )  # fmt: skip
        async with unit_of_work(runtime.sessions) as session:
            await waiting.remind(session, [again])
            await waiting.rectification_closed(session, closed)
        async with runtime.sessions() as session:
            rows = (
                await session.execute(
                    select(REMINDERS.c.kind, REMINDERS.c.status)
                    .where(REMINDERS.c.ref == issue, REMINDERS.c.kind != "rectification_raised")
                    .order_by(REMINDERS.c.seq)
                )
            ).all()
        kinds = [r.kind for r in rows]
        assert kinds.count("rectification_overdue") == 2
        assert [r.status for r in rows if r.kind == "rectification_escalated"][-1] == "cancelled"


async def test_data_quality_errors_remind_the_town_once_a_day_and_escalate(
    stack: Stack, notify_settings: Settings
) -> None:
    town = "441881133"
    opened = [
        make_event(
            "quality",
            quality.ErrorFindingsOpened(town_code=town, opened=n, rules={"ID003": n}),
            subject=town,
        )
        for n in (2, 1)
    ]
    overdue = make_event(
        "quality",
        quality.ErrorFindingsOverdue(
            town_code=town, count=3, days=7, oldest_opened_on=date(2026, 11, 20)
        ),
        subject=town,
    )
    async with serve(functools.partial(create, notify=fast()), notify_settings) as (_, runtime):
        await send_events(notify_settings, *opened, overdue)

        async def reminders() -> list[object] | None:
            async with runtime.sessions() as session:
                rows = list(
                    await session.execute(
                        select(REMINDERS.c.kind, REMINDERS.c.recipient, REMINDERS.c.body).where(
                            REMINDERS.c.ref == town
                        )
                    )
                )
            # The escalation comes after both openings on the town's partition.
            return rows if sum(r.kind == "quality_overdue" for r in rows) == 2 else None

        rows = await wait_for(reminders, message="quality reminders")
    kinds = sorted((r.kind, r.recipient) for r in rows)  # type: ignore[attr-defined]
    # Two checks that day found errors: one reminder to the town, not two.
    assert kinds == [
        ("quality_errors", f"town:{town}"),
        ("quality_overdue", "county_office:county"),
        ("quality_overdue", f"town_leader:{town}"),
    ]
    body = next(r.body for r in rows if r.kind == "quality_errors")  # type: ignore[attr-defined]
    assert "ID003×2" in body and f"rectification/{town}.xlsx" in body
