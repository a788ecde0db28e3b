"""纳入建档立卡核查 reminders: the county office when a check opens, the town when the
county hands it down, the check's office once per due date when it is overdue. The
reminders are written to the real PostgreSQL by the handlers the consumer runs."""

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
from services.notify.models import REMINDERS
from services.notify.reactions import EventHandlers
from tests.notify.conftest import fast
from tests.support import serve

pytestmark = pytest.mark.integration

TOWN = "441881170"


async def test_enrolment_checks_remind_the_county_then_the_town(
    notify_settings: Settings,
) -> None:
    check = str(uuid.uuid4())
    due = date.today() - timedelta(days=2)

    def opened(assignee_type: str, code: str) -> assistance.EnrolmentCheckOpened:
        return assistance.EnrolmentCheckOpened(
            check_id=check, region_code=code, assignee_type=assignee_type, assignee_code=code,
            due_on=due, reason="纳入建档立卡核查：近12个月医疗自付 12,000 元", factors=["illness"],
        )  # fmt: skip

    overdue = assistance.EnrolmentCheckOverdue(
        check_id=check, region_code=TOWN, due_on=due, days_overdue=2
    )
    events = [
        make_event("assistance", payload, subject=check)
        for payload in (opened("county", "441881"), opened("town", TOWN), overdue, overdue)
    ]
    async with serve(
        functools.partial(create, notify=fast()), notify_settings, background=False
    ) as (_, runtime):
        async with unit_of_work(runtime.sessions) as session:
            await EventHandlers(fast()).remind(session, [*events, events[0]])  # redelivered
        async with runtime.sessions() as session:
            rows = (
                await session.execute(
                    select(REMINDERS.c.kind, REMINDERS.c.recipient, REMINDERS.c.body)
                    .where(REMINDERS.c.ref == check)
                    .order_by(REMINDERS.c.seq)
                )
            ).all()
    assert [(r.kind, r.recipient) for r in rows] == [
        ("enrolment_check_opened", "county_office:county"),
        ("enrolment_check_opened", f"town:{TOWN}"),
        ("enrolment_check_overdue", f"town:{TOWN}"),
    ]
    assert "请下发所在乡镇入户核实" in rows[0].body and "纳入建档立卡范围" in rows[1].body
    assert "已逾期2天" in rows[2].body
