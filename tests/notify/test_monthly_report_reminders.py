"""月汇报 not signed: the town office is reminded each round and its leader after the days
the event names (not notify's own delay); signing cancels the escalation still pending."""

from __future__ import annotations

import functools
import uuid
from datetime import date, timedelta

import pytest
from sqlalchemy import select

from backstop.contracts import assistance
from backstop.db import unit_of_work
from backstop.events import make_event
from backstop.settings import Settings
from services.notify.app import create
from services.notify.models import RECIPIENTS, REMINDERS
from services.notify.reactions import EventHandlers
from tests.notify.conftest import fast
from tests.support import serve

pytestmark = pytest.mark.integration


async def test_late_monthly_report_reminds_the_office_then_the_leader(
    notify_settings: Settings,
) -> None:
    town, report = "441881180", str(uuid.uuid4())
    facts = {"report_id": report, "town_code": town, "period": "2026-10",
             "due_on": date(2026, 11, 5), "escalate_after_days": 3}  # fmt: skip
    rounds = [
        make_event(
            "assistance",
            assistance.MonthlyReportOverdue(**facts, days_late=days, reminder=n),
            subject=town,
        )
        for n, days in ((1, 1), (1, 1), (2, 8))  # the first round delivered twice
    ]
    signed = make_event(
        "assistance",
        assistance.MonthlyReportSigned(
            report_id=report, town_code=town, period="2026-10", signed_off_by="镇长",
            signed_on=date(2026, 11, 14), days_late=9, due=10, contacted=9, not_reached=1,
            problems_found=0, problems_passed_on=0,
        ),
        subject=town,
    )  # fmt: skip
    handlers = EventHandlers(fast(escalation_delay_s=60.0))
    async with serve(
        functools.partial(create, notify=fast()), notify_settings, background=False
    ) as (_, runtime):
        async with unit_of_work(runtime.sessions) as session:
            for kind, name in (("town", "镇扶贫办"), ("town_leader", "镇长")):
                await session.execute(
                    RECIPIENTS.insert().values(
                        kind=kind, code=town, name=name, region_code=town, channel="local",
                        address="",
                    )
                )  # fmt: skip
            await handlers.remind(session, rounds)
        async with unit_of_work(runtime.sessions) as session:
            await handlers.monthly_report_signed(session, signed)
        async with runtime.sessions() as session:
            rows = (
                await session.execute(
                    select(REMINDERS).where(REMINDERS.c.ref == report).order_by(REMINDERS.c.seq)
                )
            ).all()
    assert [(r.kind, r.recipient) for r in rows] == [
        ("monthly_report_overdue", f"town:{town}"),
        ("monthly_report_escalated", f"town_leader:{town}"),
        ("monthly_report_overdue", f"town:{town}"),
        ("monthly_report_escalated", f"town_leader:{town}"),
    ]
    office, leader = rows[0], rows[1]
    assert "2026年10月月汇报" in office.body and "已逾期1天" in office.body
    # three days, as the event says, not notify's own 60 s
    waits = leader.next_attempt_at - office.created_at
    assert timedelta(days=2, hours=23) < waits < timedelta(days=3, hours=1)
    assert [r.status for r in rows if r.kind == "monthly_report_escalated"] == [
        "cancelled",
        "cancelled",
    ]
