"""Every scoring rule of the risk policy (监测预警), as pure functions.

`build_features` turns a household snapshot and its department records into the facts
a rule looks at; `assess(features, policy)` decides the level, the score and the
factors, each with evidence a town cadre can read out to the household. Nothing here
touches SQL, Kafka or HTTP.

Levels (seed: 省返贫预警监测系统):
- `none`
- `watch`   可能存在问题尚无致贫返贫风险
- `at_risk` 存在突出问题有返贫致贫风险

Scoring: each factor brings points (policy `points`); the score is their sum capped at
100. `score >= watch_score` gives `watch`, `score >= at_risk_score` gives `at_risk`.
A guarantee of 两不愁三保障 or 饮水安全 with a prominent problem forces `at_risk`, a
possible problem forces at least `watch`, whatever the score.

Default income lines (监测线 = 1.5 × the national poverty line, per capita net income,
yuan/year; provinces raise it each year, the county sets its own table by PUT /v1/policy):
2021 6000, 2022 6600, 2023 7300, 2024 7600, 2025 7800, 2026 8100. A year missing
from the table uses the closest earlier year, and `income_line_default` before that.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import cached_property, lru_cache
from itertools import pairwise
from typing import Any, Literal

from pydantic import ConfigDict, Field, model_validator

from backstop.contracts.policy import (
    SPECIAL_GROUP_LABELS,
    SPECIAL_GROUPS,
    SPECIAL_HARDSHIP_GROUPS,
    income_drop_share,
)
from backstop.monitoring_line import DEFAULT_MONITORING_LINES
from backstop.requests import MAX_AMOUNT, RequestModel

Level = Literal["none", "watch", "at_risk"]
LEVELS: tuple[Level, ...] = ("none", "watch", "at_risk")
_RANK: dict[str, int] = {level: i for i, level in enumerate(LEVELS)}
LEVEL_LABELS: dict[str, str] = {
    "none": "未发现风险",
    "watch": "可能存在问题尚无致贫返贫风险",
    "at_risk": "存在突出问题有返贫致贫风险",
}
# DESIGN.md factor codes.
FACTOR_CODES = (
    "low_income",
    "income_drop",
    "expense_surge",
    "illness",
    "disability",
    "disaster",
    "education",
    "epidemic",
    "accident",
    "employment",
    "housing",
    "drinking_water",
    "basic_medical",
    "compulsory_education",
    "other",
)
# 两不愁三保障 + 饮水安全: item -> (factor code, Chinese name)
GUARANTEES: dict[str, tuple[str, str]] = {
    "food": ("other", "吃不愁"),
    "clothing": ("other", "穿不愁"),
    "compulsory_education": ("compulsory_education", "义务教育保障"),
    "basic_medical": ("basic_medical", "基本医疗保障"),
    "housing": ("housing", "住房安全保障"),
    "drinking_water": ("drinking_water", "饮水安全"),
}
# The provincial platform's items (services/assistance/province.py) -> these keys.
PLATFORM_ITEMS = {
    "food_clothing": "food",
    "compulsory_education": "compulsory_education",
    "basic_medical": "basic_medical",
    "housing": "housing",
    "drinking_water": "drinking_water",
}
# Keys of stored policies written before the groups took registry's words.
_LEGACY_GROUP_KEYS = {
    "serious_illness": "major_illness",
    "disabled_unattended": "disabled_without_carer",
    "distressed_child": "child_in_distress",
    "disabled": "disability",
}
CIVIL_AFFAIRS_LABELS = {
    "dibao": "低保",
    "tekun": "特困供养",
    "temporary_assistance": "临时救助",
    "disability_subsidy": "残疾人补贴",
}
KINDS = ("medical", "disaster", "civil_affairs", "education")


# --- policy -------------------------------------------------------------------------


class Points(RequestModel):
    """Points each factor adds to the score (0–100)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    low_income: int = Field(60, ge=0, le=100, description="人均纯收入低于监测线")
    near_income_line: int = Field(30, ge=0, le=100, description="人均纯收入接近监测线")
    income_drop: int = Field(30, ge=0, le=100, description="收入骤降")
    expense_surge: int = Field(30, ge=0, le=100, description="支出骤增")
    illness: int = Field(60, ge=0, le=100, description="因病刚性支出超过预警线")
    disaster: int = Field(60, ge=0, le=100, description="因灾损失超过预警线")
    education: int = Field(60, ge=0, le=100, description="因学刚性支出超过预警线")
    housing_damaged: int = Field(30, ge=0, le=100, description="灾害致住房受损")
    attention_group: int = Field(10, ge=0, le=100, description="每类需关注的特殊群体（残疾等）")
    attention_cap: int = Field(20, ge=0, le=100, description="需关注特殊群体合计上限")
    special_hardship: int = Field(
        30, ge=0, le=100, description="每类4类特困群体（不设上限，且至少为 watch）"
    )
    no_full_labor: int = Field(10, ge=0, le=100, description="家庭无全劳动力")
    assistance_terminated: int = Field(20, ge=0, le=100, description="低保/特困近期终止")
    temporary_assistance: int = Field(20, ge=0, le=100, description="近12个月获临时救助")
    guarantee_prominent: int = Field(60, ge=0, le=100, description="保障存在突出问题")
    guarantee_possible: int = Field(30, ge=0, le=100, description="保障可能存在问题")


class Policy(RequestModel):
    """The thresholds of the county's policy (DESIGN.md "Policy"). Versioned by the
    service: an assessment always names the version it used."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    income_line_default: float = Field(
        6000.0, gt=0, le=MAX_AMOUNT, description="监测线（年份表之前）"
    )
    income_lines: dict[int, float] = Field(
        default_factory=lambda: dict(DEFAULT_MONITORING_LINES),
        max_length=101,  # one a year, 2000-2100
        description="年度监测线（元/人·年），按收入所属年份取值",
    )
    near_line_ratio: float = Field(
        1.2, ge=1.0, le=3.0, description="人均收入低于监测线的该倍数时为接近监测线"
    )
    rigid_share: float = Field(
        0.5, gt=0, le=10, description="刚性支出预警线：占家庭年收入的比例（医疗、灾害、教育）"
    )
    rigid_amount: float | None = Field(
        None, gt=0, le=MAX_AMOUNT, description="刚性支出预警线的固定金额（元），设置后达到即预警"
    )
    rigid_amount_without_income: float = Field(
        10000.0, gt=0, le=MAX_AMOUNT, description="未登记收入时刚性支出的预警金额（元）"
    )
    expense_surge_ratio: float = Field(
        1.0, gt=0, le=10, description="近12个月刚性支出合计达到家庭年收入的该倍数为支出骤增"
    )
    expense_surge_over_previous: float = Field(
        2.0, gt=1, le=100, description="近12个月刚性支出达到此前12个月的该倍数为支出骤增"
    )
    expense_surge_min_increase: float = Field(
        5000.0, ge=0, description="与此前12个月相比，支出骤增至少增加的金额（元）"
    )
    income_drop_share: float = Field(
        0.3, gt=0, lt=1, description="人均纯收入比上年下降达到该比例为收入骤降（双骤户）"
    )
    compulsory_age_min: int = Field(6, ge=3, le=20, description="义务教育年龄下限（周岁）")
    compulsory_age_max: int = Field(15, ge=3, le=20, description="义务教育年龄上限（周岁）")
    attention_groups: dict[str, str] = Field(
        max_length=50,
        default_factory=lambda: {
            "major_illness": "illness",
            "disabled_without_carer": "disability",
            "child_in_distress": "other",
            "severe_mental_disorder": "illness",
            "disability": "disability",
        },
        description="需关注的特殊群体（登记的群体代码）→ 风险类型代码",
    )
    points: Points = Field(default_factory=Points)
    watch_score: int = Field(30, ge=1, le=100, description="达到该分值为 watch")
    at_risk_score: int = Field(60, ge=1, le=100, description="达到该分值为 at_risk")

    @model_validator(mode="before")
    @classmethod
    def _registry_group_words(cls, data: Any) -> Any:
        groups = data.get("attention_groups") if isinstance(data, dict) else None
        if isinstance(groups, dict):
            data = {
                **data,
                "attention_groups": {_LEGACY_GROUP_KEYS.get(k, k): v for k, v in groups.items()},
            }
        return data

    @model_validator(mode="after")
    def _consistent(self) -> Policy:
        if self.watch_score > self.at_risk_score:
            raise ValueError("watch_score must not exceed at_risk_score")
        if self.compulsory_age_min > self.compulsory_age_max:
            raise ValueError("compulsory_age_min must not exceed compulsory_age_max")
        for year, line in self.income_lines.items():
            if not 2000 <= year <= 2100 or line <= 0:
                raise ValueError(f"income_lines: {year} → {line} is not a year and a positive line")
        for group, code in self.attention_groups.items():
            if group not in SPECIAL_GROUPS:
                raise ValueError(
                    f"attention_groups.{group}: not a special group of the register "
                    f"({', '.join(SPECIAL_GROUPS)})"
                )
            if code not in FACTOR_CODES:
                raise ValueError(f"attention_groups.{group}: unknown factor code {code!r}")
        return self

    def income_line(self, year: int) -> float:
        """The line for income earned in `year`: that year's entry, else the closest
        earlier year's, else the default."""
        lines = self._lines_by_year
        line = lines.get(year)
        if line is None:
            earlier = [y for y in self.income_lines if y <= year]
            line = self.income_lines[max(earlier)] if earlier else self.income_line_default
            lines[year] = line
        return line

    @cached_property
    def _lines_by_year(self) -> dict[int, float]:
        # The years `income_line` was asked, memoized in a plain attribute: a pydantic
        # private attribute is read through `__getattr__`, slow for 300k households.
        return {}


DEFAULT_POLICY = Policy()


# --- features -----------------------------------------------------------------------
# Plain (not frozen) slotted dataclasses: frozen ones are several times slower to build,
# and a re-score builds hundreds of thousands. Nothing mutates them after construction.


@dataclass(slots=True)
class Member:
    person_id: str
    id_hash: str
    birth_date: date
    special_groups: tuple[str, ...] = ()
    labor_capacity: str = "full"
    schooling: str | None = None
    medical_insurance: bool = True


@dataclass(slots=True)
class Income:
    year: int
    total: float
    per_capita: float


@dataclass(slots=True)
class FeedRecord:
    """One department record, as risk keeps it: `amount` is the out-of-pocket cost
    (medical, education), the loss (disaster) or the benefit (civil affairs)."""

    source: str  # medical | disaster | civil_affairs | education | province (省平台预警)
    record_id: str
    occurred_on: date
    amount: float
    id_hash: str = ""
    housing_damaged: bool = False
    kind: str | None = None  # civil affairs: dibao | tekun | ...; province: the item
    status: str | None = None  # civil affairs: granted | terminated; province: the level
    enrolled: bool | None = None  # education

    @property
    def ref(self) -> str:
        return f"{self.source}:{self.record_id}"


@dataclass(slots=True)
class Spending:
    """Rolling 12-month spending of one kind and the records it came from."""

    amount: float = 0.0
    count: int = 0
    sources: tuple[str, ...] = ()


NO_SPENDING = Spending()


@dataclass(slots=True)
class Features:
    """What the rules look at for one household on `as_of`; `*_sources` say which
    events or records each fact came from."""

    household_id: str
    region_code: str
    as_of: date
    members: tuple[Member, ...]
    income: Income | None = None
    previous_income: Income | None = None
    guarantees: Mapping[str, str] = field(default_factory=dict)
    medical: Spending = field(default_factory=Spending)
    disaster: Spending = field(default_factory=Spending)
    school: Spending = field(default_factory=Spending)
    housing_damaged: tuple[str, ...] = ()  # disaster records that damaged the house
    temporary_assistance: Spending = field(default_factory=Spending)
    # medical, disaster and school spending of the 12 months before the rolling window
    rigid_before: Spending = field(default_factory=Spending)
    # latest civil-affairs status per kind: kind -> (status, date, record ref)
    civil_affairs: Mapping[str, tuple[str, date, str]] = field(default_factory=dict)
    # latest education record per student: id_hash -> (enrolled, record ref)
    enrolment: Mapping[str, tuple[bool, str]] = field(default_factory=dict)
    # the provincial platform's warnings of the 12 months: item -> (worst level, refs)
    platform_warnings: Mapping[str, tuple[str, tuple[str, ...]]] = field(default_factory=dict)
    snapshot_source: str = ""  # the registry event the household snapshot came from

    @property
    def size(self) -> int:
        return len(self.members)

    @property
    def rigid_total(self) -> float:
        return self.medical.amount + self.disaster.amount + self.school.amount


@lru_cache(maxsize=64)
def window_start(as_of: date) -> date:
    """The first day of the rolling 12 months that end on `as_of`."""
    try:
        return as_of.replace(year=as_of.year - 1) + timedelta(days=1)
    except ValueError:  # 29 February
        return as_of.replace(year=as_of.year - 1, day=28) + timedelta(days=1)


@lru_cache(maxsize=64)
def previous_window_start(as_of: date) -> date:
    """The first day of the 12 months before the rolling window: what spending is
    compared with for 支出骤增."""
    return window_start(window_start(as_of) - timedelta(days=1))


def age_on(birth_date: date, on: date) -> int:
    """Age in whole years (周岁)."""
    return on.year - birth_date.year - ((on.month, on.day) < (birth_date.month, birth_date.day))


def build_features(
    *,
    household_id: str,
    region_code: str,
    as_of: date,
    members: Sequence[Member],
    incomes: Sequence[Income],
    guarantees: Mapping[str, str],
    records: Iterable[FeedRecord],
    snapshot_source: str = "",
) -> Features:
    """Fold a household's snapshot and department records into features. Spending
    counts records dated in the 12 months ending `as_of`; a record dated later (a
    settlement booked ahead) counts too, so nothing reported is ever lost."""
    start = window_start(as_of)
    before_start = previous_window_start(as_of)
    ordered = list(incomes)
    if any(a.year < b.year for a, b in pairwise(ordered)):
        ordered.sort(key=lambda i: i.year, reverse=True)
    sums: dict[str, list[FeedRecord]] = {"medical": [], "disaster": [], "education": []}
    temporary: list[FeedRecord] = []
    before: list[FeedRecord] = []
    housing: list[str] = []
    civil: dict[str, tuple[str, date, str]] = {}
    enrolment: dict[str, tuple[date, str, bool, str]] = {}
    platform: dict[str, tuple[str, tuple[str, ...]]] = {}
    for r in records:
        if r.source == "province" and r.kind and r.status and r.occurred_on >= start:
            level, refs = platform.get(r.kind, (r.status, ()))
            worst = "prominent_issue" if "prominent_issue" in (level, r.status) else level
            platform[r.kind] = (worst, (*refs, r.ref))
            continue
        if r.source == "education" and r.enrolled is not None and r.id_hash:
            key = (r.occurred_on, r.record_id)
            seen = enrolment.get(r.id_hash)
            if seen is None or key > (seen[0], seen[1]):
                enrolment[r.id_hash] = (r.occurred_on, r.record_id, r.enrolled, r.ref)
        if r.source == "civil_affairs" and r.kind and r.status:
            seen_ca = civil.get(r.kind)
            if seen_ca is None or (r.occurred_on, r.ref) > (seen_ca[1], seen_ca[2]):
                civil[r.kind] = (r.status, r.occurred_on, r.ref)
        if r.occurred_on < start:
            if r.occurred_on >= before_start and r.source in sums:
                before.append(r)
            continue
        if r.source in sums:
            sums[r.source].append(r)
            if r.source == "disaster" and r.housing_damaged:
                housing.append(r.ref)
        elif r.source == "civil_affairs" and r.kind == "temporary_assistance":
            if r.status == "granted":
                temporary.append(r)

    def spending(rows: list[FeedRecord]) -> Spending:
        if not rows:
            return NO_SPENDING
        if len(rows) > 1:
            rows = sorted(rows, key=lambda r: (r.occurred_on, r.record_id), reverse=True)
        return Spending(
            amount=round(sum(max(r.amount, 0.0) for r in rows), 2),
            count=len(rows),
            sources=tuple(r.ref for r in rows),
        )

    return Features(
        household_id=household_id,
        region_code=region_code,
        as_of=as_of,
        members=tuple(members),
        income=ordered[0] if ordered else None,
        previous_income=ordered[1] if len(ordered) > 1 else None,
        guarantees=dict(guarantees),
        medical=spending(sums["medical"]),
        disaster=spending(sums["disaster"]),
        school=spending(sums["education"]),
        housing_damaged=tuple(sorted(housing)),
        temporary_assistance=spending(temporary),
        rigid_before=spending(before),
        civil_affairs=civil,
        enrolment={h: (v[2], v[3]) for h, v in enrolment.items()},
        platform_warnings=platform,
        snapshot_source=snapshot_source,
    )


# --- assessment ---------------------------------------------------------------------


@dataclass(slots=True)
class Factor:
    code: str
    points: int
    evidence: str
    sources: tuple[str, ...] = ()
    # The least level this factor alone imposes (guarantees), whatever the score.
    floor: Level = "none"


@dataclass(slots=True)
class Assessment:
    level: Level
    score: int
    factors: tuple[Factor, ...]
    per_capita_income: float | None
    income_line: float

    @property
    def codes(self) -> list[str]:
        return [f.code for f in self.factors]


def yuan(amount: float) -> str:
    return f"{amount:,.0f} 元"


def pct(share: float) -> str:
    return f"{share * 100:.0f}%"


def reaches(value: float, line: float) -> str:
    """How evidence says a value meets a line: 达到 (at or above) counts, as the seed says."""
    return "超过" if value > line else "达到"


def _registry(features: Features) -> tuple[str, ...]:
    return (f"registry:{features.snapshot_source}",) if features.snapshot_source else ()


def income_line_for(features: Features, policy: Policy) -> float:
    year = features.income.year if features.income else features.as_of.year - 1
    return policy.income_line(year)


def low_income(features: Features, policy: Policy) -> Factor | None:
    """人均纯收入低于监测线 → low_income; within `near_line_ratio` of it → a lesser
    low_income factor (watch)."""
    income = features.income
    if income is None:
        return None
    line = policy.income_line(income.year)
    if income.per_capita < line:
        return Factor(
            "low_income",
            policy.points.low_income,
            f"{income.year}年家庭人均纯收入 {yuan(income.per_capita)}，"
            f"低于{income.year}年监测线 {yuan(line)}",
            _registry(features),
        )
    near = line * policy.near_line_ratio
    if income.per_capita < near:
        return Factor(
            "low_income",
            policy.points.near_income_line,
            f"{income.year}年家庭人均纯收入 {yuan(income.per_capita)}，"
            f"接近监测线 {yuan(line)}（低于其 {pct(policy.near_line_ratio)} 即 {yuan(near)}）",
            _registry(features),
        )
    return None


def income_drop(features: Features, policy: Policy) -> Factor | None:
    """收入骤降 (双骤户): per-capita net income down by `income_drop_share` or more on the
    year before, measured as the 帮扶消除 guard measures it (`income_drop_share`)."""
    now, before = features.income, features.previous_income
    if now is None or before is None:
        return None
    drop = income_drop_share(now.per_capita, before.per_capita)
    if drop is None or drop < policy.income_drop_share:
        return None
    return Factor(
        "income_drop",
        policy.points.income_drop,
        f"{now.year}年家庭人均纯收入 {yuan(now.per_capita)}，比{before.year}年 "
        f"{yuan(before.per_capita)}下降 {pct(drop)}，达到骤降线 {pct(policy.income_drop_share)}",
        _registry(features),
    )


def _rigid(
    features: Features,
    policy: Policy,
    spending: Spending,
    *,
    code: str,
    label: str,
    points: int,
) -> Factor | None:
    """One rigid-spending rule: 达到 (at or above) `rigid_share` of the annual income, or
    the fixed amount when the county set one (or when no income is on record)."""
    if spending.amount <= 0:
        return None
    income = features.income

    def head() -> str:  # only for a factor found: most households have none
        return f"近12个月{label} {yuan(spending.amount)}（{spending.count} 条记录）"

    if income is not None and income.total > 0:
        share = spending.amount / income.total
        if share >= policy.rigid_share:
            return Factor(
                code,
                points,
                f"{head()}，占家庭年收入 {yuan(income.total)}的 {pct(share)}，"
                f"{reaches(share, policy.rigid_share)}预警线 {pct(policy.rigid_share)}",
                spending.sources,
            )
    elif income is not None:  # a recorded income of zero: any rigid spending is over
        return Factor(code, points, f"{head()}，家庭年收入为 0 元，达到预警线", spending.sources)
    fixed = policy.rigid_amount if income is not None else policy.rigid_amount_without_income
    if fixed is not None and spending.amount >= fixed:
        why = f"{reaches(spending.amount, fixed)}预警金额"
        if income is None:
            why = "未登记家庭年收入，" + why
        return Factor(code, points, f"{head()}，{why} {yuan(fixed)}", spending.sources)
    return None


def illness(features: Features, policy: Policy) -> Factor | None:
    """因病: 12-month out-of-pocket medical costs over the warning line."""
    return _rigid(
        features,
        policy,
        features.medical,
        code="illness",
        label="医疗自付",
        points=policy.points.illness,
    )


def disaster(features: Features, policy: Policy) -> Factor | None:
    """因灾: 12-month disaster losses over the warning line."""
    return _rigid(
        features,
        policy,
        features.disaster,
        code="disaster",
        label="灾害损失",
        points=policy.points.disaster,
    )


def education(features: Features, policy: Policy) -> Factor | None:
    """因学: 12-month out-of-pocket school costs over the warning line."""
    return _rigid(
        features,
        policy,
        features.school,
        code="education",
        label="教育自付",
        points=policy.points.education,
    )


def expense_surge(features: Features, policy: Policy) -> Factor | None:
    """支出骤增 (双骤户): the rigid spending of 12 months reaches `expense_surge_ratio` × the
    annual income, or has grown to `expense_surge_over_previous` × the household's own
    spending of the 12 months before, when there was some (by at least
    `expense_surge_min_increase`)."""
    total, income, before = features.rigid_total, features.income, features.rigid_before
    if total <= 0:
        return None
    reasons: list[str] = []
    if income is not None and total >= (limit := income.total * policy.expense_surge_ratio):
        reasons.append(
            f"{reaches(total, limit)}{income.year}年家庭纯收入 {yuan(income.total)}的 "
            f"{pct(policy.expense_surge_ratio)}"
        )
    grown = total - before.amount
    # Only against spending on record: no earlier records may mean no earlier feed.
    surged = (
        before.amount > 0
        and total >= before.amount * policy.expense_surge_over_previous
        and grown >= policy.expense_surge_min_increase
    )
    if surged:
        reasons.append(
            f"比此前12个月的 {yuan(before.amount)}增加 {yuan(grown)}"
            f"（{reaches(total, before.amount * policy.expense_surge_over_previous)}其 "
            f"{policy.expense_surge_over_previous:g} 倍）"
        )
    if not reasons:
        return None
    head = (
        f"近12个月刚性支出合计 {yuan(total)}（医疗 {yuan(features.medical.amount)}、"
        f"灾害 {yuan(features.disaster.amount)}、教育 {yuan(features.school.amount)}）"
    )
    sources = features.medical.sources + features.disaster.sources + features.school.sources
    return Factor(
        "expense_surge",
        policy.points.expense_surge,
        head + "，" + "；".join(reasons),
        sources + (before.sources if surged else ()),
    )


def housing_damage(features: Features, policy: Policy) -> Factor | None:
    """A disaster that damaged the house in the last 12 months: housing needs a visit."""
    if not features.housing_damaged:
        return None
    return Factor(
        "housing",
        policy.points.housing_damaged,
        f"近12个月灾害致住房受损（{len(features.housing_damaged)} 条记录），住房安全需入户核实",
        features.housing_damaged,
        floor="watch",
    )


def attention_groups(features: Features, policy: Policy) -> list[Factor]:
    """Members in special groups that raise attention, one factor per code. Each of the
    seed's 4类特困群体 in the household brings `points.special_hardship` and at least
    `watch`: they are owed 进一步强化综合性社会保障措施 (seed 三(一)), so none of them
    may go unvisited. Other groups (残疾) bring `points.attention_group` each, together
    capped at `points.attention_cap`."""
    by_code: dict[str, dict[str, int]] = {}
    for member in features.members:
        for group in member.special_groups:
            code = policy.attention_groups.get(group)
            if code is not None:
                by_code.setdefault(code, {}).setdefault(group, 0)
                by_code[code][group] += 1
    factors: list[Factor] = []
    budget = policy.points.attention_cap
    for code in sorted(by_code):
        groups = by_code[code]
        hardship = [g for g in groups if g in SPECIAL_HARDSHIP_GROUPS]
        others = len(groups) - len(hardship)
        capped = min(policy.points.attention_group * others, budget)
        budget -= capped
        points = policy.points.special_hardship * len(hardship) + capped
        text = "、".join(
            f"{SPECIAL_GROUP_LABELS.get(g, g)} {n} 人" for g, n in sorted(groups.items())
        )
        if hardship:
            text += "（4类特困群体，需强化综合性社会保障）"
        factors.append(
            Factor(
                code,
                points,
                f"家庭成员中有{text}",
                _registry(features),
                floor="watch" if hardship else "none",
            )
        )
    return factors


def labor(features: Features, policy: Policy) -> Factor | None:
    """No member with full labour capacity."""
    if not features.members or any(m.labor_capacity == "full" for m in features.members):
        return None
    partial = sum(m.labor_capacity == "partial" for m in features.members)
    none = features.size - partial
    return Factor(
        "employment",
        policy.points.no_full_labor,
        f"家庭 {features.size} 人中无全劳动力（弱劳动力 {partial} 人、无劳动力 {none} 人）",
        _registry(features),
    )


def civil_affairs(features: Features, policy: Policy) -> list[Factor]:
    """低保/特困 terminated within 12 months; temporary assistance granted within 12 months."""
    factors: list[Factor] = []
    start = window_start(features.as_of)
    for kind in ("dibao", "tekun"):
        seen = features.civil_affairs.get(kind)
        if seen is not None and seen[0] == "terminated" and seen[1] >= start:
            factors.append(
                Factor(
                    "other",
                    policy.points.assistance_terminated,
                    f"{CIVIL_AFFAIRS_LABELS[kind]}于 {seen[1].isoformat()} 终止，需关注收入是否稳定",
                    (seen[2],),
                )
            )
    temporary = features.temporary_assistance
    if temporary.count:
        factors.append(
            Factor(
                "other",
                policy.points.temporary_assistance,
                f"近12个月获临时救助 {temporary.count} 次，共 {yuan(temporary.amount)}",
                temporary.sources,
            )
        )
    return factors


def guarantees(features: Features, policy: Policy) -> list[Factor]:
    """两不愁三保障 + 饮水安全: the registry's verified status of each item, plus what the
    records show — a compulsory-age child not enrolled (义务教育), a member without basic
    medical insurance (基本医疗). Prominent → at_risk; possible → watch."""
    problems: dict[str, tuple[str, list[str], list[str]]] = {}

    def note(item: str, status: str, evidence: str, sources: Sequence[str]) -> None:
        prior = problems.get(item)
        if prior is None:
            problems[item] = (status, [evidence], list(sources))
            return
        worst = "prominent_issue" if "prominent_issue" in (prior[0], status) else status
        problems[item] = (worst, [*prior[1], evidence], [*prior[2], *sources])

    registry = _registry(features)
    for item, status in features.guarantees.items():
        if item in GUARANTEES and status in ("possible_issue", "prominent_issue"):
            name = GUARANTEES[item][1]
            word = "存在突出问题" if status == "prominent_issue" else "可能存在问题"
            note(item, status, f"{name}{word}（登记核实）", registry)
    # The provincial platform's 后台系统数据监测预警 (its own items; 收入 is income's).
    for platform_item, (status, refs) in features.platform_warnings.items():
        item = PLATFORM_ITEMS.get(platform_item, "")
        if item in GUARANTEES and status in ("possible_issue", "prominent_issue"):
            word = "存在突出问题" if status == "prominent_issue" else "可能存在问题"
            note(item, status, f"{GUARANTEES[item][1]}{word}（省平台监测预警）", refs)

    lo, hi = policy.compulsory_age_min, policy.compulsory_age_max
    for m in features.members:
        age = age_on(m.birth_date, features.as_of)
        if not lo <= age <= hi:
            continue
        record = features.enrolment.get(m.id_hash)
        if record is not None:
            if not record[0]:
                note(
                    "compulsory_education",
                    "prominent_issue",
                    f"{age} 岁适龄儿童教育部门记录为未入学（义务教育 {lo}–{hi} 岁）",
                    (record[1],),
                )
        elif m.schooling == "out_of_school":
            note(
                "compulsory_education",
                "prominent_issue",
                f"{age} 岁适龄儿童登记为失学辍学（义务教育 {lo}–{hi} 岁）",
                registry,
            )
    uninsured = sum(not m.medical_insurance for m in features.members)
    if uninsured:
        note("basic_medical", "prominent_issue", f"{uninsured} 名成员未参加基本医疗保险", registry)

    factors: list[Factor] = []
    for item in GUARANTEES:
        if item not in problems:
            continue
        status, evidence, sources = problems[item]
        prominent = status == "prominent_issue"
        factors.append(
            Factor(
                GUARANTEES[item][0],
                policy.points.guarantee_prominent
                if prominent
                else policy.points.guarantee_possible,
                "；".join(evidence),
                tuple(dict.fromkeys(sources)),
                floor="at_risk" if prominent else "watch",
            )
        )
    return factors


def level_for(score: int, factors: Iterable[Factor], policy: Policy) -> Level:
    by_score: Level = (
        "at_risk"
        if score >= policy.at_risk_score
        else "watch"
        if score >= policy.watch_score
        else "none"
    )
    level = by_score
    for f in factors:  # the highest of the score's level and every factor's floor
        if _RANK[f.floor] > _RANK[level]:
            level = f.floor
    return level


def assess(features: Features, policy: Policy) -> Assessment:
    """The household's level, score (0–100) and every factor with its evidence. Pure and
    deterministic: the same features and policy always give the same assessment."""
    single = (
        low_income,
        income_drop,
        illness,
        disaster,
        education,
        expense_surge,
        housing_damage,
        labor,
    )
    factors: list[Factor] = [f for rule in single if (f := rule(features, policy)) is not None]
    factors += attention_groups(features, policy)
    factors += civil_affairs(features, policy)
    factors += guarantees(features, policy)
    factors = [f for f in factors if f.points > 0 or f.floor != "none"]
    score = min(100, sum(f.points for f in factors))
    return Assessment(
        level=level_for(score, factors, policy),
        score=score,
        factors=tuple(factors),
        per_capita_income=features.income.per_capita if features.income else None,
        income_line=income_line_for(features, policy),
    )


def rank(level: Level) -> int:
    return LEVELS.index(level)


@dataclass(slots=True)
class Transition:
    """What an assessment changes against the household's previous one."""

    changed: bool  # level or score changed: goes to risk.assessments
    alert: Literal["raised", "cleared"] | None


def transition(previous: tuple[Level, int] | None, current: Assessment) -> Transition:
    """Into `at_risk` raises an alert; out of it clears one; nothing else alerts."""
    if previous is None:
        return Transition(True, "raised" if current.level == "at_risk" else None)
    level, score = previous
    changed = level != current.level or score != current.score
    if current.level == "at_risk" and level != "at_risk":
        return Transition(changed, "raised")
    if level == "at_risk" and current.level != "at_risk":
        return Transition(changed, "cleared")
    return Transition(changed, None)


# 因病、因灾、因学 (seed 二(一)): department costs whose every new record is new evidence.
EVIDENCE_FACTORS: frozenset[str] = frozenset({"illness", "disaster", "education"})


def new_evidence(previous_factors: Sequence[Mapping[str, Any]], current: Assessment) -> list[str]:
    """For a household that stays `at_risk`: the codes of the factors its previous
    assessment did not have, and of the medical, disaster or school costs with a record it
    did not count. Each is a material change that calls for a (new) home check, so a
    verification found "not confirmed" does not silence the household for good."""
    before = {f["code"]: set(f.get("sources") or ()) for f in previous_factors}
    return [
        f.code
        for f in current.factors
        if f.code not in before
        or (f.code in EVIDENCE_FACTORS and not set(f.sources) <= before[f.code])
    ]


# --- people not in the register (未建档立卡人员) --------------------------------------


def unregistered_factors(
    records: Iterable[FeedRecord], policy: Policy, as_of: date
) -> list[Factor]:
    """因病、因灾、因学 for a person not in the register (seed 二(一): 支出达到监测预警线
    的名单下发各镇，及时入户核实…符合条件的，及时纳入建档立卡范围): the household rules
    over the person's own records of the 12 months ending `as_of`. No income is on
    record for an unknown person, so the line is `rigid_amount_without_income`, as for a
    registered household without one."""
    features = build_features(
        household_id="",
        region_code="",
        as_of=as_of,
        members=(),
        incomes=(),
        guarantees={},
        records=records,
    )
    return [f for rule in (illness, disaster, education) if (f := rule(features, policy))]


def unflagged_evidence(factors: Sequence[Factor], flagged: Iterable[str]) -> list[str]:
    """The codes of `factors` that count a record not among the `flagged` ones (the
    records the person was last flagged with): a person is flagged once, and again only
    on new evidence."""
    seen = set(flagged)
    return [f.code for f in factors if not set(f.sources) <= seen]
