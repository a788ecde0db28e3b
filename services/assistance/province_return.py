"""The quarterly return to the provincial monitoring system (季度动态监测, seed 二(二):
"每季度在监测管理系统中统一进行动态监测"), pure: no SQL, HTTP or Kafka. `returns.py` finds
the facts and serves the return; this module shapes its rows, counts them, cuts a stored
county-wide return down to a caller's regions, and compares two quarters.

A return has household-level sections, each a list of rows with a key:
- `entered` (新纳入监测): approved identifications, with monitoring type, risk factors
  (风险类型) and decision date; key: the case.
- `eliminated` (风险消除): approved eliminations, with method (帮扶消除/自然消除), reason
  and date; key: the case.
- `guarantee_changes` (两不愁三保障及饮水安全变化): an item's status before and after,
  net over the quarter; key: household and item.
- `income_updates` (收入更新, 一达标): a year's household net income before and after, net
  over the quarter; key: household and year.
- `measures` (帮扶措施): measures starting in the quarter; key: the measure.
- `monitored` (监测对象名单): the households under monitoring when the return was made,
  with their risk factors, open guarantee issues, newest income and measures in force;
  key: the household. Between two quarters this is where rows are `changed`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import date
from typing import Any

SECTIONS: tuple[str, ...] = (
    "entered",
    "eliminated",
    "guarantee_changes",
    "income_updates",
    "measures",
    "monitored",
)
KEYS: dict[str, tuple[str, ...]] = {
    "entered": ("case_id",),
    "eliminated": ("case_id",),
    "guarantee_changes": ("household_id", "item"),
    "income_updates": ("household_id", "year"),
    "measures": ("measure_id",),
    "monitored": ("household_id",),
}
SECTION_LABELS: dict[str, str] = {
    "entered": "新纳入监测对象",
    "eliminated": "风险消除",
    "guarantee_changes": "两不愁三保障及饮水安全变化",
    "income_updates": "收入信息更新",
    "measures": "帮扶措施",
    "monitored": "监测对象名单",
}
# 两不愁 (food, clothing), 三保障 (compulsory education, basic medical, housing), 饮水安全.
GUARANTEE_LABELS: dict[str, str] = {
    "food": "不愁吃",
    "clothing": "不愁穿",
    "compulsory_education": "义务教育保障",
    "basic_medical": "基本医疗保障",
    "housing": "住房安全保障",
    "drinking_water": "饮水安全",
}
STATUS_LABELS: dict[str | None, str] = {
    None: "未核实",
    "ok": "无问题",
    "possible_issue": "可能存在问题尚无致贫返贫风险",
    "prominent_issue": "存在突出问题有返贫致贫风险",
}
_SEVERITY = {None: 0, "ok": 0, "possible_issue": 1, "prominent_issue": 2}

# ------------------------------------------------------------- changes of a household


def snapshot_changes(
    before: Mapping[str, Any], after: Mapping[str, Any], *, on: date
) -> list[dict[str, Any]]:
    """What changed between two snapshots of one household (registry's HouseholdSnapshot
    as JSON) that the return records: each guarantee item whose status changed (an item
    first recorded as `ok` is no change: it never was a problem), dated by the item's
    verification date when registry gives one, else `on`; and each year's income that is
    new or whose total changed, dated `on`."""
    changes: list[dict[str, Any]] = []
    old_g: Mapping[str, str] = before.get("guarantees") or {}
    new_g: Mapping[str, str] = after.get("guarantees") or {}
    verified: Mapping[str, str] = after.get("guarantees_verified_on") or {}
    for item in sorted(set(old_g) | set(new_g)):
        was, now = old_g.get(item), new_g.get(item)
        if was == now or (was is None and now == "ok"):
            continue
        changed_on = date.fromisoformat(verified[item]) if item in verified else on
        changes.append(
            {"kind": "guarantee", "item": item, "before": was, "after": now, "on": changed_on}
        )
    old_i = {int(i["year"]): i for i in before.get("incomes") or []}
    for income in after.get("incomes") or []:
        year = int(income["year"])
        was_income = old_i.get(year)
        if was_income is not None and float(was_income["total"]) == float(income["total"]):
            continue
        changes.append(
            {
                "kind": "income",
                "item": str(year),
                "before": None if was_income is None else float(was_income["total"]),
                "after": float(income["total"]),
                "per_capita": float(income["per_capita"]),
                "on": on,
            }
        )
    return changes


def net_changes(rows: Iterable[dict[str, Any]], key: Sequence[str]) -> list[dict[str, Any]]:
    """Several changes of one key in a quarter as one: the first `before`, the last
    `after` and date (rows come oldest first); a change undone within the quarter drops."""
    merged: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in rows:
        k = tuple(row[f] for f in key)
        first = merged.get(k)
        merged[k] = row if first is None else {**row, "before": first["before"]}
    return [r for r in merged.values() if r["before"] != r["after"]]


def direction(before: str | None, after: str | None) -> str:
    """A guarantee change as the county reads it: worse (恶化), better (改善) or a level
    rewritten without changing its severity (unchanged)."""
    a, b = _SEVERITY.get(before, 0), _SEVERITY.get(after, 0)
    return "worse" if b > a else "better" if b < a else "unchanged"


# ------------------------------------------------------------------------- the return


def counts(sections: Mapping[str, Sequence[Mapping[str, Any]]]) -> dict[str, Any]:
    """The return's counts: rows per section, per town, and the breakdowns the county
    office fills in (monitoring types, risk factors, methods, items, categories)."""
    by_town: dict[str, Counter[str]] = {}
    for section in SECTIONS:
        for row in sections.get(section, []):
            by_town.setdefault(row["town_code"], Counter())[section] += 1
    entered = sections.get("entered", [])
    eliminated = sections.get("eliminated", [])
    guarantees = sections.get("guarantee_changes", [])
    return {
        **{section: len(sections.get(section, [])) for section in SECTIONS},
        "households": len(
            {r["household_id"] for s in SECTIONS if s != "monitored" for r in sections.get(s, [])}
        ),
        "entered_by_monitoring_type": _tally(r["monitoring_type"] for r in entered),
        "entered_by_factor": _tally(f for r in entered for f in r["risk_factors"]),
        "eliminated_by_method": _tally(r["method"] for r in eliminated),
        "guarantee_changes_by_item": _tally(r["item"] for r in guarantees),
        "guarantee_changes_by_direction": _tally(r["direction"] for r in guarantees),
        "measures_by_category": _tally(r["category"] for r in sections.get("measures", [])),
        "by_town": {
            town: {section: n[section] for section in SECTIONS}
            for town, n in sorted(by_town.items())
        },
    }


def _tally(values: Iterable[str]) -> dict[str, int]:
    return dict(sorted(Counter(values).items()))


def sort_rows(section: str, rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """A section's rows in a stable order: by village, household, then the key."""
    key = KEYS[section]
    return sorted(
        rows, key=lambda r: (r["region_code"], r["household_id"], *map(str, _key(r, key)))
    )


def _key(row: Mapping[str, Any], fields: Sequence[str]) -> tuple[Any, ...]:
    return tuple(row[f] for f in fields)


def cut(ret: Mapping[str, Any], visible: Callable[[str], bool]) -> dict[str, Any]:
    """A (stored, county-wide) return with only the rows whose village `visible` accepts,
    its counts recomputed."""
    sections = {s: [r for r in ret["sections"][s] if visible(r["region_code"])] for s in SECTIONS}
    return {**ret, "sections": sections, "counts": counts(sections)}


# ------------------------------------------------------------------------ differences


def diff(current: Mapping[str, Any], previous: Mapping[str, Any]) -> dict[str, Any]:
    """This quarter's return against the previous one, per section by row key: rows
    `added` (only in this one), `removed` (only in the previous one) and `changed` (in
    both, with the fields that differ, before and after); and each count's change."""
    sections: dict[str, Any] = {}
    for section in SECTIONS:
        fields = KEYS[section]
        now = {_key(r, fields): r for r in current["sections"][section]}
        before = {_key(r, fields): r for r in previous["sections"][section]}
        changed = []
        for k in sorted(now.keys() & before.keys(), key=lambda k: tuple(map(str, k))):
            fields_changed = {
                f: {"before": before[k].get(f), "after": now[k].get(f)}
                for f in sorted(now[k].keys() | before[k].keys())
                if now[k].get(f) != before[k].get(f)
            }
            if fields_changed:
                named = dict.fromkeys((*fields, "household_id", "household_number"))
                changed.append({**{f: now[k].get(f) for f in named}, "fields": fields_changed})
        sections[section] = {
            "added": [now[k] for k in now if k not in before],
            "removed": [before[k] for k in before if k not in now],
            "changed": changed,
        }
    count_changes = {
        section: {
            "previous": previous["counts"][section],
            "current": current["counts"][section],
            "change": current["counts"][section] - previous["counts"][section],
        }
        for section in SECTIONS
    }
    return {
        "quarter": current["quarter"],
        "previous_quarter": previous["quarter"],
        "status": current["status"],
        "previous_status": previous["status"],
        "counts": count_changes,
        "sections": sections,
    }
