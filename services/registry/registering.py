"""Registering checked households: one set-based write (COPY) of PreparedHousehold rows
with their history and HouseholdCreated events, in the caller's transaction. The one path
for a household created through the API, an import and the demo seed."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from operator import itemgetter
from typing import Any, overload

import orjson
from asyncpg.exceptions import UniqueViolationError
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from backstop import outbox
from backstop.contracts import registry as contract
from backstop.db import raw_connection
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
# Row dicts to COPY records, at C speed (guarantees and version follow the household's).
_household_values = itemgetter(*_HOUSEHOLD_COLUMNS[:-2])
_person_values = itemgetter(*_PERSON_COLUMNS)
_income_values = itemgetter(*_INCOME_COLUMNS)


# Below this many rows, plain INSERTs (one prepared statement per table, cached by the
# connection): COPY costs a catalogue query and its own protocol round trips, which only
# pay off for an import's thousands of rows.
COPY_FROM = 100


async def _copy(pg: Any, table: str, columns: Sequence[str], rows: list[tuple[Any, ...]]) -> None:
    if len(rows) >= COPY_FROM:
        await pg.copy_records_to_table(table, records=rows, columns=list(columns))
    elif rows:
        await pg.executemany(_insert_sql(table, tuple(columns)), rows)


@cache
def _insert_sql(table: str, columns: tuple[str, ...]) -> str:
    params = ", ".join(f"${i}" for i in range(1, len(columns) + 1))
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({params})"


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
    known_numbers: set[str] = set()
    if numbers:
        rows = await pg.fetch(
            "SELECT household_number FROM household WHERE household_number = ANY($1::text[])",
            numbers,
        )
        known_numbers = {r[0] for r in rows}
    id_numbers = [m["id_number"] for p in prepared for m in p.members]
    registered: dict[str, tuple[uuid.UUID, uuid.UUID | None]] = {}
    if id_numbers:
        # Lock the rows of people already known, so a concurrent move cannot interleave.
        found = await pg.fetch(
            "SELECT id_number, id, household_id FROM person WHERE id_number = ANY($1::text[])"
            " FOR UPDATE",
            id_numbers,
        )
        registered = {r[0]: (r[1], r[2]) for r in found}
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
    await _copy(
        pg,
        "household",
        _HOUSEHOLD_COLUMNS,
        [
            (*_household_values(h), orjson.dumps(h["guarantees"]).decode(), h["version"])
            for h in (p.household for p in accepted)
        ],
    )
    returning_ids = {m["id"] for m in returning}
    await _copy(
        pg,
        "person",
        _PERSON_COLUMNS,
        [
            _person_values(m)
            for p in accepted
            for m in p.members
            if not returning_ids or m["id"] not in returning_ids
        ],
    )
    for m in returning:
        values = {k: v for k, v in m.items() if k not in ("id", "id_number")}
        await session.execute(update(P).where(P.c.id == m["id"]).values(**values))
    if people_written is not None:
        people_written()
    await _copy(
        pg, "income", _INCOME_COLUMNS, [_income_values(i) for p in accepted for i in p.incomes]
    )
    await _copy(
        pg,
        "contact",
        _CONTACT_COLUMNS,
        [tuple(c.get(k) for k in _CONTACT_COLUMNS) for p in accepted for c in p.contacts],
    )
    await _copy(
        pg,
        "history",
        _HISTORY_COLUMNS,
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
    )
    result.created.extend(str(p.household["id"]) for p in accepted)
    await outbox.publish_many(session, _CreatedEvents(accepted, actor))
    return result


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


def created_event(p: PreparedHousehold, actor: str) -> CloudEvent:
    """The HouseholdCreated event of a prepared household, in the kernel's envelope. Its
    snapshot is built from rows that were just checked, so neither it nor the envelope is
    validated again through the models (an import builds one per household; tests check
    `event.payload()`, and that the JSON is the contract's and the envelope make_event's)."""
    view = HouseholdView(
        household=p.household,
        members=sorted(p.members, key=member_order),
        incomes=sorted(p.incomes, key=lambda i: -i["year"]),
        contacts=[{"unit": None, **c} for c in p.contacts],
    )
    return CloudEvent.model_construct(
        specversion="1.0",
        id=new_ids(1)[0],
        source=f"/backstop/{SERVICE}",
        type=HOUSEHOLD_CREATED,
        subject=view.id,
        time=datetime.now(UTC),
        datacontenttype="application/json",
        data={"household": snapshot_data(view), "changed_by": actor},
        correlationid=correlation_id.get(),
    )
