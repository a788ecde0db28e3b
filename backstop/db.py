"""Async engine, sessions and the unit of work that commits once."""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import AsyncIterator, Iterable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import asyncpg
import orjson
from asyncpg import exceptions as pg
from sqlalchemy import JSON, ColumnElement, Text, bindparam, cast, func, select, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import Mapped

SessionFactory = async_sessionmaker[AsyncSession]
DRIVER_POOL = "driver_pool"  # a session factory's DriverPool, in its `info`


def make_engine(url: str, pool_size: int = 20) -> AsyncEngine:
    # No pre-ping (a round trip on every checkout). A connection that died with its server
    # fails where it is used: SQLAlchemy then invalidates it and every pooled connection
    # older than it, the request answers 503 (is_transient) and the next one reconnects.
    # hide_parameters: an error's text never carries the statement's values (names,
    # phone numbers, ID numbers) into a log line.
    # A fixed pool, no overflow: an overflow connection is closed when it comes back, so
    # more requests at once than the pool held meant a new connection (and its type
    # introspection and prepared statements) for every few requests. Now they wait their
    # turn for one of `pool_size`, which are kept.
    return create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=0,
        pool_recycle=1800,
        hide_parameters=True,
        json_deserializer=orjson.loads,  # JSON columns, several times faster than json
    )


def make_session_factory(
    engine: AsyncEngine, info: dict[str, object] | None = None, *, driver_pool_size: int = 4
) -> SessionFactory:
    """Sessions on `engine`; `info` is in every session's `.info` (the outbox reads the
    broker's message size limit there), with a `DriverPool` on the same database for
    `driver_connection` (it opens connections only when used; `close_sessions` closes it)."""
    dsn = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    pool = DriverPool(dsn, driver_pool_size)
    return async_sessionmaker(
        engine, expire_on_commit=False, info={**(info or {}), DRIVER_POOL: pool}
    )


async def close_sessions(sessions: SessionFactory) -> None:
    """Close the factory's driver connections and its engine's pool."""
    await sessions.kw["info"][DRIVER_POOL].close()
    await sessions.kw["bind"].dispose()


@asynccontextmanager
async def unit_of_work(sessions: SessionFactory) -> AsyncIterator[AsyncSession]:
    """One transaction: commits once when the block ends, rolls back everything on error.

    Services and repositories inside the block never commit; outbox rows written in it
    leave only if this commit succeeds.
    """
    async with sessions() as session:
        try:
            yield session
            await session.commit()
        except BaseException:
            await session.rollback()
            raise


def one_of(column: ColumnElement[Any] | Mapped[Any], values: Iterable[str]) -> ColumnElement[bool]:
    """`column IN (<values>)` with the values bound as one JSON array parameter, however
    many: `column.in_(values)` binds one parameter per value, and PostgreSQL's protocol
    takes at most 32,767 (a large county has more households). JSON rather than an array
    parameter, whose elements asyncpg checks one by one. For text columns."""
    values_json = bindparam(None, orjson.dumps(list(values)).decode(), type_=Text, unique=True)
    return column.in_(select(func.json_array_elements_text(cast(values_json, JSON))))


def bind(params: list[Any], value: Any) -> str:
    """`value` as the next positional parameter ($n) of a statement written as text for a
    driver connection, appended to `params`."""
    params.append(value)
    return f"${len(params)}"


async def raw_connection(session: AsyncSession) -> asyncpg.Connection:
    """The asyncpg connection under `session`, inside the session's transaction, for COPY
    and array statements on hot paths."""
    connection = await session.connection()
    raw = await connection.get_raw_connection()
    driver: asyncpg.Connection = raw.driver_connection
    if not driver.is_in_transaction():
        # SQLAlchemy's asyncpg adapter opens its transaction lazily, on the first
        # statement: open it now, a bare BEGIN instead of a statement through SQLAlchemy.
        await raw.dbapi_connection._start_transaction()  # type: ignore[union-attr]
    return driver


class DriverPool:
    """Bare asyncpg connections for the hot paths whose work is one statement (a GET's
    read; a write whose inserts are chained in one statement, which commits on its own):
    one round trip, no ORM session, no SQLAlchemy Connection. A checkout from
    SQLAlchemy's pool runs its synchronous pool code in greenlets and, when every
    connection is busy, waits through `asyncio.wait_for` (a task per wait): 110–130 µs of
    CPU a checkout and statement at 32 requests on 20 connections, 30 µs here.

    Connections open when first needed, up to `size`, and are kept (`recycle_s` at most).
    A statement the server refused leaves its connection usable; anything else raised in
    the block (the network, a cancelled await mid-statement) closes it, and a lost
    server closes the idle ones too. JSON columns come
    back parsed and take text parameters, as through SQLAlchemy's asyncpg dialect."""

    def __init__(self, dsn: str, size: int, *, timeout_s: float = 30, recycle_s: float = 1800):
        self._dsn = dsn
        self._size = size
        self._timeout_s = timeout_s
        self._recycle_s = recycle_s
        self._idle: list[tuple[asyncpg.Connection, float]] = []
        self._opened = 0
        self._waiters: collections.deque[asyncio.Future[tuple[asyncpg.Connection, float] | None]]
        self._waiters = collections.deque()
        self._closing: set[asyncio.Task[None]] = set()
        self._closed = False

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[asyncpg.Connection]:
        """A connection outside any transaction; open none on it."""
        held = await self._acquire()
        conn = held[0]
        try:
            yield conn
        except BaseException as exc:
            if isinstance(exc, pg.PostgresError) and not is_transient(exc):
                self._release(held)
            else:
                self._discard(conn)
                if is_transient(exc):
                    # The server went away (a restart, a failover): the idle connections
                    # went with it. Reconnect on the next requests instead of failing each.
                    self._discard_idle()
            raise
        else:
            self._release(held)

    async def _acquire(self) -> tuple[asyncpg.Connection, float]:
        while True:
            if self._closed:
                raise pg.InterfaceError("the connection pool is closed")
            while self._idle:
                held = self._idle.pop()  # the most recently used: its caches are warm
                if not held[0].is_closed():
                    return held
                self._discard(held[0])  # the server closed it while it waited
            if self._opened < self._size:
                self._opened += 1
                try:
                    return await self._connect(), time.monotonic()
                except BaseException:
                    self._discard(None)
                    raise
            loop = asyncio.get_running_loop()
            waiter = loop.create_future()
            self._waiters.append(waiter)
            timer = loop.call_later(self._timeout_s, _expire, waiter)
            try:
                held = await waiter
            except BaseException:
                if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                    self._give_back(waiter.result())  # handed over as we were cancelled
                raise
            finally:
                timer.cancel()
            if held is not None:
                return held
            # None: a connection was closed, its place is free to open one.

    async def _connect(self) -> asyncpg.Connection:
        conn: asyncpg.Connection = await asyncpg.connect(self._dsn, timeout=10)
        await conn.set_type_codec(
            "json", encoder=str.encode, decoder=orjson.loads, schema="pg_catalog", format="binary"
        )
        await conn.set_type_codec(
            "jsonb",
            encoder=lambda value: b"\x01" + value.encode(),  # jsonb's binary format version
            decoder=lambda data: orjson.loads(data[1:]),
            schema="pg_catalog",
            format="binary",
        )
        return conn

    def _release(self, held: tuple[asyncpg.Connection, float]) -> None:
        conn, opened_at = held
        if conn.is_closed() or conn.is_in_transaction():
            self._discard(conn)
        elif self._closed or time.monotonic() - opened_at > self._recycle_s:
            self._opened -= 1
            self._close_later(conn)
            self._hand_over(None)
        else:
            self._hand_over(held)

    def _give_back(self, held: tuple[asyncpg.Connection, float] | None) -> None:
        if held is None:
            self._hand_over(None)  # the free place, to the next in line
        else:
            self._release(held)

    def _discard(self, conn: asyncpg.Connection | None) -> None:
        if conn is not None:
            conn.terminate()
        self._opened -= 1
        self._hand_over(None)

    def _discard_idle(self) -> None:
        idle, self._idle = self._idle, []
        for conn, _ in idle:
            self._discard(conn)

    def _hand_over(self, held: tuple[asyncpg.Connection, float] | None) -> None:
        """To the longest waiting request, else back to the idle ones."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(held)
                return
        if held is not None:
            self._idle.append(held)

    def _close_later(self, conn: asyncpg.Connection) -> None:
        task = asyncio.get_running_loop().create_task(conn.close(timeout=5))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def close(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        self._opened -= len(idle)
        for conn, _ in idle:
            self._close_later(conn)
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)  # wakes into the closed pool's error
        await asyncio.gather(*self._closing, return_exceptions=True)


def _expire(waiter: asyncio.Future[Any]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError("no database connection free within the pool's timeout"))


def driver_connection(sessions: SessionFactory) -> AbstractAsyncContextManager[asyncpg.Connection]:
    """A connection of the sessions' `DriverPool` (see there)."""
    pool: DriverPool = sessions.kw["info"][DRIVER_POOL]
    return pool.connection()


async def ping(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        await conn.execute(text("SELECT 1"))


# Failures of the infrastructure, not of the input: retry them, never dead-letter them.
_TRANSIENT = (
    OSError,  # connection refused or reset
    TimeoutError,
    pg.PostgresConnectionError,
    pg.OperatorInterventionError,  # shutting down, cannot connect now
    pg.InsufficientResourcesError,  # too many connections
    pg.TransactionRollbackError,  # serialization failure, deadlock
    pg.InterfaceError,  # connection closed under us
)


def is_transient(exc: BaseException) -> bool:
    """Whether `exc` comes from the database or network being unavailable for a while."""
    seen: BaseException | None = exc
    for _ in range(10):
        if seen is None:
            return False
        if isinstance(seen, _TRANSIENT):
            return True
        if isinstance(seen, sa_exc.DBAPIError) and seen.connection_invalidated:
            return True
        seen = seen.__cause__ or seen.__context__
    return False
