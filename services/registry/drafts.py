"""A new household checked against the register's rules (region, ID numbers, one head,
income, contacts, guarantees) before anything is written: a draft becomes the rows of a
PreparedHousehold, or DraftInvalid naming every bad field."""

from __future__ import annotations

import os
import threading
import time
import uuid
import weakref
from collections.abc import Container
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from backstop.db import SessionFactory
from backstop.errors import Problem
from backstop.idnumber import id_hasher, valid_phone
from services.registry import domain
from services.registry.models import NATIONAL_MEMBER_FIELDS, GuaranteeIn, HouseholdCreate
from services.registry.views import R

Loc = list[str | int]


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


def new_ids(n: int) -> list[str]:
    """`n` new ids (see _fresh_ids), never handed out twice."""
    ids = _id_pool.ids
    if len(ids) < n:
        ids.extend(_fresh_ids(max(n, 512)))
    taken = ids[:n]
    del ids[:n]
    return taken


def guarantee_entry(value: str | GuaranteeIn | dict[str, Any], today: date) -> dict[str, Any]:
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
    household_id, *person_ids = new_ids(1 + len(body["members"]))
    members: list[dict[str, Any]] = []
    for i, m in enumerate(body["members"]):
        try:
            number, born, sex = domain.id_number_facts(m["id_number"], today)
        except domain.RuleViolation as exc:
            errors.append((["members", i, "id_number"], exc.message))
            continue
        row = member_row(m, number, sex, born, pii_key, person_id=person_ids[i])
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
            incomes.append(
                {f: getattr(income, f) for f in _INCOME_FIELDS}
                | {"household_size": len(body["members"])}
            )
        except domain.RuleViolation as exc:
            errors.append((["annual_income", exc.field], exc.message))
    contacts = []
    for i, c in enumerate(body["contacts"]):
        if not valid_phone(c["phone"]):
            errors.append((["contacts", i, "phone"], "not a valid phone number"))
        contacts.append(dict(c))
    guarantees: dict[str, dict[str, Any]] = {}
    for item, value in body["guarantees"].items():
        try:
            guarantees[item] = guarantee_entry(value, today)
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
        "exit_year": body.get("exit_year"),
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


def member_row(
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
        **{k: m.get(k) for k in NATIONAL_MEMBER_FIELDS},
        "removed_reason": None,
    }


async def village_codes(session: AsyncSession) -> set[str]:
    rows = await session.execute(select(R.c.code).where(R.c.level == "village"))
    return set(rows.scalars())


# The village codes each process holds, by database (engine): a single registration
# checks its village against these instead of reading every code again.
_VILLAGES: weakref.WeakKeyDictionary[object, tuple[float, frozenset[str]]] = (
    weakref.WeakKeyDictionary()
)
VILLAGES_REFRESH_S = 300.0  # picks up regions another process reloaded
VILLAGES_MISS_RELOAD_S = 10.0


async def known_villages(sessions: SessionFactory, wanted: str) -> frozenset[str]:
    """The county's village codes, cached in the process. Read again once they are
    VILLAGES_REFRESH_S old, when `wanted` is not among them (a village added since; at
    most every VILLAGES_MISS_RELOAD_S, so unknown codes cannot make every request read
    them) and after `forget_villages` (regions reloaded in this process)."""
    key = sessions.kw["bind"]
    now = time.monotonic()
    loaded_at, codes = _VILLAGES.get(key, (-VILLAGES_REFRESH_S, frozenset()))
    age = now - loaded_at
    if age >= VILLAGES_REFRESH_S or (wanted not in codes and age >= VILLAGES_MISS_RELOAD_S):
        async with sessions() as session:
            codes = frozenset(await village_codes(session))
        _VILLAGES[key] = (now, codes)
    return codes


def forget_villages() -> None:
    _VILLAGES.clear()
