"""Pure rules of assistance: plain asserts, no fixtures."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from services.assistance import domain
from services.assistance.domain import (
    AssistancePolicy,
    ContactDue,
    EliminationFacts,
    IncomeFact,
    StepOutOfOrder,
)

POLICY = AssistancePolicy()


def test_reason_is_chinese_and_follows_the_factors() -> None:
    reason = domain.reason_for(["illness", "low_income", "illness"])
    assert reason == "返贫致贫风险预警：因病刚性支出较大、人均纯收入低于监测线，请入户核实"
    assert "未说明因素" in domain.reason_for([])
    assert "mystery" in domain.reason_for(["mystery"])


def test_assignment_to_town_or_insurer() -> None:
    town = domain.assign_verification(
        region_code="441881101001", factors=["low_income"], policy=POLICY
    )
    assert (town.type, town.code, town.needs_precheck) == ("town", "441881101", False)
    insurer = domain.assign_verification(
        region_code="441881101001", factors=["low_income", "illness"], policy=POLICY
    )
    assert (insurer.type, insurer.code, insurer.needs_precheck) == ("insurer", "picc", True)
    off = POLICY.model_copy(update={"department_cases_to_insurer": False})
    assert (
        domain.assign_verification(region_code="441881101001", factors=["illness"], policy=off).type
        == "town"
    )


def test_due_date_and_overdue() -> None:
    assert domain.due_on(date(2026, 1, 28), POLICY) == date(2026, 2, 4)
    assert not domain.is_overdue(status="open", due=date(2026, 2, 4), on=date(2026, 2, 4))
    assert domain.is_overdue(status="open", due=date(2026, 2, 4), on=date(2026, 2, 5))
    assert not domain.is_overdue(status="done", due=date(2026, 2, 4), on=date(2026, 3, 1))
    assert domain.days_overdue(date(2026, 2, 4), date(2026, 2, 10)) == 6


def test_steps_go_in_order_once() -> None:
    domain.check_step_order([], "appraisal")
    domain.check_step_order(["appraisal", "notice"], "town_review")
    for done, step in (
        ([], "notice"),
        (["appraisal"], "county_approval"),
        (["appraisal"], "appraisal"),
        (list(domain.STEPS), "county_approval"),
        ([], "party"),
    ):
        with pytest.raises(StepOutOfOrder):
            domain.check_step_order(done, step)
    assert domain.next_step(["appraisal"]) == "notice"
    assert domain.next_step(list(domain.STEPS)) is None


def test_appraisal_and_notice_rules() -> None:
    assert domain.appraisal_passed(attendance=10, votes_for=6, votes_against=4)
    assert not domain.appraisal_passed(attendance=10, votes_for=5, votes_against=5)
    with pytest.raises(ValueError):
        domain.appraisal_passed(attendance=5, votes_for=4, votes_against=2)
    ok = domain.notice_problems(
        start_on=date(2026, 3, 1),
        end_on=date(2026, 3, 5),
        appraised_on=date(2026, 2, 28),
        unresolved_objections=0,
        on=date(2026, 3, 6),
        policy=POLICY,
    )
    assert ok == []
    bad = domain.notice_problems(
        start_on=date(2026, 3, 1),
        end_on=date(2026, 3, 4),
        appraised_on=date(2026, 3, 2),
        unresolved_objections=1,
        on=date(2026, 3, 3),
        policy=POLICY,
    )
    assert [f for f, _ in bad] == ["start_on", "end_on", "end_on", "objections"]


def test_monitoring_type() -> None:
    assert domain.monitoring_type_for("alleviated", ["illness"]) == "unstable"
    assert domain.monitoring_type_for("ordinary", ["illness"]) == "sudden_hardship"
    assert domain.monitoring_type_for("marginal", ["illness"]) == "marginal"
    assert domain.monitoring_type_for(None, ["low_income"]) == "marginal"


def facts(**changes: object) -> EliminationFacts:
    base: dict[str, object] = {
        "monitored_since": date(2025, 1, 10),
        "incomes": [IncomeFact(2025, 9000), IncomeFact(2024, 8500)],
        "guarantees": {"housing": "ok"},
        "labor_capacities": ["full", "none"],
        "contact_phones": ["13800000000"],
    }
    base.update(changes)
    return EliminationFacts(**base)  # type: ignore[arg-type]


def rules(f: EliminationFacts, on: date = date(2026, 3, 1)) -> set[str]:
    return {failure.rule for failure in domain.elimination_guard(f, on=on, policy=POLICY)}


def test_elimination_guard() -> None:
    assert rules(facts()) == set()
    assert rules(facts(monitored_since=date(2025, 9, 2))) == {"min_months"}
    assert rules(facts(monitored_since=date(2025, 9, 1))) == set()  # exactly six months
    assert rules(facts(monitored_since=None)) == {"monitoring"}
    assert rules(facts(incomes=[IncomeFact(2025, 7300)])) == {"income"}  # not *above* the line
    assert rules(facts(incomes=[])) == {"income"}
    assert rules(facts(incomes=[IncomeFact(2025, 8000), IncomeFact(2024, 20000)])) == {
        "income_stable"
    }
    assert rules(facts(guarantees={"drinking_water": "prominent_issue"})) == {"guarantees"}
    assert rules(facts(guarantees={"housing": "possible_issue"})) == set()
    assert rules(facts(labor_capacities=["none", "none"])) == {"labor"}
    assert rules(facts(contact_phones=[" "])) == {"contact"}
    strict = POLICY.model_copy(update={"min_months_monitored": 12})
    assert domain.elimination_guard(facts(), on=date(2026, 1, 9), policy=strict)


def test_income_line_by_year() -> None:
    assert POLICY.income_line(2021) == 6000
    assert POLICY.income_line(2026) == 8100  # the shared default table (backstop.monitoring_line)
    assert POLICY.income_line(2030) == 8100  # a year not in the table: the latest line before it
    assert POLICY.income_line(2019) == 6000


def test_add_months_clamps_the_day() -> None:
    assert domain.add_months(date(2025, 8, 31), 6) == date(2026, 2, 28)
    assert domain.add_months(date(2023, 8, 31), 6) == date(2024, 2, 29)
    assert domain.add_months(date(2025, 11, 15), 2) == date(2026, 1, 15)


def test_compliance_counts_by_town_and_charges_the_responsible_contact() -> None:
    leader = [("赵书记", "town_leader"), ("钱队员", "work_team")]
    due = [
        ContactDue("h1", "441881101001", "441881101", leader, ["赵书记"], ["13900000001"]),
        ContactDue("h2", "441881101002", "441881101", leader, ["赵书记"]),
        ContactDue("h3", "441881102001", "441881102", []),
        ContactDue("h4", "441881102002", "441881102", leader, ["赵书记"], ["139 0000 0001"]),
    ]
    # Seed 三(三)2: 联系人…每月要开展入户走访，或通过电话、短信、微信等方式…加强联系.
    visits = {"h1": ["钱队员"], "h2": ["陌生人"], "h4": ["13900000001"]}
    report = domain.compliance("2026-11", due, visits)
    assert (report.due, report.contacted, report.not_counted) == (4, 2, 1)
    assert report.by_town["441881101"] == {"due": 2, "contacted": 1, "missing": 1}
    assert report.by_contact["赵书记"]["households"] == ["h2"]
    assert "钱队员" not in report.by_contact
    assert report.by_contact["(未指定联系人)"]["missing"] == 1
    assert domain.period_bounds("2026-12") == (date(2026, 12, 1), date(2027, 1, 1))


def test_measures_by_tier() -> None:
    # 三(三)1: 对脱贫户持续推动产业、就业、金融、教育、健康、安全住房和社会扶贫等政策
    for tier in ("not_enjoying", "enjoying"):
        for kept in ("industry", "employment", "microcredit", "education", "health", "housing"):
            assert domain.measure_problem(tier, kept) is None
        assert domain.measure_problem(tier, "social_assistance") is None
    assert (
        domain.tier_of(household_type="alleviated", policy_enjoying=False, monitoring_status="none")
        == "not_enjoying"
    )
    assert (
        domain.tier_of(
            household_type="alleviated", policy_enjoying=True, monitoring_status="monitored"
        )
        == "monitored"
    )
    assert (
        domain.tier_of(
            household_type="marginal", policy_enjoying=False, monitoring_status="eliminated"
        )
        is None
    )
    assert domain.measure_problem("monitored", "social_security") is None
    assert domain.measure_problem("not_enjoying", "social_security")
    assert domain.measure_problem("enjoying", "teleport")
    assert domain.lacks_measures(
        monitored_since=date(2026, 1, 1), measure_count=0, on=date(2026, 2, 1), policy=POLICY
    )
    assert not domain.lacks_measures(
        monitored_since=date(2026, 1, 1), measure_count=0, on=date(2026, 1, 31), policy=POLICY
    )
    assert not domain.lacks_measures(
        monitored_since=date(2026, 1, 1), measure_count=1, on=date(2026, 3, 1), policy=POLICY
    )


def test_grant_split_keeps_every_cent() -> None:
    assert domain.split_grant(Decimal("101.01"), Decimal("0.5")) == (
        Decimal("50.51"),
        Decimal("50.50"),
    )
    city, town = domain.split_grant(Decimal("100.00"), Decimal("0.3"))
    assert (city, town) == (Decimal("30.00"), Decimal("70.00"))
    assert POLICY.model_copy(
        update={"city_share_by_town": {"441881101": Decimal("0.7")}}
    ).city_share_for("441881101") == Decimal("0.7")
