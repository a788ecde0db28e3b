"""Bulk import: the households read from a register export (import_file.py) are checked
(drafts.py) and registered (registering.py) a chunk per transaction, committed in file
order, with a report naming each rejected row and field. Households already registered
are brought up to date with what the export says (reimport.py)."""

from __future__ import annotations

import asyncio
import gc
from collections import deque
from collections.abc import Callable, Collection, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date

from sqlalchemy.ext.asyncio import AsyncSession

from backstop.db import SessionFactory, unit_of_work
from services.registry.drafts import (
    DraftInvalid,
    Loc,
    PreparedHousehold,
    prepare_body,
    village_codes,
)
from services.registry.import_file import HouseholdRows
from services.registry.registering import (
    RACE_RETRIES,
    UNIQUE_VIOLATIONS,
    BulkResult,
    insert_households,
)
from services.registry.reimport import update_households


@dataclass
class ImportReport:
    rows: int = 0
    households: int = 0
    created: int = 0
    existing: int = 0  # registered, and the export changes nothing
    updated: int = 0  # registered, and brought up to date
    rejected: int = 0
    # (row, household number, field, message)
    errors: list[tuple[int, str | None, str, str]] = field(default_factory=list)


MAX_REPORTED_ERRORS = 1000


# A household of an import between its check and its write: first row, household number
# and rows (its draft and the rows of the file are let go).
_Staged = tuple[int, str, PreparedHousehold]
# (row, household number, field, message)
_Error = tuple[int, str | None, str, str]

# Households checked between two chances for the event loop to run other work (the
# writes of earlier chunks, other requests): well under a millisecond.
_YIELD_EVERY = 4
# Chunks of an import being written at once, each in its own transaction.
_WRITES_IN_FLIGHT = 2


@dataclass
class _ChunkWrite:
    """A chunk of an import on its way into the database."""

    households: list[_Staged]
    previous: _ChunkWrite | None
    people_in: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[BulkResult] | None = None


class _EarlierChunkFailed(Exception):
    """A chunk is not committed after an earlier one failed (that one's error is raised)."""


async def _succeeded(write: _ChunkWrite) -> bool:
    assert write.task is not None
    try:
        await write.task
    except BaseException:
        return False
    return True


async def import_households(
    sessions: SessionFactory,
    households: Iterable[HouseholdRows],
    *,
    actor: str,
    pii_key: str,
    chunk_size: int = 1000,
    columns: Collection[str] | None = None,
    can_see: Callable[[str], bool] = lambda region: True,
    create: bool = True,
) -> ImportReport:
    """Register households from an import, `chunk_size` per transaction, committed in file
    order. Idempotent by household number: one already registered is brought up to date
    with what the export's `columns` (import_file's canonical names) say, each changed
    household in one history entry, and left as it is when nothing differs (or when
    `columns` is None); one registered outside the caller's regions (`can_see`) is
    rejected. Without `create` (the household export) nothing new is registered: a
    household not registered yet is rejected. A bad household is reported with its row
    and field and the good ones go in.

    Reading and checking run on the event loop, giving way every few households, while
    earlier chunks are written: Python prepares one chunk while PostgreSQL inserts the
    ones before. (A worker thread did the same work slower: every reply of the database
    waited for the thread to give up the GIL.) Two chunks are written at once, so the
    database is not idle while Python builds a chunk's events: the second starts once the
    first one's people are in, so it can only ever wait for the first (a person in both
    ends as a 409 for the later one, as one after the other), and it commits only after
    the first did."""
    report = ImportReport()
    async with sessions() as session:
        villages = await village_codes(session)
    today = date.today()
    # Errors are listed chunk by chunk: those met reading a chunk, then the households its
    # write refused.
    reading: list[list[_Error]] = [[]]
    writing: list[list[_Error]] = []

    def reject(found: list[_Error], row: int, number: str | None, field: str, msg: str) -> None:
        report.rejected += 1
        if len(found) < MAX_REPORTED_ERRORS:
            found.append((row, number, field, msg))

    async def write(this: _ChunkWrite) -> BulkResult:
        previous = this.previous
        try:
            if previous is not None:
                await previous.people_in.wait()
            prepared = [p for *_, p in this.households]
            for attempt in range(RACE_RETRIES):
                try:
                    async with unit_of_work(sessions) as session:
                        if create:
                            result = await insert_households(
                                session, prepared, actor=actor, people_written=this.people_in.set
                            )
                        else:
                            numbers = [p.household["household_number"] for p in prepared]
                            result = BulkResult(existing=numbers)
                        if columns is not None and result.existing:
                            await _bring_up_to_date(
                                session, prepared, result, columns, actor, can_see, create
                            )
                        if previous is not None and not await _succeeded(previous):
                            raise _EarlierChunkFailed
                        return result
                except UNIQUE_VIOLATIONS:
                    # Someone else registered one of these people meanwhile: check again.
                    if attempt == RACE_RETRIES - 1:
                        raise
            raise AssertionError("unreachable")
        finally:
            this.people_in.set()  # whatever happened, the next chunk waits no longer
            this.previous = None  # and the chunks before are let go

    def written(households: list[_Staged], result: BulkResult) -> None:
        report.created += len(result.created)
        report.existing += len(result.existing)
        report.updated += len(result.updated)
        writing.append([])
        for index, loc, msg, _ in result.rejected:
            first_row, number, _ = households[index]
            reject(writing[-1], first_row + _member_offset(loc), number, _field(loc), msg)

    chunk: list[_Staged] = []
    in_flight: deque[_ChunkWrite] = deque()

    async def settle_oldest() -> None:
        oldest = in_flight.popleft()
        assert oldest.task is not None
        written(oldest.households, await oldest.task)

    async def flush() -> None:
        """Start writing `chunk` (once fewer than _WRITES_IN_FLIGHT are being written)."""
        nonlocal chunk
        if not chunk:
            return
        if len(in_flight) >= _WRITES_IN_FLIGHT:
            await settle_oldest()
        this = _ChunkWrite(chunk, previous=in_flight[-1] if in_flight else None)
        this.task = asyncio.create_task(write(this))
        in_flight.append(this)
        chunk = []
        reading.append([])

    with _long_lived_objects_frozen():
        try:
            for n, item in enumerate(households, start=1):
                if n % _YIELD_EVERY == 0:
                    await asyncio.sleep(0)
                report.households += 1
                report.rows += item.rows
                if item.error is not None or item.body is None:
                    err = item.error
                    assert err is not None
                    reject(reading[-1], err.row, err.household_number, err.field, err.message)
                    continue
                try:
                    prepared = prepare_body(
                        item.body, villages=villages, pii_key=pii_key, today=today
                    )
                except DraftInvalid as exc:
                    loc, msg = exc.errors[0]
                    row = item.first_row + _member_offset(loc)
                    reject(reading[-1], row, item.household_number, _field(loc), msg)
                    continue
                chunk.append((item.first_row, item.household_number, prepared))
                if len(chunk) >= chunk_size:
                    await flush()
            await flush()
            while in_flight:
                await settle_oldest()
        finally:
            # After a failure, the writes under way end (none commits after a failed one).
            await asyncio.gather(
                *(w.task for w in in_flight if w.task is not None), return_exceptions=True
            )
    for k, found in enumerate(reading):
        report.errors += found
        if k < len(writing):
            report.errors += writing[k]
    del report.errors[MAX_REPORTED_ERRORS:]
    return report


async def _bring_up_to_date(
    session: AsyncSession,
    prepared: list[PreparedHousehold],
    result: BulkResult,
    columns: Collection[str],
    actor: str,
    can_see: Callable[[str], bool],
    create: bool,
) -> None:
    """The chunk's households that were already registered, updated from the export;
    `result` then counts them as updated, unchanged (existing) or rejected."""
    known = set(result.existing)
    staged = [(i, p) for i, p in enumerate(prepared) if p.household["household_number"] in known]
    outcome = await update_households(
        session, staged, columns=columns, actor=actor, can_see=can_see, unknown_is_error=not create
    )
    touched = {prepared[i].household["household_number"] for i, *_ in outcome.rejected}
    changed = outcome.changed
    result.updated = [n for n in result.existing if n in changed]
    result.existing = [n for n in result.existing if n not in changed and n not in touched]
    result.rejected.extend(outcome.rejected)


_freezes = 0


@contextmanager
def _long_lived_objects_frozen() -> Iterator[None]:
    """While an import runs, the objects alive when it started (the app: modules, models,
    schemas) are kept out of the garbage collector's full passes. An import allocates
    millions of objects and each full pass would walk the whole app again: that was most
    of the collector's time. Concurrent imports share one freeze; nothing is frozen here
    when the process already froze its start-up objects."""
    global _freezes
    owner = _freezes > 0 or gc.get_freeze_count() == 0
    if owner:
        if _freezes == 0:
            gc.freeze()
        _freezes += 1
    try:
        yield
    finally:
        if owner:
            _freezes -= 1
            if _freezes == 0:
                gc.unfreeze()


def _member_offset(loc: Loc) -> int:
    """Rows of a household are in member order, so member i is on the first row + i."""
    return int(loc[1]) if len(loc) >= 2 and loc[0] == "members" and isinstance(loc[1], int) else 0


def _field(loc: Loc) -> str:
    if len(loc) >= 3 and loc[0] == "members":
        return ".".join(map(str, loc[2:]))
    return ".".join(map(str, loc))
