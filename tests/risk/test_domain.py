"""The scoring rules, one test per rule and threshold edge; plain asserts, no fixtures."""

from __future__ import annotations

from dataclasses import replace
from datetime import date

import pytest
from pydantic import ValidationError

from backstop.contracts.policy import SPECIAL_GROUPS
from services.risk.domain import (
    DEFAULT_POLICY,
    Assessment,
    Factor,
    Features,
    FeedRecord,
    Income,
    Member,
    Points,
    Policy,
    Spending,
    age_on,
    assess,
    build_features,
    new_evidence,
    transition,
    window_start,
)

AS_OF = date(2026, 11, 15)
HEAD = Member(person_id="p1", id_hash="h1", birth_date=date(1970, 1, 1))
SPOUSE = Member(person_id="p2", id_hash="h2", birth_date=date(1972, 5, 1))


def household(
    *,
    members: tuple[Member, ...] = (HEAD, SPOUSE),
    total: float = 45_000,
    year: int = 2025,
    previous: float | None = None,
    records: tuple[FeedRecord, ...] = (),
    guarantees: dict[str, str] | None = None,
) -> Features:
    incomes = [Income(year, total, total / len(members))]
    if previous is not None:
        incomes.append(Income(year - 1, previous, previous / len(members)))
    return build_features(
        household_id="h-1",
        region_code="441881101001",
        as_of=AS_OF,
        members=members,
        incomes=incomes,
        guarantees=guarantees or {},
        records=records,
        snapshot_source="evt-1",
    )


def medical(amount: float, on: date = date(2026, 10, 1), rid: str = "m1") -> FeedRecord:
    return FeedRecord(source="medical", record_id=rid, occurred_on=on, amount=amount)


def codes(f: Features, policy: Policy = DEFAULT_POLICY) -> list[str]:
    return assess(f, policy).codes


# --- income -------------------------------------------------------------------------


def test_income_line_table_uses_the_income_year_then_the_closest_earlier_year() -> None:
    assert DEFAULT_POLICY.income_line(2021) == 6000
    assert DEFAULT_POLICY.income_line(2023) == 7300
    assert DEFAULT_POLICY.income_line(2030) == 8100
    assert DEFAULT_POLICY.income_line(2019) == 6000  # the default before the table


def test_per_capita_below_the_line_is_low_income_and_at_risk() -> None:
    a = assess(household(total=2 * 7_799), DEFAULT_POLICY)
    assert a.codes == ["low_income"]
    assert a.level == "at_risk" and a.score == 60
    assert a.factors[0].evidence == "2025年家庭人均纯收入 7,799 元，低于2025年监测线 7,800 元"
    assert a.factors[0].sources == ("registry:evt-1",)
    assert a.income_line == 7800


def test_per_capita_exactly_on_the_line_is_not_low_income_but_near_it() -> None:
    a = assess(household(total=2 * 7_800), DEFAULT_POLICY)
    assert a.codes == ["low_income"]
    assert a.score == 30 and a.level == "watch"
    assert "接近监测线 7,800 元" in a.factors[0].evidence


def test_per_capita_at_the_near_line_ratio_is_clear() -> None:
    assert codes(household(total=2 * 7_800 * 1.2)) == []


def test_income_drop_reaching_the_share_is_flagged_and_less_is_not() -> None:
    # Seed 一: 收入骤降 makes a 双骤户; "达到" the line counts.
    dropped = assess(household(total=70_000, previous=100_000), DEFAULT_POLICY)
    assert dropped.codes == ["income_drop"]
    assert "下降 30%，达到骤降线 30%" in dropped.factors[0].evidence
    assert codes(household(total=70_001, previous=100_000)) == []
    assert codes(household(total=120_000, previous=100_000)) == []


def test_income_drop_is_per_capita_of_each_years_own_members() -> None:
    # The total fell by half because a member left; per capita did not fall: no 骤降.
    f = household(total=40_000, previous=80_000)
    f = replace(
        f, income=Income(2025, 40_000, 20_000), previous_income=Income(2024, 80_000, 20_000)
    )
    assert codes(f) == []
    f = replace(f, income=Income(2025, 40_000, 13_000))
    assert codes(f) == ["income_drop"]


# --- rigid spending -------------------------------------------------------------------


def test_medical_spending_over_half_the_income_is_illness_with_the_numbers() -> None:
    a = assess(household(records=(medical(40_000),)), DEFAULT_POLICY)
    assert a.codes == ["illness"]
    assert a.level == "at_risk"
    assert a.factors[0].evidence == (
        "近12个月医疗自付 40,000 元（1 条记录），占家庭年收入 45,000 元的 89%，超过预警线 50%"
    )
    assert a.factors[0].sources == ("medical:m1",)


def test_medical_spending_reaching_half_the_income_is_illness() -> None:
    # Seed 二(一): 因病、因灾、因学支出"达到"监测预警线 — at the line counts.
    assert codes(household(records=(medical(22_499),))) == []
    assert codes(household(records=(medical(22_500),))) == ["illness"]


def test_medical_spending_outside_the_12_months_does_not_count() -> None:
    start = window_start(AS_OF)
    assert start == date(2025, 11, 16)
    assert codes(household(records=(medical(40_000, on=date(2025, 11, 15)),))) == []
    assert codes(household(records=(medical(40_000, on=start),))) == ["illness"]


def test_window_start_on_29_february() -> None:
    assert window_start(date(2028, 2, 29)) == date(2027, 3, 1)


def test_a_fixed_warning_amount_applies_when_the_county_sets_one() -> None:
    policy = Policy(rigid_amount=20_000)
    rich = household(total=200_000, records=(medical(20_000),))
    assert codes(rich) == []
    assert codes(rich, policy) == ["illness"]
    assert "达到预警金额 20,000 元" in assess(rich, policy).factors[0].evidence
    below = household(total=200_000, records=(medical(19_999),))
    assert codes(below, policy) == []


def test_without_income_on_record_the_fallback_amount_applies() -> None:
    f = replace(household(records=(medical(10_000),)), income=None, previous_income=None)
    a = assess(f, DEFAULT_POLICY)
    assert a.codes == ["illness"]
    assert "未登记家庭年收入" in a.factors[0].evidence
    assert codes(replace(f, medical=Spending(9_999, 1, ("medical:m1",)))) == []


def test_disaster_loss_and_school_costs_follow_the_same_warning_line() -> None:
    loss = FeedRecord("disaster", "d1", date(2026, 8, 1), 30_000)
    school = FeedRecord("education", "e1", date(2026, 9, 1), 30_000, id_hash="h3", enrolled=True)
    assert codes(household(total=100_000, records=(loss,))) == []
    assert codes(household(total=50_000, records=(loss,))) == ["disaster"]
    assert codes(household(total=50_000, records=(school,))) == ["education"]


def test_rigid_spending_reaching_the_annual_income_is_an_expense_surge() -> None:
    a = assess(household(total=45_000, records=(medical(45_000),)), DEFAULT_POLICY)
    assert a.codes == ["illness", "expense_surge"]
    assert a.score == 90
    assert "达到2025年家庭纯收入 45,000 元的 100%" in a.factors[1].evidence
    # Under the income and not grown against the year before: no surge.
    steady = (medical(40_000), medical(40_000, on=date(2025, 6, 1), rid="old"))
    assert codes(household(total=45_000, records=steady)) == ["illness"]


def test_spending_doubled_against_the_year_before_is_an_expense_surge() -> None:
    # Seed 一: 支出骤增 — against the household's own earlier spending, not only income.
    rich = 400_000
    before = medical(6_000, on=date(2025, 6, 1), rid="old")
    surged = household(total=rich, records=(medical(12_000), before))
    a = assess(surged, DEFAULT_POLICY)
    assert a.codes == ["expense_surge"]
    assert "比此前12个月的 6,000 元增加 6,000 元" in a.factors[0].evidence
    assert a.factors[0].sources == ("medical:m1", "medical:old")
    assert codes(household(total=rich, records=(medical(11_999), before))) == []
    # No spending on record before: nothing to compare with.
    assert codes(household(total=rich, records=(medical(12_000),))) == []
    # Doubled but by less than the minimum increase: small sums do not surge.
    small = medical(1_000, on=date(2025, 6, 1), rid="old")
    assert codes(household(total=rich, records=(medical(2_000), small))) == []


def test_double_shock_household_is_at_risk() -> None:  # 双骤户
    loss = FeedRecord("disaster", "d1", date(2026, 8, 1), 31_000)
    f = household(total=30_000, previous=60_000, records=(loss,))
    a = assess(f, Policy(rigid_share=5.0))  # the loss alone stays under its own line
    assert a.codes == ["income_drop", "expense_surge"]
    assert a.level == "at_risk"


def test_a_replayed_record_with_the_same_id_is_counted_by_the_store_not_here() -> None:
    # build_features sums what it is given; idempotency by (source, record_id) is the
    # store's job. Two distinct records add up.
    f = household(records=(medical(15_000, rid="a"), medical(15_000, rid="b")))
    assert f.medical == Spending(30_000, 2, ("medical:b", "medical:a"))


def test_housing_damaged_by_a_disaster_is_a_watch() -> None:
    damaged = FeedRecord("disaster", "d9", date(2026, 7, 1), 1_000, housing_damaged=True)
    a = assess(household(records=(damaged,)), DEFAULT_POLICY)
    assert a.codes == ["housing"]
    assert a.level == "watch"


# --- members ------------------------------------------------------------------------


def test_disability_alone_raises_attention_capped_below_watch() -> None:
    disabled = replace(SPOUSE, special_groups=("disability",))
    a = assess(household(members=(HEAD, disabled)), DEFAULT_POLICY)
    assert a.codes == ["disability"]
    assert a.score == 10 and a.level == "none"
    assert "残疾人 1 人" in a.factors[0].evidence


def test_each_of_the_four_special_hardship_groups_is_at_least_watch() -> None:
    # Seed 三(一): 4类特困群体…进一步强化综合性社会保障措施.
    for group in ("major_illness", "disabled_without_carer", "child_in_distress",
                  "severe_mental_disorder"):  # fmt: skip
        a = assess(
            household(members=(replace(HEAD, special_groups=(group,)), SPOUSE)), DEFAULT_POLICY
        )
        assert a.level == "watch", group
        assert "4类特困群体" in a.factors[0].evidence


def test_a_household_with_all_four_groups_is_at_risk() -> None:
    head = replace(HEAD, special_groups=("major_illness", "severe_mental_disorder"))
    spouse = replace(SPOUSE, special_groups=("disabled_without_carer",))
    child = Member("p3", "h3", date(2016, 3, 1), special_groups=("child_in_distress",))
    a = assess(household(members=(head, spouse, child), total=90_000), DEFAULT_POLICY)
    assert a.codes == ["disability", "illness", "other"]
    assert a.level == "at_risk" and a.score == 100


def test_policy_group_keys_are_the_registers_words() -> None:
    assert set(DEFAULT_POLICY.attention_groups) == set(SPECIAL_GROUPS)
    with pytest.raises(ValidationError, match="not a special group of the register"):
        Policy(attention_groups={"serious_illness_typo": "illness"})
    # A policy stored before the groups took the register's words still loads.
    legacy = Policy.model_validate({"attention_groups": {"serious_illness": "illness"}})
    assert legacy.attention_groups == {"major_illness": "illness"}


def test_no_full_labour_is_an_employment_factor() -> None:
    weak = (replace(HEAD, labor_capacity="partial"), replace(SPOUSE, labor_capacity="none"))
    a = assess(household(members=weak, total=100_000), DEFAULT_POLICY)
    assert a.codes == ["employment"]
    assert "弱劳动力 1 人、无劳动力 1 人" in a.factors[0].evidence


def test_age_in_whole_years() -> None:
    assert age_on(date(2010, 11, 15), AS_OF) == 16
    assert age_on(date(2010, 11, 16), AS_OF) == 15


def test_a_compulsory_age_child_out_of_school_is_a_prominent_education_problem() -> None:
    child = Member("p3", "h3", date(2014, 3, 1), schooling="out_of_school")
    a = assess(household(members=(HEAD, SPOUSE, child), total=90_000), DEFAULT_POLICY)
    assert a.codes == ["compulsory_education"]
    assert a.level == "at_risk"
    assert "12 岁适龄儿童登记为失学辍学" in a.factors[0].evidence


def test_compulsory_age_bounds_are_inclusive() -> None:
    sixteen = Member("p3", "h3", date(2010, 11, 15), schooling="out_of_school")
    fifteen = Member("p3", "h3", date(2010, 11, 16), schooling="out_of_school")
    six = Member("p3", "h3", date(2020, 11, 15), schooling="out_of_school")
    five = Member("p3", "h3", date(2020, 11, 16), schooling="out_of_school")
    for child, flagged in ((sixteen, False), (fifteen, True), (six, True), (five, False)):
        f = household(members=(HEAD, SPOUSE, child), total=90_000)
        assert ("compulsory_education" in codes(f)) is flagged


def test_the_latest_education_record_decides_enrolment() -> None:
    child = Member("p3", "h3", date(2014, 3, 1), schooling="primary")
    out = FeedRecord("education", "e1", date(2026, 3, 1), 0, id_hash="h3", enrolled=False)
    back = FeedRecord("education", "e2", date(2026, 10, 1), 0, id_hash="h3", enrolled=True)
    members = (HEAD, SPOUSE, child)
    assert codes(household(members=members, total=90_000, records=(out,))) == [
        "compulsory_education"
    ]
    assert codes(household(members=members, total=90_000, records=(out, back))) == []


def test_a_member_without_basic_medical_insurance_is_prominent() -> None:
    a = assess(household(members=(HEAD, replace(SPOUSE, medical_insurance=False))), DEFAULT_POLICY)
    assert a.codes == ["basic_medical"]
    assert a.level == "at_risk"


# --- guarantees -----------------------------------------------------------------------


def test_a_prominent_guarantee_problem_forces_at_risk_whatever_the_points() -> None:
    policy = Policy(points=Points(guarantee_prominent=0))
    f = household(guarantees={"drinking_water": "prominent_issue", "food": "ok"})
    a = assess(f, policy)
    assert a.codes == ["drinking_water"]
    assert a.score == 0 and a.level == "at_risk"
    assert a.factors[0].evidence == "饮水安全存在突出问题（登记核实）"


def test_a_possible_guarantee_problem_is_a_watch() -> None:
    a = assess(household(guarantees={"housing": "possible_issue"}), DEFAULT_POLICY)
    assert a.codes == ["housing"]
    assert a.level == "watch"


def test_registry_and_records_on_one_guarantee_merge_into_one_factor() -> None:
    child = Member("p3", "h3", date(2014, 3, 1), schooling="out_of_school")
    f = household(
        members=(HEAD, SPOUSE, child),
        total=90_000,
        guarantees={"compulsory_education": "possible_issue"},
    )
    a = assess(f, DEFAULT_POLICY)
    assert a.codes == ["compulsory_education"]
    assert a.level == "at_risk"
    assert a.factors[0].points == 60


# --- civil affairs ------------------------------------------------------------------


def test_dibao_terminated_within_12_months_and_temporary_assistance() -> None:
    ended = FeedRecord(
        "civil_affairs", "c1", date(2026, 5, 1), 500, kind="dibao", status="terminated"
    )
    temp = FeedRecord(
        "civil_affairs",
        "c2",
        date(2026, 6, 1),
        3_000,
        kind="temporary_assistance",
        status="granted",
    )
    a = assess(household(total=100_000, records=(ended, temp)), DEFAULT_POLICY)
    assert a.codes == ["other", "other"]
    assert "低保于 2026-05-01 终止" in a.factors[0].evidence
    assert "临时救助 1 次，共 3,000 元" in a.factors[1].evidence
    assert a.level == "watch"


def test_dibao_granted_again_after_termination_is_not_a_factor() -> None:
    ended = FeedRecord(
        "civil_affairs", "c1", date(2026, 5, 1), 500, kind="dibao", status="terminated"
    )
    again = FeedRecord("civil_affairs", "c3", date(2026, 7, 1), 500, kind="dibao", status="granted")
    assert codes(household(total=100_000, records=(ended, again))) == []


# --- score, levels, transitions -----------------------------------------------------


def test_score_is_capped_at_100() -> None:
    f = household(
        total=1_000,
        previous=50_000,
        records=(medical(40_000),),
        guarantees={"housing": "prominent_issue"},
    )
    assert assess(f, DEFAULT_POLICY).score == 100


def test_level_thresholds_are_inclusive() -> None:
    policy = Policy(watch_score=30, at_risk_score=61)
    assert assess(household(total=2 * 7_000), policy).level == "watch"  # 60 < 61


def test_policy_rejects_inconsistent_thresholds() -> None:
    with pytest.raises(ValidationError, match="watch_score"):
        Policy(watch_score=70, at_risk_score=60)
    with pytest.raises(ValidationError, match="attention_groups"):
        Policy(attention_groups={"disabled": "nonsense"})


def test_transitions_raise_once_and_clear() -> None:
    at_risk = assess(household(records=(medical(40_000),)), DEFAULT_POLICY)
    clear = assess(household(), DEFAULT_POLICY)
    assert transition(None, at_risk).alert == "raised"
    assert transition(("watch", 30), at_risk).alert == "raised"
    again = transition(("at_risk", 60), at_risk)
    assert again.alert is None and not again.changed
    assert transition(("at_risk", 60), clear).alert == "cleared"
    assert transition(("none", 0), clear) == transition(("none", 0), clear)
    assert not transition(("none", 0), clear).changed


def test_new_evidence_while_at_risk() -> None:
    """Seed 二(一): 因病、因灾、因学支出达到监测预警线的名单下发各镇，及时入户核实 — every new
    cost record of a household already at risk is a new reason to check it."""
    illness = Factor("illness", 40, "医疗自付", ("medical:1", "medical:2"))
    at_risk = Assessment("at_risk", 60, (illness,), None, 6000.0)
    before = [{"code": "illness", "sources": ["medical:1"]}]
    assert new_evidence(before, at_risk) == ["illness"]
    assert new_evidence([{"code": "illness", "sources": ["medical:1", "medical:2"]}], at_risk) == []
    income = Factor("low_income", 60, "收入低", ("registry:e1",))
    also = Assessment("at_risk", 100, (illness, income), None, 6000.0)
    # A factor that was not there is material; income's new sources alone are not.
    assert new_evidence([{"code": "illness", "sources": ["medical:1", "medical:2"]}], also) == [
        "low_income"
    ]
    assert (
        new_evidence(
            [{"code": "illness", "sources": ["medical:1", "medical:2"]}, {"code": "low_income"}],
            also,
        )
        == []
    )


def test_a_platform_warning_is_evidence_of_its_item_with_its_source() -> None:
    warning = FeedRecord(
        "province", "GD-1", date(2026, 11, 1), 0.0, kind="housing", status="prominent_issue"
    )
    possible = FeedRecord(
        "province", "GD-2", date(2026, 11, 2), 0.0, kind="drinking_water", status="possible_issue"
    )
    old = FeedRecord(
        "province", "GD-0", date(2025, 1, 1), 0.0, kind="basic_medical", status="prominent_issue"
    )
    result = assess(household(records=(warning, possible, old)), DEFAULT_POLICY)
    housing = next(f for f in result.factors if f.code == "housing")
    assert "省平台监测预警" in housing.evidence and housing.sources == ("province:GD-1",)
    assert result.level == "at_risk"  # 存在突出问题 forces at_risk
    assert "drinking_water" in result.codes
    assert "basic_medical" not in result.codes  # older than 12 months
    income = FeedRecord(
        "province", "GD-3", date(2026, 11, 1), 0.0, kind="income", status="prominent_issue"
    )
    assert (
        assess(household(records=(income,)), DEFAULT_POLICY).level == "none"
    )  # income is registry's
