"""The pure part of the quarterly dynamic-monitoring report (季度动态监测): quarters on the
county's (Asia/Shanghai) calendar, the late-data rule, a town's entry and the county's
totals. No SQL or HTTP here; `reports.py` computes and serves the report."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any

from services.assistance import domain

HOUSEHOLD_TYPES = ("alleviated", "unstable", "marginal", "sudden_hardship", "ordinary")
MONITORING_STATUSES = ("none", "monitored", "eliminated")
RISK_LEVELS = ("none", "watch", "at_risk", "unassessed")
MONITORING_TYPES = ("unstable", "marginal", "sudden_hardship")
ELIMINATION_METHODS = ("assisted", "natural")  # 帮扶消除 / 自然消除
LATE_DATA_RULE = (
    "A dated fact counts in its own quarter unless that quarter was already closed when "
    "the fact was recorded; then it counts in the first later quarter still open at that "
    "moment. Household counts are the state when the report was computed."
)

# ------------------------------------------------------------------------ quarters

_QUARTER = re.compile(r"^(\d{4})Q([1-4])$")


@dataclass(frozen=True, order=True)
class Quarter:
    year: int
    number: int  # 1..4

    @classmethod
    def parse(cls, text: str) -> Quarter:
        """'2026Q4' → Quarter(2026, 4); ValueError for anything else."""
        match = _QUARTER.fullmatch(text)
        if match is None or not 2000 <= int(match.group(1)) <= 2100:
            raise ValueError("a quarter like 2026Q4")
        return cls(int(match.group(1)), int(match.group(2)))

    @classmethod
    def of(cls, day: date) -> Quarter:
        return cls(day.year, (day.month - 1) // 3 + 1)

    @classmethod
    def at(cls, moment: datetime) -> Quarter:
        """The quarter of a moment on the county's (Asia/Shanghai) calendar."""
        return cls.of(moment.astimezone(domain.CHINA).date())

    def __str__(self) -> str:
        return f"{self.year}Q{self.number}"

    @property
    def start(self) -> date:
        return date(self.year, 3 * self.number - 2, 1)

    @property
    def end(self) -> date:
        """The first day after the quarter."""
        return self.next().start

    @property
    def last_day(self) -> date:
        return date.fromordinal(self.end.toordinal() - 1)

    @property
    def start_at(self) -> datetime:
        return datetime.combine(self.start, time(), domain.CHINA)

    @property
    def end_at(self) -> datetime:
        return datetime.combine(self.end, time(), domain.CHINA)

    def months(self) -> list[str]:
        return [f"{self.year}-{m:02d}" for m in range(3 * self.number - 2, 3 * self.number + 1)]

    def next(self) -> Quarter:
        return (
            Quarter(self.year + 1, 1) if self.number == 4 else Quarter(self.year, self.number + 1)
        )

    def previous(self) -> Quarter:
        return (
            Quarter(self.year - 1, 4) if self.number == 1 else Quarter(self.year, self.number - 1)
        )


def reporting_quarter(
    own: Quarter, recorded_at: datetime, closed: Mapping[Quarter, datetime]
) -> Quarter:
    """The late-data rule: the fact's own quarter, or — when that quarter had been closed
    before the fact was recorded — the first later quarter still open at that moment."""
    quarter = own
    while quarter in closed and closed[quarter] <= recorded_at:
        quarter = quarter.next()
    return quarter


def months_due(quarter: Quarter, today: date) -> list[str]:
    """The quarter's months that have begun by `today` (contact is due in each)."""
    return [m for m in quarter.months() if date.fromisoformat(m + "-01") <= today]


# --------------------------------------------------------------- the report shape


# 数据质量: findings by severity (the quality service's words), and what is counted of them.
SEVERITIES = ("error", "warning", "hint")
QUALITY_COUNTS = ("open", "accepted", "opened", "closed", "previous_open")

# Task kinds counted, and their key in a town's entry.
TASK_KINDS = {"verification": "verification_tasks", "review": "review_tasks"}


def empty_town() -> dict[str, Any]:
    return {
        "households": {
            "total": 0,
            "by_type": dict.fromkeys(HOUSEHOLD_TYPES, 0),
            "by_monitoring_status": dict.fromkeys(MONITORING_STATUSES, 0),
            "by_risk_level": dict.fromkeys(RISK_LEVELS, 0),
        },
        "inclusions": {
            "total": 0,
            "by_monitoring_type": dict.fromkeys(MONITORING_TYPES, 0),
            "by_factor": {},
        },
        "eliminations": {
            "total": 0,
            "by_method": dict.fromkeys(ELIMINATION_METHODS, 0),
            "reasons": [],
        },
        **{key: {"opened": 0, "closed": 0, "overdue": 0} for key in TASK_KINDS.values()},
        "contact": {"due": 0, "compliant": 0, "rate": None, "by_month": {}},
        "grants": {"count": 0, "amount": "0.00"},
        "data_quality": quality_entry((), compared=False),
    }


def rate(compliant: int, due: int) -> float | None:
    return round(compliant / due, 4) if due else None


def county_totals(towns: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """The county's row: the sum of its towns' rows (the rate recomputed from the sums)."""
    towns = list(towns)  # read twice
    total = empty_town()
    reasons: Counter[tuple[str, str]] = Counter()
    amount = Decimal("0.00")
    for town in towns:
        for key in ("by_type", "by_monitoring_status", "by_risk_level"):
            _add(total["households"][key], town["households"][key])
        total["households"]["total"] += town["households"]["total"]
        total["inclusions"]["total"] += town["inclusions"]["total"]
        _add(total["inclusions"]["by_monitoring_type"], town["inclusions"]["by_monitoring_type"])
        _add(total["inclusions"]["by_factor"], town["inclusions"]["by_factor"])
        total["eliminations"]["total"] += town["eliminations"]["total"]
        _add(total["eliminations"]["by_method"], town["eliminations"]["by_method"])
        for r in town["eliminations"]["reasons"]:
            reasons[(r["method"], r["reason"])] += r["count"]
        for key in TASK_KINDS.values():
            _add(total[key], town.get(key, {}))  # reports closed before review tasks lack it
        for key in ("due", "compliant"):
            total["contact"][key] += town["contact"][key]
        _add(total["contact"]["by_month"], town["contact"]["by_month"])
        total["grants"]["count"] += town["grants"]["count"]
        amount += Decimal(town["grants"]["amount"])
    quality = [t["data_quality"] for t in towns if "data_quality" in t]  # older reports lack it
    total["data_quality"] = quality_entry(
        (item for q in quality for item in q["items"]),
        compared=any(q["previous_open"] is not None for q in quality),
    )
    total["eliminations"]["reasons"] = reason_list(reasons)
    total["contact"]["rate"] = rate(total["contact"]["compliant"], total["contact"]["due"])
    total["grants"]["amount"] = str(domain.money(amount))
    return total


def quality_entry(items: Iterable[Mapping[str, Any]], *, compared: bool) -> dict[str, Any]:
    """A town's (or the county's) 数据质量 entry from a sweep's counts by category ×
    severity: findings open (未整改), accepted as exceptions (例外), opened and closed since
    the sweep before, open ones by severity and by category, and the change in open
    findings since the sweep before (None when there was none to compare with)."""
    cells: dict[tuple[str, str], dict[str, int]] = {}
    for item in items:
        cell = cells.setdefault(
            (item["category"], item["severity"]), dict.fromkeys(QUALITY_COUNTS, 0)
        )
        for key in QUALITY_COUNTS:
            cell[key] += item.get(key) or 0
    entry: dict[str, Any] = {key: sum(c[key] for c in cells.values()) for key in QUALITY_COUNTS}
    if not compared:
        entry["previous_open"] = None
    entry["change"] = (
        None if entry["previous_open"] is None else entry["open"] - entry["previous_open"]
    )
    by_category: Counter[str] = Counter()
    by_severity = dict.fromkeys(SEVERITIES, 0)
    for (category, severity), cell in cells.items():
        by_category[category] += cell["open"]
        by_severity[severity] = by_severity.get(severity, 0) + cell["open"]
    entry.update(
        by_severity=by_severity,
        by_category=dict(sorted(by_category.items())),
        items=[
            {
                "category": category,
                "severity": severity,
                **cell,
                "previous_open": cell["previous_open"] if compared else None,
            }
            for (category, severity), cell in sorted(cells.items())
        ],
    )
    return entry


def _add(into: dict[str, int], other: Mapping[str, int]) -> None:
    for key, value in other.items():
        into[key] = into.get(key, 0) + value


def reason_list(reasons: Counter[tuple[str, str]]) -> list[dict[str, Any]]:
    return [
        {"method": method, "reason": reason, "count": n}
        for (method, reason), n in sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0]))
    ]
