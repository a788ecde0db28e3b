"""Commands of the registry on a registered household: create, update (and correct the
monitoring status), members (add, update, remove, move), income and key contacts. Each one
owns its unit of work: load and lock, decide (domain.py), write the rows, the history entry
and the outbox event, commit once."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import date
from typing import Any

from asyncpg.exceptions import UniqueViolationError
from pydantic import BaseModel
from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from backstop import outbox
from backstop.auth import Level, Principal
from backstop.contracts import registry as contract
from backstop.db import SessionFactory, unit_of_work
from backstop.errors import Problem
from backstop.idnumber import mask_id, valid_phone
from services.registry import domain
from services.registry.drafts import (
    DraftInvalid,
    Loc,
    guarantee_entry,
    known_villages,
    member_row,
    prepare_household,
    problem_of,
)
from services.registry.models import (
    ContactIn,
    HouseholdCreate,
    HouseholdPatch,
    MemberCreate,
    MemberPatch,
)
from services.registry.registering import (
    RACE_RETRIES,
    UNIQUE_VIOLATIONS,
    insert_households,
    register_new,
)
from services.registry.views import (
    C,
    H,
    HouseholdView,
    P,
    R,
    guarantee_changes,
    guarantees_of,
    household_not_found,
    load_view,
    load_views,
    member_order,
    record_change,
    write_income,
)


async def create_household(
    sessions: SessionFactory, draft: HouseholdCreate, *, actor: str, pii_key: str
) -> str:
    """Register one household. 422 naming the field for a bad draft, 409 when a member is
    already in another household or the household number is taken."""
    villages = await known_villages(sessions, draft.region_code.strip())
    try:
        prepared = prepare_household(draft, villages=villages, pii_key=pii_key)
    except DraftInvalid as exc:
        raise problem_of(exc) from None
    # Nearly every registration is of new people: one statement, one round trip (shared
    # with the registrations arriving at the same moment). A unique index refusing it (nothing written) sends it the careful way below, which locks
    # who is registered already and names them, or takes back removed people.
    try:
        await register_new(
            sessions, prepared, actor=actor, max_message_bytes=outbox.max_message_bytes(sessions)
        )
        return str(prepared.household["id"])
    except UniqueViolationError:
        pass
    for attempt in range(RACE_RETRIES):
        try:
            async with unit_of_work(sessions) as session:
                result = await insert_households(
                    session, [prepared], actor=actor, skip_existing_numbers=False
                )
            break
        except UNIQUE_VIOLATIONS:
            # A concurrent writer registered one of these people (or the number) first;
            # run the checks again so the answer names the field.
            if attempt == RACE_RETRIES - 1:
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


async def update_household(
    sessions: SessionFactory,
    household_id: uuid.UUID,
    patch: HouseholdPatch,
    *,
    actor: str,
    principal: Principal,
) -> None:
    """Change type, policy flag, number, village, guarantees, or correct the monitoring
    status. Emits HouseholdUpdated (and MonitoringChanged for a status correction).

    The monitoring status is decided by the procedure (核实 → 民主评议 → 公示 → 乡镇审核 →
    县级确认, seed 四(一) 严格认定程序), which reaches registry as assistance's decisions.
    A PATCH may only correct it at county level with a reason; the history and the event
    say it was a correction."""
    today = date.today()
    can_see = principal.can_see
    async with unit_of_work(sessions) as session:
        view = await load_view(session, household_id, for_update=True)
        _visible(can_see, view)
        values: dict[str, Any] = {}
        changes: dict[str, Any] = {}
        fields = patch.model_fields_set
        if patch.region_code is not None and patch.region_code != view.region_code:
            code = await _village_or_422(session, patch.region_code, ["body", "region_code"])
            _require(can_see, code)
            values |= {"region_code": code, "town_code": domain.town_of(code)}
        for name in ("type", "policy_enjoying", "household_number", "exit_year"):
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
                    merged[item] = guarantee_entry(value, today)
                except domain.RuleViolation as exc:
                    raise problem_of(
                        DraftInvalid([(["guarantees", item, exc.field], exc.message)])
                    ) from None
            changes |= guarantee_changes(guarantees_of(view), merged)
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
            principal.require_level(Level.COUNTY, "correcting the monitoring status")
            if not (patch.reason or "").strip():
                raise problem_of(
                    DraftInvalid([(["reason"], "a monitoring status correction needs a reason")])
                )
            values |= _monitoring_correction(view, patch, today)
            changes["monitoring_status"] = {"from": previous_status, "to": patch.monitoring_status}
            changes["correction"] = {"reason": patch.reason}
        if not changes:
            return

        def event(snap: contract.HouseholdSnapshot) -> BaseModel:
            if status_changed:
                return contract.MonitoringChanged(
                    household=snap,
                    changed_by=actor,
                    previous_status=previous_status,
                    elimination_method=view.household["elimination_method"],
                    correction=True,
                    reason=patch.reason,
                )
            return contract.HouseholdUpdated(
                household=snap, changed_by=actor, changed_fields=sorted(changes)
            )

        await record_change(
            session,
            view,
            values,
            actor=actor,
            action="household.monitoring_corrected" if status_changed else "household.updated",
            changes=changes,
            event=event,
        )


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
    """For a region the caller named (a village to move to)."""
    if not can_see(region_code):
        raise Problem(403, f"region {region_code} is outside this client's regions")


def _visible(can_see: Any, view: HouseholdView) -> None:
    """A household outside the caller's regions is answered as one that does not exist."""
    if not can_see(view.region_code):
        raise household_not_found(view.id)


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
        _visible(can_see, view)
        try:
            parsed = domain.validate_id_number(member.id_number)
        except domain.RuleViolation as exc:
            raise problem_of(DraftInvalid([(["id_number"], exc.message)])) from None
        if member.relation == "head":
            raise problem_of(DraftInvalid([(["relation"], "the household already has a head")]))
        row = member_row(
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
        view.members.sort(key=member_order)
        await record_change(
            session,
            view,
            {},
            actor=actor,
            action="member.added",
            changes={"member": _member_public_changes(row)},
            person_id=row["id"],
            event=lambda snap: contract.MemberAdded(
                household=snap, changed_by=actor, person_id=str(row["id"])
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
        _visible(can_see, view)
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
        view.members.sort(key=member_order)
        await record_change(
            session,
            view,
            {},
            actor=actor,
            action="member.updated",
            changes=changes,
            person_id=person_id,
            event=lambda snap: contract.HouseholdUpdated(
                household=snap,
                changed_by=actor,
                changed_fields=[f"members.{k}" for k in sorted(changes)],
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
        _visible(can_see, view)
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
        await record_change(
            session,
            view,
            {},
            actor=actor,
            action="member.removed",
            changes={"member": _member_public_changes(member), "reason": reason},
            person_id=person_id,
            event=lambda snap: contract.MemberRemoved(
                household=snap,
                changed_by=actor,
                person_id=str(person_id),
                id_hash=member["id_hash"],
                reason=reason,
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
        _visible(can_see, source)
        _visible(can_see, target)
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
        target.members.sort(key=member_order)
        details = _member_public_changes(moved)
        await record_change(
            session,
            source,
            {},
            actor=actor,
            action="member.moved_out",
            person_id=person_id,
            changes={"member": details, "to_household_id": target.id},
            event=lambda snap: contract.MemberRemoved(
                household=snap,
                changed_by=actor,
                person_id=str(person_id),
                id_hash=member["id_hash"],
                reason="moved",
            ),
        )
        await record_change(
            session,
            target,
            {},
            actor=actor,
            action="member.moved_in",
            person_id=person_id,
            changes={"member": details, "from_household_id": source.id},
            event=lambda snap: contract.MemberMoved(
                household=snap,
                changed_by=actor,
                person_id=str(person_id),
                from_household_id=source.id,
            ),
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
        _visible(can_see, view)
        await _record_income(session, view, income, actor=actor)


async def import_incomes(
    sessions: SessionFactory,
    incomes: Sequence[tuple[uuid.UUID, domain.Income]],
    *,
    actor: str,
    can_see: Any,
) -> int:
    """A yearly income import (年度收入更新): each existing household's income of the year
    recorded with its history entry and event, all or none. A household unknown or outside
    the caller's regions is a 422 naming its row. Returns how many incomes changed."""
    async with unit_of_work(sessions) as session:
        views = await load_views(session, sorted({h for h, _ in incomes}), for_update=True)
        missing = [
            {"loc": ["body", "incomes", i, "household_id"], "msg": "unknown household"}
            for i, (h, _) in enumerate(incomes)
            if h not in views or not can_see(views[h].region_code)
        ]
        if missing:
            raise Problem(422, f"{len(missing)} unknown household(s)", errors=missing)
        changed = 0
        for household_id, income in incomes:
            changed += await _record_income(session, views[household_id], income, actor=actor)
    return changed


async def _record_income(
    session: AsyncSession, view: HouseholdView, income: domain.Income, *, actor: str
) -> bool:
    """Write one year's income with its history entry and event; False when unchanged."""
    current = next((i for i in view.incomes if i["year"] == income.year), None)
    if current is not None and all(current[k] == v for k, v in income.__dict__.items()):
        return False
    await write_income(session, view, income)
    await record_change(
        session,
        view,
        {},
        actor=actor,
        action="income.recorded",
        changes={
            f"income.{income.year}": domain.income_change(
                current["total"] if current else None, income.total
            )
        },
        event=lambda snap: contract.HouseholdUpdated(
            household=snap, changed_by=actor, changed_fields=["incomes"]
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
        if not valid_phone(c.phone):
            raise problem_of(DraftInvalid([(["contacts", i, "phone"], "not a valid phone number")]))
    async with unit_of_work(sessions) as session:
        view = await load_view(session, household_id, for_update=True)
        _visible(can_see, view)
        rows = [{"household_id": view.household["id"], **c.model_dump()} for c in contacts]
        await session.execute(delete(C).where(C.c.household_id == view.household["id"]))
        if rows:
            await session.execute(insert(C), rows)
        before = [{"role": c["role"], "name": c["name"]} for c in view.contacts]
        view.contacts = rows
        await record_change(
            session,
            view,
            {},
            actor=actor,
            action="contacts.replaced",
            changes={
                "contacts": {
                    "from": before,
                    "to": [{"role": c.role, "name": c.name} for c in contacts],
                }
            },
            event=lambda snap: contract.HouseholdUpdated(
                household=snap, changed_by=actor, changed_fields=["contacts"]
            ),
        )
