"""Group execution: what concurrent requests of one process each need from PostgreSQL,
done together. A caller's item waits only while `in_flight` statements already run;
those that arrive meanwhile go together in the next statement (at most `max_batch`).
Alone, an item goes at once; under load, a burst costs one round trip per batch instead
of one per request, on the service's CPU and on the database's. Used by registry's single
registrations (group commit) and its household reads."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, TypeVar

import asyncpg

from backstop.db import SessionFactory

T = TypeVar("T")
R = TypeVar("R")


class Grouped(Generic[T, R]):
    """`run(batch)` does a batch and answers each item, in order: a result, or an
    exception for that item alone. An exception out of `run` is every item's."""

    def __init__(
        self,
        run: Callable[[list[T]], Awaitable[Sequence[R | BaseException]]],
        *,
        in_flight: int,
        max_batch: int,
    ) -> None:
        self.loop = asyncio.get_running_loop()
        self._run = run
        self._in_flight = in_flight
        self._max_batch = max_batch
        self._waiting: list[tuple[T, asyncio.Future[R]]] = []
        self._runners = 0  # batches running, or about to start
        self._starting = False  # a runner is about to take what waits
        self._tasks: set[asyncio.Task[None]] = set()

    async def submit(self, item: T) -> R:
        future: asyncio.Future[R] = self.loop.create_future()
        self._waiting.append((item, future))
        if not self._starting and self._runners < self._in_flight:
            self._runners += 1
            self._starting = True
            task = self.loop.create_task(self._run_waiting())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return await future

    async def _run_waiting(self) -> None:
        batch: list[tuple[T, asyncio.Future[R]]] = []
        try:
            while self._waiting:
                self._starting = False
                batch = self._waiting[: self._max_batch]
                self._waiting = self._waiting[self._max_batch :]
                try:
                    outcomes: Sequence[R | BaseException] = await self._run(
                        [item for item, _ in batch]
                    )
                except Exception as exc:
                    outcomes = [exc] * len(batch)
                for (_, future), outcome in zip(batch, outcomes, strict=True):
                    _settle(future, outcome)
                batch = []
        finally:
            self._runners -= 1
            self._starting = False
            for _, future in batch:  # cancelled mid-statement (the loop stopping): not known done
                _settle(future, asyncpg.InterfaceError("the statement was interrupted"))


def _settle(future: asyncio.Future[Any], outcome: Any) -> None:
    if future.done():  # its request was cancelled
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)


G = TypeVar("G", bound=Grouped[Any, Any])


def shared(sessions: SessionFactory, key: str, make: Callable[[], G]) -> G:
    """The process's `Grouped` named `key` for this database, made on first use (one
    per event loop: tests run several)."""
    info = sessions.kw["info"]
    grouped: G | None = info.get(key)
    if grouped is None or grouped.loop is not asyncio.get_running_loop():
        grouped = info[key] = make()
    return grouped
