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


@pytest.fixture(scope="session")
async def system(stack: Stack) -> AsyncIterator[System]:
    system = System(stack=stack, env=dict(FAST))
    await system.setup()
    await system.start_all()
    try:
        yield system
    finally:
        system.stop_all()


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
