"""Signed webhooks to a real HTTP receiver on 127.0.0.1, through the real Kafka."""

from __future__ import annotations

import asyncio
import functools
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from backstop.contracts import risk
from backstop.events import CloudEvent, make_event
from backstop.settings import Settings
from services.notify import domain
from services.notify.app import create
from tests.notify.conftest import fast, send_events
from tests.support import Stack, free_port, serve, wait_for
from tests.support import serving as running

pytestmark = pytest.mark.integration

RAISED = "backstop.risk.alert.raised.v1"


@dataclass
class Receiver:
    """A county system: checks every signature; fails `fail_first` times, then accepts."""

    fail_first: int
    secret: str = ""
    calls: list[tuple[int, bool]] = field(default_factory=list)  # (status, signature ok)
    accepted: list[dict[str, Any]] = field(default_factory=list)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        # As the README tells receivers: V2 over "<timestamp>.<body>", the timestamp
        # within five minutes; the old header still matches for one version.
        signed = domain.verify_v2(
            self.secret,
            body,
            timestamp=headers.get("x-backstop-timestamp", ""),
            signature=headers.get("x-backstop-signature-v2", ""),
            now=time.time(),
        ) and domain.signature_matches(self.secret, body, headers.get("x-backstop-signature", ""))
        if not signed:
            status = 401
        elif len(self.calls) < self.fail_first:
            status = 500
        else:
            status = 200
            self.accepted.append(orjson.loads(body))
        self.calls.append((status, signed))
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})


def alert(region_code: str) -> CloudEvent:
    household_id = str(uuid.uuid4())
    return make_event(
        "risk",
        risk.AlertRaised(
            household_id=household_id,
            region_code=region_code,
            level="at_risk",
            previous_level="watch",
            score=72,
            factors=["illness", "low_income"],
            assessed_at=datetime.now(UTC),
            policy_version=3,
        ),
        subject=household_id,
    )


async def test_signed_deliveries_survive_three_500s_and_a_dead_subscriber_blocks_nobody(
    stack: Stack, notify_settings: Settings
) -> None:
    admin = stack.headers("notify:admin", "notify:read", regions=["441881"])
    flaky = Receiver(fail_first=3)
    stuck: list[asyncio.StreamWriter] = []

    async def never_answer(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        stuck.append(writer)

    hung = await asyncio.start_server(never_answer, "127.0.0.1", 0)
    hung_port = hung.sockets[0].getsockname()[1]
    async with (
        hung,
        running(flaky) as flaky_url,
        # The limit is four attempts: the flaky receiver makes it on the last one.
        serve(functools.partial(create, notify=fast(webhook_max_attempts=4)), notify_settings) as (
            client,
            _,
        ),
    ):

        async def subscribe(url: str, prefix: str) -> dict[str, Any]:
            r = await client.post(
                "/v1/subscriptions",
                json={"callback_url": url, "event_types": [RAISED], "region_prefix": prefix},
                headers=admin,
            )
            assert r.status_code == 201, r.text
            return dict(r.json())

        sub = await subscribe(flaky_url, "441881101")
        flaky.secret = sub["secret"]
        # A subscriber that is down (nothing listens on its port), one that accepts
        # connections and never answers, and one elsewhere.
        dead = await subscribe(f"http://127.0.0.1:{free_port()}/down", "441881")
        await subscribe(f"http://127.0.0.1:{hung_port}/hung", "441881")
        elsewhere = await subscribe(flaky_url, "441881102")

        event = alert("441881101001")
        await send_events(notify_settings, event)
        await wait_for(lambda: flaky.accepted, message="delivery accepted")

        assert flaky.calls == [(500, True), (500, True), (500, True), (200, True)]
        # The body is the CloudEvent as received on risk.alerts.
        assert flaky.accepted[0]["id"] == event.id
        assert flaky.accepted[0]["type"] == RAISED
        assert flaky.accepted[0]["data"]["region_code"] == "441881101001"

        # The outcome is recorded after the receiver answered: wait for it.
        async def recorded() -> list[Any]:
            log = await client.get(f"/v1/subscriptions/{sub['id']}/deliveries", headers=admin)
            items = log.json()["items"]
            return items if items and items[0]["status"] != "pending" else []

        [delivery] = await wait_for(recorded, message="delivery recorded")
        assert delivery["status"] == "delivered" and delivery["attempts"] == 4
        assert [a["status_code"] for a in delivery["log"]] == [500, 500, 500, 200]

        # The dead subscriber failed on its own rows, backing off, until the limit.
        async def dead_failed() -> list[Any]:
            r = await client.get(f"/v1/subscriptions/{dead['id']}/deliveries", headers=admin)
            items = r.json()["items"]
            return items if items and items[0]["status"] == "failed" else []

        [dead_delivery] = await wait_for(dead_failed, message="dead subscriber gave up")
        assert dead_delivery["attempts"] == 4 and len(dead_delivery["log"]) == 4
        assert dead_delivery["log"][0]["status_code"] is None
        assert "Connect" in dead_delivery["log"][0]["error"]

        # Region prefix 441881102 did not match a 441881101 household.
        r = await client.get(f"/v1/subscriptions/{elsewhere['id']}/deliveries", headers=admin)
        assert r.json()["items"] == []

        # The secret is shown once only.
        r = await client.get(f"/v1/subscriptions/{sub['id']}", headers=admin)
        assert r.status_code == 200 and "secret" not in r.json()

        deleted = await client.delete(f"/v1/subscriptions/{dead['id']}", headers=admin)
        assert deleted.status_code == 204
    for writer in stuck:
        writer.close()


async def test_subscription_input_is_checked(stack: Stack, notify_settings: Settings) -> None:
    admin = stack.headers("notify:admin", regions=["441881"])
    async with serve(
        functools.partial(create, notify=fast()), notify_settings, background=False
    ) as (client, _):
        r = await client.post(
            "/v1/subscriptions",
            json={
                "callback_url": "https://x.example/h",
                "event_types": ["backstop.risk.nope.v1"],
                "region_prefix": "441881",
            },
            headers=admin,
        )
        assert r.status_code == 422
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["errors"][0]["loc"] == ["body", "event_types", 0]

        r = await client.post(
            "/v1/subscriptions",
            json={"callback_url": "ftp://x", "event_types": [RAISED]},
            headers=admin,
        )
        assert r.status_code == 422 and r.json()["errors"][0]["loc"][:2] == ["body", "callback_url"]

        # Broader than the token's regions.
        r = await client.post(
            "/v1/subscriptions",
            json={
                "callback_url": "https://x.example/h",
                "event_types": [RAISED],
                "region_prefix": "44",
            },
            headers=admin,
        )
        assert r.status_code == 403 and r.json()["errors"][0]["loc"] == ["body", "region_prefix"]

        r = await client.post(
            "/v1/subscriptions",
            json={"callback_url": "https://x.example/h", "event_types": [RAISED]},
            headers=stack.headers("notify:read"),
        )
        assert r.status_code == 403
        r = await client.get("/v1/subscriptions")
        assert r.status_code == 401

    # In production a callback must not reach inside the county's network.
    async with serve(
        functools.partial(create, notify=fast(allow_internal_callbacks=False)),
        notify_settings,
        background=False,
    ) as (client, _):
        refused = [
            ("http://127.0.0.1:9/h", "internal address"),
            ("http://[::1]/h", "internal address"),
            ("http://localhost/h", "internal address"),
            ("http://10.1.2.3/h", "internal address"),
            ("http://no-such-host.invalid/h", "does not resolve"),
        ]
        for url, reason in refused:
            r = await client.post(
                "/v1/subscriptions",
                json={"callback_url": url, "event_types": [RAISED], "region_prefix": "441881"},
                headers=admin,
            )
            assert r.status_code == 422, url
            assert r.json()["errors"][0]["loc"] == ["body", "callback_url"]
            assert reason in r.json()["detail"], r.json()
        r = await client.get("/v1/subscriptions", headers=stack.headers("notify:read"))
        assert r.status_code == 200 and not {s["callback_url"] for s in r.json()} & {
            url for url, _ in refused
        }


async def test_a_subscriber_back_from_downtime_asks_for_a_time_range_again(
    stack: Stack, notify_settings: Settings
) -> None:
    admin = stack.headers("notify:admin", "notify:read", regions=["441881"])
    receiver = Receiver(fail_first=0)
    async with (
        running(receiver) as url,
        serve(functools.partial(create, notify=fast()), notify_settings) as (client, _),
    ):
        r = await client.post("/v1/subscriptions", headers=admin, json={
            "callback_url": url, "event_types": [RAISED], "region_prefix": "441881103"})  # fmt: skip
        assert r.status_code == 201, r.text
        sub = r.json()
        receiver.secret = sub["secret"]
        before = datetime.now(UTC)
        events = [alert("441881103001"), alert("441881103002")]
        await send_events(notify_settings, *events)
        await wait_for(lambda: len(receiver.accepted) == 2, message="first deliveries")

        # A delivery still being sent is pending and not queued again: wait for the outcome.
        async def both_delivered() -> bool:
            log = await client.get(f"/v1/subscriptions/{sub['id']}/deliveries", headers=admin)
            return [d["status"] for d in log.json()["items"]] == ["delivered", "delivered"]

        await wait_for(both_delivered, message="first deliveries recorded")
        after = datetime.now(UTC)

        path = f"/v1/subscriptions/{sub['id']}/redeliveries"
        r = await client.post(path, headers=admin, json={
            "since": before.isoformat(), "until": after.isoformat()})  # fmt: skip
        assert r.status_code == 202, r.text
        assert r.json()["requeued"] == 2
        await wait_for(lambda: len(receiver.accepted) == 4, message="redeliveries")
        again = [a["id"] for a in receiver.accepted[2:]]
        assert sorted(again) == sorted(e.id for e in events)  # the same events, in order
        assert all(ok for _, ok in receiver.calls)  # signed afresh

        # A range with nothing in it changes nothing.
        r = await client.post(path, headers=admin, json={
            "since": "2026-01-01T00:00:00+08:00", "until": "2026-01-02T00:00:00+08:00"})  # fmt: skip
        assert r.status_code == 202 and r.json()["requeued"] == 0

        for body, field_ in (
            ({"since": after.isoformat(), "until": before.isoformat()}, "until must be after"),
            ({"since": "2026-11-01T00:00:00", "until": "2026-11-02T00:00:00"}, "time zone"),
            ({"since": "2026-01-01T00:00:00+08:00", "until": "2026-12-01T00:00:00+08:00"},
             "at most 92 days"),
            ({"since": before.isoformat()}, "until"),
        ):  # fmt: skip
            r = await client.post(path, headers=admin, json=body)
            assert r.status_code == 422, r.text
            assert r.headers["content-type"].startswith("application/problem+json")
            assert field_ in r.text
        r = await client.post(path, headers=stack.headers("notify:read"), json={
            "since": before.isoformat(), "until": after.isoformat()})  # fmt: skip
        assert r.status_code == 403
        r = await client.post(f"/v1/subscriptions/{uuid.uuid4()}/redeliveries", headers=admin,
                              json={"since": before.isoformat(), "until": after.isoformat()})  # fmt: skip
        assert r.status_code == 404
        assert (
            await client.delete(f"/v1/subscriptions/{sub['id']}", headers=admin)
        ).status_code == 204
        r = await client.post(path, headers=admin, json={
            "since": before.isoformat(), "until": after.isoformat()})  # fmt: skip
        assert r.status_code == 409
