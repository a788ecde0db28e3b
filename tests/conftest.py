"""Integration tests run against the real PostgreSQL and Kafka that `make test` starts;
every run gets its own databases and topic prefix."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

import backstop.contracts  # noqa: F401 - registers every event type
from tests.support import Stack


@pytest.fixture(scope="session")
async def stack() -> AsyncIterator[Stack]:
    stack = Stack()
    await stack.create_topics()
    yield stack
    await stack.destroy()
