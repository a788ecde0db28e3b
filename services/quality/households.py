"""A household as the rules read it: one statement loads everything about a chunk of
households, and `household_of` builds each one's `domain.Household`."""

from __future__ import annotations

from collections import defaultdict
from datetime import date
from decimal import Decimal
from typing import Any

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from services.quality import domain
from services.quality.common import dec, dec_or_none

# Everything the rules read about a household, one row each, the parts as JSON text that
# one orjson.loads turns into plain values (amounts as decimal text). One statement per
# chunk: PostgreSQL assembles the parts, Python builds no row objects per record.
# `household_of` unpacks the columns in this order.
HOUSEHOLD_SELECT = """
SELECT h.household_id, h.region_code, h.town_code, h.snapshot::text AS snapshot,
  (SELECT json_build_array(r.level, r.factors, (r.assessed_at AT TIME ZONE 'Asia/Shanghai')::date,
                           r.at_risk_since)
     FROM quality_risk r WHERE r.household_id = h.household_id)::text AS risk,
  (SELECT json_agg(json_build_array(r.source, r.record_id, r.id_hash, r.occurred_on,
                                    r.amount::text, r.detail))
     FROM quality_records r
     WHERE r.household_id = h.household_id AND NOT r.voided)::text AS records,
  (SELECT json_agg(json_build_array(d.kind, d.decided_on, d.method, d.risk_factors)
                   ORDER BY d.decided_on, d.kind)
     FROM quality_decisions d WHERE d.household_id = h.household_id)::text AS decisions,
  (SELECT json_agg(json_build_array(t.kind, t.status, t.opened_on, t.due_on, t.overdue))
     FROM quality_tasks t WHERE t.household_id = h.household_id)::text AS tasks,
  (SELECT json_agg(json_build_array(d.id_hash, d.removed_on, d.reason))
     FROM quality_departed d WHERE d.household_id = h.household_id)::text AS departed,
  (SELECT json_agg(json_build_array(p.id_hash, q.household_id))
     FROM quality_persons p JOIN quality_persons q
       ON q.id_hash = p.id_hash AND q.household_id <> p.household_id
     WHERE p.household_id = h.household_id)::text AS shared,
  (SELECT json_agg(json_build_array(x.category, x.start_on, x.end_on, x.amount::text))
     FROM quality_measures x WHERE x.household_id = h.household_id)::text AS measures,
  (SELECT json_agg(json_build_array(g.amount::text, g.granted_on))
     FROM quality_grants g WHERE g.household_id = h.household_id)::text AS grants,
  (SELECT json_agg(v.visited_on) FROM quality_visits v
     WHERE v.household_id = h.household_id AND v.visited_on >= current_date - 70)::text AS visits
FROM quality_households h
"""


NO_GROUPS: frozenset[str] = frozenset()


async def load(session: AsyncSession, where: str, params: dict[str, Any]) -> list[Any]:
    """Rows of `HOUSEHOLD_SELECT` for `where` (its filter, order, limit and lock). JIT off
    in the transaction: the correlated subqueries' estimated cost makes PostgreSQL compile
    the plan for every chunk, which took a third of the statement's time (EXPLAIN ANALYZE
    of a 2000-household chunk: 330 ms with JIT, 160-210 ms without)."""
    await session.execute(text("SET LOCAL jit = off"))
    return list(await session.execute(text(f"{HOUSEHOLD_SELECT} {where}"), params))


def _day(value: str | None) -> date | None:
    return date.fromisoformat(value) if value else None


def household_of(row: Any) -> domain.Household:
    """A `domain.Household` from one row of `HOUSEHOLD_SELECT`. Built by the million in a
    sweep, so positionally (in the dataclasses' field order) and skipping absent parts."""
    # One unpacking of the row: attribute access on a result row costs more per use.
    (household_id, region_code, _, snapshot, risk_part, records_part, decisions, tasks,
     departed, shared_part, measures, grants, visits) = row  # fmt: skip
    s = orjson.loads(snapshot)
    day = date.fromisoformat
    members = tuple(
        [
            domain.Member(
                p["person_id"],
                p["id_hash"],
                p["relation"],
                p["sex"],
                day(p["birth_date"]),
                frozenset(groups) if (groups := p.get("special_groups")) else NO_GROUPS,
                p.get("labor_capacity") or "full",
                p.get("schooling"),
                p.get("medical_insurance", True),
                p.get("labor_skill"),
                p.get("health_status"),
                p.get("work_status"),
                p.get("work_months"),
                p.get("pension_insurance"),
                p.get("critical_illness_insurance"),
            )
            for p in s["members"]
        ]
    )
    incomes = tuple(
        [
            domain.Income(
                i["year"],
                dec(i["total"]),
                dec(i["per_capita"]),
                dec_or_none(i.get("wage")),
                dec_or_none(i.get("business")),
                dec_or_none(i.get("transfer")),
                dec_or_none(i.get("property")),
            )
            for i in s.get("incomes") or ()
        ]
    )
    records = (
        tuple(
            [
                domain.FeedRecord(
                    source,
                    record_id,
                    id_hash,
                    day(on),
                    Decimal(amount),
                    detail.get("kind"),
                    detail.get("status"),
                    detail.get("enrolled"),
                    bool(detail.get("housing_damaged", False)),
                    dec_or_none(detail.get("total_cost")),
                    dec_or_none(detail.get("insurance_paid")),
                    dec_or_none(detail.get("assistance_paid")),
                )
                for source, record_id, id_hash, on, amount, detail in orjson.loads(records_part)
            ]
        )
        if records_part
        else ()
    )
    risk = None
    if risk_part:
        level, factors, assessed_on, since = orjson.loads(risk_part)
        risk = domain.Risk(level, frozenset(factors), day(assessed_on), _day(since))
    shared: dict[str, tuple[str, ...]] = {}
    if shared_part:
        others: dict[str, list[str]] = defaultdict(list)
        for id_hash, other in orjson.loads(shared_part):
            others[id_hash].append(other)
        shared = {k: tuple(sorted(v)) for k, v in others.items()}
    verified = s.get("guarantees_verified_on")
    roles = s.get("contact_roles")
    return domain.Household(
        household_id=household_id,
        region_code=region_code,
        type=s["type"],
        members=members,
        policy_enjoying=bool(s.get("policy_enjoying")),
        monitoring_status=s.get("monitoring_status") or "none",
        monitoring_since=_day(s.get("monitoring_since")),
        monitoring_ended_on=_day(s.get("monitoring_ended_on")),
        elimination_method=s.get("elimination_method"),
        incomes=incomes,
        guarantees=s.get("guarantees") or {},
        guarantees_verified_on={k: day(v) for k, v in verified.items()} if verified else {},
        contact_roles=frozenset(roles) if roles else NO_GROUPS,
        records=records,
        risk=risk,
        decisions=tuple(
            [
                domain.Decision(kind, day(on), method, frozenset(factors))
                for kind, on, method, factors in orjson.loads(decisions)
            ]
        )
        if decisions
        else (),
        tasks=tuple(
            [
                domain.Task(kind, status, day(opened), day(due), overdue)
                for kind, status, opened, due, overdue in orjson.loads(tasks)
            ]
        )
        if tasks
        else (),
        departed=tuple(
            [
                domain.Departed(id_hash, day(on), reason)
                for id_hash, on, reason in orjson.loads(departed)
            ]
        )
        if departed
        else (),
        measures=tuple(
            [
                domain.AidMeasure(category, day(start), day(end), Decimal(amount))
                for category, start, end, amount in orjson.loads(measures)
            ]
        )
        if measures
        else (),
        grants=tuple(
            [domain.Grant(Decimal(amount), day(on)) for amount, on in orjson.loads(grants)]
        )
        if grants
        else (),
        visits=tuple([day(on) for on in orjson.loads(visits)]) if visits else (),
        shared_id_hashes=shared,
    )
