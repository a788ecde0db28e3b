"""A household as the registry loads it (household row, members, incomes, contacts, in one
round trip), its snapshot (what every `registry.households` event carries: members with
`id_hash`, never the ID number, and a version that increases with every change), and the
writes every change ends with: the next version, a history entry, the event."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import orjson
from pydantic import BaseModel
from sqlalchemy import delete, insert, update
from sqlalchemy.ext.asyncio import AsyncSession

from backstop import crypto, outbox
from backstop.contracts import registry as contract
from backstop.db import raw_connection
from backstop.errors import Problem
from backstop.events import make_event
from backstop.idnumber import mask_phone
from backstop.logs import correlation_id
from backstop.settings import get_settings
from services.registry import domain
from services.registry.models import (
    NATIONAL_MEMBER_FIELDS,
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


def year_size(income: dict[str, Any], size_now: int) -> int:
    """The members a year's income was earned by (today's, for rows that predate it)."""
    return int(income.get("household_size") or size_now)


def member_order(m: dict[str, Any]) -> tuple[int, date]:
    return (0 if m["relation"] == "head" else 1, m["birth_date"])


# A household row `h` with its members, incomes (newest first) and contacts as JSON text:
# orjson parses that several times faster than the driver's codec.
VIEW_COLUMNS = """h.*,
  (SELECT coalesce(json_agg(p), '[]') FROM person p WHERE p.household_id = h.id)::text
    AS members_json,
  (SELECT coalesce(json_agg(i ORDER BY i.year DESC), '[]')
     FROM income i WHERE i.household_id = h.id)::text AS incomes_json,
  (SELECT coalesce(json_agg(c ORDER BY c.id), '[]')
     FROM contact c WHERE c.household_id = h.id)::text AS contacts_json"""
# Households with their members, incomes and contacts, by id (the GET reads them too).
VIEWS_SQL = f"SELECT {VIEW_COLUMNS} FROM household h WHERE h.id = ANY($1::uuid[])"
_VIEWS_FOR_UPDATE = VIEWS_SQL + " FOR UPDATE OF h"


async def load_views(
    session: AsyncSession, ids: Sequence[uuid.UUID], *, for_update: bool = False
) -> dict[uuid.UUID, HouseholdView]:
    """The households with their members, incomes and contacts, in one round trip, inside
    the session's transaction (`for_update` locks the household rows)."""
    if not ids:
        return {}
    pg = await raw_connection(session)
    rows = await pg.fetch(_VIEWS_FOR_UPDATE if for_update else VIEWS_SQL, list(ids))
    views: dict[uuid.UUID, HouseholdView] = {}
    for row in rows:
        household = dict(row)
        members = orjson.loads(household.pop("members_json"))
        for m in members:
            m["id"] = uuid.UUID(m["id"])
            m["household_id"] = row["id"]  # what the subquery matched on
            m["birth_date"] = date.fromisoformat(m["birth_date"])
        members.sort(key=member_order)
        incomes = orjson.loads(household.pop("incomes_json"))
        for i in incomes:  # numeric(14,2) through JSON: back to exact decimals
            for k in ("total", *domain.INCOME_PARTS):
                if i[k] is not None:
                    i[k] = domain.money(i[k])
        views[row["id"]] = HouseholdView(
            household,
            members=members,
            incomes=incomes,
            contacts=orjson.loads(household.pop("contacts_json")),
        )
    return views


async def load_view(
    session: AsyncSession, household_id: uuid.UUID, *, for_update: bool = False
) -> HouseholdView:
    views = await load_views(session, [household_id], for_update=for_update)
    if household_id not in views:
        raise household_not_found(household_id)
    return views[household_id]


def guarantees_of(view: HouseholdView) -> dict[str, dict[str, Any]]:
    return dict(view.household.get("guarantees") or {})


def guarantee_changes(
    current: dict[str, dict[str, Any]], new: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    return {
        f"guarantees.{k}": {"from": current.get(k), "to": v}
        for k, v in new.items()
        if current.get(k) != v
    }


def _iso(value: date | None) -> str | None:
    return value.isoformat() if value is not None else None


def _float(value: Decimal | float | None) -> float | None:
    return float(value) if value is not None else None


def household_not_found(household_id: Any) -> Problem:
    """The answer for a household that does not exist or lies outside the caller's
    regions (the two alike: no region oracle)."""
    return Problem(404, f"household {household_id} not found")


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
        "exit_year": h.get("exit_year"),
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
                **{k: m.get(k) for k in NATIONAL_MEMBER_FIELDS},
            }
            for m in view.members
        ],
        "incomes": [
            {
                "year": i["year"],
                "total": float(i["total"]),
                "per_capita": float(domain.per_capita(i["total"], year_size(i, size))),
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
            {
                "role": c["role"],
                "name": c["name"],
                "phone": mask_phone(c["phone"]),
                "unit": c["unit"],
                "phone_sealed": crypto.seal(get_settings(), c["phone"]),
            }
            for c in view.contacts
        ],
        "version": h["version"],
    }


def snapshot(view: HouseholdView) -> contract.HouseholdSnapshot:
    """The household as every registry event carries it, validated against the contract."""
    return contract.HouseholdSnapshot.model_validate(snapshot_data(view))


async def record_change(
    session: AsyncSession,
    view: HouseholdView,
    values: dict[str, Any],
    *,
    actor: str,
    action: str,
    changes: dict[str, Any],
    event: Callable[[contract.HouseholdSnapshot], BaseModel],
    person_id: uuid.UUID | None = None,
) -> None:
    """The three writes every change of a household ends with: its changed columns
    (`values`, already in `view` or not) with the next version, a history entry, and the
    outbox event that `event` makes of the new snapshot."""
    view.household["version"] += 1
    values = {**values, "version": view.household["version"], "updated_at": datetime.now(UTC)}
    view.household.update(values)
    await session.execute(update(H).where(H.c.id == view.household["id"]).values(**values))
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
    payload = event(snapshot(view))
    await outbox.publish(
        session,
        make_event(SERVICE, payload, subject=view.id, correlation_id=correlation_id.get()),
    )


async def write_income(session: AsyncSession, view: HouseholdView, income: domain.Income) -> None:
    """Replace the household's income row of `income.year`, in the database and in `view`."""
    row = {
        "household_id": view.household["id"],
        **income.__dict__,
        "household_size": len(view.members),
    }
    await session.execute(
        delete(INC).where(INC.c.household_id == view.household["id"], INC.c.year == income.year)
    )
    await session.execute(insert(INC).values(**row))
    view.incomes = sorted(
        [i for i in view.incomes if i["year"] != income.year] + [row], key=lambda i: -i["year"]
    )
