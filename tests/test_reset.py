"""`make reset` empties the databases and deletes the topics its settings point at; here,
a database and the topics of this test run only."""

from __future__ import annotations

import asyncpg
import pytest

from backstop.bus import TOPICS, dlq_topic, make_admin
from deploy.reset import _split, reset
from tests.support import Stack, wait_for

pytestmark = pytest.mark.integration


async def topics_of(stack: Stack) -> set[str]:
    admin = make_admin(stack.settings("tests"))
    await admin.start()
    try:
        return {t for t in await admin.list_topics() if t.startswith(stack.prefix)}
    finally:
        await admin.close()


async def _count(stack: Stack, n: int) -> bool:
    return len(await topics_of(stack)) == n


async def test_reset_empties_the_databases_and_deletes_the_topics() -> None:
    stack = Stack()  # its own prefix: the session's topics stay for the other tests
    await stack.create_topics()
    try:
        settings = await stack.create_database("notify", label="_reset")
        await wait_for(lambda: _count(stack, 2 * len(TOPICS)), timeout=60, message="topics")

        databases, topics = await reset([settings])

        assert databases == [_split(settings.db_url)[1]]
        assert sorted(topics) == sorted(
            [stack.settings("tests").topic(t) for t in TOPICS]
            + [dlq_topic(stack.settings("tests").topic(t)) for t in TOPICS]
        )
        conn = await asyncpg.connect(settings.db_url.replace("+asyncpg", ""))
        try:
            tables = await conn.fetchval(
                "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
            )
        finally:
            await conn.close()
        assert tables == 0  # the database is there again, empty: `make run` migrates it
        # Topic deletion completes asynchronously on the broker.
        await wait_for(lambda: _count(stack, 0), timeout=120, message="topics deleted")
    finally:
        await stack.destroy()
