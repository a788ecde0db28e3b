"""The register's rules (建档立卡), as plain Python: no FastAPI, SQL or Kafka.

- who a member can be: a valid resident ID number (GB 11643 check digit, real birth
  date, an area code that exists), exactly one head per household;
- what a household's income means: the parts of its net income and the per-capita figure;
- 两不愁三保障 + 饮水安全: the guarantee items and what a child out of school means;
- monitoring (监测): when it starts, how risk is removed (帮扶消除 / 自然消除);
- key contacts (重点联系人): who must be named for which household.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from functools import lru_cache
from typing import Literal

from backstop.idnumber import (
    IdNumber,
    InvalidIdNumber,
    parse_id_number,
    quick_check,
)

HouseholdType = Literal["alleviated", "unstable", "marginal", "sudden_hardship", "ordinary"]
HOUSEHOLD_TYPES: tuple[str, ...] = (
    "alleviated",  # 脱贫户
    "unstable",  # 脱贫不稳定户
    "marginal",  # 边缘易致贫户
    "sudden_hardship",  # 突发严重困难户
    "ordinary",  # 一般农户
)
# The three kinds of 监测对象: the types a monitoring decision can give a household.
MONITORED_TYPES: tuple[str, ...] = ("unstable", "marginal", "sudden_hardship")
MONITORING_STATUSES: tuple[str, ...] = ("none", "monitored", "eliminated")
ELIMINATION_METHODS: tuple[str, ...] = ("assisted", "natural")  # 帮扶消除 / 自然消除
RELATIONS: tuple[str, ...] = ("head", "spouse", "child", "parent", "other")
LABOR_CAPACITIES: tuple[str, ...] = ("full", "partial", "none")
# 劳动技能 as the national monitoring system records it: skill and capacity in one field.
# The register keeps it beside labor_capacity (劳动能力), which it implies.
LABOR_SKILL_CAPACITY: dict[str, str] = {
    "skilled": "full",  # 技能劳动力
    "ordinary": "full",  # 普通劳动力
    "weak": "partial",  # 弱劳动力或半劳动力
    "lost": "none",  # 丧失劳动力 (a working-age person who lost it: illness, disability)
    "none": "none",  # 无劳动力 (children, students, the old)
}
HEALTH_STATUSES: tuple[str, ...] = (
    "healthy",  # 健康
    "chronic_illness",  # 长期慢性病
    "serious_illness",  # 患有大病
    "disabled",  # 残疾
)
# 务工状况 / 务工所在地: where a member works, or not at all.
WORK_STATUSES: tuple[str, ...] = (
    "in_town",  # 乡（镇）内务工
    "in_county",  # 乡（镇）外县内务工
    "in_province",  # 县外省内务工
    "out_of_province",  # 省外务工
    "abroad",  # 境外务工
    "other",  # 其他
    "not_working",  # 未务工
)
SCHOOLING: tuple[str, ...] = (
    "preschool",
    "primary",
    "junior",
    "senior",
    "vocational",
    "college",
    "out_of_school",  # a child of school age not enrolled (失学辍学)
    "none",  # not in education (adults)
)
GUARANTEE_STATUSES: tuple[str, ...] = ("ok", "possible_issue", "prominent_issue")
INCOME_PARTS: tuple[str, ...] = ("wage", "business", "transfer", "property")


class RuleViolation(ValueError):
    """A fact that breaks a rule of the register; `field` names what is wrong."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


# --- ID numbers -------------------------------------------------------------------------


_STILL_IN_USE = 9999


@lru_cache(maxsize=4096)
def _area_last_year(area_code: str) -> int | None:
    """The last year the area code was in use (9999 if still in use), from python-stdnum's
    database of current and historical codes; None when the code never existed."""
    from stdnum import numdb

    parts = numdb.get("cn/loc").info(area_code)
    info = {k: v for _, props in parts for k, v in props.items()}
    county = info.get("county")
    if not county:
        return None
    last = 0
    for entry in county.split(","):
        end = entry[1:].split("]")[0].split("-")[-1] if entry.startswith("[") else ""
        last = max(last, int(end) if end else _STILL_IN_USE)
    return last


def area_code_error(area_code: str, birth_year: int) -> str | None:
    """Why `area_code` cannot begin an ID number of someone born in `birth_year`, or None.

    The first six digits are the county where the number was *issued*, which can be years
    after the birth (a person born in 1960 in today's 英德市 holds 441881…, a code that
    dates from 1994). So, unlike python-stdnum's `get_birth_place`, a code that started
    after the birth year is accepted; only a code that never existed, or one abolished
    before the person was born (the number cannot have been issued there), is refused.
    """
    last = _area_last_year(area_code)
    if last is None:
        return f"area code {area_code} does not exist"
    if last < birth_year:
        return f"area code {area_code} was abolished in {last}, before the birth year {birth_year}"
    return None


def id_number_facts(raw: str, today: date) -> tuple[str, date, str]:
    """(number, birth date, sex) of an ID number the register accepts: validate_id_number
    on the kernel's fast path, for the hundreds of thousands an import checks."""
    facts = quick_check(raw, today)
    if facts is not None:
        value, born = facts
        if area_code_error(value[:6], born.year) is None:
            return value, born, "male" if int(value[16]) % 2 else "female"
    parsed = validate_id_number(raw, today=today)  # raises with the canonical reason
    return parsed.value, parsed.birth_date, parsed.sex


def validate_id_number(raw: str, *, today: date | None = None) -> IdNumber:
    """A resident ID number the register accepts: format, real birth date, GB 11643 check
    digit and an area code that exists. Raises RuleViolation("id_number", ...)."""
    try:
        parsed = parse_id_number(raw, today=today)
    except InvalidIdNumber as exc:
        raise RuleViolation("id_number", str(exc)) from None
    problem = area_code_error(parsed.area_code, parsed.birth_date.year)
    if problem:
        raise RuleViolation("id_number", problem)
    return parsed


# --- Members ----------------------------------------------------------------------------


def check_relations(relations: Sequence[str]) -> None:
    """A household has exactly one head (户主)."""
    heads = sum(1 for r in relations if r == "head")
    if heads == 0:
        raise RuleViolation("relation", "a household needs exactly one head; none given")
    if heads > 1:
        raise RuleViolation("relation", f"a household has exactly one head; {heads} given")


def duplicate_ids(id_numbers: Iterable[str]) -> list[int]:
    """Indexes of ID numbers that appear a second time in the same list."""
    seen: set[str] = set()
    dupes: list[int] = []
    for i, value in enumerate(id_numbers):
        if value in seen:
            dupes.append(i)
        seen.add(value)
    return dupes


def age_on(birth_date: date, day: date) -> int:
    return day.year - birth_date.year - ((day.month, day.day) < (birth_date.month, birth_date.day))


def compulsory_school_age(birth_date: date, today: date) -> bool:
    """Nine-year compulsory education (义务教育): ages 6 to 15 on 31 August of the school
    year that is running (the school year starts 1 September)."""
    year = today.year if today.month >= 9 else today.year - 1
    age = age_on(birth_date, date(year, 8, 31))
    return 6 <= age <= 15


# --- Income -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Income:
    """One year's household net income (家庭纯收入), yuan, as exact decimals (cents)."""

    year: int
    total: Decimal
    wage: Decimal | None = None  # 工资性收入
    business: Decimal | None = None  # 生产经营性收入
    transfer: Decimal | None = None  # 转移性收入 (pensions, subsidies, 低保 ...)
    property: Decimal | None = None  # 财产性收入


CENT = Decimal("0.01")


def money(value: float | Decimal) -> Decimal:
    """Yuan as an exact decimal to the cent: a float through its shortest text, so a
    request's 0.1 is stored as 0.10, never 0.1000000000000000055."""
    return (value if isinstance(value, Decimal) else Decimal(str(value))).quantize(CENT)


def make_income(
    *,
    year: int,
    total: float | None = None,
    wage: float | None = None,
    business: float | None = None,
    transfer: float | None = None,
    property: float | None = None,
    today: date | None = None,
) -> Income:
    """An income record: parts are never negative; the total is the sum of the parts when
    it is not given, and must equal it when both are given (within a yuan)."""
    current_year = (today or date.today()).year
    if year < 2000 or year > current_year:
        raise RuleViolation("year", f"year must be between 2000 and {current_year}")
    raw = {"wage": wage, "business": business, "transfer": transfer, "property": property}
    parts = {k: None if v is None else money(v) for k, v in raw.items()}
    for name, value in parts.items():
        if value is not None and value < 0:
            raise RuleViolation(name, "must not be negative")
    given = [v for v in parts.values() if v is not None]
    if total is None:
        if not given:
            raise RuleViolation("total", "give the total or its parts")
        exact = sum(given, Decimal(0))
    else:
        exact = money(total)
    if exact < 0:
        raise RuleViolation("total", "must not be negative")
    if given and len(given) == 4 and abs(sum(given, Decimal(0)) - exact) > 1:
        raise RuleViolation("total", f"total {exact} is not the sum of its parts {sum(given)}")
    return Income(year=year, total=exact, **parts)


def income_change(before: Decimal | None, after: Decimal) -> dict[str, str | None]:
    """A change of a year's total for the history, the amounts as exact text."""
    return {"from": None if before is None else str(before), "to": str(after)}


def per_capita(total: Decimal, household_size: int) -> Decimal:
    """Per-capita net income (人均纯收入) over the registered members, to the cent."""
    return money(total / household_size if household_size > 0 else total)


# --- Guarantees (两不愁三保障 + 饮水安全) -------------------------------------------------


def schooling_guarantee(
    members: Iterable[tuple[date, str | None]], today: date
) -> Literal["ok", "prominent_issue"] | None:
    """What the members' schooling says about 义务教育有保障: a child of compulsory-school
    age out of school is a prominent problem; None when no such child is registered."""
    relevant = [s for born, s in members if compulsory_school_age(born, today)]
    if not relevant:
        return None
    return "prominent_issue" if any(s == "out_of_school" for s in relevant) else "ok"


def medical_guarantee(enrolled: Iterable[bool]) -> Literal["ok", "prominent_issue"]:
    """基本医疗有保障: every member enrolled in basic medical insurance."""
    return "ok" if all(enrolled) else "prominent_issue"


# --- Monitoring (动态监测) ---------------------------------------------------------------


@dataclass(frozen=True)
class MonitoringState:
    status: str  # none / monitored / eliminated
    type: str
    since: date | None = None
    ended_on: date | None = None
    elimination_method: str | None = None
    case_id: str | None = None


def start_monitoring(
    state: MonitoringState, *, monitoring_type: str, decided_on: date, case_id: str
) -> MonitoringState | None:
    """纳入监测: the household becomes a monitored household of `monitoring_type`. A
    household whose risk was removed can be included again. Returns None when the decision
    is already applied (same case)."""
    if monitoring_type not in MONITORED_TYPES:
        raise RuleViolation("monitoring_type", f"must be one of {', '.join(MONITORED_TYPES)}")
    if state.status == "monitored" and state.case_id == case_id:
        return None
    return MonitoringState(
        status="monitored",
        type=monitoring_type,
        since=decided_on,
        ended_on=None,
        elimination_method=None,
        case_id=case_id,
    )


def eliminate_risk(
    state: MonitoringState, *, method: str, decided_on: date, case_id: str
) -> MonitoringState | None:
    """风险消除: a monitored household leaves monitoring, by assistance (帮扶消除) or
    naturally (自然消除). Returns None when there is nothing to do (already eliminated by
    this case, or the household is not monitored)."""
    if method not in ELIMINATION_METHODS:
        raise RuleViolation("method", f"must be one of {', '.join(ELIMINATION_METHODS)}")
    if state.status != "monitored":
        return None
    return MonitoringState(
        status="eliminated",
        type=state.type,
        since=state.since,
        ended_on=decided_on,
        elimination_method=method,
        case_id=case_id,
    )


# --- Key contacts (重点联系人) -----------------------------------------------------------


# --- Regions ----------------------------------------------------------------------------


def town_of(village_code: str) -> str:
    """The 9-digit town (镇/街道) code of a 12-digit village code."""
    return village_code[:9]
