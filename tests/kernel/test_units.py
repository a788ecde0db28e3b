"""Pure kernel rules: ID numbers, masking, settings, envelope."""

from __future__ import annotations

import logging
import uuid
from datetime import date, datetime

import orjson
import pytest
from cryptography.fernet import Fernet
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from backstop.contracts.kernel import ProbeEmitted
from backstop.events import CloudEvent, make_event, new_event_id, spec_of
from backstop.idnumber import (
    InvalidIdNumber,
    check_digit,
    id_hash,
    id_hasher,
    mask_id,
    parse_id_number,
    quick_check,
)
from backstop.logs import JsonFormatter, mask_id_numbers
from backstop.settings import Settings

VALID = "44188119900307" + "123"  # completed with its check digit below
VALID += check_digit(VALID)


def test_parse_valid_id_number_derives_birth_date_and_sex() -> None:
    parsed = parse_id_number(VALID.lower())
    assert parsed.birth_date == date(1990, 3, 7)
    assert parsed.sex == "male"  # 17th digit 3 is odd
    assert parsed.area_code == "441881"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (VALID[:17] + ("0" if VALID[17] != "0" else "1"), "check digit"),
        ("441881199002301234", "not a real date"),
        ("4418811990030712", "18 characters"),
        ("44188118990307123" + check_digit("44188118990307123"), "out of range"),
    ],
)
def test_invalid_id_numbers_say_why(raw: str, reason: str) -> None:
    with pytest.raises(InvalidIdNumber, match=reason):
        parse_id_number(raw)


def test_masking_keeps_area_code_and_last_four() -> None:
    assert mask_id(VALID) == f"441881********{VALID[14:]}"
    text = f"record for {VALID} rejected; other 1234567 kept"
    assert (
        mask_id_numbers(text)
        == f"record for 441881********{VALID[14:]} rejected; other 1234567 kept"
    )


def test_logs_mask_mobile_numbers_too() -> None:
    line = '"GET /v1/reminders?recipient=contact%3A13800138000 HTTP/1.1" 200'
    assert (
        mask_id_numbers(line) == '"GET /v1/reminders?recipient=contact%3A138****8000 HTTP/1.1" 200'
    )


def test_json_logs_never_show_an_id_number() -> None:
    record = logging.LogRecord("t", logging.INFO, __file__, 1, "matched %s", (VALID,), None)
    line = JsonFormatter("test").format(record)
    assert VALID not in line and "441881********" in line


def test_id_hash_is_keyed_and_normalized() -> None:
    assert id_hash(VALID, "k1") == id_hash(VALID.lower() + " ", "k1")
    assert id_hash(VALID, "k1") != id_hash(VALID, "k2")
    assert VALID not in id_hash(VALID, "k1")


def test_production_refuses_default_or_short_secrets() -> None:
    with pytest.raises(ValidationError, match="BACKSTOP_JWT_SECRET"):
        Settings(BACKSTOP_ENV="production")
    with pytest.raises(ValidationError, match="BACKSTOP_PII_KEY"):
        Settings(BACKSTOP_ENV="production", BACKSTOP_JWT_SECRET="x" * 40)
    with pytest.raises(ValidationError, match="BACKSTOP_SECRETS_KEY"):
        Settings(BACKSTOP_ENV="production", BACKSTOP_JWT_SECRET="x" * 40, BACKSTOP_PII_KEY="y" * 40)
    ok = Settings(
        BACKSTOP_ENV="production",
        BACKSTOP_JWT_SECRET="x" * 40,
        BACKSTOP_PII_KEY="y" * 40,
        BACKSTOP_SECRETS_KEY=Fernet.generate_key().decode(),
    )
    assert ok.environment == "production"


def test_envelope_round_trip_and_registry() -> None:
    event = make_event(
        "risk", ProbeEmitted(household_id="h1", seq=1), subject="h1", correlation_id="c1"
    )
    back = CloudEvent.from_bytes(event.to_bytes())
    assert back.source == "/backstop/risk" and back.type == "backstop.kernel.probe.emitted.v1"
    assert back.specversion == "1.0" and back.correlationid == "c1" and back.subject == "h1"
    assert back.payload() == ProbeEmitted(household_id="h1", seq=1)
    assert spec_of(back.type).topic == "kernel.probes"


# JSON values an event's data may hold (what model_dump(mode="json") gives).
_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


@given(st.dictionaries(st.text(), _JSON, max_size=6), st.none() | st.text(), st.datetimes())
@settings(max_examples=400, deadline=None)
def test_envelope_bytes_are_what_orjson_writes(
    data: dict[str, object], subject: str | None, time: datetime
) -> None:
    """to_bytes serializes in one pass; the bytes stay those of orjson over the JSON dump
    (what the outbox has always stored: floats, escapes, dropped nulls and all)."""
    event = CloudEvent(source="/backstop/x", type="t", subject=subject, data=data, time=time)
    assert event.to_bytes() == orjson.dumps(event.model_dump(mode="json", exclude_none=True))


def test_event_ids_are_random_version_4_uuids() -> None:
    ids = [new_event_id() for _ in range(1000)]
    assert len(set(ids)) == 1000
    for text in ids:
        parsed = uuid.UUID(text)
        assert str(parsed) == text and parsed.version == 4 and parsed.variant == uuid.RFC_4122


def test_server_access_logs_are_masked_too() -> None:
    import io

    from backstop.logs import configure_logging

    configure_logging("test", "INFO", json=True)
    stream = io.StringIO()
    logging.getLogger().handlers[0].setStream(stream)  # type: ignore[attr-defined]
    access = logging.getLogger("uvicorn.access")
    access.setLevel(logging.INFO)  # another test's uvicorn may have set it to WARNING
    access.info('%s - "%s %s HTTP/1.1" %d', "127.0.0.1", "GET", f"/v1/persons/{VALID}", 200)
    assert VALID not in stream.getvalue() and "441881********" in stream.getvalue()


TODAY = date(2026, 11, 28)


def _kernel(text: str) -> tuple[str, date] | None:
    try:
        parsed = parse_id_number(text, today=TODAY)
    except InvalidIdNumber:
        return None
    return parsed.value, parsed.birth_date


@given(st.text(alphabet="0123456789Xx ", max_size=20))
@settings(max_examples=400, deadline=None)
def test_quick_check_agrees_with_parse_id_number_on_any_text(text: str) -> None:
    assert quick_check(text, TODAY) == _kernel(text)


@given(
    st.dates(min_value=date(1890, 1, 1), max_value=date(2030, 12, 31)),
    st.integers(0, 999),
    st.sampled_from("0123456789Xx"),
)
@settings(max_examples=1000, deadline=None)
def test_quick_check_agrees_with_parse_id_number_on_near_numbers(
    born: date, seq: int, check: str
) -> None:
    text = f"441881{born:%Y%m%d}{seq:03d}{check}"
    assert quick_check(text, TODAY) == _kernel(text)


def test_check_digit_follows_gb_11643() -> None:
    # Weighted digit sum (weights 7 9 10 5 8 4 2 1 6 3 7 9 10 5 8 4 2) mod 11 -> "10X98765432".
    weights = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    assert check_digit("11010519491231002") == "X"
    for first17 in ("44188119800517123", "44182219600229008", "99999999999999999"):
        expected = "10X98765432"[
            sum(int(c) * w for c, w in zip(first17, weights, strict=True)) % 11
        ]
        assert check_digit(first17) == expected


def test_the_id_hasher_is_id_hash() -> None:
    long_key = "k" * 100  # longer than SHA-256's block: HMAC hashes it first
    for value in ("44188119800517123X", "441822196002290081", "110101200001010000"):
        for key in ("dev key", long_key):
            assert id_hasher(key)(value) == id_hash(value, key)
