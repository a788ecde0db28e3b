"""Pure rules: record validation, headers, periods and the delivery calendar."""

from __future__ import annotations

import math
from datetime import date, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backstop.idnumber import InvalidIdNumber, check_digit, id_hash, parse_id_number
from services.datasync.columns import column_map
from services.datasync.domain import (
    MEMO_SIZE,
    CalendarRules,
    Context,
    FieldError,
    Period,
    amount,
    check_period,
    delivery_status,
    missing_columns,
    normalize_id_number,
    on_time,
    term,
    validate_record,
)

KEY = "unit-test-pii-key"
TODAY = date(2026, 11, 20)


def idn(seq: int = 1) -> str:
    first17 = f"441881198005170{seq:02d}"
    return first17 + check_digit(first17)


def ctx(source: str, period: str = "2026-10") -> Context:
    return Context(source=source, period=Period.parse(period), today=TODAY, pii_key=KEY)


def med(**kw: Any) -> dict[str, Any]:
    row = {
        "record_id": "R1",
        "id_number": idn(),
        "name": "张三",
        "settled_on": "2026-10-08",
        "total_cost": "1000",
        "insurance_paid": "600",
        "assistance_paid": "100",
        "out_of_pocket": "300",
    }
    row.update(kw)
    return row


def error_of(row: dict[str, Any], context: Context) -> tuple[str, str]:
    with pytest.raises(FieldError) as info:
        validate_record(row, context)
    return info.value.field, info.value.message


def test_valid_medical_record_carries_id_hash_not_the_id_number() -> None:
    record = validate_record(med(), ctx("medical"))
    assert record.data == {
        "source": "medical",
        "record_id": "R1",
        "id_hash": id_hash(idn(), KEY),
        "settled_on": "2026-10-08",
        "total_cost": 1000.0,
        "insurance_paid": 600.0,
        "assistance_paid": 100.0,
        "out_of_pocket": 300.0,
    }
    assert idn() not in str(record.data)
    assert record.id_number == idn()


def test_medical_checks() -> None:
    c = ctx("medical")
    assert (
        error_of(med(id_number=idn()[:17] + ("0" if idn()[17] != "0" else "1")), c)[0]
        == "id_number"
    )
    assert error_of(med(id_number="441881199902300011"), c)[0] == "id_number"  # no 30 Feb
    assert error_of(med(settled_on="2026-11-02"), c) == (
        "settled_on",
        "2026-11-02 is after the period 2026-10",
    )
    assert error_of(med(settled_on="2026-13-01"), c)[0] == "settled_on"
    assert error_of(med(total_cost="-5"), c) == ("total_cost", "must not be negative")
    assert error_of(med(out_of_pocket="301"), c)[0] == "out_of_pocket"
    assert error_of(med(insurance_paid="950"), c)[0] == "insurance_paid"
    assert error_of(med(name=""), c) == ("name", "is required")
    assert error_of(med(record_id=" "), c) == ("record_id", "is required")
    assert error_of(med(total_cost="abc"), c)[0] == "total_cost"
    # before the period is fine (a late settlement), and one fen of rounding is tolerated
    assert validate_record(med(settled_on="2026/07/30", out_of_pocket="300.004"), c)
    assert validate_record(med(settled_on="2026年9月1日", total_cost="1,000.00"), c)


def test_content_hash_ignores_formatting_but_not_values() -> None:
    c = ctx("medical")
    a = validate_record(med(total_cost="1,000.00", settled_on="2026/10/08"), c)
    b = validate_record(med(total_cost=1000, settled_on="2026-10-08"), c)
    d = validate_record(med(total_cost=1001, out_of_pocket=301), c)
    assert a.content_hash == b.content_hash != d.content_hash


def test_disaster_civil_affairs_education() -> None:
    disaster = {
        "record_id": "D1",
        "id_number": idn(2),
        "occurred_on": "2026-10-01",
        "disaster_type": "台风",
        "loss_amount": 5000,
        "housing_damaged": "是",
    }
    assert validate_record(disaster, ctx("disaster")).data["disaster_type"] == "typhoon"
    assert error_of({**disaster, "disaster_type": "meteor"}, ctx("disaster"))[0] == "disaster_type"
    assert (
        error_of({**disaster, "housing_damaged": "maybe"}, ctx("disaster"))[0] == "housing_damaged"
    )

    civil = {
        "record_id": "C1",
        "id_number": idn(3),
        "kind": "低保",
        "status": "granted",
        "amount": "450",
        "start_on": "2026-01-01",
        "end_on": "2026-12-31",  # a grant may run past the period
    }
    data = validate_record(civil, ctx("civil_affairs")).data
    assert (data["kind"], data["end_on"]) == ("dibao", "2026-12-31")
    assert error_of({**civil, "kind": "pension"}, ctx("civil_affairs"))[0] == "kind"
    assert error_of({**civil, "end_on": "2025-12-31"}, ctx("civil_affairs"))[0] == "end_on"
    assert error_of({**civil, "status": "停发", "end_on": None}, ctx("civil_affairs")) == (
        "end_on",
        "is required when status is terminated",
    )

    school = {
        "record_id": "E1",
        "id_number": "44188120120301002" + check_digit("44188120120301002"),
        "stage": "初中",
        "term": "2026年秋季学期",
        "fees": 2000,
        "aid_received": 1500,
        "out_of_pocket": 500,
        "enrolled": "在读",
    }
    data = validate_record(school, ctx("education"))
    assert (data.data["stage"], data.data["term"], data.data["enrolled"]) == (
        "junior",
        "2026-autumn",
        True,
    )
    assert error_of({**school, "out_of_pocket": 600}, ctx("education"))[0] == "out_of_pocket"
    assert error_of({**school, "stage": "kindergarten"}, ctx("education"))[0] == "stage"
    assert error_of(school, ctx("education", "2026-03"))[0] == "term"  # autumn after March


def test_terms() -> None:
    assert term("2026-spring") == ("2026-spring", date(2026, 3, 1))
    assert term("2025-2026学年第二学期")[0] == "2026-spring"
    assert term("2026-2027学年第一学期")[0] == "2026-autumn"
    assert term("2026春")[0] == "2026-spring"
    with pytest.raises(FieldError):
        term("next year")


def test_headers_chinese_and_english() -> None:
    headers = [
        "结算单号",
        "证件号码",
        "姓名",
        "结算日期",
        "医疗总费用（元）",
        "统筹支付",
        "医疗救助",
        "个人自付",
        "备注",
    ]
    mapping = column_map("medical", headers)
    assert mapping[1] == "id_number" and mapping[4] == "total_cost" and 8 not in mapping
    assert missing_columns("medical", set(mapping.values())) == []
    english = column_map("medical", ["Record_ID", "ID Number", "settled_on"])
    assert set(english.values()) == {"record_id", "id_number", "settled_on"}
    assert missing_columns("medical", set(english.values()))[0] == "total_cost"


def test_periods() -> None:
    assert str(check_period("2026-11", today=TODAY)) == "2026-11"
    for bad in ("2026-12", "2026-1", "11-2026", "2026-00", ""):
        with pytest.raises(ValueError):
            check_period(bad, today=TODAY)
    assert Period.parse("2026-12").shift(1) == Period(2027, 1)
    assert Period.parse("2026-02").last_day == date(2026, 2, 28)


def test_calendar_from_the_seed() -> None:
    rules = CalendarRules()
    # 每月5日前: the month just ended is due on the 5th of the next month.
    assert rules.due_on("medical", Period(2026, 10)) == date(2026, 11, 5)
    assert rules.due_on("civil_affairs", Period(2026, 12)) == date(2027, 1, 5)
    # 3月底和10月底前: education's spring and autumn periods.
    assert rules.due_on("education", Period(2026, 3)) == date(2026, 3, 31)
    assert rules.due_on("education", Period(2026, 10)) == date(2026, 10, 31)
    assert rules.due_on("education", Period(2026, 6)) is None
    assert on_time(date(2026, 11, 5), date(2026, 11, 5))
    assert not on_time(date(2026, 11, 5), date(2026, 11, 6))
    assert (
        delivery_status(due=date(2026, 11, 5), delivered=False, today=date(2026, 11, 6)) == "late"
    )
    assert delivery_status(due=date(2026, 11, 5), delivered=False, today=date(2026, 11, 5)) == "due"
    assert delivery_status(due=None, delivered=False, today=TODAY) == "not_scheduled"
    expected = rules.expected_periods("medical", today=date(2026, 11, 6), lookback=2)
    assert [str(p) for p in expected] == ["2026-09", "2026-10"]
    expected = rules.expected_periods("education", today=date(2026, 11, 6), lookback=12)
    assert [str(p) for p in expected] == ["2026-03", "2026-10"]
    custom = CalendarRules(monthly_due_day=10, education_months=(6,))
    assert custom.due_on("disaster", Period(2026, 1)) == date(2026, 2, 10)
    assert custom.due_on("education", Period(2026, 6)) == date(2026, 6, 30)


@given(st.text(alphabet="0123456789Xx ", min_size=0, max_size=20))
@settings(max_examples=400, deadline=None)
def test_fast_id_check_agrees_with_the_kernel(text: str) -> None:
    try:
        expected: str | None = parse_id_number(text, today=TODAY).value
    except InvalidIdNumber:
        expected = None
    try:
        got: str | None = normalize_id_number(text, TODAY)
    except InvalidIdNumber:
        got = None
    assert got == expected


@given(
    st.one_of(
        st.decimals(min_value=0, max_value=10**15, places=2).map(str),
        st.decimals(min_value=0, max_value=10**15, places=1).map(str),
        st.decimals(min_value=0, max_value=10**15, places=3).map(str),
        st.floats(0, 1e17).map(repr),
        st.floats(0, 1e14).map(lambda f: f"{f:.2f}"),
        st.integers(0, 10**20).map(str),
        st.from_regex(r"\A ?[0-9_]{0,4}\.?[0-9eE_+\- ]{0,4}\Z"),
    )
)
@settings(max_examples=2000, deadline=None)
def test_amount_text_rounds_like_round(text: str) -> None:
    """amount() skips round() for text already at the fen: the result is round()'s."""
    try:
        number = float(text)
    except ValueError:
        return
    if 0 <= number < math.inf:
        assert repr(amount(text, "x")) == repr(round(number, 2))


@given(st.one_of(st.floats(0, 1e300), st.integers(0, 10**20)))
@settings(max_examples=500, deadline=None)
def test_amount_number_rounds_like_round(value: float) -> None:
    assert repr(amount(value, "x")) == repr(round(float(value), 2))


def test_the_batch_memos_never_hide_an_error() -> None:
    """A person or a day seen before in the batch is not checked again; a wrong one is."""
    c = ctx("medical")
    for _ in range(2):
        assert error_of(med(id_number="44188119800517001X"), c)[0] == "id_number"
        assert error_of(med(settled_on="2026-11-02"), c)[0] == "settled_on"
    assert validate_record(med(), c) == validate_record(med(), c)
    assert c.people and c.days
    # The memos belong to one batch: another period checks the day again.
    assert error_of(med(), ctx("medical", "2026-09"))[0] == "settled_on"
    for n in range(MEMO_SIZE + 10):  # more people than it keeps: it stays bounded
        first17 = f"441881{date(1950, 1, 1) + timedelta(days=n // 1000):%Y%m%d}{n % 1000:03d}"
        validate_record(med(id_number=first17 + check_digit(first17), record_id=f"R{n}"), c)
    assert 0 < len(c.people) <= MEMO_SIZE
