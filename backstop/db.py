"""Async engine, sessions and the unit of work that commits once."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
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
from sqlalchemy.util.concurrency import greenlet_spawn

SessionFactory = async_sessionmaker[AsyncSession]


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
    )


def make_session_factory(
    engine: AsyncEngine, info: dict[str, object] | None = None
) -> SessionFactory:
    """Sessions on `engine`; `info` is in every session's `.info` (the outbox reads the
    broker's message size limit there)."""
    return async_sessionmaker(engine, expire_on_commit=False, info=info)


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


@asynccontextmanager
async def driver_connection(engine: AsyncEngine) -> AsyncIterator[asyncpg.Connection]:
    """A pooled asyncpg connection outside any transaction, for the hot paths whose work is
    one statement (a GET's read, a write whose inserts are chained in one statement, which
    commits on its own): one round trip (a session adds BEGIN and COMMIT or ROLLBACK), no
    ORM session and no SQLAlchemy Connection around it (a checkout costs a third); asyncpg
    prepares each statement text once per connection. Open no transaction on it."""
    pooled = await engine.raw_connection()
    try:
        yield pooled.driver_connection
    except BaseException as exc:
        if is_transient(exc):
            # What SQLAlchemy does on its own statements: the connection is not reused,
            # the next checkout opens a fresh one.
            await greenlet_spawn(pooled.invalidate, exc if isinstance(exc, Exception) else None)
        raise
    finally:
        await greenlet_spawn(pooled.close)


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
