from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.e2e.system import System
from tests.support import Stack

# Job cadences short enough for a test; everything else as deployed.
FAST = {
    "NOTIFY_REMINDER_INTERVAL_S": "0.5",
    "NOTIFY_WEBHOOK_INTERVAL_S": "0.5",
    "NOTIFY_WEBHOOK_BACKOFF_S": "0.2",
    "NOTIFY_REMINDER_BACKOFF_S": "0.2",
}


async def start_system(label: str, **env: str) -> System:
    """A system with its own databases, topic prefix and consumer groups: processes of one
    system never share a consumer group with another system or with the service tests."""
    stack = Stack()
    await stack.create_topics()
    system = System(stack=stack, label=label, env={**FAST, **env})
    await system.setup()
    await system.start_all()
    return system


async def stop_system(system: System) -> None:
    system.stop_all()
    await system.stack.destroy()


@pytest.fixture(scope="module")
async def system() -> AsyncIterator[System]:
    system = await start_system("_e2e")
    try:
        yield system
    finally:
        await stop_system(system)


@dataclass
class Receiver:
    """A county system receiving webhooks: records every body and its headers."""

    received: list[tuple[bytes, dict[str, str]]] = field(default_factory=list)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.received.append((body, {k.decode().lower(): v.decode() for k, v in scope["headers"]}))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})
