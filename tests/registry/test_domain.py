"""The register's rules, with plain asserts."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backstop.idnumber import normalize_phone, valid_phone
from services.registry import domain
from services.registry.seed import make_id_number

TODAY = date(2026, 11, 28)


def test_valid_id_number_of_the_county() -> None:
    parsed = domain.validate_id_number(
        make_id_number("441881", date(1980, 5, 17), 123), today=TODAY
    )
    assert parsed.area_code == "441881"
    assert parsed.sex == "male"
    assert parsed.birth_date == date(1980, 5, 17)


def test_bad_check_digit_is_refused() -> None:
    value = make_id_number("441881", date(1980, 5, 17), 124)
    wrong = value[:17] + ("0" if value[17] != "0" else "1")
    with pytest.raises(domain.RuleViolation) as exc:
        domain.validate_id_number(wrong, today=TODAY)
    assert exc.value.field == "id_number"
    assert "check digit" in exc.value.message


def test_unknown_area_code_is_refused() -> None:
    with pytest.raises(domain.RuleViolation, match="does not exist"):
        domain.validate_id_number(make_id_number("999999", date(1980, 1, 1), 1), today=TODAY)


def test_code_created_after_birth_is_accepted() -> None:
    # 英德市 (441881) dates from 1994; a person born in 1950 may hold a number issued there.
    assert domain.area_code_error("441881", 1950) is None
    domain.validate_id_number(make_id_number("441881", date(1950, 3, 1), 11), today=TODAY)


def test_code_abolished_before_birth_is_refused() -> None:
    # 英德县 (441822) was in use 1988–1994: nobody born in 2000 got a number there.
    assert domain.area_code_error("441822", 1990) is None
    assert domain.area_code_error("441822", 2000) is not None


def test_future_birth_date_is_refused() -> None:
    with pytest.raises(domain.RuleViolation, match="out of range"):
        domain.validate_id_number(make_id_number("441881", date(2027, 1, 1), 1), today=TODAY)


def test_exactly_one_head() -> None:
    domain.check_relations(["head", "spouse", "child"])
    with pytest.raises(domain.RuleViolation, match="none given"):
        domain.check_relations(["spouse", "child"])
    with pytest.raises(domain.RuleViolation, match="2 given"):
        domain.check_relations(["head", "head"])


def test_duplicates_in_one_household() -> None:
    assert domain.duplicate_ids(["a", "b", "a", "c", "b"]) == [2, 4]


def test_income_total_is_the_sum_of_its_parts() -> None:
    income = domain.make_income(
        year=2025, wage=10000, business=2000, transfer=1500, property=0, today=TODAY
    )
    assert income.total == 13500
    assert domain.per_capita(income.total, 3) == 4500


def test_negative_income_is_refused() -> None:
    with pytest.raises(domain.RuleViolation) as exc:
        domain.make_income(year=2025, total=-1, today=TODAY)
    assert exc.value.field == "total"
    with pytest.raises(domain.RuleViolation) as exc:
        domain.make_income(year=2025, wage=-5, today=TODAY)
    assert exc.value.field == "wage"


def test_income_of_a_future_year_is_refused() -> None:
    with pytest.raises(domain.RuleViolation):
        domain.make_income(year=2027, total=100, today=TODAY)


def test_compulsory_school_age() -> None:
    assert domain.compulsory_school_age(date(2015, 6, 1), TODAY)  # 11
    assert not domain.compulsory_school_age(date(2022, 6, 1), TODAY)  # 4
    assert not domain.compulsory_school_age(date(2008, 6, 1), TODAY)  # 18


def test_child_out_of_school_is_a_prominent_problem() -> None:
    child = (date(2014, 3, 1), "out_of_school")
    adult = (date(1980, 3, 1), None)
    assert domain.schooling_guarantee([adult, child], TODAY) == "prominent_issue"
    assert domain.schooling_guarantee([adult, (date(2014, 3, 1), "junior")], TODAY) == "ok"
    assert domain.schooling_guarantee([adult], TODAY) is None


def test_monitoring_starts_and_ends() -> None:
    state = domain.MonitoringState(status="none", type="alleviated")
    started = domain.start_monitoring(
        state, monitoring_type="unstable", decided_on=TODAY, case_id="c1"
    )
    assert started is not None
    assert (started.status, started.type, started.since) == ("monitored", "unstable", TODAY)
    # The same decision again changes nothing.
    assert (
        domain.start_monitoring(started, monitoring_type="unstable", decided_on=TODAY, case_id="c1")
        is None
    )
    ended = domain.eliminate_risk(started, method="assisted", decided_on=TODAY, case_id="c1")
    assert ended is not None
    assert (ended.status, ended.elimination_method, ended.type) == (
        "eliminated",
        "assisted",
        "unstable",
    )
    assert domain.eliminate_risk(ended, method="natural", decided_on=TODAY, case_id="c1") is None


def test_phone_numbers() -> None:
    assert valid_phone("13812345678")
    assert valid_phone("0763-2212345")
    assert valid_phone("+86 138 1234 5678") and valid_phone("１３８１２３４５６７８")
    assert not valid_phone("12345")
    assert not valid_phone("abc")
    assert normalize_phone("(0763) 221-2345") == "07632212345"
    assert normalize_phone("0086-13812345678") == "13812345678"


def _facts_or_reason(raw: str) -> tuple[str, date, str] | str:
    try:
        return domain.id_number_facts(raw, TODAY)
    except domain.RuleViolation as exc:
        assert exc.field == "id_number"
        return exc.message


def _kernel_or_reason(raw: str) -> tuple[str, date, str] | str:
    try:
        parsed = domain.validate_id_number(raw, today=TODAY)
    except domain.RuleViolation as exc:
        return exc.message
    return parsed.value, parsed.birth_date, parsed.sex


_VALID = [
    make_id_number("441881", date(1980, 5, 17), 123),
    make_id_number("441822", date(1960, 2, 29), 8),  # 英德县, before 1994
    make_id_number("441881", date(2026, 11, 28), 1),  # born today
]


@given(
    st.one_of(
        st.sampled_from(_VALID),
        st.text(alphabet="0123456789Xx ", min_size=16, max_size=20),
        st.builds(
            lambda v, i, c: v[:i] + c + v[i + 1 :],
            st.sampled_from(_VALID),
            st.integers(0, 17),
            st.sampled_from([*"0123456789Xx", "１", "٣", " ", "a"]),
        ),
        st.builds(
            lambda area, born, seq: make_id_number(area, born, seq),
            st.sampled_from(["441881", "441822", "999999", "110101", "000000"]),
            st.dates(date(1890, 1, 1), date(2030, 12, 31)),
            st.integers(0, 999),
        ),
    )
)
@settings(max_examples=600, deadline=None)
def test_fast_id_check_agrees_with_the_kernel(raw: str) -> None:
    assert _facts_or_reason(raw) == _kernel_or_reason(raw)
