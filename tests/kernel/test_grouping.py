"""backstop.grouping: concurrent callers' items done together (no infrastructure)."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from backstop.grouping import Grouped


async def settle() -> None:
    """Let every ready task run until it waits."""
    for _ in range(5):
        await asyncio.sleep(0)


class Recorder:
    """A batch runner that records its batches and holds each until released."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.release = asyncio.Event()
        self.running = 0
        self.most_running = 0

    async def __call__(self, batch: list[int]) -> list[int | BaseException]:
        self.batches.append(batch)
        self.running += 1
        self.most_running = max(self.most_running, self.running)
        try:
            await self.release.wait()
        finally:
            self.running -= 1
        return [ValueError(f"no {i}") if i < 0 else i * 10 for i in batch]


async def test_alone_an_item_goes_at_once_and_those_arriving_meanwhile_go_together() -> None:
    run = Recorder()
    grouped: Grouped[int, int] = Grouped(run, in_flight=1, max_batch=3)
    first = asyncio.ensure_future(grouped.submit(1))
    await settle()
    assert run.batches == [[1]]  # nobody else was waiting: no delay
    rest = [asyncio.ensure_future(grouped.submit(i)) for i in range(2, 7)]
    await settle()
    assert run.batches == [[1]]  # one statement in flight at most: the rest wait
    run.release.set()
    assert await asyncio.gather(first, *rest) == [10, 20, 30, 40, 50, 60]
    assert run.batches == [[1], [2, 3, 4], [5, 6]]  # in arrival order, max_batch each
    assert run.most_running == 1


async def test_in_flight_bounds_the_batches_running_at_once() -> None:
    run = Recorder()
    grouped: Grouped[int, int] = Grouped(run, in_flight=2, max_batch=64)
    futures = []
    for i in range(6):
        futures.append(asyncio.ensure_future(grouped.submit(i)))
        if i < 2:
            await settle()
    run.release.set()
    assert await asyncio.gather(*futures) == [0, 10, 20, 30, 40, 50]
    assert run.most_running == 2
    assert run.batches == [[0], [1], [2, 3, 4, 5]]


async def test_an_items_own_error_is_its_own_and_a_batchs_error_is_everyones() -> None:
    run = Recorder()
    run.release.set()
    grouped: Grouped[int, int] = Grouped(run, in_flight=1, max_batch=64)
    results = await asyncio.gather(*(grouped.submit(i) for i in (1, -2, 3)), return_exceptions=True)
    assert results[0] == 10 and results[2] == 30
    assert isinstance(results[1], ValueError) and str(results[1]) == "no -2"

    async def broken(batch: list[int]) -> list[int | BaseException]:
        raise ConnectionError("the server went away")

    failing: Grouped[int, int] = Grouped(broken, in_flight=1, max_batch=64)
    results = await asyncio.gather(*(failing.submit(i) for i in range(3)), return_exceptions=True)
    assert all(isinstance(r, ConnectionError) for r in results)
    # The group goes on after a failed batch.
    assert await grouped.submit(4) == 40


async def test_a_cancelled_caller_leaves_the_others_their_answers() -> None:
    run = Recorder()
    grouped: Grouped[int, int] = Grouped(run, in_flight=1, max_batch=64)
    first = asyncio.ensure_future(grouped.submit(1))
    await settle()
    waiting = [asyncio.ensure_future(grouped.submit(i)) for i in (2, 3)]
    await settle()
    waiting[0].cancel()
    run.release.set()
    assert await first == 10 and await waiting[1] == 30
    with pytest.raises(asyncio.CancelledError):
        await waiting[0]


async def test_a_batch_interrupted_mid_run_fails_its_callers_instead_of_hanging() -> None:
    run = Recorder()
    grouped: Grouped[int, int] = Grouped(run, in_flight=1, max_batch=64)
    futures = [asyncio.ensure_future(grouped.submit(i)) for i in (1, 2)]
    await settle()
    for task in list(grouped._tasks):  # what the loop stopping does to it
        task.cancel()
    results = await asyncio.gather(*futures, return_exceptions=True)
    assert all(isinstance(r, asyncpg.InterfaceError) for r in results), results
