"""数据质量核查: the rule catalogue, as pure functions over one household's snapshot.

Every rule has a stable code (never reused: a retired rule keeps its code out of the
catalogue), a category, a severity (error 错误 / warning 警告 / hint 提示), an English
title, a Chinese message template filled from the rule's evidence, and the fix to make.
A rule returns its evidence (a dict of plain values) when it fires and None otherwise.
No I/O here: the handlers build `Household` from the events they keep and store what
`check` returns. `RULESET_VERSION` changes whenever a rule is added, changed or retired,
and every finding records the version that raised it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from typing import Any, Literal

from backstop.contracts.policy import contact_missing, due_for_monthly_contact, income_drop_share
from backstop.monitoring_line import DEFAULT_MONITORING_LINES

RULESET_VERSION = "2026.12.3"

Severity = Literal["error", "warning", "hint"]
Category = Literal[
    "identity",
    "labour_schooling",
    "guarantees",
    "income",
    "procedure",
    "measures_funds",
    "department",
]
CATEGORY_LABELS: dict[str, str] = {
    "identity": "身份与家庭结构",
    "labour_schooling": "劳动力与就学",
    "guarantees": "两不愁三保障及饮水安全",
    "income": "收入",
    "procedure": "监测与认定程序",
    "measures_funds": "帮扶措施与资金",
    "department": "部门数据比对",
}
SEVERITY_LABELS: dict[str, str] = {"error": "错误", "warning": "警告", "hint": "提示"}
RELATION_LABELS: dict[str, str] = {
    "head": "户主",
    "spouse": "配偶",
    "child": "子女",
    "parent": "父母",
    "other": "其他",
}
SEX_LABELS: dict[str, str] = {"male": "男", "female": "女"}
GUARANTEE_LABELS: dict[str, str] = {
    "food": "不愁吃",
    "clothing": "不愁穿",
    "compulsory_education": "义务教育",
    "basic_medical": "基本医疗",
    "housing": "住房安全",
    "drinking_water": "饮水安全",
}
GUARANTEE_ITEMS = tuple(GUARANTEE_LABELS)
# Stages a person is "in school" at (在校生).
IN_SCHOOL = frozenset({"preschool", "primary", "junior", "senior", "vocational", "college"})
# Plausible ages (inclusive) for a schooling stage.
STAGE_AGES: dict[str, tuple[int, int]] = {
    "preschool": (2, 7),
    "primary": (5, 15),
    "junior": (10, 18),
    "senior": (13, 22),
    "vocational": (13, 30),
    "college": (15, 40),
    "out_of_school": (6, 17),
}
DISABILITY_GROUPS = frozenset({"disability", "disabled_without_carer", "severe_mental_disorder"})
# 健康状况 values that explain a working-age member without labour capacity.
ILL_OR_DISABLED = frozenset({"chronic_illness", "serious_illness", "disabled"})
# 务工状况 values of someone who works (in the town, the county, the province, outside).
WORKING = frozenset({"in_town", "in_county", "in_province", "out_of_province", "abroad"})
MONITORED_TYPES = frozenset({"unstable", "marginal", "sudden_hardship"})
CENT = Decimal("0.01")
YUAN = Decimal("1")  # arithmetic rules allow one yuan of rounding


@dataclass(frozen=True)
class Thresholds:
    """The configurable limits of the rules (`QUALITY_*` settings)."""

    income_lines: Mapping[int, Decimal] = field(
        default_factory=lambda: {y: Decimal(str(v)) for y, v in DEFAULT_MONITORING_LINES.items()}
    )
    income_line_default: Decimal = Decimal("6000")
    # Year-on-year change of net income beyond which a reason is expected.
    income_rise_ratio: Decimal = Decimal("1.0")  # more than doubled
    income_drop_ratio: float = 0.5  # lost more than half
    max_per_capita: Decimal = Decimal("200000")
    # Rigid spending (12 months) that should have been assessed: a share of the annual
    # income, or a fixed amount when no income is registered (risk's defaults).
    rigid_share: Decimal = Decimal("0.5")
    rigid_amount_without_income: Decimal = Decimal("10000")
    elimination_min_months: int = 6
    at_risk_grace_days: int = 30
    marriage_age_male: int = 22
    marriage_age_female: int = 20
    full_labour_max_age: int = 65
    min_generation_gap: int = 15
    max_age: int = 110
    guarantees_stale_days: int = 366
    quiet_monitoring_months: int = 6
    # Grants in one quarter above this share of the annual net income (MF005).
    grant_income_share: Decimal = Decimal("0.5")

    def income_line(self, year: int) -> Decimal:
        return self.income_lines.get(year, self.income_line_default)


# --- the household snapshot -----------------------------------------------------------
# Plain (not frozen) slotted dataclasses for the parts a sweep builds by the million: a
# frozen dataclass's __init__ costs twice as much. Nothing here mutates them.


@dataclass(slots=True)
class Member:
    person_id: str
    id_hash: str
    relation: str
    sex: str
    birth_date: date
    special_groups: frozenset[str] = frozenset()
    labor_capacity: str = "full"
    schooling: str | None = None
    medical_insurance: bool = True
    # From the national system's export (registry); None where not known.
    labor_skill: str | None = None  # 劳动技能: skilled, ordinary, weak, lost, none
    health_status: str | None = None  # 健康状况: healthy, chronic_illness, ...
    work_status: str | None = None  # 务工状况: in_town … abroad, other, not_working
    work_months: int | None = None  # 务工时间（月）
    pension_insurance: bool | None = None  # 基本养老保险
    critical_illness_insurance: bool | None = None  # 大病保险


@dataclass(slots=True)
class Income:
    year: int
    total: Decimal
    per_capita: Decimal
    wage: Decimal | None = None
    business: Decimal | None = None
    transfer: Decimal | None = None
    property_income: Decimal | None = None  # 财产性收入 (the event's `property`)

    @property
    def parts(self) -> tuple[Decimal | None, ...]:
        return (self.wage, self.business, self.transfer, self.property_income)


@dataclass(slots=True)
class FeedRecord:
    """A department record matched to the household. `amount` is the out-of-pocket cost
    (medical, education), the loss (disaster) or the grant (civil affairs)."""

    source: str
    record_id: str
    id_hash: str
    on: date
    amount: Decimal
    kind: str | None = None  # civil affairs: dibao, tekun, ...
    status: str | None = None  # civil affairs: granted, terminated
    enrolled: bool | None = None  # education
    housing_damaged: bool = False  # disaster
    total_cost: Decimal | None = None  # medical
    insurance_paid: Decimal | None = None
    assistance_paid: Decimal | None = None


@dataclass(frozen=True, slots=True)
class Risk:
    level: str  # none, watch, at_risk
    factors: frozenset[str]
    assessed_on: date
    at_risk_since: date | None = None


@dataclass(frozen=True, slots=True)
class Decision:
    kind: Literal["monitoring_started", "risk_eliminated"]
    decided_on: date
    method: str | None = None  # assisted / natural (帮扶消除 / 自然消除)
    risk_factors: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Task:
    kind: str  # verification, review, ...
    status: str  # open, done, cancelled
    opened_on: date
    due_on: date
    overdue: bool = False


@dataclass(slots=True)
class AidMeasure:
    """A measure of an assistance plan (帮扶措施)."""

    category: str  # industry, employment, public_welfare_job, education, health, ...
    start_on: date
    end_on: date
    amount: Decimal = Decimal(0)


@dataclass(slots=True)
class Grant:
    """A grant from the city and town funds (救助补助)."""

    amount: Decimal
    granted_on: date


@dataclass(frozen=True, slots=True)
class Departed:
    """A member removed from the household (deceased, married out, moved)."""

    id_hash: str
    removed_on: date
    reason: str | None = None


@dataclass(slots=True)
class Household:
    household_id: str
    region_code: str
    type: str
    members: tuple[Member, ...]
    policy_enjoying: bool = False
    monitoring_status: str = "none"
    monitoring_since: date | None = None
    monitoring_ended_on: date | None = None
    elimination_method: str | None = None
    incomes: tuple[Income, ...] = ()  # newest first
    guarantees: Mapping[str, str] = field(default_factory=dict)
    guarantees_verified_on: Mapping[str, date] = field(default_factory=dict)
    contact_roles: frozenset[str] = frozenset()
    records: tuple[FeedRecord, ...] = ()
    risk: Risk | None = None
    decisions: tuple[Decision, ...] = ()  # oldest first
    tasks: tuple[Task, ...] = ()
    departed: tuple[Departed, ...] = ()
    measures: tuple[AidMeasure, ...] = ()
    grants: tuple[Grant, ...] = ()
    visits: tuple[date, ...] = ()  # contacts (走访) of the last two months
    # ID hashes of members that another household of the register also lists.
    shared_id_hashes: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


def age_on(birth_date: date, on: date) -> int:
    years = on.year - birth_date.year
    return years - 1 if (on.month, on.day) < (birth_date.month, birth_date.day) else years


def compulsory_school_age(birth_date: date, today: date) -> bool:
    """Nine-year compulsory education (义务教育): 6 to 15 on 31 August of the running school
    year (the registry's and risk's reading)."""
    year = today.year if today.month >= 9 else today.year - 1
    return 6 <= age_on(birth_date, date(year, 8, 31)) <= 15


def months_between(start: date, end: date) -> int:
    return (end.year - start.year) * 12 + end.month - start.month - (end.day < start.day)


def yuan(value: Decimal) -> str:
    return f"{value.quantize(CENT)}"


class Facts:
    """What many rules need, computed once per household."""

    __slots__ = (
        "ages",
        "factors",
        "h",
        "hashes",
        "heads",
        "income",
        "previous_income",
        "spouses",
        "t",
        "today",
        "year_ago",
    )

    def __init__(self, household: Household, today: date, thresholds: Thresholds) -> None:
        self.h = household
        self.today = today
        self.t = thresholds
        self.ages = {m.person_id: age_on(m.birth_date, today) for m in household.members}
        self.heads = [m for m in household.members if m.relation == "head"]
        self.spouses = [m for m in household.members if m.relation == "spouse"]
        self.income = household.incomes[0] if household.incomes else None
        self.previous_income = next(
            (
                i
                for i in household.incomes[1:]
                if self.income is not None and i.year == self.income.year - 1
            ),
            None,
        )
        self.factors = household.risk.factors if household.risk else frozenset()
        self.year_ago = today - timedelta(days=365)
        self.hashes = {m.id_hash: m for m in household.members}

    @property
    def head(self) -> Member | None:
        return self.heads[0] if len(self.heads) == 1 else None

    def age(self, m: Member) -> int:
        return self.ages[m.person_id]

    def records(self, source: str, *, recent: bool = True) -> list[FeedRecord]:
        return [
            r
            for r in self.h.records
            if r.source == source and (not recent or r.on >= self.year_ago)
        ]

    def line(self) -> Decimal:
        year = self.income.year if self.income else self.today.year - 1
        return self.t.income_line(year)

    def rigid_threshold(self) -> Decimal:
        if self.income is None or self.income.total <= 0:
            return self.t.rigid_amount_without_income
        return self.income.total * self.t.rigid_share

    @property
    def monitored(self) -> bool:
        return self.h.monitoring_status == "monitored"

    def last_decision(self) -> Decision | None:
        return self.h.decisions[-1] if self.h.decisions else None


# --- the catalogue --------------------------------------------------------------------

Evidence = dict[str, Any]
Check = Callable[[Facts], Evidence | None]


@dataclass(frozen=True)
class Rule:
    code: str
    category: str
    severity: Severity
    title: str
    message: str  # Chinese template, filled from the evidence
    fix: str
    check: Check
    # The part of the snapshot without which the rule cannot fire (None: always run);
    # `check` skips the rule for households that lack it, which is most of them.
    needs: str | None = None

    def describe(self, evidence: Evidence) -> str:
        return self.message.format_map(evidence)


@dataclass(frozen=True)
class Finding:
    rule: Rule
    evidence: Evidence

    @property
    def message(self) -> str:
        return self.rule.describe(self.evidence)


RULES: list[Rule] = []


def rule(
    code: str,
    category: Category,
    severity: Severity,
    title: str,
    message: str,
    fix: str,
    *,
    needs: str | None = None,
) -> Callable[[Check], Check]:
    def register(check: Check) -> Check:
        if any(r.code == code for r in RULES):
            raise ValueError(f"rule {code} defined twice")
        if needs is not None and needs not in FACETS:
            raise ValueError(f"rule {code} needs an unknown part {needs}")
        RULES.append(Rule(code, category, severity, title, message, fix, check, needs))
        return check

    return register


FACETS = (
    "records",
    "risk",
    "monitored",
    "eliminated",
    "decisions",
    "tasks",
    "departed",
    "measures",
    "grants",
)


def facets(h: Household) -> frozenset[str]:
    present = {
        "records": bool(h.records),
        "risk": h.risk is not None,
        "monitored": h.monitoring_status == "monitored",
        "eliminated": h.monitoring_status == "eliminated",
        "decisions": bool(h.decisions),
        "tasks": bool(h.tasks),
        "departed": bool(h.departed),
        "measures": bool(h.measures),
        "grants": bool(h.grants),
    }
    return frozenset(k for k, v in present.items() if v)


_RULES_FOR: dict[frozenset[str], list[Rule]] = {}


def rules_for(present: frozenset[str]) -> list[Rule]:
    rules = _RULES_FOR.get(present)
    if rules is None:
        rules = _RULES_FOR[present] = [r for r in RULES if r.needs is None or r.needs in present]
    return rules


def _people(f: Facts, members: list[Member]) -> Evidence | None:
    """Evidence naming members by relation, age and person id (never by ID number)."""
    if not members:
        return None
    return {
        "persons": "、".join(
            f"{RELATION_LABELS.get(m.relation, m.relation)}{f.age(m)}岁" for m in members
        ),
        "person_ids": [m.person_id for m in members],
        "count": len(members),
    }


def check(household: Household, today: date, thresholds: Thresholds | None = None) -> list[Finding]:
    """Every rule that fires on `household`, in catalogue order."""
    facts = Facts(household, today, thresholds or Thresholds())
    found = []
    for r in rules_for(facets(household)):
        evidence = r.check(facts)
        if evidence is not None:
            found.append(Finding(r, evidence))
    return found


RULES_BY_CODE: dict[str, Rule] = {}  # filled at the end of the module


# --- identity and family structure (身份与家庭结构) --------------------------------------


@rule("ID001", "identity", "error", "No household head", "户内没有户主", "在户成员中指定一名户主")
def no_head(f: Facts) -> Evidence | None:
    return {} if f.h.members and not f.heads else None


@rule(
    "ID002", "identity", "error", "More than one head", "户内登记了{count}名户主",
    "保留一名户主，其余成员改为与户主的实际关系",
)  # fmt: skip
def several_heads(f: Facts) -> Evidence | None:
    return _people(f, f.heads) if len(f.heads) > 1 else None


@rule(
    "ID003", "identity", "error", "Head and spouse of the same sex",
    "户主与配偶性别相同（均为{sex}）", "核对配偶的身份证号与关系，更正性别或与户主关系",
)  # fmt: skip
def same_sex_spouse(f: Facts) -> Evidence | None:
    head = f.head
    if head is None:
        return None
    same = [s for s in f.spouses if s.sex == head.sex]
    if not same:
        return None
    return {**(_people(f, same) or {}), "sex": SEX_LABELS.get(head.sex, head.sex)}


@rule(
    "ID004", "identity", "error", "More than one spouse", "户内登记了{count}名配偶",
    "保留户主的配偶，其余成员改为实际关系",
)  # fmt: skip
def several_spouses(f: Facts) -> Evidence | None:
    return _people(f, f.spouses) if len(f.spouses) > 1 else None


def _below_marriage_age(f: Facts, m: Member) -> bool:
    minimum = f.t.marriage_age_male if m.sex == "male" else f.t.marriage_age_female
    return f.age(m) < minimum


@rule(
    "ID005", "identity", "warning", "Spouse below the legal marriage age",
    "配偶（{persons}）低于法定婚龄（男22周岁、女20周岁）", "核实婚姻关系；不是配偶的改为实际关系",
)  # fmt: skip
def young_spouse(f: Facts) -> Evidence | None:
    return _people(f, [s for s in f.spouses if _below_marriage_age(f, s)])


@rule(
    "ID006", "identity", "warning", "Married head below the legal marriage age",
    "户主{persons}已登记配偶，低于法定婚龄", "核实户主与配偶的关系及出生日期",
)  # fmt: skip
def young_married_head(f: Facts) -> Evidence | None:
    head = f.head
    if head is None or not f.spouses or not _below_marriage_age(f, head):
        return None
    return _people(f, [head])


@rule(
    "ID007", "identity", "error", "Child older than the head",
    "子女（{persons}）比户主（{head_age}岁）年长", "核对与户主关系（可能为父母或其他）",
)  # fmt: skip
def child_older_than_head(f: Facts) -> Evidence | None:
    return _generation(f, "child", wrong_side=True)


@rule(
    "ID008", "identity", "warning", "Child too close in age to the head",
    "子女（{persons}）与户主年龄相差不足{gap}岁", "核对与户主关系或出生日期",
)  # fmt: skip
def child_close_to_head(f: Facts) -> Evidence | None:
    return _generation(f, "child", wrong_side=False)


@rule(
    "ID009", "identity", "error", "Parent younger than the head",
    "父母（{persons}）比户主（{head_age}岁）年轻", "核对与户主关系（可能为子女或其他）",
)  # fmt: skip
def parent_younger_than_head(f: Facts) -> Evidence | None:
    return _generation(f, "parent", wrong_side=True)


@rule(
    "ID010", "identity", "warning", "Parent too close in age to the head",
    "父母（{persons}）与户主年龄相差不足{gap}岁", "核对与户主关系或出生日期",
)  # fmt: skip
def parent_close_to_head(f: Facts) -> Evidence | None:
    return _generation(f, "parent", wrong_side=False)


def _generation(f: Facts, relation: str, *, wrong_side: bool) -> Evidence | None:
    """ID007–ID010: a child is born after the head and a parent before, at least the
    configured generation gap apart. `wrong_side` finds those born on the wrong side of
    the head (evidence with the head's age); otherwise those on the right side but too
    close (with the gap)."""
    head = f.head
    if head is None:
        return None
    gap = f.t.min_generation_gap
    hits = []
    for m in f.h.members:
        if m.relation != relation:
            continue
        elder, younger = (
            (m.birth_date, head.birth_date)
            if relation == "parent"
            else (head.birth_date, m.birth_date)
        )
        on_wrong_side = younger < elder
        too_close = not on_wrong_side and age_on(elder, younger) < gap
        if on_wrong_side if wrong_side else too_close:
            hits.append(m)
    found = _people(f, hits)
    if not found:
        return None
    return {**found, "head_age": f.age(head)} if wrong_side else {**found, "gap": gap}


@rule(
    "ID011", "identity", "error", "Person registered in two households",
    "成员（{persons}）同时登记在其他{others}户", "核实实际所在户，从另一户减员或迁出",
)  # fmt: skip
def registered_twice(f: Facts) -> Evidence | None:
    shared = [m for m in f.h.members if m.id_hash in f.h.shared_id_hashes]
    found = _people(f, shared)
    if not found:
        return None
    others = sorted({h for m in shared for h in f.h.shared_id_hashes[m.id_hash]})
    return {**found, "others": len(others), "other_households": others}


@rule(
    "ID012", "identity", "error", "Same person twice in the household",
    "同一身份证号在户内登记了多次（{persons}）", "删除重复的成员记录",
)  # fmt: skip
def duplicated_member(f: Facts) -> Evidence | None:
    seen: dict[str, Member] = {}
    twice = []
    for m in f.h.members:
        if m.id_hash in seen:
            twice.append(m)
        seen[m.id_hash] = m
    return _people(f, twice)


@rule(
    "ID013", "identity", "error", "Birth date in the future",
    "成员出生日期{birth_dates}晚于今天", "核对身份证号与出生日期",
)  # fmt: skip
def born_in_future(f: Facts) -> Evidence | None:
    future = [m for m in f.h.members if m.birth_date > f.today]
    if not future:
        return None
    return {
        "birth_dates": "、".join(str(m.birth_date) for m in future),
        "person_ids": [m.person_id for m in future],
    }


@rule(
    "ID014", "identity", "warning", "Member older than the plausible age",
    "成员（{persons}）年龄超过{max_age}岁", "核实是否已死亡未减员",
)  # fmt: skip
def implausibly_old(f: Facts) -> Evidence | None:
    found = _people(f, [m for m in f.h.members if f.age(m) > f.t.max_age])
    return {**found, "max_age": f.t.max_age} if found else None


@rule("ID015", "identity", "error", "Household without members", "户内没有在户成员",
      "补录家庭成员，或按程序注销该户")  # fmt: skip
def no_members(f: Facts) -> Evidence | None:
    return {} if not f.h.members else None


@rule(
    "ID016", "identity", "warning", "Head under 16", "户主{persons}，未满16周岁",
    "核实户主；未成年人单独立户的应有监护安排说明",
)  # fmt: skip
def minor_head(f: Facts) -> Evidence | None:
    return _people(f, [m for m in f.heads if f.age(m) < 16])


@rule(
    "ID017", "identity", "warning", "More than two parents", "户内登记了{count}名父母",
    "核对与户主关系（岳父母、公婆等应登记为其他）",
)  # fmt: skip
def many_parents(f: Facts) -> Evidence | None:
    parents = [m for m in f.h.members if m.relation == "parent"]
    return _people(f, parents) if len(parents) > 2 else None


@rule(
    "ID018", "identity", "error", "Removed member still receiving civil-affairs aid",
    "已减员人员（{reasons}）在民政数据中仍享受{kinds}", "通知民政部门停发，或核实减员是否正确",
    needs="departed",
)  # fmt: skip
def departed_still_aided(f: Facts) -> Evidence | None:
    departed = {d.id_hash: d for d in f.h.departed if d.id_hash not in f.hashes}
    hits = [
        (departed[r.id_hash], r)
        for r in f.records("civil_affairs", recent=False)
        if r.id_hash in departed
        and r.status == "granted"
        and r.on >= departed[r.id_hash].removed_on
    ]
    if not hits:
        return None
    return {
        "reasons": "、".join(sorted({d.reason or "减员" for d, _ in hits})),
        "kinds": "、".join(sorted({AID_LABELS.get(r.kind or "", r.kind or "") for _, r in hits})),
        "record_ids": [r.record_id for _, r in hits],
    }


@rule(
    "ID019", "identity", "warning", "Removed member still in the medical feed",
    "已减员人员在减员后仍有{count}条医保结算记录", "核实减员原因与日期（死亡减员后不应再有结算）",
    needs="departed",
)  # fmt: skip
def departed_still_treated(f: Facts) -> Evidence | None:
    departed = {d.id_hash: d for d in f.h.departed if d.id_hash not in f.hashes}
    hits = [
        r
        for r in f.records("medical")
        if r.id_hash in departed and r.on > departed[r.id_hash].removed_on
    ]
    return {"count": len(hits), "record_ids": [r.record_id for r in hits]} if hits else None


# --- labour and schooling (劳动力与就学) ------------------------------------------------


@rule(
    "LS001", "labour_schooling", "error", "Under-16 with full labour capacity",
    "未满16周岁的成员（{persons}）登记为普通劳动力", "劳动能力改为无劳动力",
)  # fmt: skip
def minor_full_labour(f: Facts) -> Evidence | None:
    return _people(f, [m for m in f.h.members if f.age(m) < 16 and m.labor_capacity == "full"])


@rule(
    "LS002", "labour_schooling", "warning", "Under-16 with partial labour capacity",
    "未满16周岁的成员（{persons}）登记为弱劳动力", "劳动能力改为无劳动力",
)  # fmt: skip
def minor_partial_labour(f: Facts) -> Evidence | None:
    return _people(f, [m for m in f.h.members if f.age(m) < 16 and m.labor_capacity == "partial"])


@rule(
    "LS003", "labour_schooling", "error", "Student with full labour capacity",
    "在校生（{persons}）登记为普通劳动力", "在校生劳动能力改为无劳动力，或更正在校情况",
)  # fmt: skip
def student_full_labour(f: Facts) -> Evidence | None:
    return _people(
        f,
        [
            m
            for m in f.h.members
            if m.schooling in IN_SCHOOL and m.labor_capacity == "full" and f.age(m) >= 16
        ],
    )


@rule(
    "LS004", "labour_schooling", "warning", "Over 65 with full labour capacity",
    "{age}岁以上成员（{persons}）登记为普通劳动力", "核实劳动能力；确有劳动能力的作为例外说明",
)  # fmt: skip
def old_full_labour(f: Facts) -> Evidence | None:
    limit = f.t.full_labour_max_age
    found = _people(f, [m for m in f.h.members if f.age(m) >= limit and m.labor_capacity == "full"])
    return {**found, "age": limit} if found else None


@rule(
    "LS005", "labour_schooling", "error", "School-age child without schooling status",
    "义务教育阶段成员（{persons}）未登记在校情况", "补录在校情况（在读学段或失学辍学）",
)  # fmt: skip
def school_age_without_status(f: Facts) -> Evidence | None:
    return _people(
        f,
        [
            m
            for m in f.h.members
            if m.schooling in (None, "none") and compulsory_school_age(m.birth_date, f.today)
        ],
    )


def _education_feed(f: Facts, enrolled: bool) -> list[Member]:
    latest: dict[str, FeedRecord] = {}
    for r in f.records("education"):
        if r.id_hash not in latest or r.on >= latest[r.id_hash].on:
            latest[r.id_hash] = r
    return [f.hashes[h] for h, r in latest.items() if h in f.hashes and r.enrolled is enrolled]


@rule(
    "LS006", "labour_schooling", "error", "Education feed: not enrolled, register: in school",
    "教育部门数据显示（{persons}）未在读，户内登记为在校", "入户核实是否失学辍学，更正在校情况",
    needs="records",
)  # fmt: skip
def feed_not_enrolled(f: Facts) -> Evidence | None:
    return _people(f, [m for m in _education_feed(f, False) if m.schooling in IN_SCHOOL])


@rule(
    "LS007", "labour_schooling", "warning", "Education feed: enrolled, register: not in school",
    "教育部门数据显示（{persons}）在读，户内登记为{schooling}", "更正在校情况为实际学段",
    needs="records",
)  # fmt: skip
def feed_enrolled(f: Facts) -> Evidence | None:
    found = [m for m in _education_feed(f, True) if m.schooling not in IN_SCHOOL]
    evidence = _people(f, found)
    if evidence is None:
        return None
    return {**evidence, "schooling": "、".join(sorted({m.schooling or "未登记" for m in found}))}


@rule(
    "LS008", "labour_schooling", "error", "Out-of-school child, education marked as guaranteed",
    "义务教育阶段成员（{persons}）失学辍学，义务教育保障却登记为无问题",
    "义务教育保障改为存在突出问题，并落实控辍保学",
)  # fmt: skip
def dropout_but_guaranteed(f: Facts) -> Evidence | None:
    if f.h.guarantees.get("compulsory_education") != "ok":
        return None
    return _people(
        f,
        [
            m
            for m in f.h.members
            if m.schooling == "out_of_school" and compulsory_school_age(m.birth_date, f.today)
        ],
    )


@rule(
    "LS009", "labour_schooling", "warning", "Disabled member with full labour capacity",
    "残疾或失能成员（{persons}）登记为普通劳动力", "核实残疾等级与劳动能力",
)  # fmt: skip
def disabled_full_labour(f: Facts) -> Evidence | None:
    return _people(
        f,
        [
            m
            for m in f.h.members
            if m.labor_capacity == "full" and m.special_groups & DISABILITY_GROUPS
        ],
    )


@rule(
    "LS010", "labour_schooling", "hint", "Schooling stage implausible for age",
    "成员（{persons}）的在校学段与年龄不符", "核对在校学段或出生日期",
)  # fmt: skip
def stage_for_age(f: Facts) -> Evidence | None:
    def off(m: Member) -> bool:
        ages = STAGE_AGES.get(m.schooling or "")
        return ages is not None and not ages[0] <= f.age(m) <= ages[1]

    return _people(f, [m for m in f.h.members if off(m)])


@rule(
    "LS011", "labour_schooling", "hint", "Working-age member without labour capacity or reason",
    "劳动年龄成员（{persons}）登记为无劳动力，且不在校、无残疾或疾病登记",
    "核实劳动能力；因病因残的补录特殊群体",
)  # fmt: skip
def idle_working_age(f: Facts) -> Evidence | None:
    return _people(
        f,
        [
            m
            for m in f.h.members
            if 16 <= f.age(m) < 60
            and m.labor_capacity == "none"
            and not m.special_groups
            and m.health_status not in ILL_OR_DISABLED
            and m.schooling not in IN_SCHOOL
        ],
    )


@rule(
    "LS012", "labour_schooling", "warning", "Healthy working-age member registered as lost labour",
    "劳动年龄成员（{persons}）健康状况为健康，劳动技能却登记为丧失劳动力",
    "核实健康状况与劳动技能，二者择一更正",
)  # fmt: skip
def healthy_lost_labour(f: Facts) -> Evidence | None:
    # 劳动年龄健康人口丧失劳动力, one of the national system's consistency checks.
    return _people(
        f,
        [
            m
            for m in f.h.members
            if 16 <= f.age(m) < 60 and m.health_status == "healthy" and m.labor_skill == "lost"
        ],
    )


@rule(
    "LS013", "labour_schooling", "warning", "Member without labour capacity registered as working",
    "成员（{persons}）登记为无劳动能力，却有务工情况", "核实务工状况或劳动能力并更正",
)  # fmt: skip
def working_without_capacity(f: Facts) -> Evidence | None:
    return _people(
        f, [m for m in f.h.members if m.labor_capacity == "none" and m.work_status in WORKING]
    )


@rule(
    "LS014", "labour_schooling", "hint", "Work status and months of work disagree",
    "成员（{persons}）务工状况与务工时间不一致（有务工无时间，或未务工有时间）",
    "核实务工状况与务工时间（月）",
)  # fmt: skip
def work_months_disagree(f: Facts) -> Evidence | None:
    return _people(
        f,
        [
            m
            for m in f.h.members
            if (m.work_status in WORKING and m.work_months == 0)
            or (m.work_status == "not_working" and (m.work_months or 0) > 0)
        ],
    )


# --- insurance and guarantees (两不愁三保障及饮水安全) ----------------------------------


@rule(
    "GU001", "guarantees", "error", "Member without basic medical insurance",
    "成员（{persons}）未参加基本医疗保险", "动员参保（困难群众资助参保），参保后更新登记",
)  # fmt: skip
def uninsured(f: Facts) -> Evidence | None:
    return _people(f, [m for m in f.h.members if not m.medical_insurance])


@rule(
    "GU002", "guarantees", "warning", "Medical feed contradicts the insurance flag",
    "医保结算数据显示（{persons}）有基本医保报销，户内登记为未参保", "更正参保状态",
    needs="records",
)  # fmt: skip
def feed_shows_insured(f: Facts) -> Evidence | None:
    paid = {r.id_hash for r in f.records("medical") if (r.insurance_paid or 0) > 0}
    return _people(f, [m for m in f.h.members if not m.medical_insurance and m.id_hash in paid])


@rule(
    "GU003", "guarantees", "error", "Basic medical guaranteed with uninsured members",
    "基本医疗保障登记为无问题，但有{count}名成员未参保", "基本医疗保障改为存在问题，或更正参保状态",
)  # fmt: skip
def medical_ok_uninsured(f: Facts) -> Evidence | None:
    if f.h.guarantees.get("basic_medical") != "ok":
        return None
    return _people(f, [m for m in f.h.members if not m.medical_insurance])


@rule(
    "GU004", "guarantees", "warning", "Basic medical marked a problem, every member insured",
    "基本医疗保障登记为{status}，但成员均已参保", "核实基本医疗保障情况并更正",
)  # fmt: skip
def medical_issue_all_insured(f: Facts) -> Evidence | None:
    status = f.h.guarantees.get("basic_medical")
    if status != "prominent_issue" or not f.h.members:
        return None
    if all(m.medical_insurance for m in f.h.members):
        return {"status": "存在突出问题"}
    return None


def _guarantee_without_factor(item: str, factor: str) -> Check:
    def check_(f: Facts) -> Evidence | None:
        status = f.h.guarantees.get(item)
        if status not in ("possible_issue", "prominent_issue") or f.h.risk is None:
            return None
        if factor in f.factors:
            return None
        return {"status": "存在突出问题" if status == "prominent_issue" else "可能存在问题"}

    return check_


def _factor_without_guarantee(item: str, factor: str) -> Check:
    def check_(f: Facts) -> Evidence | None:
        if factor in f.factors and f.h.guarantees.get(item) == "ok":
            return {}
        return None

    return check_


for _code, _item, _factor, _severity in (
    ("GU005", "housing", "housing", "error"),
    ("GU007", "drinking_water", "drinking_water", "error"),
    ("GU009", "compulsory_education", "compulsory_education", "error"),
    ("GU010", "basic_medical", "basic_medical", "error"),
):
    _label = GUARANTEE_LABELS[_item]
    rule(
        _code, "guarantees", _severity,  # type: ignore[arg-type]
        f"{_item.replace('_', ' ').capitalize()} problem without the {_factor} risk factor",
        f"{_label}{{status}}，风险评估没有“{_label}”因素",
        f"核实{_label}情况：确有问题的补录并重新评估，已解决的更正保障状态",
        needs="risk",
    )(_guarantee_without_factor(_item, _factor))  # fmt: skip

for _code, _item, _factor in (
    ("GU006", "housing", "housing"),
    ("GU008", "drinking_water", "drinking_water"),
):
    _label = GUARANTEE_LABELS[_item]
    rule(
        _code, "guarantees", "warning",
        f"{_factor.replace('_', ' ').capitalize()} risk factor while {_item.replace('_', ' ')} is marked ok",
        f"风险评估有“{_label}”因素，{_label}保障却登记为无问题",
        f"入户核实{_label}情况，更正保障状态",
        needs="risk",
    )(_factor_without_guarantee(_item, _factor))  # fmt: skip


@rule(
    "GU011", "guarantees", "warning", "House damaged by disaster, housing marked safe",
    "应急管理部门数据显示住房受损（{count}条），住房安全却登记为无问题",
    "入户核实住房安全（危房鉴定），更正住房保障状态",
    needs="records",
)  # fmt: skip
def damaged_house_marked_safe(f: Facts) -> Evidence | None:
    hits = [r for r in f.records("disaster") if r.housing_damaged]
    if not hits or f.h.guarantees.get("housing") != "ok":
        return None
    return {"count": len(hits), "record_ids": [r.record_id for r in hits]}


@rule(
    "GU012", "guarantees", "warning", "Monitored household with guarantees not assessed",
    "监测户未登记{items}情况", "入户核实并登记“两不愁三保障”及饮水安全情况",
    needs="monitored",
)  # fmt: skip
def guarantees_missing(f: Facts) -> Evidence | None:
    if not f.monitored:
        return None
    missing = [i for i in GUARANTEE_ITEMS if i not in f.h.guarantees]
    if not missing:
        return None
    return {"items": "、".join(GUARANTEE_LABELS[i] for i in missing), "missing": missing}


@rule(
    "GU013", "guarantees", "hint", "Guarantees not verified for over a year",
    "监测户{items}超过一年未核实", "入户核实并更新保障情况",
    needs="monitored",
)  # fmt: skip
def guarantees_stale(f: Facts) -> Evidence | None:
    if not f.monitored:
        return None
    limit = f.today - timedelta(days=f.t.guarantees_stale_days)
    stale = [i for i, on in f.h.guarantees_verified_on.items() if on < limit]
    if not stale:
        return None
    return {"items": "、".join(GUARANTEE_LABELS.get(i, i) for i in sorted(stale)), "stale": stale}


@rule(
    "GU014", "guarantees", "error", "Food or clothing problem without a risk level",
    "{items}存在突出问题，风险等级为“{level}”", "核实“两不愁”情况；确有问题的重新评估并启动核实",
    needs="risk",
)  # fmt: skip
def basic_needs_unassessed(f: Facts) -> Evidence | None:
    items = [i for i in ("food", "clothing") if f.h.guarantees.get(i) == "prominent_issue"]
    if not items or f.h.risk is None or f.h.risk.level == "at_risk":
        return None
    return {
        "items": "、".join(GUARANTEE_LABELS[i] for i in items),
        "level": "可能存在问题" if f.h.risk.level == "watch" else "无风险",
    }


@rule(
    "GU015", "guarantees", "hint", "Adult without basic pension insurance",
    "16周岁以上非在校成员（{persons}）未参加城乡居民基本养老保险", "动员参保（困难群体代缴），参保后更新登记",
)  # fmt: skip
def no_pension_insurance(f: Facts) -> Evidence | None:
    return _people(
        f,
        [
            m
            for m in f.h.members
            if m.pension_insurance is False and f.age(m) >= 16 and m.schooling not in IN_SCHOOL
        ],
    )


@rule(
    "GU016", "guarantees", "hint", "Insured member registered without critical illness insurance",
    "成员（{persons}）参加了基本医疗保险，大病保险却登记为未参加", "城乡居民大病保险随基本医保参保，更正为已参加",
)  # fmt: skip
def insured_without_critical_illness(f: Facts) -> Evidence | None:
    # 城乡居民大病保险 covers everyone enrolled in 城乡居民基本医疗保险.
    return _people(
        f,
        [m for m in f.h.members if m.medical_insurance and m.critical_illness_insurance is False],
    )


# --- income (收入) ----------------------------------------------------------------------


@rule(
    "IN001", "income", "warning", "No income recorded for last year",
    "未登记{year}年家庭纯收入（最近一次为{latest}）", "采集并登记上年度家庭纯收入",
)  # fmt: skip
def income_missing(f: Facts) -> Evidence | None:
    wanted = f.today.year - 1
    latest = f.income.year if f.income else None
    if latest is not None and latest >= wanted:
        return None
    return {"year": wanted, "latest": f"{latest}年" if latest else "无"}


@rule(
    "IN002", "income", "error", "Income parts do not add up",
    "{year}年各项收入之和{parts}元与家庭纯收入{total}元不符", "核对工资性、生产经营性、转移性、财产性收入及合计",
)  # fmt: skip
def parts_sum(f: Facts) -> Evidence | None:
    i = f.income
    if i is None or all(p is None for p in i.parts):
        return None
    parts = sum((p for p in i.parts if p is not None), Decimal(0))
    if abs(parts - i.total) <= YUAN:
        return None
    return {"year": i.year, "parts": yuan(parts), "total": yuan(i.total)}


@rule(
    "IN003", "income", "error", "Per-capita income not over the current members",
    "{year}年人均纯收入{per_capita}元与纯收入{total}元÷{members}人={expected}元不符",
    "按现有在户人口重新计算人均纯收入（已减员人员不计入）",
)  # fmt: skip
def per_capita_arithmetic(f: Facts) -> Evidence | None:
    i = f.income
    if i is None or not f.h.members:
        return None
    expected = (i.total / len(f.h.members)).quantize(CENT)
    if abs(expected - i.per_capita) <= YUAN:
        return None
    return {
        "year": i.year,
        "per_capita": yuan(i.per_capita),
        "total": yuan(i.total),
        "members": len(f.h.members),
        "expected": yuan(expected),
    }


@rule(
    "IN004", "income", "error", "Negative net income", "{year}年家庭纯收入为负数（{total}元）",
    "核对收入与生产经营性支出",
)  # fmt: skip
def negative_total(f: Facts) -> Evidence | None:
    i = f.income
    return {"year": i.year, "total": yuan(i.total)} if i is not None and i.total < 0 else None


@rule(
    "IN005", "income", "warning", "Negative wage, transfer or property income",
    "{year}年{items}为负数", "工资性、转移性、财产性收入不应为负数，核对后更正",
)  # fmt: skip
def negative_part(f: Facts) -> Evidence | None:
    i = f.income
    if i is None:
        return None
    labels = (("工资性收入", i.wage), ("转移性收入", i.transfer), ("财产性收入", i.property_income))
    bad = [name for name, v in labels if v is not None and v < 0]
    return {"year": i.year, "items": "、".join(bad)} if bad else None


@rule(
    "IN006", "income", "warning", "Implausibly high per-capita income",
    "{year}年人均纯收入{per_capita}元，超过{limit}元", "核对收入单位（元）与金额",
)  # fmt: skip
def implausible_income(f: Facts) -> Evidence | None:
    i = f.income
    if i is None or i.per_capita <= f.t.max_per_capita:
        return None
    return {"year": i.year, "per_capita": yuan(i.per_capita), "limit": yuan(f.t.max_per_capita)}


@rule(
    "IN007", "income", "error", "Income below the line, not monitored and not flagged",
    "{year}年人均纯收入{per_capita}元低于监测线{line}元，未纳入监测，风险评估也未提示收入风险",
    "入户核实收入；符合条件的按程序纳入监测",
)  # fmt: skip
def below_line_unflagged(f: Facts) -> Evidence | None:
    i = f.income
    if i is None or f.monitored or i.per_capita >= f.line():
        return None
    if f.factors & {"low_income", "income_drop"}:
        return None
    return {"year": i.year, "per_capita": yuan(i.per_capita), "line": yuan(f.line())}


@rule(
    "IN008", "income", "warning", "Income rose beyond the expected ratio",
    "{year}年人均纯收入{per_capita}元，比上年{previous}元增长{percent}%", "核实增收来源；属实的作为例外说明",
)  # fmt: skip
def income_jump(f: Facts) -> Evidence | None:
    i, p = f.income, f.previous_income
    if i is None or p is None or p.per_capita <= 0:
        return None
    change = (i.per_capita - p.per_capita) / p.per_capita
    if change <= f.t.income_rise_ratio:
        return None
    return {
        "year": i.year,
        "per_capita": yuan(i.per_capita),
        "previous": yuan(p.per_capita),
        "percent": int(change * 100),
    }


@rule(
    "IN009", "income", "warning", "Income dropped sharply with no recorded reason",
    "{year}年人均纯收入{per_capita}元，比上年{previous}元下降{percent}%，风险评估未提示收入骤降",
    "入户核实减收原因（双骤户）；属实的重新评估",
)  # fmt: skip
def income_drop_unexplained(f: Facts) -> Evidence | None:
    i, p = f.income, f.previous_income
    if i is None or p is None or "income_drop" in f.factors:
        return None
    # 收入骤降 measured the one way risk and the 帮扶消除 guard measure it.
    drop = income_drop_share(float(i.per_capita), float(p.per_capita))
    if drop is None or drop <= f.t.income_drop_ratio:
        return None
    return {
        "year": i.year,
        "per_capita": yuan(i.per_capita),
        "previous": yuan(p.per_capita),
        "percent": int(drop * 100),
    }


@rule(
    "IN010", "income", "warning", "No income with able-bodied members",
    "{year}年家庭纯收入为0，户内有{count}名普通劳动力", "核实务工、经营等收入并登记",
)  # fmt: skip
def zero_income_with_labour(f: Facts) -> Evidence | None:
    i = f.income
    if i is None or i.total != 0:
        return None
    able = [m for m in f.h.members if m.labor_capacity == "full" and f.age(m) >= 16]
    return {"year": i.year, "count": len(able)} if able else None


@rule(
    "IN011", "income", "error", "Income recorded for a future year",
    "登记了{year}年的收入（尚未到来）", "更正收入年度",
)  # fmt: skip
def future_income(f: Facts) -> Evidence | None:
    future = [i.year for i in f.h.incomes if i.year > f.today.year]
    return {"year": future[0]} if future else None


@rule(
    "IN012", "income", "error", "Income recorded twice for one year",
    "{year}年收入登记了{count}次", "保留一条准确的年度收入记录",
)  # fmt: skip
def duplicate_income_year(f: Facts) -> Evidence | None:
    years = [i.year for i in f.h.incomes]
    twice = sorted({y for y in years if years.count(y) > 1})
    return {"year": twice[0], "count": years.count(twice[0])} if twice else None


@rule(
    "IN013", "income", "hint", "Monitored household's income not itemised",
    "监测户{year}年收入未分项登记", "按工资性、生产经营性、转移性、财产性收入分项登记",
    needs="monitored",
)  # fmt: skip
def income_not_itemised(f: Facts) -> Evidence | None:
    i = f.income
    if i is None or not f.monitored or any(p is not None for p in i.parts):
        return None
    return {"year": i.year}


# --- monitoring and procedure (监测与认定程序) -----------------------------------------


@rule(
    "PR001", "procedure", "error", "Monitored without an identification procedure",
    "监测户没有完成识别认定程序（无县级确认的纳入决定）",
    "按程序补齐入户核实、民主评议、公示、乡镇审核、县级确认",
    needs="monitored",
)  # fmt: skip
def monitored_without_procedure(f: Facts) -> Evidence | None:
    if not f.monitored:
        return None
    if any(d.kind == "monitoring_started" for d in f.h.decisions):
        return None
    return {"since": str(f.h.monitoring_since) if f.h.monitoring_since else "未登记"}


def _identified_on(f: Facts) -> date | None:
    started = [d.decided_on for d in f.h.decisions if d.kind == "monitoring_started"]
    return started[-1] if started else f.h.monitoring_since


@rule(
    "PR002", "procedure", "warning", "Risk eliminated within six months of identification",
    "纳入监测（{since}）后{months}个月即标注风险消除，不足{minimum}个月", "核实风险消除依据是否稳定",
    needs="eliminated",
)  # fmt: skip
def eliminated_early(f: Facts) -> Evidence | None:
    if f.h.monitoring_status != "eliminated" or f.h.monitoring_ended_on is None:
        return None
    since = _identified_on(f)
    if since is None:
        return None
    months = months_between(since, f.h.monitoring_ended_on)
    if months >= f.t.elimination_min_months:
        return None
    return {"since": str(since), "months": months, "minimum": f.t.elimination_min_months}


@rule(
    "PR003", "procedure", "error", "Risk eliminated with income below the line",
    "已标注风险消除，但{year}年人均纯收入{per_capita}元低于监测线{line}元",
    "撤销风险消除，或核实并更正收入",
    needs="eliminated",
)  # fmt: skip
def eliminated_below_line(f: Facts) -> Evidence | None:
    i = f.income
    if f.h.monitoring_status != "eliminated" or i is None or i.per_capita >= f.line():
        return None
    return {"year": i.year, "per_capita": yuan(i.per_capita), "line": yuan(f.line())}


@rule(
    "PR004", "procedure", "error", "No-labour household eliminated without stable transfer income",
    "无劳动力家庭已标注风险消除，但没有稳定的转移性收入", "落实兜底保障（转移性收入）后再消除风险",
    needs="eliminated",
)  # fmt: skip
def no_labour_eliminated(f: Facts) -> Evidence | None:
    if f.h.monitoring_status != "eliminated" or not f.h.members:
        return None
    if any(m.labor_capacity != "none" for m in f.h.members):
        return None
    i = f.income
    if i is not None and i.transfer is not None and i.transfer > 0:
        return None
    return {"transfer": yuan(i.transfer) if i and i.transfer is not None else "未登记"}


@rule(
    "PR005", "procedure", "error", "At risk for over a month with no verification or monitoring",
    "自{since}起存在返贫致贫风险已{days}天，既未开展入户核实也未纳入监测",
    "尽快入户核实，符合条件的按程序纳入监测并落实帮扶",
    needs="risk",
)  # fmt: skip
def at_risk_unattended(f: Facts) -> Evidence | None:
    risk = f.h.risk
    if risk is None or risk.level != "at_risk" or risk.at_risk_since is None or f.monitored:
        return None
    days = (f.today - risk.at_risk_since).days
    if days <= f.t.at_risk_grace_days:
        return None
    if any(t.kind == "verification" and t.opened_on >= risk.at_risk_since for t in f.h.tasks):
        return None
    return {"since": str(risk.at_risk_since), "days": days}


@rule(
    "PR006", "procedure", "warning", "Verification task overdue",
    "入户核实任务已逾期（应于{due_on}前完成）", "尽快完成入户核实并录入结果",
    needs="tasks",
)  # fmt: skip
def task_overdue(f: Facts) -> Evidence | None:
    late = [t for t in f.h.tasks if t.status == "open" and (t.overdue or t.due_on < f.today)]
    return {"due_on": str(min(t.due_on for t in late)), "count": len(late)} if late else None


@rule(
    "PR007", "procedure", "warning", "Monitored household of a non-monitoring type",
    "监测户的户类型登记为{type}", "户类型改为脱贫不稳定户、边缘易致贫户或突发严重困难户",
    needs="monitored",
)  # fmt: skip
def monitored_wrong_type(f: Facts) -> Evidence | None:
    if not f.monitored or f.h.type in MONITORED_TYPES:
        return None
    return {"type": {"alleviated": "脱贫户", "ordinary": "一般农户"}.get(f.h.type, f.h.type)}


@rule(
    "PR008", "procedure", "error", "Monitored without a start date", "监测户没有纳入监测日期",
    "补录纳入监测日期（县级确认日期）",
    needs="monitored",
)  # fmt: skip
def monitored_without_date(f: Facts) -> Evidence | None:
    return {} if f.monitored and f.h.monitoring_since is None else None


@rule(
    "PR009", "procedure", "error", "Monitored household without a key contact",
    "监测户没有落实重点联系人", "明确帮扶单位或镇党委政府负责人作为重点联系人",
    needs="monitored",
)  # fmt: skip
def monitored_without_leader(f: Facts) -> Evidence | None:
    return {} if f.monitored and contact_missing(f.h.type, "monitored", f.h.contact_roles) else None


@rule(
    "PR010", "procedure", "warning", "Marginal household without a contact person",
    "边缘户没有落实联系人", "明确镇包村干部、驻村工作队员或村包片干部作为联系人",
)  # fmt: skip
def marginal_without_contact(f: Facts) -> Evidence | None:
    if f.h.type != "marginal" or f.monitored:
        return None
    return {} if contact_missing(f.h.type, f.h.monitoring_status, f.h.contact_roles) else None


@rule(
    "PR011", "procedure", "warning", "Risk eliminated without a method",
    "已标注风险消除，但未登记消除方式", "登记帮扶消除或自然消除",
    needs="eliminated",
)  # fmt: skip
def eliminated_without_method(f: Facts) -> Evidence | None:
    return {} if f.h.monitoring_status == "eliminated" and not f.h.elimination_method else None


@rule(
    "PR012", "procedure", "error", "Risk eliminated while assessed at risk",
    "已标注风险消除，但当前风险评估为存在返贫致贫风险", "核实风险，必要时重新纳入监测",
    needs="eliminated",
)  # fmt: skip
def eliminated_at_risk(f: Facts) -> Evidence | None:
    risk = f.h.risk
    if f.h.monitoring_status != "eliminated" or risk is None or risk.level != "at_risk":
        return None
    ended = f.h.monitoring_ended_on
    if ended is not None and risk.at_risk_since is not None and risk.at_risk_since <= ended:
        return {"factors": sorted(risk.factors)}
    return None


@rule(
    "PR013", "procedure", "error", "Monitoring ended before it started",
    "风险消除日期{ended}早于纳入监测日期{since}", "核对纳入监测与风险消除日期",
)  # fmt: skip
def ended_before_start(f: Facts) -> Evidence | None:
    since, ended = f.h.monitoring_since, f.h.monitoring_ended_on
    if since is None or ended is None or ended >= since:
        return None
    return {"since": str(since), "ended": str(ended)}


@rule(
    "PR014", "procedure", "warning", "Monitoring decision without risk factors",
    "纳入监测决定（{decided_on}）没有登记风险类型", "补录致贫返贫风险类型",
    needs="monitored",
)  # fmt: skip
def decision_without_factors(f: Facts) -> Evidence | None:
    started = [d for d in f.h.decisions if d.kind == "monitoring_started"]
    if not started or started[-1].risk_factors or not f.monitored:
        return None
    return {"decided_on": str(started[-1].decided_on)}


@rule(
    "PR015", "procedure", "hint", "Monitored for six months with no remaining risk",
    "纳入监测已{months}个月，风险评估为无风险", "评估是否符合风险消除条件",
    needs="monitored",
)  # fmt: skip
def quiet_monitoring(f: Facts) -> Evidence | None:
    risk = f.h.risk
    if not f.monitored or risk is None or risk.level != "none" or f.h.monitoring_since is None:
        return None
    months = months_between(f.h.monitoring_since, f.today)
    return {"months": months} if months >= f.t.quiet_monitoring_months else None


@rule(
    "PR016", "procedure", "error", "Register not updated after risk elimination",
    "{decided_on}县级已确认风险消除，户内监测状态仍为监测中", "将监测状态更新为已消除风险",
    needs="decisions",
)  # fmt: skip
def elimination_not_applied(f: Facts) -> Evidence | None:
    last = f.last_decision()
    if last is None or last.kind != "risk_eliminated" or not f.monitored:
        return None
    return {"decided_on": str(last.decided_on)} if last.decided_on < f.today else None


@rule(
    "PR017", "procedure", "error", "Register not updated after identification",
    "{decided_on}县级已确认纳入监测，户内监测状态为{status}", "将监测状态更新为监测中",
    needs="decisions",
)  # fmt: skip
def monitoring_not_applied(f: Facts) -> Evidence | None:
    last = f.last_decision()
    if last is None or last.kind != "monitoring_started" or f.monitored:
        return None
    if last.decided_on >= f.today:
        return None
    status = {"none": "未监测", "eliminated": "已消除风险"}.get(f.h.monitoring_status, "")
    return {"decided_on": str(last.decided_on), "status": status}


@rule(
    "PR018", "procedure", "warning", "Not contacted last month",
    "{month}没有走访或联系记录（每月至少走访一次）",
    "帮扶责任人入户走访或电话、微信联系，并录入走访记录",
)  # fmt: skip
def not_contacted(f: Facts) -> Evidence | None:
    # 双骤户 (收入骤降 or 支出骤增) are due as long as risk sees them so.
    sudden = bool(f.factors & {"income_drop", "expense_surge"})
    if not due_for_monthly_contact(
        household_type=f.h.type, monitoring_status=f.h.monitoring_status, sudden_change=sudden
    ):
        return None
    first = f.today.replace(day=1)
    last_month = (first - timedelta(days=1)).replace(day=1)
    if any(last_month <= v < first for v in f.h.visits):
        return None
    return {"month": f"{last_month.year}年{last_month.month}月"}


# --- measures and funds (帮扶措施与资金) ----------------------------------------------

MEASURE_LABELS = {
    "industry": "产业帮扶",
    "employment": "就业帮扶",
    "public_welfare_job": "公益性岗位",
    "microcredit": "小额信贷",
    "education": "教育帮扶",
    "health": "健康帮扶",
    "housing": "住房安全保障",
    "drinking_water": "饮水安全保障",
    "social_security": "综合保障",
    "social_assistance": "社会帮扶",
    "poverty_insurance": "防贫保险",
}
WORK_MEASURES = frozenset({"employment", "public_welfare_job"})


def _active(f: Facts, categories: frozenset[str] | None = None) -> list[AidMeasure]:
    return [
        m
        for m in f.h.measures
        if m.start_on <= f.today <= m.end_on and (categories is None or m.category in categories)
    ]


def _outside_monitoring(f: Facts) -> bool:
    """一般农户 never identified: not a 脱贫户, 监测户 or 边缘户 (who may get help)."""
    return f.h.type == "ordinary" and f.h.monitoring_status == "none"


@rule(
    "MF001", "measures_funds", "error", "Measure for a household outside monitoring",
    "非监测对象（一般农户）有{count}项在实施的帮扶措施（{measures}）",
    "按程序识别纳入监测，或终止不符合条件的帮扶措施",
    needs="measures",
)  # fmt: skip
def measure_outside_monitoring(f: Facts) -> Evidence | None:
    active = _active(f)
    if not active or not _outside_monitoring(f):
        return None
    labels = sorted({MEASURE_LABELS.get(m.category, m.category) for m in active})
    return {"count": len(active), "measures": "、".join(labels)}


@rule(
    "MF002", "measures_funds", "warning", "Employment measure with nobody able to work",
    "有{measures}措施，但户内没有劳动年龄内有劳动能力的成员", "核实劳动力情况，调整为适合的帮扶措施",
    needs="measures",
)  # fmt: skip
def work_measure_without_labour(f: Facts) -> Evidence | None:
    active = _active(f, WORK_MEASURES)
    if not active:
        return None
    if any(m.labor_capacity != "none" and 16 <= f.age(m) < 65 for m in f.h.members):
        return None
    return {"measures": "、".join(sorted({MEASURE_LABELS[m.category] for m in active}))}


@rule(
    "MF003", "measures_funds", "warning", "Education measure with no student",
    "有教育帮扶措施，但户内没有在校生", "核实在校情况，或调整帮扶措施",
    needs="measures",
)  # fmt: skip
def education_measure_without_student(f: Facts) -> Evidence | None:
    if not _active(f, frozenset({"education"})):
        return None
    return None if any(m.schooling in IN_SCHOOL for m in f.h.members) else {}


@rule(
    "MF004", "measures_funds", "error", "Grant to a household outside monitoring",
    "近12个月向非监测对象（一般农户）发放救助补助{count}笔，合计{amount}元",
    "核实发放依据；不符合条件的按规定追回，符合条件的按程序纳入监测",
    needs="grants",
)  # fmt: skip
def grant_outside_monitoring(f: Facts) -> Evidence | None:
    recent = [g for g in f.h.grants if g.granted_on >= f.year_ago]
    if not recent or not _outside_monitoring(f):
        return None
    return {"count": len(recent), "amount": yuan(sum((g.amount for g in recent), Decimal(0)))}


@rule(
    "MF005", "measures_funds", "warning", "Grants in one quarter above a share of income",
    "{quarter}救助补助合计{amount}元，超过家庭年纯收入{total}元的{percent}%",
    "核实救助金额与家庭收入；属实的作为例外说明",
    needs="grants",
)  # fmt: skip
def grants_above_income_share(f: Facts) -> Evidence | None:
    i = f.income
    if i is None or i.total <= 0:
        return None
    by_quarter: dict[tuple[int, int], Decimal] = {}
    for g in f.h.grants:
        if g.granted_on >= f.year_ago:
            key = (g.granted_on.year, (g.granted_on.month - 1) // 3 + 1)
            by_quarter[key] = by_quarter.get(key, Decimal(0)) + g.amount
    limit = i.total * f.t.grant_income_share
    over = sorted((k, v) for k, v in by_quarter.items() if v > limit)
    if not over:
        return None
    (year, quarter), amount = over[-1]
    return {
        "quarter": f"{year}年第{quarter}季度",
        "amount": yuan(amount),
        "total": yuan(i.total),
        "percent": int(f.t.grant_income_share * 100),
    }


@rule(
    "MF006", "measures_funds", "error", "Monitored for over a month without a measure",
    "纳入监测（{since}）已{days}天，没有落实帮扶措施", "制定帮扶计划，落实针对性帮扶措施",
    needs="monitored",
)  # fmt: skip
def monitored_without_measure(f: Facts) -> Evidence | None:
    since = f.h.monitoring_since
    if since is None or (f.today - since).days <= f.t.at_risk_grace_days:
        return None
    if any(m.end_on >= since for m in f.h.measures):
        return None
    return {"since": str(since), "days": (f.today - since).days}


# --- department data against the register (部门数据比对) --------------------------------

AID_LABELS = {
    "dibao": "低保",
    "tekun": "特困供养",
    "temporary_assistance": "临时救助",
    "disability_subsidy": "残疾人补贴",
}


def _granted(f: Facts, kinds: set[str]) -> list[FeedRecord]:
    """Civil-affairs grants still running (the latest record per person and kind)."""
    latest: dict[tuple[str, str], FeedRecord] = {}
    for r in f.records("civil_affairs", recent=False):
        key = (r.id_hash, r.kind or "")
        if key not in latest or r.on >= latest[key].on:
            latest[key] = r
    return [r for r in latest.values() if r.kind in kinds and r.status == "granted"]


def _grantees(f: Facts, kinds: set[str]) -> list[Member]:
    """Members of the household with a running civil-affairs grant of `kinds`."""
    return [f.hashes[r.id_hash] for r in _granted(f, kinds) if r.id_hash in f.hashes]


@rule(
    "DE001", "department", "warning", "低保/特困 in the civil-affairs feed, no transfer income",
    "民政数据显示享受{kinds}，户内{year}年收入未登记转移性收入", "补录低保金、特困供养金等转移性收入",
    needs="records",
)  # fmt: skip
def aid_without_transfer(f: Facts) -> Evidence | None:
    grants = [r for r in _granted(f, {"dibao", "tekun"}) if r.id_hash in f.hashes]
    i = f.income
    if not grants or i is None or (i.transfer is not None and i.transfer > 0):
        return None
    return {
        "kinds": "、".join(sorted({AID_LABELS[r.kind or ""] for r in grants})),
        "year": i.year,
        "record_ids": [r.record_id for r in grants],
    }


@rule(
    "DE002", "department", "error", "Large medical out-of-pocket costs without the illness factor",
    "近12个月医疗自付{amount}元，达到预警线{threshold}元，风险评估没有“因病”因素",
    "核实医疗支出，重新评估风险并启动核实",
    needs="records",
)  # fmt: skip
def medical_costs_unassessed(f: Facts) -> Evidence | None:
    return _rigid_spending_unassessed(f, "medical", "illness")


def _rigid_spending_unassessed(f: Facts, source: str, factor: str) -> Evidence | None:
    """12 months of a rigid spending at the warning line, and risk has not the factor."""
    if f.h.risk is None or factor in f.factors:
        return None
    amount = sum((r.amount for r in f.records(source)), Decimal(0))
    threshold = f.rigid_threshold()
    if amount <= 0 or amount < threshold:
        return None
    return {"amount": yuan(amount), "threshold": yuan(threshold)}


@rule(
    "DE003", "department", "error", "Disaster loss without the disaster factor",
    "近12个月灾害损失{amount}元，风险评估没有“因灾”因素", "核实灾情损失，重新评估风险",
    needs="records",
)  # fmt: skip
def disaster_unassessed(f: Facts) -> Evidence | None:
    if f.h.risk is None or "disaster" in f.factors:
        return None
    records = f.records("disaster")
    amount = sum((r.amount for r in records), Decimal(0))
    if not records or (
        amount < f.rigid_threshold() and not any(r.housing_damaged for r in records)
    ):
        return None
    return {"amount": yuan(amount), "record_ids": [r.record_id for r in records]}


@rule(
    "DE004", "department", "warning", "Large school costs without the education factor",
    "近12个月教育自付{amount}元，达到预警线{threshold}元，风险评估没有“因学”因素",
    "核实教育支出，落实教育资助并重新评估",
    needs="records",
)  # fmt: skip
def school_costs_unassessed(f: Facts) -> Evidence | None:
    return _rigid_spending_unassessed(f, "education", "education")


@rule(
    "DE005", "department", "warning", "Disability subsidy, no disability in the register",
    "民政数据显示（{persons}）享受残疾人补贴，户内未登记残疾", "核实残疾情况，补录特殊群体",
    needs="records",
)  # fmt: skip
def subsidy_without_disability(f: Facts) -> Evidence | None:
    return _people(
        f,
        [
            m
            for m in _grantees(f, {"disability_subsidy"})
            if not m.special_groups & DISABILITY_GROUPS
        ],
    )


@rule(
    "DE006", "department", "warning", "特困 person recorded with full labour",
    "民政数据显示（{persons}）为特困供养人员，户内登记为普通劳动力", "核实劳动能力并更正",
    needs="records",
)  # fmt: skip
def tekun_full_labour(f: Facts) -> Evidence | None:
    return _people(f, [m for m in _grantees(f, {"tekun"}) if m.labor_capacity == "full"])


@rule(
    "DE007", "department", "hint", "Medical record amounts do not add up",
    "{count}条医保结算记录的医保报销、救助与自付之和不等于总费用", "请医保部门核对结算数据",
    needs="records",
)  # fmt: skip
def medical_amounts(f: Facts) -> Evidence | None:
    bad = [
        r
        for r in f.records("medical")
        if r.total_cost is not None
        and abs(r.total_cost - (r.insurance_paid or 0) - (r.assistance_paid or 0) - r.amount) > YUAN
    ]
    return {"count": len(bad), "record_ids": [r.record_id for r in bad]} if bad else None


@rule(
    "DE008", "department", "warning", "Uninsured member with medical settlements but no factor",
    "成员（{persons}）未参保且有医疗自付支出，风险评估没有“基本医疗”因素",
    "动员参保并重新评估风险",
    needs="records",
)  # fmt: skip
def uninsured_with_costs(f: Facts) -> Evidence | None:
    if f.h.risk is None or "basic_medical" in f.factors:
        return None
    paying = {r.id_hash for r in f.records("medical") if r.amount > 0}
    return _people(f, [m for m in f.h.members if not m.medical_insurance and m.id_hash in paying])


RULES_BY_CODE.update({r.code: r for r in RULES})
CATEGORIES_IN_USE = sorted({r.category for r in RULES})
