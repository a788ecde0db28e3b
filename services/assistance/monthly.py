"""The pure part of 月汇报, the monthly report of each town and of each 帮扶责任人 in it
(seed 四(一): 各级帮扶责任人…对月走访、月汇报的质量负责): who was due a contact and who was
reached, what the visits found and whether it was passed on, which measures were followed
up, and the signals of visits that may not have happened as logged. No SQL or HTTP here;
`monthly_reports.py` gathers the facts, stores the signed reports and serves them."""

from __future__ import annotations

import unicodedata
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from backstop.requests import Period
from services.assistance import domain

REMOTE_CHANNELS = frozenset({"phone", "sms", "wechat"})  # 电话、短信、微信
ISSUE_STATUSES = frozenset({"possible_issue", "prominent_issue"})
Status = Literal["open", "due", "late", "signed_off"]

# ------------------------------------------------------------------------ the facts


@dataclass(frozen=True)
class VisitFact:
    visit_id: str
    household_id: str
    visitor: str
    visited_on: date
    channel: str  # home | phone | sms | wechat
    findings: str
    problems: tuple[str, ...] = ()  # 两不愁三保障/饮水安全 items seen with an issue


@dataclass(frozen=True)
class MeasureFact:
    measure_id: str
    household_id: str


@dataclass(frozen=True)
class TownMonth:
    """What one town's month consists of; `tasks` the days each household's tasks were
    closed (None: still open), `risk_levels` and `monitoring` the households' state now."""

    town_code: str
    period: Period
    due: Sequence[domain.ContactDue] = ()
    visits: Sequence[VisitFact] = ()
    measures: Sequence[MeasureFact] = ()
    tasks: Mapping[str, Sequence[date | None]] = field(default_factory=dict)
    risk_levels: Mapping[str, str] = field(default_factory=dict)
    monitoring: Mapping[str, str] = field(default_factory=dict)


def problems_of(guarantees: Mapping[str, str]) -> tuple[str, ...]:
    """The checklist items a visit saw with a possible or prominent issue."""
    return tuple(sorted(k for k, v in guarantees.items() if v in ISSUE_STATUSES))


def due_on(period: Period, due_days: int) -> date:
    """The day by which the town signs the month's report: `due_days` after its last day."""
    return period.last_day + timedelta(days=due_days)


def status_of(*, signed: bool, period: Period, due: date, today: date) -> Status:
    if signed:
        return "signed_off"
    if today <= period.last_day:
        return "open"
    return "late" if today > due else "due"


def home_visit_due(*, monitoring_status: str, risk_level: str | None) -> bool:
    """Whether the household needs someone at its door this month, so that a phone call,
    a message or WeChat does not stand in for the visit: a 监测户 (seed 三(三)2: 每月要开展
    入户走访, the phone only 加强联系) and a household risk finds at `watch` or `at_risk`
    (seed 二(二): 由镇村干部及时入户核实)."""
    return monitoring_status == "monitored" or risk_level in ("watch", "at_risk")


# ---------------------------------------------------------------- quality signals


def _text_key(text: str) -> str:
    """Findings as compared: width-folded, case-folded, without spaces or punctuation."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    return "".join(ch for ch in folded if unicodedata.category(ch)[0] in "LN")


def empty_findings(visits: Iterable[VisitFact]) -> list[VisitFact]:
    """Visits whose findings say nothing: no letter or digit, or a single character
    ("无", "/", "。")."""
    return [v for v in visits if len(_text_key(v.findings)) < 2]


def copied_findings(visits: Iterable[VisitFact]) -> list[list[VisitFact]]:
    """Groups of two or more visits with the same findings text (spaces, punctuation and
    case aside): a text pasted from one visit into another. Empty findings are left to
    `empty_findings`."""
    groups: dict[str, list[VisitFact]] = defaultdict(list)
    for v in visits:
        key = _text_key(v.findings)
        if len(key) >= 2:
            groups[key].append(v)
    return sorted(
        ([*sorted(g, key=_order)] for g in groups.values() if len(g) > 1),
        key=lambda g: _order(g[0]),
    )


def busy_days(visits: Iterable[VisitFact], limit: int) -> list[tuple[str, date, int]]:
    """(visitor, day, visits) for each person who logged more than `limit` visits on one
    day: more than one person can make in a day."""
    counts = Counter((person_key(v.visitor), v.visited_on) for v in visits)
    names: dict[str, str] = {}
    for v in visits:
        names.setdefault(person_key(v.visitor), v.visitor)
    return sorted((names[k], day, n) for (k, day), n in counts.items() if n > limit)


def remote_for_home(
    visits: Iterable[VisitFact], home_due: Iterable[str]
) -> dict[str, list[VisitFact]]:
    """Households that needed a home visit (`home_due`) and had only phone, message or
    WeChat contacts this month: household id → those contacts."""
    by_household: dict[str, list[VisitFact]] = defaultdict(list)
    for v in visits:
        by_household[v.household_id].append(v)
    flagged = {}
    for household_id in sorted(set(home_due)):
        seen = by_household.get(household_id, [])
        if seen and all(v.channel in REMOTE_CHANNELS for v in seen):
            flagged[household_id] = sorted(seen, key=_order)
    return flagged


def person_key(name: str) -> str:
    """One person however the spaces in the name were typed (as `counts_as_contact`)."""
    return "".join(name.split())


def _order(v: VisitFact) -> tuple[date, str, str]:
    return (v.visited_on, v.visitor, v.visit_id)


# ---------------------------------------------------------------- the report models


class VisitRef(BaseModel):
    visit_id: str
    household_id: str
    visitor: str
    visited_on: date
    channel: str


class CopyGroup(BaseModel):
    """Visits with the same findings text."""

    visitors: list[str]
    visits: list[VisitRef]


class BusyDay(BaseModel):
    visitor: str
    visited_on: date
    visits: int


class RemoteForHome(BaseModel):
    """A household due a home visit reached only by phone, message or WeChat."""

    household_id: str
    visitors: list[str]
    channels: list[str]


class Signals(BaseModel):
    visits_per_day_limit: int
    empty_findings: list[VisitRef] = Field(default_factory=list)
    copied_findings: list[CopyGroup] = Field(default_factory=list)
    busy_days: list[BusyDay] = Field(default_factory=list)
    remote_for_home: list[RemoteForHome] = Field(default_factory=list)


class SignalCounts(BaseModel):
    empty_findings: int = 0  # visits
    copied_findings: int = 0  # visits
    busy_days: int = 0  # (person, day) pairs
    remote_for_home: int = 0  # households


class ContactPart(BaseModel):
    due: int = 0  # households due a contact this month (每月至少走访或联系一次)
    contacted: int = 0  # reached by one of their 重点联系人 or 帮扶责任人
    not_reached: int = 0
    not_reached_households: list[str] = Field(default_factory=list)
    visits: int = 0  # every contact logged in the month, by anyone
    by_channel: dict[str, int] = Field(default_factory=dict)
    not_counted: int = 0  # contacts with due households by someone not their contact


class ProblemPart(BaseModel):
    found: int = 0  # households a visit saw with an issue of 两不愁三保障/饮水安全
    passed_on: int = 0  # of them, with a task (入户核实…) open on or after that visit
    not_passed_on_households: list[str] = Field(default_factory=list)
    by_item: dict[str, int] = Field(default_factory=dict)


class MeasurePart(BaseModel):
    active: int = 0  # measures of assistance plans running in the month
    followed_up: int = 0  # of them, of a household contacted in the month
    not_followed_up_households: list[str] = Field(default_factory=list)


class PersonMonth(BaseModel):
    """One 帮扶责任人 (or 重点联系人, or anyone who logged a visit) in the town's month."""

    name: str
    roles: list[str]
    due: int = 0  # households this person answers for
    contacted: int = 0
    not_reached: int = 0
    visits: int = 0  # visits this person logged
    home_visits: int = 0
    problems_found: int = 0  # visits of this person that found an issue
    measures_active: int = 0  # of the households this person answers for
    measures_followed_up: int = 0
    signals: SignalCounts = Field(default_factory=SignalCounts)


class MonthlyTownReport(BaseModel):
    """月汇报 of one town: live until the town signs it off, then stored as signed."""

    period: str
    town_code: str
    status: Status
    due_on: date
    computed_at: datetime
    signed_off_by: str | None = None
    signed_off_at: datetime | None = None
    days_late: int = 0
    remarks: str | None = None
    contact: ContactPart
    problems: ProblemPart
    measures: MeasurePart
    signals: Signals
    people: list[PersonMonth]

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "period": "2026-11",
                    "town_code": "441881101",
                    "status": "signed_off",
                    "due_on": "2026-12-05",
                    "computed_at": "2026-12-03T02:00:00Z",
                    "signed_off_by": "镇长 陈某",
                    "signed_off_at": "2026-12-03T02:00:00Z",
                    "days_late": 0,
                    "remarks": None,
                    "contact": {
                        "due": 120,
                        "contacted": 117,
                        "not_reached": 3,
                        "not_reached_households": ["0b7c…", "1d2e…", "9f3a…"],
                        "visits": 164,
                        "by_channel": {"home": 130, "phone": 30, "wechat": 4},
                        "not_counted": 2,
                    },
                    "problems": {
                        "found": 4,
                        "passed_on": 3,
                        "not_passed_on_households": ["5a6b…"],
                        "by_item": {"housing": 2, "basic_medical": 2},
                    },
                    "measures": {
                        "active": 56,
                        "followed_up": 55,
                        "not_followed_up_households": ["9f3a…"],
                    },
                    "signals": {
                        "visits_per_day_limit": 20,
                        "empty_findings": [],
                        "copied_findings": [],
                        "busy_days": [
                            {"visitor": "李干部", "visited_on": "2026-11-28", "visits": 40}
                        ],
                        "remote_for_home": [
                            {
                                "household_id": "7c8d…",
                                "visitors": ["王书记"],
                                "channels": ["phone"],
                            }
                        ],
                    },
                    "people": [
                        {
                            "name": "李干部",
                            "roles": ["assistance_officer"],
                            "due": 45,
                            "contacted": 45,
                            "not_reached": 0,
                            "visits": 52,
                            "home_visits": 52,
                            "problems_found": 1,
                            "measures_active": 20,
                            "measures_followed_up": 20,
                            "signals": {
                                "empty_findings": 0,
                                "copied_findings": 0,
                                "busy_days": 1,
                                "remote_for_home": 0,
                            },
                        }
                    ],
                }
            ]
        }
    )

    def headline(self) -> dict[str, int]:
        """The counts a town's line in the overview and the signed event carry."""
        return {
            "days_late": self.days_late,
            "due": self.contact.due,
            "contacted": self.contact.contacted,
            "not_reached": self.contact.not_reached,
            "problems_found": self.problems.found,
            "problems_passed_on": self.problems.passed_on,
        }

    def counts(self) -> SignalCounts:
        s = self.signals
        return SignalCounts(
            empty_findings=len(s.empty_findings),
            copied_findings=sum(len(g.visits) for g in s.copied_findings),
            busy_days=len(s.busy_days),
            remote_for_home=len(s.remote_for_home),
        )


# ---------------------------------------------------------------- building a report


def _ref(v: VisitFact) -> VisitRef:
    return VisitRef(
        visit_id=v.visit_id,
        household_id=v.household_id,
        visitor=v.visitor,
        visited_on=v.visited_on,
        channel=v.channel,
    )


def _passed_on(closings: Sequence[date | None], seen_on: date) -> bool:
    """A task of the household was open on the day of the visit, or opened after it: one
    not closed before that day."""
    return any(closed is None or closed >= seen_on for closed in closings)


def town_report(
    month: TownMonth, *, visits_per_day_limit: int, due: date, today: date, now: datetime
) -> MonthlyTownReport:
    """The town's report of the month, from its facts (the live, unsigned form); `due` is
    the day by which the town signs it."""
    visits = sorted(month.visits, key=_order)
    households = sorted(month.due, key=lambda d: d.household_id)
    visits_of: dict[str, list[VisitFact]] = defaultdict(list)
    for v in visits:
        visits_of[v.household_id].append(v)

    # Contact: reached by one of the household's own contacts (the compliance rule).
    contact = ContactPart(due=len(households), visits=len(visits))
    contact.by_channel = dict(sorted(Counter(v.channel for v in visits).items()))
    reached: set[str] = set()
    for d in households:
        seen = visits_of.get(d.household_id, [])
        if any(domain.counts_as_contact(v.visitor, d) for v in seen):
            reached.add(d.household_id)
        else:
            contact.not_counted += len(seen)
            contact.not_reached_households.append(d.household_id)
    contact.contacted = len(reached)
    contact.not_reached = len(households) - len(reached)

    # Problems found by visits, and whether a task took them up.
    problems = ProblemPart()
    first_seen: dict[str, date] = {}
    items: Counter[str] = Counter()
    for v in visits:
        if v.problems:
            first_seen.setdefault(v.household_id, v.visited_on)
            items.update(v.problems)
    problems.found = len(first_seen)
    problems.by_item = dict(sorted(items.items()))
    for household_id, seen_on in sorted(first_seen.items()):
        if _passed_on(month.tasks.get(household_id, ()), seen_on):
            problems.passed_on += 1
        else:
            problems.not_passed_on_households.append(household_id)

    # Measures followed up: the household was contacted (by anyone) in the month.
    measures = MeasurePart(active=len(month.measures))
    for m in month.measures:
        if m.household_id in visits_of:
            measures.followed_up += 1
        else:
            measures.not_followed_up_households.append(m.household_id)
    measures.not_followed_up_households = sorted(set(measures.not_followed_up_households))

    # Signals.
    home_due = [
        d.household_id
        for d in households
        if home_visit_due(
            monitoring_status=month.monitoring.get(d.household_id, "none"),
            risk_level=month.risk_levels.get(d.household_id),
        )
    ]
    empty = empty_findings(visits)
    copies = copied_findings(visits)
    busy = busy_days(visits, visits_per_day_limit)
    remote = remote_for_home(visits, home_due)
    signals = Signals(
        visits_per_day_limit=visits_per_day_limit,
        empty_findings=[_ref(v) for v in empty],
        copied_findings=[
            CopyGroup(visitors=sorted({v.visitor for v in g}), visits=[_ref(v) for v in g])
            for g in copies
        ],
        busy_days=[BusyDay(visitor=p, visited_on=day, visits=n) for p, day, n in busy],
        remote_for_home=[
            RemoteForHome(
                household_id=h,
                visitors=sorted({v.visitor for v in vs}),
                channels=sorted({v.channel for v in vs}),
            )
            for h, vs in remote.items()
        ],
    )

    # People: who answers for which households, and who logged which visits.
    people: dict[str, PersonMonth] = {}

    def person(name: str) -> PersonMonth:
        key = person_key(name)
        if key not in people:
            people[key] = PersonMonth(name=name, roles=[])
        return people[key]

    measures_of = Counter(m.household_id for m in month.measures)
    for d in households:
        roles = dict(d.contacts)
        for name in d.responsible:
            p = person(name)
            role = roles.get(name)
            if role and role not in p.roles:
                p.roles.append(role)
            p.due += 1
            p.contacted += d.household_id in reached
            p.not_reached += d.household_id not in reached
            p.measures_active += measures_of[d.household_id]
            if d.household_id in visits_of:
                p.measures_followed_up += measures_of[d.household_id]
    for v in visits:
        p = person(v.visitor)
        p.visits += 1
        p.home_visits += v.channel == "home"
        p.problems_found += bool(v.problems)
    for v in empty:
        person(v.visitor).signals.empty_findings += 1
    for g in copies:
        for v in g:
            person(v.visitor).signals.copied_findings += 1
    for name, _, _ in busy:
        person(name).signals.busy_days += 1
    for vs in remote.values():
        for name in {person_key(v.visitor): v.visitor for v in vs}.values():
            person(name).signals.remote_for_home += 1

    return MonthlyTownReport(
        period=str(month.period),
        town_code=month.town_code,
        status=status_of(signed=False, period=month.period, due=due, today=today),
        due_on=due,
        computed_at=now,
        contact=contact,
        problems=problems,
        measures=measures,
        signals=signals,
        people=[people[k] for k in sorted(people)],
    )
