"""Schedules in the database: two scheduler instances at once fire exactly once."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime

import pytest
from sqlalchemy import func, select

from backstop.app import Runtime
from backstop.contracts import registry
from backstop.db import unit_of_work
from backstop.events import make_event
from services.notify import delivery, scheduler
from services.notify.app import build_spec
from services.notify.domain import TZ
from services.notify.models import REMINDER_ATTEMPTS, REMINDERS
from services.notify.reactions import EventHandlers
from tests.notify.conftest import fast, fresh_database
from tests.support import Stack

pytestmark = pytest.mark.integration

N_HOUSEHOLDS = 60
N_CONTACTS = 12


async def test_two_schedulers_at_once_send_the_monthly_lists_exactly_once(stack: Stack) -> None:
    settings = await fresh_database(stack, "notify_sched")
    config = fast()
    first, second = Runtime(build_spec(config), settings), Runtime(build_spec(config), settings)
    try:
        handlers = EventHandlers(config)
        async with unit_of_work(first.sessions) as session:
            for i in range(N_HOUSEHOLDS):
                hid = str(uuid.uuid4())
                snapshot = registry.HouseholdSnapshot(
                    household_id=hid,
                    region_code=f"4418811010{i % 3:02d}",
                    town_code="441881101",
                    type="marginal" if i % 2 else "alleviated",
                    monitoring_status="none" if i % 2 else "monitored",
                    members=[],
                    contacts=[
                        registry.ContactSnapshot(
                            role="cadre",
                            name=f"干部{i % N_CONTACTS}",
                            phone=f"1380000{i % N_CONTACTS:04d}",
                        )
                    ],
                )
                event = make_event(
                    "registry", registry.HouseholdCreated(household=snapshot), subject=hid
                )
                await handlers.household_changed(session, event)

        # Down on the 1st, back on the 3rd at 10:00 Shanghai: both instances catch up at once.
        now = datetime(2026, 12, 3, 10, tzinfo=TZ)
        fired = await asyncio.gather(
            *(
                scheduler.run_schedules(rt.sessions, config, worker=name, now=now)
                for rt, name in ((first, "a"), (second, "b"), (first, "c"), (second, "d"))
            )
        )
        keys = [k for run in fired for k in run]
        # Monthly lists, and the 5th-of-month feeds (due in two days).
        assert sorted(keys) == [
            "feed_due:civil_affairs:2026-12",
            "feed_due:disaster:2026-12",
            "feed_due:medical:2026-12",
            "monthly_contacts:2026-12",
        ]
        # Later runs in the same window find the occurrence claimed.
        again = await scheduler.run_schedules(
            second.sessions, config, worker="e", now=datetime(2026, 12, 20, tzinfo=TZ)
        )
        assert again == []

        # Both deliver at once: each reminder exactly one successful attempt.
        while any(
            await asyncio.gather(
                delivery.deliver_reminders(first.sessions, config, first.settings, worker="a"),
                delivery.deliver_reminders(second.sessions, config, second.settings, worker="b"),
            )
        ):
            pass
        async with first.sessions() as session:
            monthly = (
                await session.execute(
                    select(REMINDERS.c.recipient, REMINDERS.c.status, REMINDERS.c.body).where(
                        REMINDERS.c.kind == "monthly_contacts"
                    )
                )
            ).all()
            attempts = (
                await session.execute(
                    select(REMINDER_ATTEMPTS.c.reminder_id, func.count()).group_by(
                        REMINDER_ATTEMPTS.c.reminder_id
                    )
                )
            ).all()
            feeds = (
                await session.execute(
                    select(REMINDERS.c.recipient, REMINDERS.c.status).where(
                        REMINDERS.c.kind == "feed_due"
                    )
                )
            ).all()
        assert len(monthly) == N_CONTACTS
        assert {r.status for r in monthly} == {"sent"}
        assert all(n == 1 for _, n in attempts)
        assert all(f"{N_HOUSEHOLDS // N_CONTACTS}户" in r.body for r in monthly)
        # No department registered: recorded as failed with the reason, never dropped.
        assert sorted(feeds) == [
            ("department:civil_affairs", "failed"),
            ("department:disaster", "failed"),
            ("department:medical", "failed"),
        ]

        # January's window opens on the 1st at 08:00: fired once more, for the new month.
        january = await scheduler.run_schedules(
            first.sessions, config, worker="f", now=datetime(2027, 1, 1, 8, tzinfo=TZ)
        )
        assert january == ["monthly_contacts:2027-01"]
    finally:
        await first.stop()
        await second.stop()
