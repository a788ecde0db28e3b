"""A newer export of households already registered (by household number): what it says
differently is applied to the register, each household's changes in one history entry
(`household.imported`) and one HouseholdUpdated event, through `views.record_change`. A
household the export leaves as it is gets no entry.

Only what the file holds is compared: a column the export does not have (say, 劳动技能 in
an older layout) leaves the register's value alone. New members join the household (a
person removed earlier comes back with the same person id); a registered member missing
from the export is kept, since a removal needs its reason (death, marriage out: `DELETE
/v1/households/{id}/members/{person_id}`). Contacts and guarantees are not changed here."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from backstop.contracts import registry as contract
from backstop.idnumber import mask_id
from services.registry import domain
from services.registry.drafts import Loc, PreparedHousehold
from services.registry.import_file import sources
from services.registry.models import NATIONAL_MEMBER_FIELDS
from services.registry.views import H, HouseholdView, P, load_views, member_order, record_change
from services.registry.views import write_income as replace_income

# The fields a re-import compares, when the file has a column that gives them.
HOUSEHOLD_FIELDS = ("type", "policy_enjoying", "region_code", "exit_year")
MEMBER_FIELDS = (
    "name", "relation", "special_groups", "labor_capacity", "schooling", "medical_insurance",
    *NATIONAL_MEMBER_FIELDS,
)  # fmt: skip


@dataclass
class UpdateResult:
    changed: set[str] = field(default_factory=set)  # household numbers
    unchanged: int = 0
    # (index in the input, location, message, status)
    rejected: list[tuple[int, Loc, str, int]] = field(default_factory=list)


def compared_fields(columns: Collection[str], fields: Sequence[str]) -> list[str]:
    """The fields an export with these canonical columns says something about."""
    return [f for f in fields if any(c in columns for c in sources(f))]


def _comparable(value: Any) -> Any:
    return sorted(value) if isinstance(value, list | tuple) else value


def household_changes(
    view: HouseholdView, new: PreparedHousehold, columns: Collection[str]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(column values, history changes) of the household row itself."""
    values: dict[str, Any] = {}
    changes: dict[str, Any] = {}
    for name in compared_fields(columns, HOUSEHOLD_FIELDS):
        before, after = view.household.get(name), new.household[name]
        if before != after:
            values[name] = after
            changes[name] = {"from": before, "to": after}
    if "region_code" in values:
        values["town_code"] = domain.town_of(values["region_code"])
    return values, changes


def member_changes(
    current: dict[str, Any], new: dict[str, Any], fields: Sequence[str]
) -> dict[str, Any]:
    """{field: {from, to}} of one registered member against the export's row."""
    return {
        name: {"from": _comparable(current.get(name)), "to": _comparable(new[name])}
        for name in fields
        if _comparable(current.get(name)) != _comparable(new[name])
    }


def _event_field(key: str) -> str:
    """The event's name of a history key: members.<person id>.<field> → members.<field>."""
    if key == "members.joined":
        return "members"
    if key.startswith("members."):
        return "members." + key.rsplit(".", 1)[1]
    return "incomes" if key.startswith("income.") else key


async def update_households(
    session: AsyncSession,
    staged: Sequence[tuple[int, PreparedHousehold]],
    *,
    columns: Collection[str],
    actor: str,
    can_see: Callable[[str], bool] = lambda region: True,
    unknown_is_error: bool = False,
) -> UpdateResult:
    """Apply an export's version of registered households (index in the caller's input,
    prepared rows) in the caller's transaction. A household registered outside the
    caller's regions (`can_see`), one whose new members are in another household, or one
    the export leaves with no or two heads, is rejected; so is one not registered, when
    `unknown_is_error` (the household export, which names the head only)."""
    result = UpdateResult()
    if not staged:
        return result
    numbers = [p.household["household_number"] for _, p in staged]
    found = await session.execute(select(H.c.id).where(H.c.household_number.in_(numbers)))
    loaded = await load_views(session, sorted(found.scalars()), for_update=True)
    views = {v.household["household_number"]: v for v in loaded.values()}
    member_fields = compared_fields(columns, MEMBER_FIELDS)
    with_income = bool(compared_fields(columns, ["annual_income"]))
    for index, new in staged:
        view = views.get(new.household["household_number"])
        if view is None and unknown_is_error:
            message = "not registered: import the national system's member export first"
            result.rejected.append((index, ["household_number"], message, 404))
            continue
        if view is None:  # renumbered meanwhile: nothing of ours to change
            result.unchanged += 1
            continue
        if not can_see(view.region_code):
            message = "already registered, outside this client's regions"
            result.rejected.append((index, ["household_number"], message, 409))
            continue
        outcome = await _update_one(session, view, new, columns, member_fields, with_income, actor)
        if outcome is None:
            result.unchanged += 1
        elif isinstance(outcome, tuple):
            loc, message, status = outcome
            result.rejected.append((index, loc, message, status))
        else:
            result.changed.add(new.household["household_number"])
    return result


async def _update_one(
    session: AsyncSession,
    view: HouseholdView,
    new: PreparedHousehold,
    columns: Collection[str],
    member_fields: list[str],
    with_income: bool,
    actor: str,
) -> bool | tuple[Loc, str, int] | None:
    """True when changed, None when unchanged, (location, message, status) when refused."""
    values, changes = household_changes(view, new, columns)
    registered = {m["id_number"]: m for m in view.members}
    member_updates: list[tuple[dict[str, Any], dict[str, Any]]] = []
    joining: list[tuple[int, dict[str, Any]]] = []
    for i, m in enumerate(new.members):
        current = registered.get(m["id_number"])
        if current is None:
            joining.append((i, m))
            continue
        found = member_changes(current, m, member_fields)
        if found:
            member_updates.append((current, found))
            for name, change in found.items():
                changes[f"members.{current['id']}.{name}"] = change
    relations = {m["id"]: m["relation"] for m in view.members}
    for current, found in member_updates:
        if "relation" in found:
            relations[current["id"]] = found["relation"]["to"]
    try:
        domain.check_relations([*relations.values(), *(m["relation"] for _, m in joining)])
    except domain.RuleViolation as exc:
        return (["members"], f"{exc.message} once this export is applied", 422)
    returning: dict[str, uuid.UUID] = {}
    if joining:
        rows = await session.execute(
            select(P.c.id_number, P.c.id, P.c.household_id)
            .where(P.c.id_number.in_([m["id_number"] for _, m in joining]))
            .with_for_update()
        )
        for id_number, person_id, household_id in rows:
            if household_id is not None:
                i = next(i for i, m in joining if m["id_number"] == id_number)
                return (["members", i, "id_number"], "this person is in another household", 409)
            returning[id_number] = person_id
    income = new.incomes[0] if with_income and new.incomes else None
    current_income = (
        next((i for i in view.incomes if i["year"] == income["year"]), None) if income else None
    )
    income_changed = income is not None and (
        current_income is None
        or any(current_income[k] != income[k] for k in ("total", *domain.INCOME_PARTS))
    )
    if not (changes or joining or income_changed):
        return None
    for current, found in member_updates:
        row = {name: change["to"] for name, change in found.items()}
        await session.execute(update(P).where(P.c.id == current["id"]).values(**row))
        current.update(row)
    household_id = view.household["id"]
    for _, m in joining:
        row = {**m, "household_id": household_id, "special_groups": list(m["special_groups"])}
        if m["id_number"] in returning:  # removed earlier: the same person comes back
            row["id"] = returning[m["id_number"]]
            fields = {k: v for k, v in row.items() if k not in ("id", "id_number")}
            await session.execute(update(P).where(P.c.id == row["id"]).values(**fields))
        else:
            row["id"] = uuid.UUID(str(row["id"]))
            await session.execute(insert(P).values(**row))
        view.members.append(row)
    if joining:
        view.members.sort(key=member_order)
        changes["members.joined"] = [
            {"person_id": str(r["id"]), "id_number": mask_id(r["id_number"])}
            for r in view.members
            if r["id_number"] in {m["id_number"] for _, m in joining}
        ]
    if income is not None and income_changed:
        amounts = {k: income[k] for k in ("total", *domain.INCOME_PARTS)}
        await replace_income(session, view, domain.Income(year=income["year"], **amounts))
        changes[f"income.{income['year']}"] = domain.income_change(
            current_income["total"] if current_income else None, income["total"]
        )
    changed_fields = sorted({_event_field(k) for k in changes})
    await record_change(
        session,
        view,
        values,
        actor=actor,
        action="household.imported",
        changes=changes,
        event=lambda snap: contract.HouseholdUpdated(
            household=snap, changed_by=actor, changed_fields=changed_fields
        ),
    )
    return True
