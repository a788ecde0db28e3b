"""§6 of the hardening issue: webhooks cannot be turned against the county's own network.
Every address notify calls is resolved, checked and pinned when it connects (so DNS
rebinding after the subscription was checked gets nowhere), IPv6 forms that embed an
IPv4 address are judged by that address, and deliveries are signed with a timestamp."""

from __future__ import annotations

import asyncio
import functools
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import create_async_engine

from backstop import crypto
from backstop.db import unit_of_work
from backstop.migrate import upgrade
from backstop.settings import Settings
from services.notify import delivery, domain, reminders
from services.notify.app import create
from services.notify.egress import InternalAddressRefused, checked_addresses, pinned_client
from services.notify.models import REMINDERS, SUBSCRIPTIONS, WEBHOOK_DELIVERIES, RecipientPut
from services.notify.reactions import EventHandlers
from tests.notify.conftest import Gateway, fast
from tests.notify.test_channels_and_api import opened
from tests.support import Stack, serve, wait_for
from tests.support import serving as running


@pytest.mark.parametrize(
    "address",
    [
        "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
        "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
        "64:ff9b:1::a00:1",  # local-use NAT64 of 10.0.0.1
        "2002:7f00:1::",  # 6to4 of 127.0.0.1
        "2002:c0a8:101::1",  # 6to4 of 192.168.1.1
        "::127.0.0.1",  # IPv4-compatible
        "::ffff:169.254.169.254",  # IPv4-mapped
        "::ffff:0:a00:1",  # IPv4-translated (SIIT) of 10.0.0.1
        "2001:0:4136:e378:8000:63bf:80ff:fffe",  # Teredo, client 127.0.0.1
        "::1",
        "fe80::1%eth0",
        "fd00::1",
        "169.254.169.254",
        "100.64.0.1",
        "0.0.0.0",
        "224.0.0.1",
    ],
)
def test_internal_addresses_in_every_form_are_refused(address: str) -> None:
    assert domain.internal_address("hooks.example", [address]) == address


@pytest.mark.parametrize("address", ["8.8.8.8", "2606:4700::1111", "64:ff9b::808:808",
                                     "2002:808:808::1"])  # fmt: skip
def test_public_addresses_pass(address: str) -> None:
    assert domain.internal_address("hooks.example", [address]) is None


def test_a_captured_delivery_cannot_be_replayed_later() -> None:
    body, now = b'{"id": "e1"}', time.time()
    headers = domain.signature_headers("s3cret", body, now)
    check = functools.partial(
        domain.verify_v2, "s3cret", body, timestamp=headers["X-Backstop-Timestamp"],
        signature=headers["X-Backstop-Signature-V2"])  # fmt: skip
    assert check(now=now + 10)
    assert not check(now=now + 301)  # replayed six minutes later
    forged = str(int(now) + 600)  # a fresh timestamp does not fit the signature
    assert not domain.verify_v2("s3cret", body, timestamp=forged,
                                signature=headers["X-Backstop-Signature-V2"], now=now + 600)  # fmt: skip
    assert not domain.verify_v2("other", body, timestamp=headers["X-Backstop-Timestamp"],
                                signature=headers["X-Backstop-Signature-V2"], now=now)  # fmt: skip


def resolver(answers: dict[str, list[str]]) -> Any:
    async def resolve(host: str, port: int) -> list[str]:
        return answers.get(host, [])

    return resolve


@pytest.mark.integration
async def test_the_connection_goes_to_the_checked_address_with_the_name_kept() -> None:
    gateway = Gateway(script={"/h": [(200, {})]})
    async with running(gateway) as base:
        port = base.rsplit(":", 1)[1]
        # The name resolves to the local receiver: with the check on, nothing is sent.
        names = resolver({"hooks.county.example": ["127.0.0.1"]})
        async with pinned_client(timeout=5, allow_internal=False, resolver=names) as client:
            with pytest.raises(InternalAddressRefused, match="internal address"):
                await client.post(f"http://hooks.county.example:{port}/h", json={})
        # Rebinding: public when the subscription is checked, internal when connecting.
        answers = iter([["93.184.215.14"], ["127.0.0.1"]])

        async def rebinding(host: str, p: int) -> list[str]:
            return next(answers)

        assert await checked_addresses("hooks.county.example", 80, resolver=rebinding)
        async with pinned_client(timeout=5, allow_internal=False, resolver=rebinding) as client:
            with pytest.raises(InternalAddressRefused, match="internal address"):
                await client.post(f"http://hooks.county.example:{port}/h", json={})
        assert gateway.requests == []
        # Allowed (development): it connects to the address it resolved, Host kept.
        async with pinned_client(timeout=5, allow_internal=True, resolver=names) as client:
            r = await client.post(f"http://hooks.county.example:{port}/h", json={})
        assert r.status_code == 200
        [(_, headers, _)] = gateway.requests
        assert headers["host"] == f"hooks.county.example:{port}"


@pytest.mark.integration
async def test_every_delivery_is_checked_not_only_the_subscription(
    stack: Stack, notify_settings: Settings
) -> None:
    """A subscription accepted while its name resolved publicly (here: written as it was
    accepted) is refused at delivery once it points inside, and no request leaves."""
    receiver = Gateway(script={"/hook": [(200, {})]})
    production = functools.partial(create, notify=fast(allow_internal_callbacks=False,
                                                       webhook_max_attempts=1))  # fmt: skip
    async with running(receiver, "/hook") as url, serve(production, notify_settings) as (_, rt):
        sub_id, delivery_id = uuid.uuid4(), uuid.uuid4()
        async with unit_of_work(rt.sessions) as session:
            await session.execute(insert(SUBSCRIPTIONS).values(
                id=sub_id, callback_url=url, event_types=["backstop.risk.alert.raised.v1"],
                region_prefix="441881", secret=crypto.seal(rt.settings, "s" * 64), active=True,
                created_by="t"))  # fmt: skip
            await session.execute(insert(WEBHOOK_DELIVERIES).values(
                id=delivery_id, subscription_id=sub_id, event_id=str(uuid.uuid4()),
                event_type="backstop.risk.alert.raised.v1", region_code="441881101001",
                body=b"{}", status=domain.PENDING, attempts=0,
                next_attempt_at=datetime.now(UTC)))  # fmt: skip

        async def failed() -> Any:
            async with rt.sessions() as session:
                row = (await session.execute(select(WEBHOOK_DELIVERIES).where(
                    WEBHOOK_DELIVERIES.c.id == delivery_id))).one()  # fmt: skip
            return row if row.status == domain.FAILED else None

        row = await wait_for(failed, message="delivery refused")
        assert "internal address" in row.last_error and row.last_status_code is None
    assert receiver.requests == []


@pytest.mark.integration
async def test_a_recipients_bot_url_inside_is_refused_for_good(
    stack: Stack, notify_settings: Settings
) -> None:
    """`PUT /v1/recipients/...` bot and webhook addresses are checked when given, and
    called through the same check: one registered while its name resolved publicly gets
    nothing at the metadata address, and the reminder fails without retries."""
    config = fast(channels="wecom,webhook", allow_internal_callbacks=False)
    async with serve(functools.partial(create, notify=config), notify_settings,
                     background=False) as (client, runtime):  # fmt: skip
        h = stack.headers("notify:admin", "notify:read")
        for kind, code, channel in (("town", "441881170", "wecom"),
                                    ("village", "441881170001", "webhook")):  # fmt: skip
            body = {"name": "x", "channel": channel, "address": "http://169.254.169.254/latest"}
            r = await client.put(f"/v1/recipients/{kind}/{code}", json=body, headers=h)
            assert r.status_code == 422, r.text
            assert r.json()["errors"][0]["loc"] == ["body", "address"]
            assert "internal address" in r.json()["detail"]
            await reminders.put_recipient(runtime.sessions, kind=kind, code=code,
                                          body=RecipientPut(region_code=code, **body))  # fmt: skip
            region = code if kind == "village" else code + "001"
            event = opened(kind, code, region)  # type: ignore[arg-type]
            async with unit_of_work(runtime.sessions) as session:
                await EventHandlers(config).task_opened(session, event)
            await delivery.deliver_reminders(runtime.sessions, config, runtime.settings,
                                             worker="t")  # fmt: skip
            async with runtime.sessions() as session:
                row = (await session.execute(select(REMINDERS).where(
                    REMINDERS.c.ref == event.data["task_id"]))).one()  # fmt: skip
            assert row.status == domain.FAILED and row.attempts == 1
            assert "internal address" in row.last_error


@pytest.mark.integration
async def test_secrets_are_sealed_at_rest_and_old_rows_are_sealed_by_the_migration(
    stack: Stack,
) -> None:
    scratch = await stack.create_database("notify", label="sealed", migrate=False)
    await asyncio.to_thread(upgrade, "notify", scratch.db_url, "0003")
    old = uuid.uuid4()
    engine = create_async_engine(scratch.db_url)
    async with engine.begin() as conn:
        await conn.execute(insert(SUBSCRIPTIONS).values(
            id=old, callback_url="https://x.example/h", event_types=["t"],
            region_prefix="441881", secret="plain-secret", active=True, created_by="t"))  # fmt: skip
    await asyncio.to_thread(upgrade, "notify", scratch.db_url)
    async with engine.connect() as conn:
        stored = (await conn.execute(select(SUBSCRIPTIONS.c.secret).where(
            SUBSCRIPTIONS.c.id == old))).scalar_one()  # fmt: skip
    assert stored != "plain-secret" and crypto.open_secret(scratch, stored) == "plain-secret"

    admin = stack.headers("notify:admin", regions=["441881"])
    async with serve(functools.partial(create, notify=fast()), scratch,
                     background=False) as (client, _):  # fmt: skip
        r = await client.post("/v1/subscriptions", headers=admin, json={
            "callback_url": "https://x.example/h", "region_prefix": "441881",
            "event_types": ["backstop.risk.alert.raised.v1"]})  # fmt: skip
        assert r.status_code == 201, r.text
    async with engine.connect() as conn:
        stored = (await conn.execute(select(SUBSCRIPTIONS.c.secret).where(
            SUBSCRIPTIONS.c.id == uuid.UUID(r.json()["id"])))).scalar_one()  # fmt: skip
    await engine.dispose()
    assert r.json()["secret"] not in stored
    assert crypto.open_secret(scratch, stored) == r.json()["secret"]
    rotated = scratch.model_copy(update={"secrets_key": f"{Fernet.generate_key().decode()},"
                                                        f"{scratch.secrets_key}"})  # fmt: skip
    assert crypto.open_secret(rotated, stored) == r.json()["secret"]
    with pytest.raises(crypto.InvalidToken):
        crypto.open_secret(scratch.model_copy(
            update={"secrets_key": Fernet.generate_key().decode()}), stored)  # fmt: skip
