"""Pure rules of the data exchange (数据交换机制): the four department feeds, how their
columns are named, how a record is validated and normalized, and the delivery calendar.

No FastAPI, SQL or Kafka here: functions take facts and return decisions.
"""

from __future__ import annotations

import calendar
import hashlib
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import orjson

from backstop.idnumber import IdHasher, InvalidIdNumber, id_hasher, parse_id_number, quick_check
from backstop.requests import Period
from backstop.sheets import CellProblem, excel_amount, excel_date, excel_id_text
from services.datasync.columns import CODES_ZH, FIELD_NAMES_ZH

SERVICE = "datasync"
SOURCES = ("medical", "disaster", "civil_affairs", "education")

# The department that pushes each feed.
DEPARTMENTS: dict[str, str] = {
    "medical": "医保局",
    "disaster": "应急管理局",
    "civil_affairs": "民政局",
    "education": "教育局",
}

RECORD_ID_MAX = 64


class FieldError(ValueError):
    """One field of one record is wrong; `field` names it for the department, `code`
    says what is wrong in English for programs, `message_zh` in Chinese for the data
    officer (from the field's and the code's Chinese names unless given)."""

    def __init__(
        self, field: str, message: str, code: str = "invalid", message_zh: str | None = None
    ) -> None:
        super().__init__(message)
        self.field = field
        self.message = message
        self.code = code
        self.message_zh = (
            message_zh or f"{FIELD_NAMES_ZH.get(field, field)}：{CODES_ZH.get(code, '不正确')}"
        )


# --- periods (the kernel's Period: backstop.requests) ----------------------------------


def check_period(text: str, *, today: date) -> Period:
    """A period may be the current month or any month before it, never a future one."""
    period = Period.parse(text)
    if period > Period.of(today):
        raise ValueError(f"period {period} is in the future")
    return period


# --- delivery calendar ---------------------------------------------------------------


@dataclass(frozen=True)
class CalendarRules:
    """When each department's data is due (seed, 三(三)3 建立数据交换机制).

    "每月5日前，市医保局、应急管理局和民政局…反馈": the monthly feeds report the month
    just ended, so period M is due on day `monthly_due_day` of month M+1; a batch received
    on that day (Asia/Shanghai) is on time, from the next day it is late.
    "3月底和10月底前，市教育局…反馈": education reports the spring and autumn terms in
    periods YYYY-03 and YYYY-10, due the last day of that same month. Other education
    periods are accepted but not scheduled.
    """

    monthly_due_day: int = 5
    education_months: tuple[int, ...] = (3, 10)

    def due_on(self, source: str, period: Period) -> date | None:
        if source == "education":
            return period.last_day if period.month in self.education_months else None
        following = period.shift(1)
        day = min(self.monthly_due_day, calendar.monthrange(following.year, following.month)[1])
        return date(following.year, following.month, day)

    def expected_periods(self, source: str, *, today: date, lookback: int) -> list[Period]:
        """The scheduled periods of `source` among the last `lookback` months whose due
        date has passed by `today` (the ones that can be late)."""
        current = Period.of(today)
        found = []
        for back in range(lookback, -1, -1):
            period = current.shift(-back)
            due = self.due_on(source, period)
            if due is not None and due < today:
                found.append(period)
        return found


def on_time(due: date | None, received_on: date) -> bool:
    """A batch is on time when it arrives on or before its due date (local day)."""
    return due is None or received_on <= due


def delivery_status(*, due: date | None, delivered: bool, today: date) -> str:
    """`delivered`, `due` (not yet, still in time), `late` or `not_scheduled`."""
    if delivered:
        return "delivered"
    if due is None:
        return "not_scheduled"
    return "late" if today > due else "due"


def missing_columns(source: str, mapped: set[str], *, derive: bool = False) -> list[str]:
    """Required fields a file's header row does not provide, nor lets derive (a file's
    record id from the content; 基本医保支付 from 统筹基金支付 (+ 大病保险支付); 个人自付
    from the total less what the funds paid)."""

    def derivable(name: str) -> bool:
        if not derive:
            return False
        if name == "record_id":
            return True
        if source != "medical":
            return False
        insurance = "insurance_paid" in mapped or "pooled_fund_paid" in mapped
        if name == "insurance_paid":
            return insurance
        return name == "out_of_pocket" and insurance and {"total_cost", "assistance_paid"} <= mapped

    return [f for f in REQUIRED[source] if f not in mapped and not derivable(f)]


# --- values --------------------------------------------------------------------------


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def amount(value: Any, name: str) -> float:
    """A non-negative amount in yuan, rounded to the fen. Accepts "1,234.50"."""
    kind = type(value)
    if kind is str:
        try:
            number = float(value)
        except ValueError:
            pass
        else:
            if 0 <= number < math.inf:
                # round() goes through decimal digits; a whole number, or one written
                # with at most two decimals (below 1e13, where a double is exact to well
                # under half a fen), is at the fen already.
                dot = value.find(".")
                if number.is_integer() or (dot >= 0 and dot >= len(value) - 3 and number < 1e13):
                    return number
                return round(number, 2)
    elif (kind is float or kind is int) and 0 <= value < math.inf:
        number = float(value)
        return number if number.is_integer() else round(number, 2)
    if _blank(value):
        raise FieldError(name, "is required", "required")
    try:
        number = excel_amount(value)  # "1,234.56", "¥1234", full-width digits
    except CellProblem as exc:
        raise FieldError(name, exc.message, exc.code) from None
    if number < 0:
        raise FieldError(name, "must not be negative", "negative")
    return round(number, 2)


EARLIEST = date(2000, 1, 1)


def a_date(value: Any, name: str) -> date:
    if type(value) is str and len(value) == 10 and value[4] == "-" and value[7] == "-":
        try:
            parsed = date.fromisoformat(value)
        except ValueError:
            pass
        else:
            if parsed >= EARLIEST:
                return parsed
    if _blank(value):
        raise FieldError(name, "is required", "required")
    try:
        # date cells, Excel serials, 2026/11/3, 2026年11月3日, 20261103
        parsed = excel_date(value)
    except CellProblem as exc:
        raise FieldError(name, exc.message, exc.code) from None
    if parsed < EARLIEST:
        raise FieldError(
            name, f"{parsed.isoformat()} is before {EARLIEST.isoformat()}", "date_too_early"
        )
    return parsed


_TRUE = {"true", "1", "y", "yes", "是", "有", "t"}
_FALSE = {"false", "0", "n", "no", "否", "无", "f"}


def boolean(
    value: Any,
    name: str,
    *,
    extra_true: frozenset[str] = frozenset(),
    extra_false: frozenset[str] = frozenset(),
) -> bool:
    if _blank(value):
        raise FieldError(name, "is required", "required")
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float) and value in (0, 1):
        return bool(value)
    text = str(value).strip().lower()
    if text in _TRUE or text in extra_true:
        return True
    if text in _FALSE or text in extra_false:
        return False
    raise FieldError(name, f"must be true or false (是/否), got {str(value)[:40]!r}", "not_yes_no")


def enum(value: Any, name: str, codes: Mapping[str, str]) -> str:
    """A known code, given as the code itself or one of its Chinese names."""
    if _blank(value):
        raise FieldError(name, "is required", "required")
    text = str(value).strip()
    code = codes.get(text) or codes.get(text.lower())
    if code is None:
        known = ", ".join(sorted(set(codes.values())))
        raise FieldError(name, f"unknown value {text[:40]!r}; known: {known}", "unknown_value")
    return code


def _codes(table: dict[str, tuple[str, ...]]) -> dict[str, str]:
    out = {}
    for code, names in table.items():
        out[code] = code
        for n in names:
            out[n] = code
    return out


DISASTER_TYPES = _codes(
    {
        "flood": ("洪涝", "洪水", "暴雨", "洪涝灾害"),
        "drought": ("干旱", "旱灾"),
        "typhoon": ("台风",),
        "earthquake": ("地震",),
        "geological": ("地质灾害", "滑坡", "泥石流", "崩塌"),
        "hail": ("冰雹", "风雹"),
        "freeze": ("低温冷冻", "雪灾", "冰冻", "低温冷冻和雪灾"),
        "fire": ("火灾", "森林火灾"),
        "epidemic": ("疫情",),
        "other": ("其他", "其它"),
    }
)
ASSISTANCE_KINDS = _codes(
    {
        "dibao": ("低保", "最低生活保障", "农村低保"),
        "tekun": ("特困", "特困供养", "特困人员供养"),
        "temporary_assistance": ("临时救助",),
        "disability_subsidy": ("残疾人补贴", "残疾人两项补贴", "残补"),
    }
)
ASSISTANCE_STATUSES = _codes(
    {
        "granted": ("发放", "在保", "享受", "正常", "新增"),
        "terminated": ("停发", "终止", "退出", "停保", "取消"),
    }
)
SCHOOL_STAGES = _codes(
    {
        "preschool": ("学前", "学前教育", "幼儿园"),
        "primary": ("小学",),
        "junior": ("初中",),
        "senior": ("高中", "普通高中"),
        "secondary_vocational": ("中职", "中等职业教育", "技工学校"),
        "higher_vocational": ("高职", "大专", "高职高专"),
        "undergraduate": ("本科", "大学本科"),
        "postgraduate": ("研究生", "硕士", "博士"),
    }
)
_ENROLLED_TRUE = frozenset({"在读", "在校", "就读"})
_ENROLLED_FALSE = frozenset({"辍学", "休学", "失学", "退学", "毕业"})

_TERM_CODE = re.compile(r"^(\d{4})[-_ ]?(spring|autumn|fall)$", re.I)
_TERM_CN = re.compile(r"^(\d{4})年?(春|秋)(季|季学期|学期)?$")
_TERM_YEAR = re.compile(r"^(\d{4})[-—~至](\d{4})学年?第([一二12])学期$")


def term(value: Any, name: str = "term") -> tuple[str, date]:
    """A school term as `"2026-spring"` / `"2026-autumn"` and the day it starts.

    Accepts the code, "2026春"/"2026年秋季学期" and "2026-2027学年第一学期" (the first term
    of a school year is the autumn of its first year)."""
    if _blank(value):
        raise FieldError(name, "is required", "required")
    text = str(value).strip().replace(" ", "")
    m = _TERM_CODE.match(text)
    if m:
        year, season = int(m.group(1)), "spring" if m.group(2).lower() == "spring" else "autumn"
    elif m := _TERM_CN.match(text):
        year, season = int(m.group(1)), "spring" if m.group(2) == "春" else "autumn"
    elif m := _TERM_YEAR.match(text):
        first = m.group(3) in ("一", "1")
        year, season = (int(m.group(1)), "autumn") if first else (int(m.group(2)), "spring")
    else:
        raise FieldError(
            name,
            f"must be a term like 2026-spring or 2026-autumn, got {text[:40]!r}",
            "invalid_term",
        )
    starts = date(year, 3, 1) if season == "spring" else date(year, 9, 1)
    return f"{year}-{season}", starts


# --- ID numbers ----------------------------------------------------------------------


def normalize_id_number(raw: str, today: date) -> str:
    """The normalized ID number if it is valid (GB 11643 check digit, real birth date not
    in the future); raises InvalidIdNumber with the kernel's reason otherwise."""
    facts = quick_check(raw, today)
    if facts is None:
        return parse_id_number(raw, today=today).value  # raises with the reason
    return facts[0]


# --- records -------------------------------------------------------------------------

REQUIRED: dict[str, tuple[str, ...]] = {
    "medical": (
        "record_id",
        "id_number",
        "settled_on",
        "total_cost",
        "insurance_paid",
        "assistance_paid",
        "out_of_pocket",
    ),
    "disaster": (
        "record_id",
        "id_number",
        "occurred_on",
        "disaster_type",
        "loss_amount",
        "housing_damaged",
    ),
    "civil_affairs": ("record_id", "id_number", "kind", "status", "amount", "start_on"),
    "education": (
        "record_id",
        "id_number",
        "stage",
        "term",
        "fees",
        "aid_received",
        "out_of_pocket",
        "enrolled",
    ),
}
_TOLERANCE = 0.01  # one fen of rounding


MEMO_SIZE = 16384  # entries per memo below: bounded, so a 200k-row file streams


@dataclass(frozen=True)
class Context:
    """What every record of one batch is checked against, and what the batch's records
    have in common: a person with several records is checked and hashed once, and a
    settlement day written the same way is parsed once (both memos are bounded)."""

    source: str
    period: Period
    today: date
    pii_key: str
    # A file's batch: what it has no column for is derived (record_id from the content,
    # insurance_paid from 统筹 + 大病, out_of_pocket from the total less the funds).
    derive: bool = False
    # field → its column's header as written in the file (for row errors)
    columns: Mapping[str, str] = field(default_factory=dict)
    period_end: date = field(init=False)
    hash_id: IdHasher = field(init=False, repr=False, compare=False)
    # raw ID number text → (normalized number, id_hash), valid numbers only
    people: dict[str, tuple[str, str]] = field(
        init=False, repr=False, compare=False, default_factory=dict
    )
    # raw date text → ISO date, for days that passed the period check
    days: dict[str, str] = field(init=False, repr=False, compare=False, default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "period_end", min(self.period.last_day, self.today))
        object.__setattr__(self, "hash_id", id_hasher(self.pii_key))


@dataclass(slots=True)
class ValidRecord:
    """A record that passed every check, ready to store and to emit.

    `data` is the event form (`FeedRecordData` in backstop.contracts.datasync): it
    carries `id_hash`, never the ID number. `content_hash` tells a resent record from a
    changed one whatever the formatting ("1,000.00" and 1000 are the same amount)."""

    record_id: str
    id_number: str
    id_hash: str
    name: str | None
    data: dict[str, Any]
    data_json: bytes
    content_hash: str


def _not_after_period(day: date, name: str, ctx: Context) -> date:
    if day > ctx.period_end:
        if day > ctx.today:
            raise FieldError(name, f"{day.isoformat()} is in the future", "date_in_future")
        raise FieldError(
            name, f"{day.isoformat()} is after the period {ctx.period}", "date_after_period"
        )
    return day


def _day_in_period(value: Any, name: str, ctx: Context) -> str:
    """`a_date` not after the period, as ISO text; a day written the same way as an
    earlier one of the batch is not parsed again."""
    if type(value) is str:
        known = ctx.days.get(value)
        if known is not None:
            return known
    day = _not_after_period(a_date(value, name), name, ctx).isoformat()
    if type(value) is str:
        if len(ctx.days) >= MEMO_SIZE:
            ctx.days.clear()
        ctx.days[value] = day
    return day


def _part(row: Mapping[str, Any], name: str) -> float:
    """A settlement's part payment: a blank cell in its column is nothing paid."""
    value = row.get(name)
    return 0.0 if _blank(value) else amount(value, name)


def _given_or_derived(
    row: Mapping[str, Any],
    ctx: Context,
    name: str,
    parts: tuple[str, ...],
    derive: Callable[[], float],
) -> float:
    """`name` as given, or derived when the file has no column for it; when both are
    there they must agree (to the fen), else the record is rejected with both numbers."""
    derived_here = ctx.derive and any(p in row for p in parts)
    if derived_here and (name not in row or _blank(row.get(name))):
        return round(derive(), 2)
    given = amount(row.get(name), name)
    if derived_here:
        derived = round(derive(), 2)
        if abs(derived - given) > _TOLERANCE:
            shown = " + ".join(p for p in parts if p in row)
            raise FieldError(
                name,
                f"{name} is {given:.2f} but {shown} make {derived:.2f}",
                "amounts_disagree",
                f"{FIELD_NAMES_ZH[name]}为 {given:.2f}，但按"
                f"{'+'.join(FIELD_NAMES_ZH[p] for p in parts if p in row)}计算为 {derived:.2f}，两者不一致",
            )
    return given


def _medical(row: Mapping[str, Any], ctx: Context) -> dict[str, Any]:
    settled = _day_in_period(row.get("settled_on"), "settled_on", ctx)
    total = amount(row.get("total_cost"), "total_cost")
    # 基本医保支付 = 统筹基金支付 + 大病保险支付 when the file splits it
    insurance = _given_or_derived(
        row,
        ctx,
        "insurance_paid",
        ("pooled_fund_paid", "critical_illness_paid"),
        lambda: _part(row, "pooled_fund_paid") + _part(row, "critical_illness_paid"),
    )
    # 医疗救助支付; in a settlement file a blank fund cell is nothing paid
    assistance = (
        _part(row, "assistance_paid")
        if ctx.derive
        else amount(row.get("assistance_paid"), "assistance_paid")
    )
    if insurance + assistance > total + _TOLERANCE:
        raise FieldError(
            "insurance_paid",
            "insurance_paid + assistance_paid exceed total_cost",
            "amounts_exceed_total",
        )
    if not ctx.derive or "out_of_pocket" in row:
        pocket = amount(row.get("out_of_pocket"), "out_of_pocket")
    else:  # no 自付 column: what the funds did not pay
        pocket = round(total - insurance - assistance, 2)
    if pocket > total - insurance - assistance + _TOLERANCE:
        raise FieldError(
            "out_of_pocket",
            "out_of_pocket exceeds total_cost - insurance_paid - assistance_paid",
            "amounts_exceed_total",
        )
    return {
        "settled_on": settled,
        "total_cost": total,
        "insurance_paid": insurance,
        "assistance_paid": assistance,
        "out_of_pocket": pocket,
    }


def _disaster(row: Mapping[str, Any], ctx: Context) -> dict[str, Any]:
    occurred = _day_in_period(row.get("occurred_on"), "occurred_on", ctx)
    return {
        "occurred_on": occurred,
        "disaster_type": enum(row.get("disaster_type"), "disaster_type", DISASTER_TYPES),
        "loss_amount": amount(row.get("loss_amount"), "loss_amount"),
        "housing_damaged": boolean(row.get("housing_damaged"), "housing_damaged"),
    }


def _civil_affairs(row: Mapping[str, Any], ctx: Context) -> dict[str, Any]:
    kind = enum(row.get("kind"), "kind", ASSISTANCE_KINDS)
    status = enum(row.get("status"), "status", ASSISTANCE_STATUSES)
    granted = amount(row.get("amount"), "amount")
    start = _not_after_period(a_date(row.get("start_on"), "start_on"), "start_on", ctx)
    end = None if _blank(row.get("end_on")) else a_date(row.get("end_on"), "end_on")
    if end is not None and end < start:
        raise FieldError("end_on", "must not be before start_on", "end_before_start")
    if status == "terminated":
        if end is None:
            raise FieldError("end_on", "is required when status is terminated", "end_required")
        _not_after_period(end, "end_on", ctx)
    return {
        "kind": kind,
        "status": status,
        "amount": granted,
        "start_on": start.isoformat(),
        "end_on": end.isoformat() if end else None,
    }


def _education(row: Mapping[str, Any], ctx: Context) -> dict[str, Any]:
    stage = enum(row.get("stage"), "stage", SCHOOL_STAGES)
    term_code, starts = term(row.get("term"))
    if starts > ctx.period_end:
        raise FieldError(
            "term", f"{term_code} starts after the period {ctx.period}", "term_after_period"
        )
    fees = amount(row.get("fees"), "fees")
    aid = amount(row.get("aid_received"), "aid_received")
    pocket = amount(row.get("out_of_pocket"), "out_of_pocket")
    if pocket > fees - aid + _TOLERANCE:
        raise FieldError(
            "out_of_pocket", "out_of_pocket exceeds fees - aid_received", "amounts_exceed_total"
        )
    enrolled = boolean(
        row.get("enrolled"), "enrolled", extra_true=_ENROLLED_TRUE, extra_false=_ENROLLED_FALSE
    )
    return {
        "stage": stage,
        "term": term_code,
        "fees": fees,
        "aid_received": aid,
        "out_of_pocket": pocket,
        "enrolled": enrolled,
    }


_RULES: dict[str, Callable[[Mapping[str, Any], Context], dict[str, Any]]] = {
    "medical": _medical,
    "disaster": _disaster,
    "civil_affairs": _civil_affairs,
    "education": _education,
}


def record_id_of(row: Mapping[str, Any]) -> str | None:
    """The record id as the department wrote it (for error reports), if any."""
    value = row.get("record_id")
    if _blank(value) or isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer():  # spreadsheets turn 1001 into 1001.0
        value = int(value)
    return str(value).strip()[:RECORD_ID_MAX]


def _person(raw_id: Any, ctx: Context) -> tuple[str, str]:
    """The normalized ID number and its id_hash; remembered for the batch when valid.
    Text as Excel leaves it is accepted (`x`, spaces, a leading apostrophe); a number
    Excel rounded (`4.41881E+17`) is refused with how to export it as text."""
    if _blank(raw_id) or isinstance(raw_id, bool):
        raise FieldError("id_number", "is required", "required")
    facts = quick_check(raw_id, ctx.today) if type(raw_id) is str else None
    try:
        id_number = facts[0] if facts else normalize_id_number(excel_id_text(raw_id), ctx.today)
    except CellProblem as exc:
        raise FieldError("id_number", exc.message, exc.code, exc.message_zh) from None
    except InvalidIdNumber as exc:
        raise FieldError("id_number", str(exc), "invalid_id_number") from None
    person = (id_number, ctx.hash_id(id_number))
    if type(raw_id) is str:
        if len(ctx.people) >= MEMO_SIZE:
            ctx.people.clear()
        ctx.people[raw_id] = person
    return person


def validate_record(row: Mapping[str, Any], ctx: Context) -> ValidRecord:
    """Check one record (canonical field names) and return its stored and event forms.

    Raises FieldError naming the first wrong field."""
    value = row.get("record_id")
    record_id = value.strip() if type(value) is str else record_id_of(row)
    if not record_id and not (ctx.derive and "record_id" not in row):
        raise FieldError("record_id", "is required", "required")
    if len(record_id or "") > RECORD_ID_MAX:
        raise FieldError("record_id", f"must be at most {RECORD_ID_MAX} characters", "too_long")
    raw_id = row.get("id_number")
    person = ctx.people.get(raw_id) if type(raw_id) is str else None
    id_number, hashed = person or _person(raw_id, ctx)
    name_value = row.get("name")
    name = name_value.strip()[:100] if type(name_value) is str else None
    if not name:
        name = None if _blank(name_value) else str(name_value).strip()[:100]
    if name is None and ctx.source == "medical":
        raise FieldError("name", "is required", "required")
    fields = _RULES[ctx.source](row, ctx)
    if not record_id:
        record_id = derived_record_id(ctx.source, id_number, fields)
    data = {"source": ctx.source, "record_id": record_id, "id_hash": hashed, **fields}
    data_json = orjson.dumps(data)
    content = _CONTENT_HASH.copy()
    content.update(b"\x1f".join((data_json, id_number.encode(), (name or "").encode())))
    return ValidRecord(record_id, id_number, hashed, name, data, data_json, content.hexdigest())


_CONTENT_HASH = hashlib.blake2b(digest_size=16)  # copied: cheaper than a new one per record


# What identifies a record of a file without a record-id column: the same row sent again
# gets the same id (so the file is idempotent) and a new row a new one. Two rows alike in
# all of these are one record (a duplicate).
DERIVED_ID_FIELDS: dict[str, tuple[str, ...]] = {
    "medical": ("settled_on", "total_cost", "insurance_paid", "assistance_paid", "out_of_pocket"),
    "disaster": ("occurred_on", "disaster_type", "loss_amount"),
    "civil_affairs": ("kind", "status", "start_on", "amount"),
    "education": ("term", "stage", "fees", "aid_received"),
}
DERIVED_ID_PREFIX = "d-"


def derived_record_id(source: str, id_number: str, fields: Mapping[str, Any]) -> str:
    """`d-` and 24 hex digits of BLAKE2b over the source, the ID number and the record's
    normalised key fields (so `1,234.00` and 1234 give the same id)."""
    key = "\x1f".join([source, id_number, *(str(fields[f]) for f in DERIVED_ID_FIELDS[source])])
    return DERIVED_ID_PREFIX + hashlib.blake2b(key.encode(), digest_size=12).hexdigest()


def record_id_rule(source: str, column: str | None) -> str:
    """How the batch's record ids were made, for its summary."""
    if column is not None:
        return f"column {column}"
    fields = ", ".join(("id_number", *DERIVED_ID_FIELDS[source]))
    return f"derived: {DERIVED_ID_PREFIX} + BLAKE2b of source, {fields}"


def raw_fingerprint(row: Mapping[str, Any]) -> bytes:
    """A stable fingerprint of a record as received (for the batch content hash)."""
    return orjson.dumps({str(k): str(v) for k, v in row.items()}, option=orjson.OPT_SORT_KEYS)


# --- corrections (更正) and voids (作废) of records received before ------------------

CORRECTION = "correction"
VOID = "void"


def change_of(row: Mapping[str, Any]) -> str | None:
    """What a record asks for: `correction` (更正, it replaces the record received before
    under its record id) or `void` (作废, it removes it), each a yes/no field (true, 是,
    1); neither set is a new record. Raises FieldError when both are set."""
    if CORRECTION not in row and VOID not in row:  # the common case, kept cheap
        return None
    asked = [
        name
        for name in (CORRECTION, VOID)
        if not _blank(row.get(name)) and boolean(row.get(name), name)
    ]
    if len(asked) > 1:
        raise FieldError(
            VOID, "a record cannot be both a correction and a void", "correction_and_void"
        )
    return asked[0] if asked else None


def changed_record_id(row: Mapping[str, Any]) -> str:
    """The record id a correction or void names. It must be given: a derived id names
    a record's content, so it cannot name the record whose content is being changed."""
    record_id = record_id_of(row)
    if not record_id:
        raise FieldError("record_id", "is required to correct or void a record", "required")
    if len(str(row.get("record_id")).strip()) > RECORD_ID_MAX:
        raise FieldError("record_id", f"must be at most {RECORD_ID_MAX} characters", "too_long")
    return record_id


@dataclass(frozen=True, slots=True)
class StoredRecord:
    """What a correction or void is checked against: the record's current version."""

    revision: int
    voided: bool
    id_hash: str
    content_hash: str


def next_revision(
    change: str,
    stored: StoredRecord | None,
    *,
    record_id: str,
    id_hash: str | None = None,
    content_hash: str | None = None,
) -> int | None:
    """The revision a correction or void of `record_id` makes (the stored one + 1), or
    None when it changes nothing (the same correction, or a void of a voided record,
    sent again). Raises FieldError when it cannot apply: the record was never received,
    was voided, or the correction names another person."""
    if stored is None:
        raise FieldError(
            "record_id",
            f"record {record_id} was never received from this department;"
            f" a {change} needs the record it changes",
            "unknown_record",
        )
    if stored.voided:
        if change == VOID:
            return None
        raise FieldError(
            "record_id",
            f"record {record_id} was voided; send the record again under a new record id",
            "voided_record",
        )
    if change == CORRECTION:
        if id_hash != stored.id_hash:
            raise FieldError(
                "id_number",
                "a correction cannot change the person; void the record and send the"
                " right one under a new record id",
                "changed_person",
            )
        if content_hash == stored.content_hash:
            return None
    return stored.revision + 1
