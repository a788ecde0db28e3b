"""People not in the register (纳入建档立卡核查): the warning lines over a person's own
records, and flagging once until new evidence. Plain asserts, no fixtures."""

from __future__ import annotations

from datetime import date

from services.risk.domain import (
    DEFAULT_POLICY,
    FeedRecord,
    Policy,
    unflagged_evidence,
    unregistered_factors,
)

AS_OF = date(2026, 11, 30)


def medical(record_id: str, amount: float, on: date = date(2026, 11, 3)) -> FeedRecord:
    return FeedRecord("medical", record_id, on, amount, "h")


def test_below_the_line_flags_nothing() -> None:
    assert unregistered_factors([medical("a", 9999.0)], DEFAULT_POLICY, AS_OF) == []


def test_the_line_without_income_is_reached_by_the_sum_of_12_months() -> None:
    records = [medical("a", 6000.0), medical("b", 4000.0, date(2026, 1, 10))]
    (factor,) = unregistered_factors(records, DEFAULT_POLICY, AS_OF)
    assert factor.code == "illness"
    assert set(factor.sources) == {"medical:a", "medical:b"}
    assert "未登记家庭年收入" in factor.evidence and "10,000 元" in factor.evidence


def test_a_record_older_than_12_months_does_not_count() -> None:
    records = [medical("a", 6000.0), medical("old", 6000.0, date(2025, 11, 30))]
    assert unregistered_factors(records, DEFAULT_POLICY, AS_OF) == []


def test_the_county_line_follows_the_policy() -> None:
    policy = Policy(rigid_amount_without_income=3000.0)
    (factor,) = unregistered_factors([medical("a", 3000.0)], policy, AS_OF)
    assert factor.code == "illness"


def test_disaster_and_school_costs_are_their_own_factors() -> None:
    records = [
        FeedRecord("disaster", "d", date(2026, 10, 1), 12000.0, "h"),
        FeedRecord("education", "e", date(2026, 10, 1), 11000.0, "h"),
        FeedRecord("civil_affairs", "c", date(2026, 10, 1), 50000.0, "h", kind="dibao"),
    ]
    codes = [f.code for f in unregistered_factors(records, DEFAULT_POLICY, AS_OF)]
    assert codes == ["disaster", "education"]


def test_flagged_once_then_only_on_a_new_record() -> None:
    first = unregistered_factors([medical("a", 12000.0)], DEFAULT_POLICY, AS_OF)
    assert unflagged_evidence(first, []) == ["illness"]
    assert unflagged_evidence(first, ["medical:a"]) == []
    again = unregistered_factors(
        [medical("a", 12000.0), medical("b", 100.0)], DEFAULT_POLICY, AS_OF
    )
    assert unflagged_evidence(again, ["medical:a"]) == ["illness"]
