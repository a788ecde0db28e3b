from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from backstop.events import CloudEvent, spec_of
from backstop.migrate import upgrade
from backstop.settings import Settings
from services.notify.config import NotifySettings
from tests.support import Stack


def fast(**overrides: object) -> NotifySettings:
    """Job cadences and backoffs short enough for tests; no real gateway wired."""
    values: dict[str, object] = {
        "schedule_interval_s": 3600.0,  # tests drive the scheduler by hand
        "reminder_interval_s": 0.1,
        "webhook_interval_s": 0.1,
        "reminder_backoff_s": 0.05,
        "webhook_backoff_s": 0.05,
        "escalation_delay_s": 0.0,
        "http_timeout_s": 2.0,
    }
    values.update(overrides)
    return NotifySettings(**values)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
async def notify_settings(stack: Stack) -> AsyncIterator[Settings]:
    yield await stack.create_database("notify")


async def fresh_database(stack: Stack, name: str) -> Settings:
    """A second notify database (e.g. for a scheduler test that counts every household)."""
    scratch = await stack.create_database(name, migrate=False)
    settings = stack.settings("notify", DATABASE_URL=scratch.db_url)
    await asyncio.to_thread(upgrade, "notify", settings.db_url)
    return settings


async def send_events(settings: Settings, *events: CloudEvent) -> None:
    """Put events on their contract topics as a producing service's relay would."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers)
    await producer.start()
    try:
        for event in events:
            await producer.send_and_wait(
                settings.topic(spec_of(event.type).topic),
                value=event.to_bytes(),
                key=(event.subject or event.id).encode(),
            )
    finally:
        await producer.stop()


@dataclass
class Gateway:
    """A fake SMS gateway / bot / webhook endpoint: answers each path from a script of
    (status, json) replies (the last one repeats) and records every request."""

    script: dict[str, list[tuple[int, dict[str, Any]]]]
    requests: list[tuple[str, dict[str, str], Any]] = field(default_factory=list)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        path = scope["path"]
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        seen = sum(1 for p, _, _ in self.requests if p == path)
        self.requests.append((path, headers, orjson.loads(body) if body else None))
        replies = self.script.get(path, [(404, {})])
        status, reply = replies[min(seen, len(replies) - 1)]
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": orjson.dumps(reply)})
