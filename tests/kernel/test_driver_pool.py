"""backstop.db.DriverPool against the real PostgreSQL: waiting its turn, keeping a
connection the server only refused a statement on, replacing one that died or was left
mid-statement, and closing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest

from backstop.db import DriverPool
from backstop.settings import Settings


@pytest.fixture
async def pool(kernel_settings: Settings) -> AsyncIterator[DriverPool]:
    pool = DriverPool(kernel_settings.db_url.replace("+asyncpg", ""), 2, timeout_s=5)
    yield pool
    await pool.close()


async def backend(pool: DriverPool) -> int:
    async with pool.connection() as pg:
        pid: int = await pg.fetchval("SELECT pg_backend_pid()")
    return pid


async def test_more_requests_than_connections_wait_their_turn(pool: DriverPool) -> None:
    async def one(i: int) -> tuple[int, int]:
        async with pool.connection() as pg:
            row = await pg.fetchrow("SELECT $1::int, pg_backend_pid() FROM pg_sleep(0.01)", i)
        return row[0], row[1]

    answers = await asyncio.gather(*(one(i) for i in range(20)))
    assert [value for value, _ in answers] == list(range(20))
    assert len({pid for _, pid in answers}) == 2  # never more than the pool's two


async def test_a_refused_statement_keeps_the_connection(pool: DriverPool) -> None:
    first = await backend(pool)
    with pytest.raises(asyncpg.UndefinedTableError):
        async with pool.connection() as pg:
            await pg.execute("SELECT * FROM no_such_table")
    assert await backend(pool) == first


async def terminate(settings: Settings, pids: set[int]) -> None:
    admin = await asyncpg.connect(settings.db_url.replace("+asyncpg", ""))
    try:
        await admin.execute("SELECT pg_terminate_backend(pid) FROM unnest($1::int[]) pid", pids)
    finally:
        await admin.close()


async def test_a_connection_the_server_closed_is_replaced(
    pool: DriverPool, kernel_settings: Settings
) -> None:
    first = await backend(pool)
    await terminate(kernel_settings, {first})
    await asyncio.sleep(0.2)  # the server's goodbye arrives
    assert await backend(pool) != first  # no failure: the closed one is skipped


async def test_a_lost_server_fails_one_request_not_one_per_connection(
    pool: DriverPool, kernel_settings: Settings
) -> None:
    """A restart kills every pooled connection, busy and idle: the busy request fails
    (503 in a service), and the requests after it reconnect."""

    async def busy() -> int:
        async with pool.connection() as pg:
            return int(await pg.fetchval("SELECT pg_backend_pid() FROM pg_sleep(0.5)"))

    slow = asyncio.create_task(busy())
    await asyncio.sleep(0.1)
    async with pool.connection() as pg:
        pids = {await pg.fetchval("SELECT pg_backend_pid()")}
        pids |= set(await pg.fetchval(
            "SELECT array_agg(pid) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(0.5)%'"
            " AND pid <> pg_backend_pid()"))  # fmt: skip
    assert len(pids) == 2
    await terminate(kernel_settings, pids)
    with pytest.raises((asyncpg.InterfaceError, asyncpg.PostgresConnectionError, OSError)):
        await slow
    after = await asyncio.gather(backend(pool), backend(pool))
    assert pids.isdisjoint(after)


async def test_a_request_cancelled_mid_statement_does_not_return_its_connection(
    pool: DriverPool,
) -> None:
    first = await backend(pool)

    async def slow() -> None:
        async with pool.connection() as pg:
            await pg.execute("SELECT pg_sleep(5)")

    task = asyncio.create_task(slow())
    await asyncio.sleep(0.2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    pids = {await backend(pool) for _ in range(3)}
    assert first not in pids


async def test_a_wait_longer_than_the_timeout_fails(kernel_settings: Settings) -> None:
    pool = DriverPool(kernel_settings.db_url.replace("+asyncpg", ""), 1, timeout_s=0.2)
    try:
        async with pool.connection() as pg:
            await pg.fetchval("SELECT 1")
            with pytest.raises(TimeoutError):
                async with pool.connection():
                    pass
        assert await backend(pool) > 0  # the one connection is still there
    finally:
        await pool.close()


async def test_json_comes_back_parsed_and_goes_in_as_text(pool: DriverPool) -> None:
    async with pool.connection() as pg:
        row = await pg.fetchrow(
            "SELECT $1::jsonb AS b, '[1, 2]'::json AS j", '{"a": {"b": [1, "二"]}}'
        )
    assert row["b"] == {"a": {"b": [1, "二"]}} and row["j"] == [1, 2]


async def test_a_closed_pool_refuses(kernel_settings: Settings) -> None:
    pool = DriverPool(kernel_settings.db_url.replace("+asyncpg", ""), 1)
    assert await backend(pool) > 0
    await pool.close()
    with pytest.raises(asyncpg.InterfaceError):
        async with pool.connection():
            pass
