"""月汇报: the pure rules of the monthly report (services/assistance/monthly.py)."""

from __future__ import annotations

from datetime import UTC, date, datetime

from backstop.requests import Period
from services.assistance.domain import ContactDue
from services.assistance.monthly import (
    MeasureFact,
    TownMonth,
    VisitFact,
    busy_days,
    copied_findings,
    due_on,
    empty_findings,
    home_visit_due,
    remote_for_home,
    status_of,
    town_report,
)

NOV = Period(2026, 11)
TOWN = "441881101"


def visit(
    n: int,
    household: str = "h1",
    *,
    visitor: str = "李干部",
    on: date = date(2026, 11, 10),
    channel: str = "home",
    findings: str = "家中两人务工，收入稳定",
    problems: tuple[str, ...] = (),
) -> VisitFact:
    return VisitFact(f"v{n}", household, visitor, on, channel, findings, problems)


def due(
    household: str, *contacts: tuple[str, str], responsible: tuple[str, ...] = ()
) -> ContactDue:
    return ContactDue(
        household_id=household,
        region_code=TOWN + "001",
        town_code=TOWN,
        contacts=list(contacts),
        responsible=responsible or tuple(n for n, _ in contacts),
    )


def test_empty_findings_have_no_words() -> None:
    visits = [
        visit(1, findings="/"),
        visit(2, findings="无"),
        visit(3, findings="。。 ，"),
        visit(4, findings="正常"),
        visit(5, findings="住房漏雨，已报镇里"),
    ]
    assert [v.visit_id for v in empty_findings(visits)] == ["v1", "v2", "v3"]


def test_copied_findings_ignore_spaces_punctuation_and_width() -> None:
    visits = [
        visit(1, "h1", findings="家中两人务工，收入稳定。"),
        visit(2, "h2", visitor="王书记", findings="家中两人务工 收入稳定"),
        visit(3, "h3", findings="家中两人务工，收入稳定!"),
        visit(4, "h4", findings="户主住院，医疗费用较高"),
        visit(5, "h5", findings="无"),  # empty, not a copy
        visit(6, "h6", findings="无"),
        visit(7, "h7", findings="ＡＢＣ"),
        visit(8, "h8", findings="abc"),
    ]
    groups = copied_findings(visits)
    assert [[v.visit_id for v in g] for g in groups] == [["v1", "v3", "v2"], ["v7", "v8"]]


def test_busy_days_count_one_person_on_one_day_beyond_the_limit() -> None:
    day, other = date(2026, 11, 28), date(2026, 11, 29)
    visits = [
        visit(i, f"h{i}", visitor="李 干部" if i % 2 else "李干部", on=day) for i in range(40)
    ]
    visits += [visit(100 + i, f"h{i}", visitor="王书记", on=day) for i in range(20)]
    visits += [visit(200 + i, f"h{i}", visitor="李干部", on=other) for i in range(3)]
    assert busy_days(visits, 20) == [("李干部", day, 40)]  # spaces aside, one person
    assert busy_days(visits, 40) == []
    assert [(p, n) for p, _, n in busy_days(visits, 19)] == [("李干部", 40), ("王书记", 20)]


def test_home_visit_is_due_for_monitored_and_risky_households() -> None:
    assert home_visit_due(monitoring_status="monitored", risk_level=None)
    assert home_visit_due(monitoring_status="none", risk_level="watch")
    assert home_visit_due(monitoring_status="none", risk_level="at_risk")
    assert not home_visit_due(monitoring_status="none", risk_level="none")
    assert not home_visit_due(monitoring_status="eliminated", risk_level=None)


def test_remote_contacts_standing_in_for_a_due_home_visit() -> None:
    visits = [
        visit(1, "h1", channel="phone"),
        visit(2, "h1", channel="wechat", visitor="王书记"),
        visit(3, "h2", channel="phone"),
        visit(4, "h2", channel="home"),  # the home visit was made
        visit(5, "h3", channel="sms"),  # no home visit due
    ]
    flagged = remote_for_home(visits, ["h1", "h2", "h4"])
    assert list(flagged) == ["h1"]
    assert [v.visit_id for v in flagged["h1"]] == ["v1", "v2"]


def test_due_date_and_status() -> None:
    assert due_on(NOV, 5) == date(2026, 12, 5)
    assert due_on(NOV, 0) == date(2026, 11, 30)
    due = date(2026, 12, 5)
    assert status_of(signed=False, period=NOV, due=due, today=date(2026, 11, 30)) == "open"
    assert status_of(signed=False, period=NOV, due=due, today=date(2026, 12, 5)) == "due"
    assert status_of(signed=False, period=NOV, due=due, today=date(2026, 12, 6)) == "late"
    assert status_of(signed=True, period=NOV, due=due, today=date(2026, 12, 6)) == "signed_off"


def test_town_report_counts_contacts_problems_measures_and_people() -> None:
    month = TownMonth(
        town_code=TOWN,
        period=NOV,
        due=[
            due("h1", ("李干部", "assistance_officer")),
            due("h2", ("李干部", "assistance_officer")),
            due("h3", ("王书记", "town_leader")),
        ],
        visits=[
            visit(1, "h1", problems=("housing",), findings="房屋漏雨"),
            visit(2, "h2", visitor="张三", findings="不是联系人走访"),  # not h2's contact
            visit(3, "h3", visitor="王书记", channel="phone", findings="电话了解情况"),
            visit(
                4,
                "h3",
                visitor="王书记",
                channel="phone",
                problems=("basic_medical",),
                findings="未参加医保",
                on=date(2026, 11, 20),
            ),
        ],
        measures=[MeasureFact("m1", "h1"), MeasureFact("m2", "h2"), MeasureFact("m3", "h9")],
        tasks={"h1": [None], "h3": [date(2026, 11, 15)]},  # h3's task closed before its visit
        monitoring={"h3": "monitored"},
    )
    report = town_report(
        month,
        visits_per_day_limit=20,
        due=date(2026, 12, 5),
        today=date(2026, 12, 6),
        now=datetime(2026, 12, 6, tzinfo=UTC),
    )
    assert report.status == "late"
    c = report.contact
    assert (c.due, c.contacted, c.not_reached, c.visits) == (3, 2, 1, 4)
    assert c.not_reached_households == ["h2"] and c.not_counted == 1
    assert c.by_channel == {"home": 2, "phone": 2}
    p = report.problems
    assert (p.found, p.passed_on, p.not_passed_on_households) == (2, 1, ["h3"])
    assert p.by_item == {"basic_medical": 1, "housing": 1}
    m = report.measures
    assert (m.active, m.followed_up, m.not_followed_up_households) == (3, 2, ["h9"])
    assert [r.household_id for r in report.signals.remote_for_home] == ["h3"]
    people = {p.name: p for p in report.people}
    li, wang, zhang = people["李干部"], people["王书记"], people["张三"]
    assert (li.due, li.contacted, li.not_reached, li.visits, li.problems_found) == (2, 1, 1, 1, 1)
    assert (li.measures_active, li.measures_followed_up) == (2, 2)
    assert li.roles == ["assistance_officer"]
    assert (wang.due, wang.contacted, wang.home_visits, wang.signals.remote_for_home) == (
        1,
        1,
        0,
        1,
    )
    assert (zhang.due, zhang.visits, zhang.roles) == (0, 1, [])
    assert report.counts().remote_for_home == 1
