"""Commands and event handlers of the registry. Each command owns its unit of work: load,
decide (domain.py), write the rows, the history entry and the outbox event, commit once.
Event handlers get the consumer's session and never commit.

Every event on `registry.households` carries the household's full snapshot (members with
`id_hash`, never the ID number) and a version that increases with every change.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Container, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from operator import itemgetter
from typing import Any, cast, overload

import orjson
from asyncpg.exceptions import UniqueViolationError
from pydantic import BaseModel
from sqlalchemy import delete, insert, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from backstop import outbox
from backstop.contracts import registry as contract
from backstop.contracts.assistance import FindingObserved, MonitoringStarted, RiskEliminated
from backstop.db import SessionFactory, raw_connection, unit_of_work
from backstop.errors import Problem
from backstop.events import CloudEvent, make_event
from backstop.idnumber import id_hasher, mask_id
from backstop.logs import correlation_id
from services.registry import domain
from services.registry.importing import HouseholdRows
from services.registry.models import (
    ContactIn,
    GuaranteeIn,
    HouseholdCreate,
    HouseholdPatch,
    MemberCreate,
    MemberPatch,
    contact_table,
    history_table,
    household_table,
    income_table,
    person_table,
    region_table,
)

log = logging.getLogger("backstop.registry")
SERVICE = "registry"

H = household_table
P = person_table
INC = income_table
C = contact_table
HIST = history_table
R = region_table

Loc = list[str | int]
# A unique index refused a row: through SQLAlchemy, or from COPY on the driver connection.
UNIQUE_VIOLATIONS = (IntegrityError, UniqueViolationError)
_RACE_RETRIES = 3


class DraftInvalid(Exception):
    """A household draft that breaks a rule; `errors` are (location, message) pairs with
    locations relative to the draft, e.g. ["members", 0, "id_number"]."""

    def __init__(self, errors: list[tuple[Loc, str]], status: int = 422) -> None:
        super().__init__("; ".join(f"{'.'.join(map(str, loc))}: {msg}" for loc, msg in errors))
        self.errors = errors
        self.status = status


def problem_of(exc: DraftInvalid, prefix: Loc | None = None) -> Problem:
    prefix = prefix if prefix is not None else ["body"]
    errors = [{"loc": [*prefix, *loc], "msg": msg} for loc, msg in exc.errors]
    first = errors[0]
    return Problem(exc.status, f"{'.'.join(map(str, first['loc']))}: {first['msg']}", errors=errors)


# --- Views: a household as loaded --------------------------------------------------------


@dataclass
class HouseholdView:
    household: dict[str, Any]
    members: list[dict[str, Any]] = field(default_factory=list)
    incomes: list[dict[str, Any]] = field(default_factory=list)  # newest first
    contacts: list[dict[str, Any]] = field(default_factory=list)

    @property
    def id(self) -> str:
        return str(self.household["id"])

    @property
    def region_code(self) -> str:
        return str(self.household["region_code"])


def _member_order(m: dict[str, Any]) -> tuple[int, date]:
    return (0 if m["relation"] == "head" else 1, m["birth_date"])


_LOAD_SQL = """
SELECT h.*,
  (SELECT coalesce(json_agg(p), '[]') FROM person p WHERE p.household_id = h.id) AS members_json,
  (SELECT coalesce(json_agg(i ORDER BY i.year DESC), '[]')
     FROM income i WHERE i.household_id = h.id) AS incomes_json,
  (SELECT coalesce(json_agg(c ORDER BY c.id), '[]')
     FROM contact c WHERE c.household_id = h.id) AS contacts_json
FROM household h WHERE h.id = ANY(:ids)
"""


# Built once: text() parses its bind parameters on construction.
_LOAD = text(_LOAD_SQL)
_LOAD_FOR_UPDATE = text(_LOAD_SQL + " FOR UPDATE OF h")


def _json(value: Any) -> list[dict[str, Any]]:
    """The driver may hand json back decoded or as text."""
    decoded = orjson.loads(value) if isinstance(value, str | bytes) else value
    return list(decoded or [])


async def load_views(
    session: AsyncSession, ids: Sequence[uuid.UUID], *, for_update: bool = False
) -> dict[uuid.UUID, HouseholdView]:
    """The households with their members, incomes and contacts, in one round trip
    (`for_update` locks the household rows)."""
    if not ids:
        return {}
    query = _LOAD_FOR_UPDATE if for_update else _LOAD
    rows = (await session.execute(query, {"ids": list(ids)})).mappings()
    views: dict[uuid.UUID, HouseholdView] = {}
    for row in rows:
        household = dict(row)
        members = _json(household.pop("members_json"))
        for m in members:
            m["id"] = uuid.UUID(m["id"])
            m["household_id"] = uuid.UUID(m["household_id"])
            m["birth_date"] = date.fromisoformat(m["birth_date"])
        members.sort(key=_member_order)
        views[row["id"]] = HouseholdView(
            household,
            members=members,
            incomes=_json(household.pop("incomes_json")),
            contacts=_json(household.pop("contacts_json")),
        )
    return views


async def load_view(
    session: AsyncSession, household_id: uuid.UUID, *, for_update: bool = False
) -> HouseholdView:
    views = await load_views(session, [household_id], for_update=for_update)
    if household_id not in views:
        raise Problem(404, f"household {household_id} not found")
    return views[household_id]


def guarantees_of(view: HouseholdView) -> dict[str, dict[str, Any]]:
    return dict(view.household.get("guarantees") or {})


def _iso(value: date | None) -> str | None:
    return value.isoformat() if value is not None else None


def _float(value: float | None) -> float | None:
    return float(value) if value is not None else None


def snapshot_data(view: HouseholdView) -> dict[str, Any]:
    """The household as every registry event carries it, in its JSON form (what
    `contract.HouseholdSnapshot(...).model_dump(mode="json")` gives): no names, no ID
    numbers. Bulk imports put it in events as it is; tests check it against the contract."""
    h = view.household
    size = len(view.members)
    guarantees = guarantees_of(view)
    return {
        "household_id": view.id,
        "household_number": h["household_number"],
        "region_code": h["region_code"],
        "town_code": h["town_code"],
        "type": h["type"],
        "policy_enjoying": h["policy_enjoying"],
        "monitoring_status": h["monitoring_status"],
        "monitoring_since": _iso(h["monitoring_since"]),
        "monitoring_ended_on": _iso(h["monitoring_ended_on"]),
        "elimination_method": h["elimination_method"],
        "members": [
            {
                "person_id": str(m["id"]),
                "id_hash": m["id_hash"],
                "relation": m["relation"],
                "sex": m["sex"],
                "birth_date": m["birth_date"].isoformat(),
                "special_groups": list(m["special_groups"] or []),
                "labor_capacity": m["labor_capacity"],
                "schooling": m["schooling"],
                "medical_insurance": m["medical_insurance"],
            }
            for m in view.members
        ],
        "incomes": [
            {
                "year": i["year"],
                "total": float(i["total"]),
                "per_capita": float(domain.per_capita(i["total"], size)),
                "wage": _float(i["wage"]),
                "business": _float(i["business"]),
                "transfer": _float(i["transfer"]),
                "property": _float(i["property"]),
            }
            for i in view.incomes
        ],
        "guarantees": {k: v["status"] for k, v in guarantees.items()},
        "guarantees_verified_on": {
            k: date.fromisoformat(v["verified_on"]).isoformat()
            for k, v in guarantees.items()
            if v.get("verified_on")
        },
        "contacts": [
            {"role": c["role"], "name": c["name"], "phone": c["phone"], "unit": c["unit"]}
            for c in view.contacts
        ],
        "version": h["version"],
    }


def snapshot(view: HouseholdView) -> contract.HouseholdSnapshot:
    """The household as every registry event carries it, validated against the contract."""
    return contract.HouseholdSnapshot.model_validate(snapshot_data(view))


def _event(payload: BaseModel, household_id: str) -> CloudEvent:
    return make_event(SERVICE, payload, subject=household_id, correlation_id=correlation_id.get())


async def _history(
    session: AsyncSession,
    view: HouseholdView,
    *,
    actor: str,
    action: str,
    changes: dict[str, Any],
    person_id: uuid.UUID | None = None,
) -> None:
    await session.execute(
        insert(HIST).values(
            household_id=view.household["id"],
            person_id=person_id,
            actor=actor,
            action=action,
            changes=changes,
            version=view.household["version"],
        )
    )


async def _bump(session: AsyncSession, view: HouseholdView, values: dict[str, Any]) -> None:
    """Write changed household columns and the next version."""
    view.household["version"] += 1
    values = {**values, "version": view.household["version"], "updated_at": datetime.now(UTC)}
    view.household.update(values)
    await session.execute(update(H).where(H.c.id == view.household["id"]).values(**values))


# --- Drafts: a new household checked against the rules -----------------------------------


@dataclass(slots=True)
class PreparedHousehold:
    """The rows of a new household. They hold plain values only (ids as text, which
    asyncpg takes for uuid; special groups as tuples), so the garbage collector does not
    track them: an import keeps thousands between reading and writing."""

    household: dict[str, Any]
    members: list[dict[str, Any]]
    incomes: list[dict[str, Any]]
    contacts: list[dict[str, Any]]
    guarantees: dict[str, dict[str, Any]]


_INCOME_FIELDS = ("year", "total", "wage", "business", "transfer", "property")


def _fresh_ids(n: int) -> list[str]:
    """`n` new ids, as text: time-ordered UUIDs (version 7, RFC 9562: Unix milliseconds,
    then 74 random bits). A chunk's households and people land at the right edge of the
    primary-key and household_id indexes instead of on random pages all over them."""
    stamp = (time.time_ns() // 1_000_000).to_bytes(6, "big")
    noise = os.urandom(10 * n)
    raw = bytearray(b"".join(stamp + noise[i : i + 10] for i in range(0, 10 * n, 10)))
    raw[6::16] = bytes([(b & 0x0F) | 0x70 for b in raw[6::16]])  # version 7
    raw[8::16] = bytes([(b & 0x3F) | 0x80 for b in raw[8::16]])  # RFC 9562 variant
    hexes = raw.hex()
    return [
        f"{x[:8]}-{x[8:12]}-{x[12:16]}-{x[16:20]}-{x[20:]}"
        for x in (hexes[i : i + 32] for i in range(0, 32 * n, 32))
    ]


class _IdPool(threading.local):
    """Ids made a few hundred at a time, per thread (a forked process starts empty)."""

    def __init__(self) -> None:
        self.ids: list[str] = []

    def reset(self) -> None:
        self.ids = []


_id_pool = _IdPool()
os.register_at_fork(after_in_child=_id_pool.reset)


def _new_ids(n: int) -> list[str]:
    """`n` new ids (see _fresh_ids), never handed out twice."""
    ids = _id_pool.ids
    if len(ids) < n:
        ids.extend(_fresh_ids(max(n, 512)))
    taken = ids[:n]
    del ids[:n]
    return taken


HOUSEHOLD_CREATED: str = contract.HouseholdCreated.__event_type__  # type: ignore[attr-defined]


def created_event(p: PreparedHousehold, actor: str) -> CloudEvent:
    """The HouseholdCreated event of a prepared household, in the kernel's envelope. Its
    snapshot is built from rows that were just checked, so neither it nor the envelope is
    validated again through the models (an import builds one per household; tests check
    `event.payload()`, and that the JSON is the contract's and the envelope make_event's)."""
    view = HouseholdView(
        household=p.household,
        members=sorted(p.members, key=_member_order),
        incomes=sorted(p.incomes, key=lambda i: -i["year"]),
        contacts=[{"unit": None, **c} for c in p.contacts],
    )
    return CloudEvent.model_construct(
        specversion="1.0",
        id=_new_ids(1)[0],
        source=f"/backstop/{SERVICE}",
        type=HOUSEHOLD_CREATED,
        subject=view.id,
        time=datetime.now(UTC),
        datacontenttype="application/json",
        data={"household": snapshot_data(view), "changed_by": actor},
        correlationid=correlation_id.get(),
    )


def _guarantee_entry(value: str | GuaranteeIn | dict[str, Any], today: date) -> dict[str, Any]:
    if isinstance(value, str):
        return {"status": value, "verified_on": None}
    if isinstance(value, GuaranteeIn):
        value = value.model_dump()
    verified = value["verified_on"]
    if verified is not None and verified > today:
        raise domain.RuleViolation("verified_on", "must not be in the future")
    return {"status": value["status"], "verified_on": verified.isoformat() if verified else None}


def prepare_household(
    draft: HouseholdCreate, *, villages: Container[str], pii_key: str, today: date | None = None
) -> PreparedHousehold:
    """Check a draft against the register's rules (region, ID numbers, one head, income,
    contacts) and build its rows. Raises DraftInvalid naming every bad field."""
    return prepare_body(draft.model_dump(), villages=villages, pii_key=pii_key, today=today)


def prepare_body(
    body: dict[str, Any], *, villages: Container[str], pii_key: str, today: date | None = None
) -> PreparedHousehold:
    """prepare_household for a draft as `HouseholdCreate.model_dump()` gives it (an import
    checks its drafts' shape without building the models)."""
    today = today or date.today()
    errors: list[tuple[Loc, str]] = []
    region = body["region_code"].strip()
    if region not in villages:
        errors.append((["region_code"], f"{region} is not a village of this county"))
    household_id, *person_ids = _new_ids(1 + len(body["members"]))
    members: list[dict[str, Any]] = []
    for i, m in enumerate(body["members"]):
        try:
            number, born, sex = domain.id_number_facts(m["id_number"], today)
        except domain.RuleViolation as exc:
            errors.append((["members", i, "id_number"], exc.message))
            continue
        row = _member_row(m, number, sex, born, pii_key, person_id=person_ids[i])
        row["household_id"] = household_id
        members.append(row)
    if len({m["id_number"] for m in members}) < len(members):
        for i in domain.duplicate_ids(m["id_number"] for m in members):
            errors.append((["members", i, "id_number"], "the same person is listed twice"))
    try:
        domain.check_relations([m["relation"] for m in body["members"]])
    except domain.RuleViolation as exc:
        errors.append((["members"], exc.message))
    incomes: list[dict[str, Any]] = []
    if body["annual_income"] is not None:
        try:
            income = domain.make_income(**body["annual_income"], today=today)
            incomes.append({f: getattr(income, f) for f in _INCOME_FIELDS})
        except domain.RuleViolation as exc:
            errors.append((["annual_income", exc.field], exc.message))
    contacts = []
    for i, c in enumerate(body["contacts"]):
        if not domain.valid_phone(c["phone"]):
            errors.append((["contacts", i, "phone"], "not a valid phone number"))
        contacts.append(dict(c))
    guarantees: dict[str, dict[str, Any]] = {}
    for item, value in body["guarantees"].items():
        try:
            guarantees[item] = _guarantee_entry(value, today)
        except domain.RuleViolation as exc:
            errors.append((["guarantees", item, exc.field], exc.message))
    if errors:
        raise DraftInvalid(errors)
    monitored = body["type"] in domain.MONITORED_TYPES
    for income_row in incomes:
        income_row["household_id"] = household_id
    for contact_row in contacts:
        contact_row["household_id"] = household_id
    household = {
        "id": household_id,
        "household_number": body["household_number"],
        "region_code": region,
        "town_code": domain.town_of(region),
        "type": body["type"],
        "policy_enjoying": body["policy_enjoying"],
        # A household registered as one of the monitored types is monitored from today.
        "monitoring_status": "monitored" if monitored else "none",
        "monitoring_since": today if monitored else None,
        "monitoring_ended_on": None,
        "elimination_method": None,
        "elimination_reason": None,
        "monitoring_case_id": None,
        "guarantees": guarantees,
        "version": 1,
    }
    return PreparedHousehold(household, members, incomes, contacts, guarantees)


def _member_row(
    m: dict[str, Any],
    id_number: str,
    sex: str,
    birth_date: date,
    pii_key: str,
    *,
    person_id: uuid.UUID | str,
) -> dict[str, Any]:
    """The `person` row of a member (a MemberCreate, dumped)."""
    return {
        "id": person_id,
        "id_number": id_number,
        "id_hash": id_hasher(pii_key)(id_number),
        "name": (m["name"] or "").strip(),
        "relation": m["relation"],
        "sex": sex,
        "birth_date": birth_date,
        "special_groups": tuple(m["special_groups"] or ()),
        "labor_capacity": m["labor_capacity"] or "full",
        "schooling": m["schooling"],
        "medical_insurance": True if m["medical_insurance"] is None else m["medical_insurance"],
        "removed_reason": None,
    }


async def village_codes(session: AsyncSession) -> set[str]:
    rows = await session.execute(select(R.c.code).where(R.c.level == "village"))
    return set(rows.scalars())


@dataclass
class BulkResult:
    created: list[str] = field(default_factory=list)
    existing: list[str] = field(default_factory=list)
    # (index in the input, location, message, status)
    rejected: list[tuple[int, Loc, str, int]] = field(default_factory=list)


_HOUSEHOLD_COLUMNS = (
    "id", "household_number", "region_code", "town_code", "type", "policy_enjoying",
    "monitoring_status", "monitoring_since", "monitoring_ended_on", "elimination_method",
    "elimination_reason", "monitoring_case_id", "guarantees", "version",
)  # fmt: skip
_PERSON_COLUMNS = (
    "id", "household_id", "id_number", "id_hash", "name", "relation", "sex", "birth_date",
    "special_groups", "labor_capacity", "schooling", "medical_insurance", "removed_reason",
)  # fmt: skip
_INCOME_COLUMNS = ("household_id", "year", "total", "wage", "business", "transfer", "property")
_CONTACT_COLUMNS = ("household_id", "role", "name", "phone", "unit")
_HISTORY_COLUMNS = ("household_id", "person_id", "actor", "action", "changes", "version")
# Row dicts to COPY records, at C speed (guarantees and version follow the household's).
_household_values = itemgetter(*_HOUSEHOLD_COLUMNS[:-2])
_person_values = itemgetter(*_PERSON_COLUMNS)
_income_values = itemgetter(*_INCOME_COLUMNS)


async def _copy(pg: Any, table: str, columns: Sequence[str], rows: list[tuple[Any, ...]]) -> None:
    if rows:
        await pg.copy_records_to_table(table, records=rows, columns=list(columns))


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


# --- Commands -----------------------------------------------------------------------------


async def create_household(
    sessions: SessionFactory, draft: HouseholdCreate, *, actor: str, pii_key: str
) -> str:
    """Register one household. 422 naming the field for a bad draft, 409 when a member is
    already in another household or the household number is taken."""
    async with sessions() as session:
        villages = await village_codes(session)
    try:
        prepared = prepare_household(draft, villages=villages, pii_key=pii_key)
    except DraftInvalid as exc:
        raise problem_of(exc) from None
    for attempt in range(_RACE_RETRIES):
        try:
            async with unit_of_work(sessions) as session:
                result = await insert_households(
                    session, [prepared], actor=actor, skip_existing_numbers=False
                )
            break
        except UNIQUE_VIOLATIONS:
            # A concurrent writer registered one of these people (or the number) first;
            # run the checks again so the answer names the field.
            if attempt == _RACE_RETRIES - 1:
                raise Problem(
                    409, "a member or the household number is already registered"
                ) from None
    if result.rejected:
        _, loc, msg, status = result.rejected[0]
        raise problem_of(DraftInvalid([(loc, msg)], status=status))
    return result.created[0]


async def _village_or_422(session: AsyncSession, code: str, loc: Loc) -> str:
    code = code.strip()
    level = await session.scalar(select(R.c.level).where(R.c.code == code))
    if level != "village":
        raise problem_of(DraftInvalid([(loc, f"{code} is not a village of this county")]))
    return code


def _guarantee_changes(
    current: dict[str, dict[str, Any]], new: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    return {
        f"guarantees.{k}": {"from": current.get(k), "to": v}
        for k, v in new.items()
        if current.get(k) != v
    }


async def update_household(
    sessions: SessionFactory,
    household_id: uuid.UUID,
    patch: HouseholdPatch,
    *,
    actor: str,
    can_see: Any,
) -> None:
    """Change type, policy flag, number, village, guarantees, or correct the monitoring
    status. Emits HouseholdUpdated (and MonitoringChanged for a status correction)."""
    today = date.today()
    async with unit_of_work(sessions) as session:
        view = await load_view(session, household_id, for_update=True)
        _require(can_see, view.region_code)
        values: dict[str, Any] = {}
        changes: dict[str, Any] = {}
        fields = patch.model_fields_set
        if patch.region_code is not None and patch.region_code != view.region_code:
            code = await _village_or_422(session, patch.region_code, ["body", "region_code"])
            _require(can_see, code)
            values |= {"region_code": code, "town_code": domain.town_of(code)}
        for name in ("type", "policy_enjoying", "household_number"):
            if name in fields and getattr(patch, name) is not None:
                values[name] = getattr(patch, name)
        if (
            patch.household_number is not None
            and patch.household_number != view.household["household_number"]
        ):
            taken = await session.scalar(
                select(H.c.id).where(H.c.household_number == patch.household_number)
            )
            if taken is not None:
                raise problem_of(
                    DraftInvalid([(["household_number"], "already registered")], status=409)
                )
        if patch.guarantees is not None:
            merged = guarantees_of(view)
            for item, value in patch.guarantees.items():
                try:
                    merged[item] = _guarantee_entry(value, today)
                except domain.RuleViolation as exc:
                    raise problem_of(
                        DraftInvalid([(["guarantees", item, exc.field], exc.message)])
                    ) from None
            changes |= _guarantee_changes(guarantees_of(view), merged)
            values["guarantees"] = merged
        for name, value in list(values.items()):
            if name != "guarantees" and view.household.get(name) != value:
                changes[name] = {"from": view.household.get(name), "to": value}
            elif name != "guarantees":
                del values[name]
        previous_status = view.household["monitoring_status"]
        status_changed = (
            patch.monitoring_status is not None and patch.monitoring_status != previous_status
        )
        if status_changed:
            values |= _monitoring_correction(view, patch, today)
            changes["monitoring_status"] = {"from": previous_status, "to": patch.monitoring_status}
        if not changes:
            return
        await _bump(session, view, values)
        await _history(session, view, actor=actor, action="household.updated", changes=changes)
        snap = snapshot(view)
        event: BaseModel
        if status_changed:
            event = contract.MonitoringChanged(
                household=snap,
                changed_by=actor,
                previous_status=previous_status,
                elimination_method=view.household["elimination_method"],
            )
        else:
            event = contract.HouseholdUpdated(
                household=snap, changed_by=actor, changed_fields=sorted(changes)
            )
        await outbox.publish(session, _event(event, view.id))


def _monitoring_correction(
    view: HouseholdView, patch: HouseholdPatch, today: date
) -> dict[str, Any]:
    status = patch.monitoring_status
    if status == "monitored":
        return {
            "monitoring_status": "monitored",
            "monitoring_since": today,
            "monitoring_ended_on": None,
            "elimination_method": None,
            "elimination_reason": None,
        }
    if status == "eliminated":
        if patch.elimination_method is None:
            raise problem_of(DraftInvalid([(["elimination_method"], "required to eliminate risk")]))
        return {
            "monitoring_status": "eliminated",
            "monitoring_ended_on": today,
            "elimination_method": patch.elimination_method,
            "elimination_reason": patch.reason,
        }
    return {
        "monitoring_status": "none",
        "monitoring_since": None,
        "monitoring_ended_on": None,
        "elimination_method": None,
        "elimination_reason": None,
    }


def _require(can_see: Any, region_code: str) -> None:
    if not can_see(region_code):
        raise Problem(403, f"region {region_code} is outside this client's regions")


def _member_public_changes(m: dict[str, Any]) -> dict[str, Any]:
    return {"id_number": mask_id(m["id_number"]), "relation": m["relation"]}


async def add_member(
    sessions: SessionFactory,
    household_id: uuid.UUID,
    member: MemberCreate,
    *,
    actor: str,
    can_see: Any,
    pii_key: str,
) -> str:
    """Add a person (a birth, a marriage in ...). 409 if they are in another household; a
    person removed earlier comes back with the same person id."""
    async with unit_of_work(sessions) as session:
        view = await load_view(session, household_id, for_update=True)
        _require(can_see, view.region_code)
        try:
            parsed = domain.validate_id_number(member.id_number)
        except domain.RuleViolation as exc:
            raise problem_of(DraftInvalid([(["id_number"], exc.message)])) from None
        if member.relation == "head":
            raise problem_of(DraftInvalid([(["relation"], "the household already has a head")]))
        row = _member_row(
            member.model_dump(),
            parsed.value,
            parsed.sex,
            parsed.birth_date,
            pii_key,
            person_id=uuid.uuid4(),
        )
        row["household_id"] = view.household["id"]
        existing = (
            await session.execute(
                select(P.c.id, P.c.household_id)
                .where(P.c.id_number == parsed.value)
                .with_for_update()
            )
        ).first()
        if existing is not None and existing.household_id is not None:
            raise problem_of(
                DraftInvalid([(["id_number"], "this person is already in a household")], status=409)
            )
        if existing is not None:
            row["id"] = existing.id
            await session.execute(
                update(P)
                .where(P.c.id == existing.id)
                .values(**{k: v for k, v in row.items() if k not in ("id", "id_number")})
            )
        else:
            try:
                async with session.begin_nested():
                    await session.execute(insert(P).values(**row))
            except IntegrityError:
                raise problem_of(
                    DraftInvalid(
                        [(["id_number"], "this person is already in a household")], status=409
                    )
                ) from None
        view.members.append(row)
        view.members.sort(key=_member_order)
        await _bump(session, view, {})
        await _history(
            session,
            view,
            actor=actor,
            action="member.added",
            changes={"member": _member_public_changes(row)},
            person_id=row["id"],
        )
        await outbox.publish(
            session,
            _event(
                contract.MemberAdded(
                    household=snapshot(view), changed_by=actor, person_id=str(row["id"])
                ),
                view.id,
            ),
        )
        return str(row["id"])


def _find_member(view: HouseholdView, person_id: uuid.UUID) -> dict[str, Any]:
    for m in view.members:
        if m["id"] == person_id:
            return m
    raise Problem(404, f"person {person_id} is not a member of household {view.id}")


async def update_member(
    sessions: SessionFactory,
    household_id: uuid.UUID,
    person_id: uuid.UUID,
    patch: MemberPatch,
    *,
    actor: str,
    can_see: Any,
) -> None:
    async with unit_of_work(sessions) as session:
        view = await load_view(session, household_id, for_update=True)
        _require(can_see, view.region_code)
        member = _find_member(view, person_id)
        values = {
            k: v
            for k, v in patch.model_dump(exclude_unset=True).items()
            if (v is not None or k == "schooling") and k != "former_head_relation"
        }
        former_head = None
        if values.get("relation") == "head" and member["relation"] != "head":
            # 户主变更: the new head takes over; the former head gets the relation given.
            former_head = next(m for m in view.members if m["relation"] == "head")
        relations = [
            values.get("relation", m["relation"]) if m is member
            else (patch.former_head_relation or "other") if m is former_head
            else m["relation"]
            for m in view.members
        ]  # fmt: skip
        try:
            domain.check_relations(relations)
        except domain.RuleViolation as exc:
            raise problem_of(DraftInvalid([(["relation"], exc.message)])) from None
        changes = {k: {"from": member[k], "to": v} for k, v in values.items() if member[k] != v}
        if not changes:
            return
        if former_head is not None:
            demoted = patch.former_head_relation or "other"
            await session.execute(
                update(P).where(P.c.id == former_head["id"]).values(relation=demoted)
            )
            changes["former_head"] = {"person_id": str(former_head["id"]), "relation": demoted}
            former_head["relation"] = demoted
        await session.execute(update(P).where(P.c.id == person_id).values(**values))
        member.update(values)
        view.members.sort(key=_member_order)
        await _bump(session, view, {})
        await _history(
            session,
            view,
            actor=actor,
            action="member.updated",
            changes=changes,
            person_id=person_id,
        )
        await outbox.publish(
            session,
            _event(
                contract.HouseholdUpdated(
                    household=snapshot(view),
                    changed_by=actor,
                    changed_fields=[f"members.{k}" for k in sorted(changes)],
                ),
                view.id,
            ),
        )


async def remove_member(
    sessions: SessionFactory,
    household_id: uuid.UUID,
    person_id: uuid.UUID,
    *,
    reason: str | None,
    actor: str,
    can_see: Any,
) -> None:
    """Take a person off the household (death, marriage out ...). The head cannot be
    removed while others remain: make someone else head first."""
    async with unit_of_work(sessions) as session:
        view = await load_view(session, household_id, for_update=True)
        _require(can_see, view.region_code)
        member = _find_member(view, person_id)
        if member["relation"] == "head":
            raise problem_of(
                DraftInvalid(
                    [(["person_id"], "the head cannot be removed; make another member head first")],
                    status=409,
                )
            )
        await session.execute(
            update(P).where(P.c.id == person_id).values(household_id=None, removed_reason=reason)
        )
        view.members.remove(member)
        await _bump(session, view, {})
        await _history(
            session,
            view,
            actor=actor,
            action="member.removed",
            changes={"member": _member_public_changes(member), "reason": reason},
            person_id=person_id,
        )
        await outbox.publish(
            session,
            _event(
                contract.MemberRemoved(
                    household=snapshot(view),
                    changed_by=actor,
                    person_id=str(person_id),
                    id_hash=member["id_hash"],
                    reason=reason,
                ),
                view.id,
            ),
        )


async def move_member(
    sessions: SessionFactory,
    household_id: uuid.UUID,
    person_id: uuid.UUID,
    *,
    to_household_id: uuid.UUID,
    relation: str,
    actor: str,
    can_see: Any,
) -> None:
    """Move a person to another household (分户, marriage within the county ...): same
    person id, so their history follows them. Emits MemberRemoved for the old household
    and MemberMoved for the new one."""
    if to_household_id == household_id:
        raise problem_of(DraftInvalid([(["to_household_id"], "the person is already in it")]))
    async with unit_of_work(sessions) as session:
        # Lock both in a fixed order so two opposite moves cannot deadlock.
        views = await load_views(session, sorted([household_id, to_household_id]), for_update=True)
        if household_id not in views:
            raise Problem(404, f"household {household_id} not found")
        if to_household_id not in views:
            raise problem_of(DraftInvalid([(["to_household_id"], "no such household")], status=404))
        source, target = views[household_id], views[to_household_id]
        _require(can_see, source.region_code)
        _require(can_see, target.region_code)
        member = _find_member(source, person_id)
        if member["relation"] == "head":
            raise problem_of(
                DraftInvalid(
                    [(["person_id"], "the head cannot be moved; make another member head first")],
                    status=409,
                )
            )
        if relation == "head":
            raise problem_of(DraftInvalid([(["relation"], "the household already has a head")]))
        await session.execute(
            update(P)
            .where(P.c.id == person_id)
            .values(household_id=target.household["id"], relation=relation)
        )
        source.members.remove(member)
        moved = {**member, "household_id": target.household["id"], "relation": relation}
        target.members.append(moved)
        target.members.sort(key=_member_order)
        await _bump(session, source, {})
        await _bump(session, target, {})
        details = _member_public_changes(moved)
        await _history(
            session,
            source,
            actor=actor,
            action="member.moved_out",
            person_id=person_id,
            changes={"member": details, "to_household_id": target.id},
        )
        await _history(
            session,
            target,
            actor=actor,
            action="member.moved_in",
            person_id=person_id,
            changes={"member": details, "from_household_id": source.id},
        )
        await outbox.publish_many(
            session,
            [
                _event(
                    contract.MemberRemoved(
                        household=snapshot(source),
                        changed_by=actor,
                        person_id=str(person_id),
                        id_hash=member["id_hash"],
                        reason="moved",
                    ),
                    source.id,
                ),
                _event(
                    contract.MemberMoved(
                        household=snapshot(target),
                        changed_by=actor,
                        person_id=str(person_id),
                        from_household_id=source.id,
                    ),
                    target.id,
                ),
            ],
        )


async def set_income(
    sessions: SessionFactory,
    household_id: uuid.UUID,
    income: domain.Income,
    *,
    actor: str,
    can_see: Any,
) -> None:
    """Record (or correct) one year's income."""
    async with unit_of_work(sessions) as session:
        view = await load_view(session, household_id, for_update=True)
        _require(can_see, view.region_code)
        await _apply_income(session, view, income, actor=actor)


async def _apply_income(
    session: AsyncSession, view: HouseholdView, income: domain.Income, *, actor: str
) -> bool:
    row = {"household_id": view.household["id"], **income.__dict__}
    current = next((i for i in view.incomes if i["year"] == income.year), None)
    if current is not None and all(current[k] == row[k] for k in row):
        return False
    await session.execute(
        delete(INC).where(INC.c.household_id == view.household["id"], INC.c.year == income.year)
    )
    await session.execute(insert(INC).values(**row))
    view.incomes = sorted(
        [i for i in view.incomes if i["year"] != income.year] + [row], key=lambda i: -i["year"]
    )
    await _bump(session, view, {})
    changes = {f"income.{income.year}": {"from": current and current["total"], "to": income.total}}
    await _history(session, view, actor=actor, action="income.recorded", changes=changes)
    await outbox.publish(
        session,
        _event(
            contract.HouseholdUpdated(
                household=snapshot(view), changed_by=actor, changed_fields=["incomes"]
            ),
            view.id,
        ),
    )
    return True


async def set_contacts(
    sessions: SessionFactory,
    household_id: uuid.UUID,
    contacts: list[ContactIn],
    *,
    actor: str,
    can_see: Any,
) -> None:
    """Replace the household's key contacts (重点联系人)."""
    for i, c in enumerate(contacts):
        if not domain.valid_phone(c.phone):
            raise problem_of(DraftInvalid([(["contacts", i, "phone"], "not a valid phone number")]))
    async with unit_of_work(sessions) as session:
        view = await load_view(session, household_id, for_update=True)
        _require(can_see, view.region_code)
        rows = [{"household_id": view.household["id"], **c.model_dump()} for c in contacts]
        await session.execute(delete(C).where(C.c.household_id == view.household["id"]))
        if rows:
            await session.execute(insert(C), rows)
        before = [{"role": c["role"], "name": c["name"]} for c in view.contacts]
        view.contacts = rows
        await _bump(session, view, {})
        await _history(
            session,
            view,
            actor=actor,
            action="contacts.replaced",
            changes={
                "contacts": {
                    "from": before,
                    "to": [{"role": c.role, "name": c.name} for c in contacts],
                }
            },
        )
        await outbox.publish(
            session,
            _event(
                contract.HouseholdUpdated(
                    household=snapshot(view), changed_by=actor, changed_fields=["contacts"]
                ),
                view.id,
            ),
        )


# --- Event handlers (assistance.decisions, assistance.findings) ---------------------------


async def _view_or_none(session: AsyncSession, household_id: str) -> HouseholdView | None:
    try:
        hid = uuid.UUID(household_id)
    except ValueError:
        return None
    views = await load_views(session, [hid], for_update=True)
    return views.get(hid)


def _state(view: HouseholdView) -> domain.MonitoringState:
    h = view.household
    return domain.MonitoringState(
        status=h["monitoring_status"],
        type=h["type"],
        since=h["monitoring_since"],
        ended_on=h["monitoring_ended_on"],
        elimination_method=h["elimination_method"],
        case_id=h["monitoring_case_id"],
    )


async def on_monitoring_started(session: AsyncSession, event: CloudEvent) -> None:
    """纳入监测, decided by assistance: the household becomes monitored."""
    data = event.payload()
    assert isinstance(data, MonitoringStarted)
    view = await _view_or_none(session, data.household_id)
    if view is None:
        log.warning("monitoring decision for unknown household %s ignored", data.household_id)
        return
    before = _state(view)
    after = domain.start_monitoring(
        before,
        monitoring_type=data.monitoring_type,
        decided_on=data.decided_on,
        case_id=data.case_id,
    )
    if after is None:
        return
    await _apply_monitoring(
        session, view, before, after, actor=data.approved_by, reason=None, factors=data.risk_factors
    )


async def on_risk_eliminated(session: AsyncSession, event: CloudEvent) -> None:
    """风险消除, decided by assistance: the household leaves monitoring."""
    data = event.payload()
    assert isinstance(data, RiskEliminated)
    view = await _view_or_none(session, data.household_id)
    if view is None:
        log.warning("elimination for unknown household %s ignored", data.household_id)
        return
    before = _state(view)
    after = domain.eliminate_risk(
        before, method=data.method, decided_on=data.decided_on, case_id=data.case_id
    )
    if after is None:
        return
    await _apply_monitoring(
        session, view, before, after, actor=data.approved_by, reason=data.reason, factors=[]
    )


async def _apply_monitoring(
    session: AsyncSession,
    view: HouseholdView,
    before: domain.MonitoringState,
    after: domain.MonitoringState,
    *,
    actor: str,
    reason: str | None,
    factors: list[str],
) -> None:
    values = {
        "monitoring_status": after.status,
        "type": after.type,
        "monitoring_since": after.since,
        "monitoring_ended_on": after.ended_on,
        "elimination_method": after.elimination_method,
        "elimination_reason": reason,
        "monitoring_case_id": after.case_id,
    }
    await _bump(session, view, values)
    changes: dict[str, Any] = {
        "monitoring_status": {"from": before.status, "to": after.status},
        "case_id": after.case_id,
    }
    if before.type != after.type:
        changes["type"] = {"from": before.type, "to": after.type}
    if after.elimination_method:
        changes["elimination_method"] = after.elimination_method
        changes["reason"] = reason
    if factors:
        changes["risk_factors"] = factors
    await _history(session, view, actor=actor, action="monitoring.changed", changes=changes)
    await outbox.publish(
        session,
        _event(
            contract.MonitoringChanged(
                household=snapshot(view),
                changed_by=actor,
                previous_status=cast(Any, before.status),
                elimination_method=cast(Any, after.elimination_method),
            ),
            view.id,
        ),
    )


async def on_finding_observed(session: AsyncSession, event: CloudEvent) -> None:
    """A visit, verification or review saw a change: apply guarantees, income and schooling
    to the household (the field is a source of risk, like the departments)."""
    data = event.payload()
    assert isinstance(data, FindingObserved)
    view = await _view_or_none(session, data.household_id)
    if view is None:
        log.warning("finding for unknown household %s ignored", data.household_id)
        return
    changes: dict[str, Any] = {}
    changed_fields: set[str] = set()
    for person_id, schooling in data.schooling.items():
        member = next((m for m in view.members if str(m["id"]) == person_id), None)
        if member is None or schooling not in domain.SCHOOLING:
            log.warning("finding names unknown person or schooling %r; skipped", schooling)
            continue
        if member["schooling"] != schooling:
            changes[f"members.{person_id}.schooling"] = {
                "from": member["schooling"],
                "to": schooling,
            }
            member["schooling"] = schooling
            changed_fields.add("members.schooling")
            await session.execute(
                update(P).where(P.c.id == member["id"]).values(schooling=schooling)
            )
    current = guarantees_of(view)
    merged = dict(current)
    verified = data.observed_on.isoformat()
    for item, status in data.guarantees.items():
        if item in domain.GUARANTEE_ITEMS:
            merged[item] = {"status": status, "verified_on": verified}
    if changed_fields and "compulsory_education" not in data.guarantees:
        derived = domain.schooling_guarantee(
            [(m["birth_date"], m["schooling"]) for m in view.members], data.observed_on
        )
        if derived is not None:
            merged["compulsory_education"] = {"status": derived, "verified_on": verified}
    guarantee_changes = _guarantee_changes(current, merged)
    values: dict[str, Any] = {}
    if guarantee_changes:
        changes |= guarantee_changes
        values["guarantees"] = merged
        changed_fields.add("guarantees")
    if data.income is not None:
        income = domain.Income(year=data.income.year, total=max(0.0, data.income.total))
        row = next((i for i in view.incomes if i["year"] == income.year), None)
        if row is None or row["total"] != income.total:
            await session.execute(
                delete(INC).where(
                    INC.c.household_id == view.household["id"], INC.c.year == income.year
                )
            )
            new_row = {"household_id": view.household["id"], **income.__dict__}
            await session.execute(insert(INC).values(**new_row))
            view.incomes = sorted(
                [i for i in view.incomes if i["year"] != income.year] + [new_row],
                key=lambda i: -i["year"],
            )
            changes[f"income.{income.year}"] = {"from": row and row["total"], "to": income.total}
            changed_fields.add("incomes")
    if not changes:
        return
    await _bump(session, view, values)
    changes["origin"] = data.origin
    await _history(session, view, actor=data.observed_by, action="finding.applied", changes=changes)
    await outbox.publish(
        session,
        _event(
            contract.HouseholdUpdated(
                household=snapshot(view),
                changed_by=data.observed_by,
                changed_fields=sorted(changed_fields),
            ),
            view.id,
        ),
    )


# --- Bulk import ---------------------------------------------------------------------------


@dataclass
class ImportReport:
    rows: int = 0
    households: int = 0
    created: int = 0
    existing: int = 0
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
) -> ImportReport:
    """Register households from an import, `chunk_size` per transaction, committed in file
    order. Idempotent by household number: one already registered is left unchanged. A
    bad household is reported with its row and field and the good ones go in.

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
            for attempt in range(_RACE_RETRIES):
                try:
                    async with unit_of_work(sessions) as session:
                        result = await insert_households(
                            session, prepared, actor=actor, people_written=this.people_in.set
                        )
                        if previous is not None and not await _succeeded(previous):
                            raise _EarlierChunkFailed
                        return result
                except UNIQUE_VIOLATIONS:
                    # Someone else registered one of these people meanwhile: check again.
                    if attempt == _RACE_RETRIES - 1:
                        raise
            raise AssertionError("unreachable")
        finally:
            this.people_in.set()  # whatever happened, the next chunk waits no longer
            this.previous = None  # and the chunks before are let go

    def written(households: list[_Staged], result: BulkResult) -> None:
        report.created += len(result.created)
        report.existing += len(result.existing)
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
