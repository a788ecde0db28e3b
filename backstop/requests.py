"""The one base of every request body (`RequestModel`) and the field types that give each
value a bound that fits its meaning. Hostile input gets a 422 naming the field, never a
500, a dead letter or an event Kafka refuses:

- numbers are finite (no NaN, no Infinity from `1e400`), amounts non-negative and below
  `MAX_AMOUNT`;
- no NUL, no control character other than tab and line breaks, no lone surrogate, in any
  string of the body, however deeply nested (also in free-form JSON such as a policy);
- dates lie within `EARLIEST` .. today + `HORIZON_YEARS`; a date of something that
  happened (`Occurred`) not after today;
- ID numbers and codes have their full-width digits and letters folded to ASCII
  (`backstop.idnumber.fold_fullwidth`), other non-ASCII digits are refused;
- every string has a length bound (`MAX_TEXT` unless the field says less), every list
  one of its own (`Field(max_length=...)` on the field).
"""

from __future__ import annotations

import calendar
import math
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from backstop.errors import invalid
from backstop.idnumber import fold_fullwidth

# No act this system records predates 2000 (脱贫攻坚 began 2013; the registers 2014).
EARLIEST = date(2000, 1, 1)
# Nothing is planned further ahead than this (deadlines, plan ends, notices).
HORIZON_YEARS = 10
# 10亿元: more than any household's income, grant or a county fund's deposit.
MAX_AMOUNT = 1_000_000_000
# The longest free text a request may carry (notes, findings, reasons).
MAX_TEXT = 4000

# Characters no request string may hold: NUL and the other C0 controls but tab and line
# breaks, DEL, and lone surrogates (PostgreSQL cannot store them).
FORBIDDEN_CHARACTERS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")
PHONE_PATTERN = r"^[0-9+()\- ]+$"


_forbidden = FORBIDDEN_CHARACTERS.search
# Values with nothing inside to check (no text, no float, no date): most of a body's leaves.
_PLAIN = frozenset({bool, int, type(None)})
_NO_DATE = frozenset({str, bool, int, float, type(None)})


def _check_value(value: Any, depth: int = 0) -> None:
    """Raise ValueError if `value` (raw JSON) holds a control character or a non-finite
    number anywhere inside."""
    if isinstance(value, str):
        found = _forbidden(value)
        if found:
            raise ValueError(
                f"must not contain control characters (found U+{ord(found.group()):04X})"
            )
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("must be a finite number")
    elif isinstance(value, dict):
        if depth > 20:
            raise ValueError("is nested too deeply")
        for key, item in value.items():
            # Clean text and plain leaves inline (a call for each is most of the cost).
            if key.__class__ is not str or _forbidden(key):
                _check_value(key, depth + 1)
            if item.__class__ is str:
                if _forbidden(item):
                    _check_value(item, depth + 1)
            elif item.__class__ not in _PLAIN:
                _check_value(item, depth + 1)
    elif isinstance(value, list | tuple):
        if depth > 20:
            raise ValueError("is nested too deeply")
        for item in value:
            if item.__class__ is str:
                if _forbidden(item):
                    _check_value(item, depth + 1)
            elif item.__class__ not in _PLAIN:
                _check_value(item, depth + 1)


def _in_window(value: date | datetime) -> None:
    day = value.date() if isinstance(value, datetime) else value
    latest = _today() + timedelta(days=366 * HORIZON_YEARS)
    if not EARLIEST <= day <= latest:
        raise ValueError(f"must be a date between {EARLIEST} and {latest}")


def _dates_in_window(value: Any) -> None:
    if isinstance(value, date):  # datetime too
        _in_window(value)
    elif isinstance(value, list | tuple | set | frozenset):
        for item in value:
            if item.__class__ not in _NO_DATE:
                _dates_in_window(item)
    elif isinstance(value, dict):
        for item in value.values():
            if item.__class__ not in _NO_DATE:
                _dates_in_window(item)


def _today() -> date:
    # A day of slack: a client east of UTC may already be on tomorrow.
    return datetime.now(UTC).date() + timedelta(days=1)


class RequestModel(BaseModel):
    """Base of every request body of every service (see the module's docstring)."""

    model_config = ConfigDict(allow_inf_nan=False, str_max_length=MAX_TEXT)

    @field_validator("*", mode="before")
    @classmethod
    def _no_control_characters_or_infinities(cls, value: Any) -> Any:
        if value.__class__ is str:
            if _forbidden(value):
                _check_value(value)
        elif value.__class__ not in _PLAIN:
            _check_value(value)
        return value

    @field_validator("*", mode="after")
    @classmethod
    def _dates_within_window(cls, value: Any) -> Any:
        if value.__class__ not in _NO_DATE:
            _dates_in_window(value)
        return value


# --- field types ------------------------------------------------------------------------


def _not_in_future(value: date) -> date:
    if value > _today():
        raise ValueError("must not be in the future")
    return value


def fold(value: Any) -> Any:
    """A BeforeValidator for ID numbers and codes: full-width digits and letters → ASCII."""
    return fold_fullwidth(value) if isinstance(value, str) else value


# A yuan amount: finite, non-negative, at most MAX_AMOUNT.
Amount = Annotated[float, Field(ge=0, le=MAX_AMOUNT, allow_inf_nan=False)]
# The same as an exact decimal of fen (money that is booked: funds, grants, measures).
Money = Annotated[Decimal, Field(ge=0, le=MAX_AMOUNT, max_digits=14, decimal_places=2)]
# The day something happened (a visit, a review, a deposit): not after today.
Occurred = Annotated[date, AfterValidator(_not_in_future)]
# A resident ID number as sent (validated by backstop.idnumber where it is used).
IdNumberText = Annotated[str, BeforeValidator(fold), Field(min_length=1, max_length=40)]
# A region code: 6 (county) to 12 (village) ASCII digits.
RegionCode = Annotated[str, BeforeValidator(fold), Field(pattern=r"^[0-9]{6,12}$")]
# A phone number: digits, "+", "-", spaces and parentheses (0762-1234567, 13800001111).
Phone = Annotated[
    str, BeforeValidator(fold), Field(min_length=5, max_length=20, pattern=PHONE_PATTERN)
]
# A person's or a unit's name; a person acting (verified_by, reviewed_by …).
Name = Annotated[str, Field(min_length=1, max_length=100)]


# --- periods ----------------------------------------------------------------------------

_PERIOD = re.compile(r"^([0-9]{4})-(0[1-9]|1[0-2])$")


@dataclass(frozen=True, order=True)
class Period:
    """A reporting month, written "2026-11"; between 2000-01 and 2100-12. The one parser
    of period strings, in bodies and query strings alike."""

    year: int
    month: int

    @classmethod
    def parse(cls, text: str) -> Period:
        m = _PERIOD.match(fold_fullwidth(text).strip()) if isinstance(text, str) else None
        if m is None:
            raise ValueError("must be a month written YYYY-MM, e.g. 2026-11")
        year = int(m.group(1))
        if not EARLIEST.year <= year <= 2100:
            raise ValueError(f"must be a month between {EARLIEST.year}-01 and 2100-12")
        return cls(year, int(m.group(2)))

    @classmethod
    def of(cls, day: date) -> Period:
        return cls(day.year, day.month)

    def __str__(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"

    @property
    def first_day(self) -> date:
        return date(self.year, self.month, 1)

    @property
    def last_day(self) -> date:
        return date(self.year, self.month, calendar.monthrange(self.year, self.month)[1])

    def shift(self, months: int) -> Period:
        index = self.year * 12 + (self.month - 1) + months
        return Period(index // 12, index % 12 + 1)


def period_param(text: str, loc: list[str | int]) -> Period:
    """A period given as a query or path parameter; a 422 naming `loc` if it is not one."""
    try:
        return Period.parse(text)
    except ValueError as exc:
        raise invalid(loc, str(exc)) from None


def _period_text(value: Any) -> str:
    return str(Period.parse(value))


# A period in a request model: validated and normalized ("２０２６-１１" → "2026-11").
PeriodText = Annotated[str, AfterValidator(_period_text)]
