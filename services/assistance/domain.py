"""Pure rules of assistance (seed 三、强化分类帮扶 and 四、强化责任落实, plus the national
identification and elimination practice). No FastAPI, SQL or Kafka here: functions take
facts and return decisions."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, Field

from backstop.contracts.policy import (
    ALLEVIATED_TYPES,
    EDGE_TYPES,
    SPECIAL_HARDSHIP_GROUPS,
    income_drop_share,
)
from backstop.idnumber import normalize_phone
from backstop.monitoring_line import DEFAULT_MONITORING_LINES

CHINA = ZoneInfo("Asia/Shanghai")


def today() -> date:
    """The county's calendar day (deadlines are days in China, whatever the server TZ)."""
    return datetime.now(CHINA).date()


# --------------------------------------------------------------------------- policy


class AssistancePolicy(BaseModel):
    """Every limit the county office may change. Stored versioned; these are the defaults."""

    verification_due_days: int = Field(default=7, ge=1, le=90)
    # Seed 二(二): a `watch` household (可能存在问题尚无致贫返贫风险) is checked at home
    # too, with more time than an `at_risk` one (存在突出问题有返贫致贫风险).
    watch_verification_due_days: int = Field(default=30, ge=1, le=180)
    # Seed 三(三)3: department-flagged cases (医保局/应急管理局/民政局/教育局 data) are first
    # checked by the county office (初核) and then handed to the insurer (人保公司).
    department_factors: list[str] = Field(
        default_factory=lambda: ["illness", "expense_surge", "disaster", "education"]
    )
    department_cases_to_insurer: bool = True
    county_precheck_required: bool = True
    insurer_code: str = "picc"  # 人保公司
    notice_min_days: int = Field(default=5, ge=1)  # 公示 at least 5 days
    # 帮扶消除 guard
    min_months_monitored: int = Field(default=6, ge=0)  # national rule since April 2022
    income_lines: dict[int, float] = Field(default_factory=lambda: dict(DEFAULT_MONITORING_LINES))
    max_income_drop_ratio: float = Field(default=0.3, ge=0, le=1)  # "stable" income
    measure_grace_days: int = Field(default=30, ge=0)  # a measure within a month
    # 限时整改: an overdue issue is reminded again every so many days until it is closed.
    rectification_repeat_days: int = Field(default=7, ge=1, le=90)
    # How far back a visit may be logged: the month's contacts are reported monthly.
    visit_backdate_days: int = Field(default=31, ge=0, le=366)
    # 市镇两级按比例分担: the city's share of a grant; towns may have their own ratio.
    city_share: Decimal = Field(default=Decimal("0.5"), ge=0, le=1)
    city_share_by_town: dict[str, Decimal] = Field(default_factory=dict)
    # 线索: the town accepts a clue within this time or it is escalated through notify.
    clue_accept_hours: int = Field(default=48, ge=1)
    # 月汇报 (seed 四(一)): the town signs the month's report within so many days after the
    # month; a missing one is reminded every `repeat` days, its leader told `escalate` days on.
    monthly_report_due_days: int = Field(default=5, ge=0, le=60)
    monthly_report_repeat_days: int = Field(default=7, ge=1, le=90)
    monthly_report_escalate_days: int = Field(default=3, ge=0, le=60)
    # A visit-quality signal: more visits than this logged by one person on one day.
    visits_per_day_limit: int = Field(default=20, ge=1, le=500)

    def income_line(self, year: int) -> float:
        """The monitoring line for `year` (the latest line set for that year or before)."""
        years = sorted(y for y in self.income_lines if y <= year)
        if not years:
            return min(self.income_lines.items())[1]
        return self.income_lines[years[-1]]

    def city_share_for(self, town_code: str) -> Decimal:
        return self.city_share_by_town.get(town_code, self.city_share)


# --------------------------------------------------------------------------- tasks

FACTOR_LABELS: dict[str, str] = {
    "low_income": "人均纯收入低于监测线",
    "income_drop": "收入骤减",
    "expense_surge": "支出骤增",
    "illness": "因病刚性支出较大",
    "disability": "因残",
    "disaster": "因灾",
    "education": "因学刚性支出较大",
    "epidemic": "因疫情影响",
    "accident": "因意外事故",
    "employment": "务工就业不稳",
    "housing": "住房安全存在问题",
    "drinking_water": "饮水安全存在问题",
    "basic_medical": "基本医疗保障存在问题",
    "compulsory_education": "义务教育保障存在问题",
    "other": "其他原因",
}


def labels_of(factors: Sequence[str]) -> str:
    labels = [FACTOR_LABELS.get(code, code) for code in dict.fromkeys(factors)]
    return "、".join(labels) if labels else "未说明因素"


def reason_for(factors: Sequence[str], level: str = "at_risk") -> str:
    """The task's reason in Chinese, copied from the alert's factor codes, in their order."""
    head = "可能存在问题（监测提示）：" if level == "watch" else "返贫致贫风险预警："
    return head + labels_of(factors) + "，请入户核实"


def with_new_evidence(reason: str, factors: Sequence[str]) -> str:
    """An open task's reason with a new reason added (new evidence joins the open check)."""
    return f"{reason}；新证据：{labels_of(factors)}"


@dataclass(frozen=True)
class Assignment:
    type: Literal["town", "village", "insurer"]
    code: str
    needs_precheck: bool = False  # 县级初核 before the insurer goes


def assign_verification(
    *, region_code: str, factors: Sequence[str], policy: AssistancePolicy
) -> Assignment:
    """Who checks the household: its town, or the insurer for department-flagged cases."""
    if policy.department_cases_to_insurer and set(factors) & set(policy.department_factors):
        return Assignment("insurer", policy.insurer_code, policy.county_precheck_required)
    return Assignment("town", town_of(region_code))


def town_of(region_code: str) -> str:
    return region_code[:9]


def due_on(opened: date, policy: AssistancePolicy, level: str = "at_risk") -> date:
    days = policy.watch_verification_due_days if level == "watch" else policy.verification_due_days
    return opened + timedelta(days=days)


def days_overdue(due: date, on: date) -> int:
    return max((on - due).days, 0)


def is_overdue(*, status: str, due: date, on: date) -> bool:
    return status == "open" and on > due


# ---------------------------------------------------------- identification procedure

STEPS: tuple[str, ...] = ("appraisal", "notice", "town_review", "county_approval")
STEP_LABELS = {
    "appraisal": "民主评议",
    "notice": "公示",
    "town_review": "乡镇审核",
    "county_approval": "县级确认",
}


class StepOutOfOrder(ValueError):
    pass


def next_step(done: Sequence[str]) -> str | None:
    for step in STEPS:
        if step not in done:
            return step
    return None


def check_step_order(done: Sequence[str], step: str) -> None:
    """Steps go in order, once each: raise StepOutOfOrder otherwise."""
    if step not in STEPS:
        raise StepOutOfOrder(f"unknown step {step}")
    expected = next_step(done)
    if expected is None:
        raise StepOutOfOrder("the procedure is already complete")
    if step != expected:
        raise StepOutOfOrder(
            f"{STEP_LABELS[step]} ({step}) cannot come before {STEP_LABELS[expected]} ({expected})"
        )


def appraisal_passed(*, attendance: int, votes_for: int, votes_against: int) -> bool:
    """民主评议 passes with more votes for than against; votes never exceed attendance."""
    if votes_for + votes_against > attendance:
        raise ValueError("votes for and against exceed the attendance")
    return votes_for > votes_against


def notice_problems(
    *,
    start_on: date,
    end_on: date,
    appraised_on: date,
    unresolved_objections: int,
    on: date,
    policy: AssistancePolicy,
) -> list[tuple[str, str]]:
    """What is wrong with a 公示 record, as (field, message) pairs; empty when it is fine."""
    problems: list[tuple[str, str]] = []
    if start_on < appraised_on:
        problems.append(("start_on", "the notice cannot start before the appraisal"))
    days = (end_on - start_on).days + 1
    if days < policy.notice_min_days:
        problems.append(
            ("end_on", f"the notice lasted {days} days; at least {policy.notice_min_days}")
        )
    if end_on > on:
        problems.append(("end_on", "the notice period has not ended yet"))
    if unresolved_objections:
        problems.append(("objections", f"{unresolved_objections} objection(s) not resolved"))
    return problems


MonitoringType = Literal["unstable", "marginal", "sudden_hardship"]
SUDDEN_FACTORS = frozenset({"illness", "expense_surge", "disaster", "accident", "epidemic"})


def monitoring_type_for(household_type: str | None, factors: Iterable[str]) -> MonitoringType:
    """脱贫不稳定户 for households that left poverty; 突发严重困难户 for a sudden rigid
    spending or loss; otherwise 边缘易致贫户."""
    if household_type in ("alleviated", "unstable"):
        return "unstable"
    if household_type == "sudden_hardship" or (
        household_type != "marginal" and SUDDEN_FACTORS & set(factors)
    ):
        return "sudden_hardship"
    return "marginal"


# -------------------------------------------------------------- elimination guard


@dataclass(frozen=True)
class IncomeFact:
    year: int
    per_capita: float


@dataclass(frozen=True)
class EliminationFacts:
    monitored_since: date | None
    incomes: Sequence[IncomeFact]  # any order
    guarantees: dict[str, str]
    labor_capacities: Sequence[str]
    contact_phones: Sequence[str]


@dataclass(frozen=True)
class GuardFailure:
    rule: str
    message: str


def add_months(d: date, months: int) -> date:
    month = d.month - 1 + months
    year = d.year + month // 12
    month = month % 12 + 1
    days_in = [31, 29 if _leap(year) else 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]
    return date(year, month, min(d.day, days_in[month - 1]))


def _leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def elimination_guard(
    facts: EliminationFacts, *, on: date, policy: AssistancePolicy
) -> list[GuardFailure]:
    """Why a 帮扶消除 may not happen yet; empty when every rule of the guard holds."""
    failures: list[GuardFailure] = []
    if facts.monitored_since is None:
        failures.append(GuardFailure("monitoring", "the household is not under monitoring"))
    elif on < add_months(facts.monitored_since, policy.min_months_monitored):
        failures.append(
            GuardFailure(
                "min_months",
                f"identified on {facts.monitored_since.isoformat()}; elimination needs at "
                f"least {policy.min_months_monitored} months",
            )
        )
    incomes = sorted(facts.incomes, key=lambda i: i.year, reverse=True)
    if not incomes:
        failures.append(GuardFailure("income", "no income recorded"))
    else:
        latest = incomes[0]
        line = policy.income_line(latest.year)
        if latest.year < on.year - 1:
            failures.append(GuardFailure("income", f"the latest income is from {latest.year}"))
        if latest.per_capita <= line:
            failures.append(
                GuardFailure(
                    "income",
                    f"per-capita income {latest.per_capita:.0f} is not above the "
                    f"{latest.year} monitoring line {line:.0f}",
                )
            )
        if len(incomes) > 1:
            drop = income_drop_share(latest.per_capita, incomes[1].per_capita)
            if drop is not None and drop >= policy.max_income_drop_ratio:
                failures.append(
                    GuardFailure("income_stable", f"income fell {drop:.0%} against last year")
                )
    prominent = sorted(k for k, v in facts.guarantees.items() if v == "prominent_issue")
    if prominent:
        failures.append(
            GuardFailure("guarantees", "prominent issue left in: " + ", ".join(prominent))
        )
    if facts.labor_capacities and all(c == "none" for c in facts.labor_capacities):
        failures.append(
            GuardFailure(
                "labor",
                "no member can work: the household stays monitored under "
                "social-security measures (兜底保障)",
            )
        )
    if not any(p.strip() for p in facts.contact_phones):
        failures.append(GuardFailure("contact", "the household has no contact with a phone"))
    return failures


# --------------------------------------------------------------------- visits

CHANNELS = ("home", "phone", "sms", "wechat")  # 入户走访 / 电话 / 短信 / 微信


@dataclass(frozen=True)
class ContactDue:
    household_id: str
    region_code: str
    town_code: str
    contacts: Sequence[tuple[str, str]]  # (name, role)
    # Who answers for this household's monthly contact (backstop.contracts.policy)
    responsible: Sequence[str] = ()
    phones: Sequence[str] = ()


def counts_as_contact(visitor: str, household: ContactDue) -> bool:
    """A contact counts only when made by one of the household's 重点联系人 or 帮扶责任人
    (seed 三(三)2, 四(一)), named as the register names them or by their phone."""
    who = "".join(visitor.split())
    names = {"".join(name.split()) for name, _ in household.contacts}
    phones = {normalize_phone(p) for p in household.phones}
    phone = normalize_phone(who)
    return who in names or (phone.isdigit() and phone in phones)


@dataclass
class ComplianceReport:
    period: str
    due: int = 0
    contacted: int = 0
    by_town: dict[str, dict[str, int]] = field(default_factory=dict)
    by_contact: dict[str, dict[str, object]] = field(default_factory=dict)
    missing: list[ContactDue] = field(default_factory=list)
    # visits in the month by someone who is not the household's contact: not counted
    not_counted: int = 0


def compliance(
    period: str, due: Sequence[ContactDue], visitors: Mapping[str, Iterable[str]]
) -> ComplianceReport:
    """Who was not contacted in `period` (`visitors`: household id → who visited it that
    month), counted by town and charged to the contact whose role requires the visit."""
    report = ComplianceReport(period=period)
    towns: dict[str, dict[str, int]] = defaultdict(lambda: {"due": 0, "contacted": 0})
    people: dict[str, dict[str, object]] = {}
    for household in sorted(due, key=lambda h: (h.region_code, h.household_id)):
        report.due += 1
        towns[household.town_code]["due"] += 1
        seen = list(visitors.get(household.household_id, ()))
        if any(counts_as_contact(v, household) for v in seen):
            report.contacted += 1
            towns[household.town_code]["contacted"] += 1
            continue
        report.not_counted += len(seen)
        report.missing.append(household)
        roles = dict(household.contacts)
        for name in household.responsible or ["(未指定联系人)"]:
            entry = people.setdefault(
                name, {"role": roles.get(name, "none"), "missing": 0, "households": []}
            )
            entry["missing"] = int(str(entry["missing"])) + 1
            households = entry["households"]
            assert isinstance(households, list)
            households.append(household.household_id)
    report.by_town = {
        code: {**counts, "missing": counts["due"] - counts["contacted"]}
        for code, counts in sorted(towns.items())
    }
    report.by_contact = dict(sorted(people.items()))
    return report


def period_bounds(period: str) -> tuple[date, date]:
    """'2026-11' -> (first day, first day of the next month)."""
    year, month = (int(p) for p in period.split("-"))
    start = date(year, month, 1)
    return start, add_months(start, 1)


# ---------------------------------------------------------------------- plans

MEASURES: dict[str, str] = {
    "industry": "产业帮扶",
    "employment": "就业帮扶",
    "public_welfare_job": "公益性岗位",
    "microcredit": "小额信贷",
    "education": "教育帮扶（雨露计划）",
    "health": "健康帮扶/医疗救助",
    "housing": "住房安全保障",
    "drinking_water": "饮水安全保障",
    "social_security": "综合保障（低保、特困）",
    "social_assistance": "社会帮扶",
    "poverty_insurance": "防贫保险",
}
TIERS: dict[str, str] = {
    "not_enjoying": "不享受政策脱贫户",
    "enjoying": "享受政策脱贫户",
    "monitored": "监测户",
    "marginal": "边缘户",
}
# 脱贫不脱政策 (seed 三(三)1): 对脱贫户持续推动产业、就业、金融、教育、健康、安全住房和社会
# 扶贫等政策 — no 脱贫户 tier is ever refused these.
KEPT_POLICIES = frozenset(
    {"industry", "employment", "microcredit", "education", "health", "housing", "social_assistance"}
)
# Differentiated support (分级管理，差异化扶持): what each tier may receive.
TIER_MEASURES: dict[str, frozenset[str]] = {
    "not_enjoying": KEPT_POLICIES | {"poverty_insurance"},
    "enjoying": KEPT_POLICIES | {"poverty_insurance", "public_welfare_job"},
    "monitored": frozenset(MEASURES),
    "marginal": frozenset(MEASURES),
}


def tier_of(*, household_type: str, policy_enjoying: bool, monitoring_status: str) -> str | None:
    """The household's tier (三(一): 已脱贫户分不享受政策、享受政策、监测户三类，和边缘户), from
    the register, never from the client; None for a household in none of them."""
    if monitoring_status == "monitored":
        return "monitored"
    if household_type in ALLEVIATED_TYPES:
        return "enjoying" if policy_enjoying else "not_enjoying"
    if household_type in EDGE_TYPES and monitoring_status != "eliminated":
        return "marginal"
    return None


def measure_problem(tier: str, category: str) -> str | None:
    if category not in MEASURES:
        return f"unknown measure; one of {', '.join(MEASURES)}"
    if category not in TIER_MEASURES[tier]:
        return f"{MEASURES[category]} is not available to {TIERS[tier]}"
    return None


def lacks_measures(
    *, monitored_since: date | None, measure_count: int, on: date, policy: AssistancePolicy
) -> bool:
    """A monitored household with no measure a month after identification is flagged."""
    return (
        monitored_since is not None
        and measure_count == 0
        and on > monitored_since + timedelta(days=policy.measure_grace_days)
    )


# ---------------------------------------------------------------------- funds

CENT = Decimal("0.01")


def money(value: Decimal | float | str) -> Decimal:
    return Decimal(str(value)).quantize(CENT, rounding=ROUND_HALF_UP)


def assistance_recipient(monitoring_status: str, special_groups: Iterable[str]) -> bool:
    """救助对象, whose grants the city and towns share (seed 三(二): 对救助对象补助资金，由
    市镇两级按比例给予分担): a household under monitoring, or one with a member of the
    4类特困群体."""
    return monitoring_status == "monitored" or any(
        g in SPECIAL_HARDSHIP_GROUPS for g in special_groups
    )


def split_grant(amount: Decimal, city_share: Decimal) -> tuple[Decimal, Decimal]:
    """(city part, town part): the city's share rounded to the cent, the town the rest."""
    city = money(amount * city_share)
    return city, money(amount) - city


# ---------------------------------------------------------------------- clues

CLUE_SOURCES: dict[str, str] = {
    "self_declaration": "农户自主申报",
    "public_report": "群众反映",
    "cadre_screening": "基层干部排查",
    "supervision": "督查调研反馈",
}


def clue_accept_by(received_at: datetime, policy: AssistancePolicy) -> datetime:
    return received_at + timedelta(hours=policy.clue_accept_hours)


def clue_reason(source: str, summary: str) -> str:
    short = summary if len(summary) <= 60 else summary[:59] + "…"
    return f"线索核实（{CLUE_SOURCES.get(source, source)}）：{short}"


def sees_reporter(regions: Sequence[str], region_code: str) -> bool:
    """A public reporter's contact details are for the county office only: a client whose
    regions cover the whole county (a prefix of at most 6 digits, or every region)."""
    return any(p == "*" or (len(p) <= 6 and region_code.startswith(p)) for p in regions)


# ------------------------------------------------------------------- campaigns

CAMPAIGN_HOUSEHOLD_TYPES = ("alleviated", "unstable", "marginal", "sudden_hardship", "ordinary")
CAMPAIGN_MONITORING = ("none", "monitored", "eliminated")


def review_reason(name: str) -> str:
    return f"回头看：{name}，请入户核查“两不愁三保障”及饮水安全和收入情况"
