"""Registering checked households: one set-based write (COPY) of PreparedHousehold rows
with their history and HouseholdCreated events, in the caller's transaction. The one path
for a household created through the API, an import and the demo seed. A household of new
people through the API goes first as one statement, shared with the registrations that
arrive at the same moment (`register_new`: group commit)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache, partial
from operator import itemgetter
from typing import Any, overload

import asyncpg
import orjson
from asyncpg.exceptions import UniqueViolationError
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from backstop import grouping, outbox
from backstop.contracts import registry as contract
from backstop.db import SessionFactory, driver_connection, raw_connection
from backstop.events import CloudEvent
from backstop.idnumber import mask_id
from backstop.logs import correlation_id
from services.registry.drafts import Loc, PreparedHousehold, new_ids
from services.registry.models import NATIONAL_MEMBER_FIELDS
from services.registry.views import SERVICE, HouseholdView, P, member_order, snapshot_data

# A unique index refused a row: through SQLAlchemy, or from COPY on the driver connection.
UNIQUE_VIOLATIONS = (IntegrityError, UniqueViolationError)
RACE_RETRIES = 3


@dataclass
class BulkResult:
    created: list[str] = field(default_factory=list)
    existing: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)  # by a newer export (reimport.py)
    # (index in the input, location, message, status)
    rejected: list[tuple[int, Loc, str, int]] = field(default_factory=list)


_HOUSEHOLD_COLUMNS = (
    "id", "household_number", "region_code", "town_code", "type", "policy_enjoying",
    "monitoring_status", "monitoring_since", "monitoring_ended_on", "elimination_method",
    "elimination_reason", "monitoring_case_id", "exit_year", "guarantees", "version",
)  # fmt: skip
_PERSON_COLUMNS = (
    "id", "household_id", "id_number", "id_hash", "name", "relation", "sex", "birth_date",
    "special_groups", "labor_capacity", "schooling", "medical_insurance", "removed_reason",
    *NATIONAL_MEMBER_FIELDS,
)  # fmt: skip
_INCOME_COLUMNS = (
    "household_id", "year", "total", "wage", "business", "transfer", "property", "household_size",
)  # fmt: skip
_CONTACT_COLUMNS = ("household_id", "role", "name", "phone", "unit")
_HISTORY_COLUMNS = ("household_id", "person_id", "actor", "action", "changes", "version")
# The tables a registration writes, parents first (the order of `_tables`).
_TABLE_COLUMNS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("household", _HOUSEHOLD_COLUMNS),
    ("person", _PERSON_COLUMNS),
    ("income", _INCOME_COLUMNS),
    ("contact", _CONTACT_COLUMNS),
    ("history", _HISTORY_COLUMNS),
)
# The numbers already taken and the people already known (their rows locked, so a
# concurrent move cannot interleave), in one round trip.
_KNOWN_SQL = """
WITH people AS (
  SELECT id_number, id, household_id FROM person WHERE id_number = ANY($2::text[]) FOR UPDATE
)
SELECT true, household_number, NULL::uuid, NULL::uuid
  FROM household WHERE household_number = ANY($1::text[])
UNION ALL SELECT false, id_number, id, household_id FROM people
"""
# Row dicts to row tuples, at C speed (guarantees and version follow the household's).
_household_values = itemgetter(*_HOUSEHOLD_COLUMNS[:-2])
_person_values = itemgetter(*_PERSON_COLUMNS)
_income_values = itemgetter(*_INCOME_COLUMNS)


# Below this many rows, one statement writes every table: each table's rows as one JSON
# array that PostgreSQL turns into rows of the table's type (json_populate_recordset), the
# inserts chained as data-modifying CTEs. One round trip for the five tables; COPY costs a
# catalogue query and its own round trips per table, which only pay off for an import's
# thousands of rows.
COPY_FROM = 100
_JSONB_COLUMNS = frozenset({"guarantees", "changes"})  # already JSON text in the rows


async def _write(pg: Any, tables: list[tuple[str, Sequence[str], list[tuple[Any, ...]]]]) -> None:
    """Insert `(table, columns, rows)` in order (parents first)."""
    tables = [t for t in tables if t[2]]
    if any(len(rows) >= COPY_FROM for _, _, rows in tables):
        for table, columns, rows in tables:
            if len(rows) >= COPY_FROM:
                await pg.copy_records_to_table(table, records=rows, columns=list(columns))
            else:
                await pg.executemany(_insert_sql(table, tuple(columns)), rows)
        return
    if not tables:
        return
    await pg.execute(
        _chained_insert(tuple((table, tuple(columns)) for table, columns, _ in tables)),
        *[_json_rows(columns, rows) for _, columns, rows in tables],
    )


@cache
def _insert_sql(table: str, columns: tuple[str, ...]) -> str:
    params = ", ".join(f"${i}" for i in range(1, len(columns) + 1))
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({params})"


@cache
def _chained_insert(tables: tuple[tuple[str, tuple[str, ...]], ...], last: str = "") -> str:
    """One statement inserting each table's rows from its JSON parameter, then `last`."""
    inserts = [
        f"INSERT INTO {table} ({', '.join(columns)}) SELECT {', '.join(columns)}"
        f" FROM json_populate_recordset(NULL::{table}, ${n}::json)"
        for n, (table, columns) in enumerate(tables, start=1)
    ] + ([last] if last else [])
    ctes = ", ".join(f"w{n} AS ({sql})" for n, sql in enumerate(inserts[:-1]))
    return f"WITH {ctes} {inserts[-1]}" if ctes else inserts[-1]


def _json_rows(columns: Sequence[str], rows: list[tuple[Any, ...]]) -> str:
    jsonb = [i for i, c in enumerate(columns) if c in _JSONB_COLUMNS]
    objects = []
    for row in rows:
        values = list(row)
        for i in jsonb:
            if values[i] is not None:
                values[i] = orjson.Fragment(values[i])
        objects.append(dict(zip(columns, values, strict=True)))
    # Decimals (money) as their exact text: PostgreSQL reads a numeric from it.
    return orjson.dumps(objects, default=str).decode()


async def insert_households(
    session: AsyncSession,
    prepared: Sequence[PreparedHousehold],
    *,
    actor: str,
    skip_existing_numbers: bool = True,
    people_written: Callable[[], object] | None = None,
) -> BulkResult:
    """Insert many prepared households in the caller's transaction (COPY), with their
    history and HouseholdCreated outbox events. A household whose number is already
    registered is left unchanged (imports are idempotent by household number); one with a
    person already in another household is rejected (409); the others go in.

    `people_written` is called once the households and their people are written (or found
    to be none): the locks this transaction takes after that are on its own new rows."""
    result = BulkResult()
    pg = await raw_connection(session)
    numbers = [p.household["household_number"] for p in prepared if p.household["household_number"]]
    id_numbers = [m["id_number"] for p in prepared for m in p.members]
    found = await pg.fetch(_KNOWN_SQL, numbers, id_numbers)
    known_numbers = {r[1] for r in found if r[0]}
    registered: dict[str, tuple[uuid.UUID, uuid.UUID | None]] = {
        r[1]: (r[2], r[3]) for r in found if not r[0]
    }
    accepted: list[PreparedHousehold] = []
    seen_numbers: set[str] = set()
    seen_people: set[str] = set()
    returning: list[dict[str, Any]] = []  # removed persons who come back
    for index, p in enumerate(prepared):
        number = p.household["household_number"]
        if number and (number in known_numbers or number in seen_numbers):
            if skip_existing_numbers:
                result.existing.append(number)
            else:
                result.rejected.append(
                    (
                        index,
                        ["household_number"],
                        f"household number {number} is already registered",
                        409,
                    )
                )
            continue
        conflict: tuple[int, Loc, str, int] | None = None
        for i, m in enumerate(p.members):
            owner = registered.get(m["id_number"])
            if (owner is not None and owner[1] is not None) or m["id_number"] in seen_people:
                conflict = (
                    index,
                    ["members", i, "id_number"],
                    "this person is already in another household",
                    409,
                )
                break
        if conflict:
            result.rejected.append(conflict)
            continue
        if number:
            seen_numbers.add(number)
        for m in p.members:
            seen_people.add(m["id_number"])
            owner = registered.get(m["id_number"])
            if owner is not None:  # a removed person rejoins the register: same person id
                m["id"] = owner[0]
                returning.append(m)
        accepted.append(p)
    if not accepted:
        if people_written is not None:
            people_written()
        return result
    returning_ids = {m["id"] for m in returning}
    tables = _tables(accepted, actor, returning_ids)
    if not returning and people_written is None:
        await _write(pg, tables)  # a registration through the API: one statement
    else:
        await _write(pg, tables[:2])
        for m in returning:
            values = {k: v for k, v in m.items() if k not in ("id", "id_number")}
            await session.execute(update(P).where(P.c.id == m["id"]).values(**values))
        if people_written is not None:
            people_written()
        await _write(pg, tables[2:])
    result.created.extend(str(p.household["id"]) for p in accepted)
    await outbox.publish_many(session, _CreatedEvents(accepted, actor))
    return result


def _tables(
    accepted: Sequence[PreparedHousehold], actor: str, returning_ids: set[Any]
) -> list[tuple[str, Sequence[str], list[tuple[Any, ...]]]]:
    """The rows of `accepted` households per table, parents first: household, person (but
    the `returning_ids`, updated instead), income, contact, history."""
    rows = _table_rows(accepted, actor, returning_ids)
    return [(table, columns, r) for (table, columns), r in zip(_TABLE_COLUMNS, rows, strict=True)]


def _table_rows(
    accepted: Sequence[PreparedHousehold], actor: str, returning_ids: set[Any]
) -> list[list[tuple[Any, ...]]]:
    """`_tables` without the tables' names and columns (those of `_TABLE_COLUMNS`)."""
    return [
        [
            (*_household_values(h), orjson.dumps(h["guarantees"]).decode(), h["version"])
            for h in (p.household for p in accepted)
        ],
        [
            _person_values(m)
            for p in accepted
            for m in p.members
            if not returning_ids or m["id"] not in returning_ids
        ],
        [_income_values(i) for p in accepted for i in p.incomes],
        [tuple(c.get(k) for k in _CONTACT_COLUMNS) for p in accepted for c in p.contacts],
        [
            (
                p.household["id"],
                None,
                actor,
                "household.created",
                orjson.dumps(
                    {
                        "type": p.household["type"],
                        "region_code": p.household["region_code"],
                        "members": [mask_id(m["id_number"]) for m in p.members],
                    }
                ).decode(),
                1,
            )
            for p in accepted
        ],
    ]


# --- One household through the API, in one statement with those arriving meanwhile ---

MAX_BATCH = 64  # registrations in one statement at most
WRITERS = 4  # statements in flight at most: some run while the next batches are checked


@dataclass(slots=True)
class _Registration:
    """One household's rows (per table of `_tables`) and its outbox row."""

    rows: list[list[tuple[Any, ...]]]
    event: tuple[Any, ...]


_REGISTRATIONS = "registry_registrations"  # the session factory's Grouped writes, in its info


async def register_new(
    sessions: SessionFactory, p: PreparedHousehold, *, actor: str, max_message_bytes: int
) -> None:
    """Register one household whose people and number are all new, in one statement on a
    connection outside any transaction, with the households other requests register at
    the same moment (group commit, `backstop.grouping`): its rows, history entry and
    HouseholdCreated outbox row commit together. A unique index refuses it (nothing
    written) when a member or the number is registered already, removed people included:
    then `insert_households` decides, in a transaction, what the answer is."""
    registration = _Registration(
        _table_rows([p], actor, set()),
        outbox.envelope_row(created_envelope(p, actor), max_message_bytes=max_message_bytes),
    )
    registrations = grouping.shared(
        sessions,
        _REGISTRATIONS,
        lambda: grouping.Grouped(
            partial(_write_registrations, sessions),
            in_flight=WRITERS,
            max_batch=MAX_BATCH,
        ),
    )
    if not await registrations.submit(registration):
        async with driver_connection(sessions) as pg:
            await _insert_registrations(pg, [registration])
        outbox.wake()


async def _write_registrations(
    sessions: SessionFactory, batch: list[_Registration]
) -> list[bool | BaseException]:
    """True for each once committed. A statement refused (a unique index, bad data;
    nothing of it written) answers False, to write each household alone, so only the
    offending one fails, with its own error; alone, a household gets that error."""
    try:
        async with driver_connection(sessions) as pg:
            await _insert_registrations(pg, batch)
    except Exception as exc:
        return [exc] if len(batch) == 1 else [False] * len(batch)
    outbox.wake()
    return [True] * len(batch)


async def _insert_registrations(pg: asyncpg.Connection, batch: Sequence[_Registration]) -> None:
    tables = [
        (table, columns, [row for r in batch for row in r.rows[i]])
        for i, (table, columns) in enumerate(_TABLE_COLUMNS)
    ]
    tables = [t for t in tables if t[2]]
    outbox_sql, outbox_arrays = outbox.chained_insert(
        [r.event for r in batch], first_param=len(tables) + 1
    )
    await pg.execute(
        _chained_insert(tuple((t, c) for t, c, _ in tables), outbox_sql),
        *[_json_rows(columns, rows) for _, columns, rows in tables],
        *outbox_arrays,
    )


class _CreatedEvents(Sequence[CloudEvent]):
    """The HouseholdCreated events of inserted households, each built when the outbox
    reads it and dropped once encoded: thousands of events alive at once would only keep
    the garbage collector busy."""

    def __init__(self, households: Sequence[PreparedHousehold], actor: str) -> None:
        self.households = households
        self.actor = actor

    def __len__(self) -> int:
        return len(self.households)

    @overload
    def __getitem__(self, index: int) -> CloudEvent: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[CloudEvent]: ...

    def __getitem__(self, index: int | slice) -> CloudEvent | Sequence[CloudEvent]:
        if isinstance(index, slice):
            return _CreatedEvents(self.households[index], self.actor)
        return created_event(self.households[index], self.actor)


HOUSEHOLD_CREATED: str = contract.HouseholdCreated.__event_type__  # type: ignore[attr-defined]
SOURCE = f"/backstop/{SERVICE}"


def created_envelope(p: PreparedHousehold, actor: str) -> dict[str, Any]:
    """The HouseholdCreated event of a prepared household as the plain values of the
    kernel's envelope (`outbox.envelope_row` serializes it once). Its snapshot is built
    from rows that were just checked, so neither it nor the envelope is validated again
    through the models (tests check `created_event(...).payload()`, and that the JSON is
    the contract's and the envelope make_event's)."""
    view = HouseholdView(
        household=p.household,
        members=sorted(p.members, key=member_order),
        incomes=sorted(p.incomes, key=lambda i: -i["year"]),
        contacts=[{"unit": None, **c} for c in p.contacts],
    )
    envelope = {
        "specversion": "1.0",
        "id": new_ids(1)[0],
        "source": SOURCE,
        "type": HOUSEHOLD_CREATED,
        "subject": view.id,
        "time": datetime.now(UTC),
        "datacontenttype": "application/json",
        "data": {"household": snapshot_data(view), "changed_by": actor},
    }
    correlation = correlation_id.get()
    if correlation is not None:
        envelope["correlationid"] = correlation
    return envelope


def created_event(p: PreparedHousehold, actor: str) -> CloudEvent:
    """`created_envelope` as the kernel's CloudEvent (an import's `publish_many`)."""
    return CloudEvent.model_construct(**created_envelope(p, actor))
