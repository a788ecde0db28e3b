"""Hypothesis properties of the rules: monotone in spending and income, deterministic."""

from __future__ import annotations

from dataclasses import replace
from datetime import date

from hypothesis import given, settings
from hypothesis import strategies as st

from services.risk.domain import (
    DEFAULT_POLICY,
    LEVELS,
    Features,
    Income,
    Member,
    Policy,
    Spending,
    assess,
)

AS_OF = date(2026, 11, 15)
money = st.floats(min_value=0, max_value=500_000, allow_nan=False, allow_infinity=False)
members = st.lists(
    st.builds(
        Member,
        person_id=st.uuids().map(str),
        id_hash=st.text("0123456789abcdef", min_size=4, max_size=8),
        birth_date=st.dates(date(1930, 1, 1), date(2026, 1, 1)),
        special_groups=st.lists(
            st.sampled_from(["disabled", "serious_illness", "elderly_alone"]), max_size=2
        ).map(tuple),
        labor_capacity=st.sampled_from(["full", "partial", "none"]),
        schooling=st.sampled_from([None, "primary", "out_of_school"]),
        medical_insurance=st.booleans(),
    ),
    min_size=1,
    max_size=6,
)
guarantees = st.dictionaries(
    st.sampled_from(["food", "housing", "drinking_water", "basic_medical"]),
    st.sampled_from(["ok", "possible_issue", "prominent_issue"]),
    max_size=3,
)
policies = st.builds(
    Policy,
    rigid_share=st.floats(0.1, 2.0),
    income_drop_share=st.floats(0.05, 0.9),
    rigid_amount=st.one_of(st.none(), st.floats(1_000, 100_000)),
)


@st.composite
def households(draw: st.DrawFn) -> Features:
    people = tuple(draw(members))
    total = draw(money)
    previous = draw(st.one_of(st.none(), money))
    incomes = Income(2025, total, total / len(people))
    return Features(
        household_id="h",
        region_code="441881101001",
        as_of=AS_OF,
        members=people,
        income=incomes,
        previous_income=None
        if previous is None
        else Income(2024, previous, previous / len(people)),
        guarantees=draw(guarantees),
        medical=Spending(draw(money), 1, ("medical:1",)),
        disaster=Spending(draw(money), 1, ("disaster:1",)),
        school=Spending(draw(money), 1, ("education:1",)),
    )


def rank(f: Features, policy: Policy) -> int:
    return LEVELS.index(assess(f, policy).level)


@settings(max_examples=300, deadline=None)
@given(households(), money, policies)
def test_more_out_of_pocket_never_lowers_the_level_or_score(
    f: Features, extra: float, policy: Policy
) -> None:
    more = replace(f, medical=replace(f.medical, amount=f.medical.amount + extra))
    assert rank(more, policy) >= rank(f, policy)
    assert assess(more, policy).score >= assess(f, policy).score


@settings(max_examples=300, deadline=None)
@given(households(), money, policies)
def test_higher_income_never_raises_the_level(f: Features, extra: float, policy: Policy) -> None:
    assert f.income is not None
    total = f.income.total + extra
    richer = replace(f, income=Income(f.income.year, total, total / f.size))
    assert rank(richer, policy) <= rank(f, policy)
    assert assess(richer, policy).score <= assess(f, policy).score


@settings(max_examples=200, deadline=None)
@given(households(), policies)
def test_the_same_features_and_policy_give_the_same_assessment(f: Features, policy: Policy) -> None:
    assert assess(f, policy) == assess(replace(f), Policy.model_validate(policy.model_dump()))


@settings(max_examples=200, deadline=None)
@given(households())
def test_score_is_between_0_and_100_and_every_factor_has_evidence(f: Features) -> None:
    a = assess(f, DEFAULT_POLICY)
    assert 0 <= a.score <= 100
    assert all(factor.evidence for factor in a.factors)
    if any(factor.floor == "at_risk" for factor in a.factors):
        assert a.level == "at_risk"
