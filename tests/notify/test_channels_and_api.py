"""Channels against a real local gateway, retries and final statuses, and the API's
input checks, pagination and region scoping."""

from __future__ import annotations

import functools
import uuid
from datetime import date, timedelta
from typing import Literal

import orjson
import pytest
from sqlalchemy import select

from backstop.contracts import assistance, datasync
from backstop.db import unit_of_work
from backstop.events import CloudEvent, make_event
from backstop.settings import Settings
from backstop.tables import outbox
from services.notify import delivery
from services.notify.app import create
from services.notify.models import REMINDERS
from services.notify.reactions import EventHandlers
from tests.notify.conftest import Gateway, fast
from tests.support import Stack, serve, wait_for
from tests.support import serving as running

pytestmark = pytest.mark.integration

ADMIN = ("notify:admin", "notify:read")


def opened(
    assignee_type: Literal["town", "village", "insurer"], code: str, region_code: str
) -> CloudEvent:
    household_id = str(uuid.uuid4())
    return make_event(
        "assistance",
        assistance.TaskOpened(
            task_id=str(uuid.uuid4()),
            kind="verification",
            household_id=household_id,
            region_code=region_code,
            assignee=assistance.Assignee(type=assignee_type, code=code),
            due_on=date.today() + timedelta(days=5),
            reason="户主44188119800101123X住院，自付费用较高",
        ),
        subject=household_id,
    )


async def test_channels_retry_with_backoff_and_end_in_a_final_status(
    stack: Stack, notify_settings: Settings
) -> None:
    gateway = Gateway(
        script={
            "/sms": [(500, {}), (200, {"ok": True})],
            "/wecom": [(200, {"errcode": 93000, "errmsg": "invalid webhook url"})],
            "/hook": [(503, {})],
        }
    )
    async with running(gateway) as base:
        config = fast(
            channels="sms,wecom,webhook",
            sms_gateway_url=f"{base}/sms",
            sms_api_key="k",
            webhook_channel_secret="hook-secret",
            reminder_max_attempts=3,
        )
        async with serve(
            functools.partial(create, notify=config), notify_settings, background=False
        ) as (client, runtime):
            h = stack.headers(*ADMIN)
            for kind, code, body in (
                (
                    "village",
                    "441881150001",
                    {"name": "一村", "channel": "sms", "address": "13500000001"},
                ),
                (
                    "town",
                    "441881150",
                    {"name": "镇", "channel": "wecom", "address": f"{base}/wecom"},
                ),
                (
                    "insurer",
                    "picc-gd",
                    {
                        "name": "人保",
                        "channel": "webhook",
                        "address": f"{base}/hook",
                        "region_code": "",
                    },
                ),
            ):
                r = await client.put(f"/v1/recipients/{kind}/{code}", json=body, headers=h)
                assert r.status_code == 200, r.text
            events = [
                opened("village", "441881150001", "441881150001"),
                opened("town", "441881150", "441881150002"),
                opened("insurer", "picc-gd", "441881150003"),
            ]
            handlers = EventHandlers(config)
            async with unit_of_work(runtime.sessions) as session:
                for e in events:
                    await handlers.task_opened(session, e)
            refs = [e.data["task_id"] for e in events]

            async def final() -> list[object]:
                await delivery.deliver_reminders(
                    runtime.sessions, config, runtime.settings, worker="t"
                )
                async with runtime.sessions() as session:
                    rows = (
                        await session.execute(select(REMINDERS).where(REMINDERS.c.ref.in_(refs)))
                    ).all()
                by_ref = {r.ref: r for r in rows}
                ordered = [by_ref[ref] for ref in refs]
                return ordered if all(r.status != "pending" for r in ordered) else []

            sms, wecom, hook = await wait_for(final, message="all reminders final")

            listed = await client.get(
                "/v1/recipients", params={"kind": "village"}, headers=stack.headers("notify:read")
            )
            village = next(r for r in listed.json() if r["code"] == "441881150001")
            assert village["address"] == "135****0001"  # readers do not get phone numbers

        assert (sms.status, sms.attempts, sms.channel) == ("sent", 2, "sms")
        # A bot that rejects its URL will not get better: failed at once.
        assert (wecom.status, wecom.attempts, wecom.failure_reason) == (
            "failed",
            1,
            "rejected_by_channel",
        )
        assert (hook.status, hook.attempts, hook.failure_reason) == ("failed", 3, "channel_error")

        sms_requests = [(hd, b) for p, hd, b in gateway.requests if p == "/sms"]
        headers, payload = sms_requests[-1]
        assert payload["phone"] == "13500000001" and headers["authorization"] == "Bearer k"
        assert headers["idempotency-key"] == sms.dedup_key
        assert "44188119800101123X" not in payload["content"]
        assert "441881********123X" in payload["content"]
        hook_headers = next(hd for p, hd, _ in gateway.requests if p == "/hook")
        assert hook_headers["x-backstop-signature"].startswith("sha256=")

        async with runtime.sessions() as session:
            values = (
                (
                    await session.execute(
                        select(outbox.c.value).where(
                            outbox.c.event_type == "backstop.notify.reminder.delivered.v1"
                        )
                    )
                )
                .scalars()
                .all()
            )
        finals = {
            d["reminder_id"]: d
            for d in (orjson.loads(v)["data"] for v in values)
            if d["reminder_id"] in {str(sms.id), str(wecom.id), str(hook.id)}
        }
        assert finals[str(sms.id)]["status"] == "sent"
        assert finals[str(hook.id)]["status"] == "failed" and finals[str(hook.id)]["attempts"] == 3


async def test_late_department_reaches_department_and_county_office_and_can_be_retried(
    stack: Stack, notify_settings: Settings
) -> None:
    config = fast(county_code="441881")
    async with serve(
        functools.partial(create, notify=config), notify_settings, background=False
    ) as (client, runtime):
        handlers = EventHandlers(config)
        period = f"2099-{uuid.uuid4().int % 12 + 1:02d}-{uuid.uuid4().hex[:4]}"
        late = make_event(
            "datasync",
            datasync.DeliveryLate(
                source="education", period=period, due_on=date(2099, 3, 31), department="教育局"
            ),
            subject="education",
        )
        async with unit_of_work(runtime.sessions) as session:
            await handlers.delivery_late(session, late)
        county = stack.headers(*ADMIN, regions=["441881"])
        r = await client.get(
            "/v1/reminders", params={"kind": "delivery_late", "status": "failed"}, headers=county
        )
        mine = [x for x in r.json()["items"] if period in x["ref"]]
        assert sorted(x["recipient"] for x in mine) == [
            "county_office:county",
            "department:education",
        ]
        assert all(x["failure_reason"] == "unknown_recipient" for x in mine)

        # Registering the county office and retrying sends the recorded reminder.
        r = await client.put(
            "/v1/recipients/county_office/county",
            json={"name": "扶贫办", "region_code": "441881", "channel": "local"},
            headers=stack.headers(*ADMIN),
        )
        assert r.status_code == 200, r.text
        office = next(x for x in mine if x["recipient"] == "county_office:county")
        r = await client.post(f"/v1/reminders/{office['id']}/retry", headers=county)
        assert r.status_code == 200 and r.json()["status"] == "pending"
        await wait_for(
            lambda: delivery.deliver_reminders(
                runtime.sessions, config, runtime.settings, worker="t"
            ),
            message="retried reminder delivered",
        )
        r = await client.get(f"/v1/reminders/{office['id']}", headers=county)
        assert r.json()["status"] == "sent"
        r = await client.post(f"/v1/reminders/{office['id']}/retry", headers=county)
        assert r.status_code == 409

        # A town-level token does not see county-level reminders.
        r = await client.get(
            f"/v1/reminders/{office['id']}",
            headers=stack.headers("notify:read", regions=["441881101"]),
        )
        assert r.status_code == 404


async def test_reminder_listing_pages_and_bad_input_is_a_problem(
    stack: Stack, notify_settings: Settings
) -> None:
    config = fast()
    async with serve(
        functools.partial(create, notify=config), notify_settings, background=False
    ) as (client, runtime):
        handlers = EventHandlers(config)
        async with unit_of_work(runtime.sessions) as session:
            for _ in range(5):
                await handlers.task_opened(
                    session, opened("village", "441881160001", "441881160001")
                )
        h = stack.headers("notify:read", regions=["441881160"])
        seen: list[str] = []
        cursor = None
        while True:
            params = {"recipient": "village:441881160001", "limit": 2}
            if cursor:
                params["cursor"] = cursor
            page = (await client.get("/v1/reminders", params=params, headers=h)).json()
            seen += [x["id"] for x in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert len(seen) == len(set(seen)) == 5

        for params, loc in (
            ({"cursor": "!!"}, ["query", "cursor"]),
            ({"status": "lost"}, ["query", "status"]),
            ({"recipient": "mayor:1"}, ["query", "recipient"]),
            ({"limit": 0}, ["query", "limit"]),
        ):
            r = await client.get("/v1/reminders", params=params, headers=h)
            assert r.status_code == 422, params
            assert r.headers["content-type"] == "application/problem+json"
            assert r.json()["errors"][0]["loc"] == loc

        admin = stack.headers(*ADMIN)
        for path, body, loc in (
            ("/v1/recipients/town/4418", {"name": "x"}, ["path", "code"]),
            ("/v1/recipients/department/finance", {"name": "财政局"}, ["path", "code"]),
            (
                "/v1/recipients/village/441881160001",
                {"name": "x", "channel": "sms"},
                ["body", "address"],
            ),
            (
                "/v1/recipients/village/441881160001",
                {"name": "x", "channel": "fax", "address": "1"},
                ["body", "channel"],
            ),
            (
                "/v1/recipients/village/441881160001",
                {"name": "x", "channel": "email", "address": "no"},
                ["body", "address"],
            ),
        ):
            r = await client.put(path, json=body, headers=admin)
            assert r.status_code == 422, (path, r.text)
            assert r.json()["errors"][0]["loc"] == loc
        # A town admin cannot register another town's leader.
        r = await client.put(
            "/v1/recipients/town_leader/441881999",
            json={"name": "x"},
            headers=stack.headers(*ADMIN, regions=["441881160"]),
        )
        assert r.status_code == 403

        schedules = (await client.get("/v1/schedules", headers=h)).json()
        assert {s["name"] for s in schedules} >= {"monthly_contacts", "feed_due:education"}
        r = await client.patch(
            "/v1/schedules/feed_due:medical", json={"lead_days": 99}, headers=admin
        )
        assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["body", "lead_days"]
        r = await client.patch("/v1/schedules/nope", json={"lead_days": 2}, headers=admin)
        assert r.status_code == 404
