"""Bulk import of register exports: CSV or XLSX, one row per person, Chinese headers of the
usual 建档立卡 exports (户编号, 身份证号/证件号码, 姓名, 与户主关系, 行政区划代码 …) or
English ones. Rows are read as a stream and grouped into households by household number;
a household's rows are expected together, as the exports list them."""

from __future__ import annotations

import codecs
import csv
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from operator import itemgetter
from typing import IO, Any, cast, get_args

from pydantic import BaseModel, ValidationError

from backstop.contracts.policy import CONTACT_ROLES as CONTACT_ROLE_WORDS
from backstop.contracts.policy import LEGACY_CONTACT_ROLES
from backstop.requests import FORBIDDEN_CHARACTERS, MAX_AMOUNT, PHONE_PATTERN
from backstop.sheets import Limits, SheetProblem, check_xlsx
from services.registry.models import (
    AnnualIncome,
    ContactIn,
    ContactRole,
    HouseholdCreate,
    HouseholdType,
    LaborCapacity,
    MemberCreate,
    Relation,
    Schooling,
    SpecialGroup,
)

# Canonical column -> accepted headers (compared without spaces, case-insensitively).
HEADERS: dict[str, tuple[str, ...]] = {
    "household_number": ("household_number", "household_no", "户编号", "户号", "家庭编号"),
    "id_number": ("id_number", "身份证号", "身份证号码", "证件号码", "公民身份号码"),
    "name": ("name", "姓名"),
    "relation": ("relation", "与户主关系"),
    "region_code": ("region_code", "village_code", "行政区划代码", "村代码", "所属村代码"),
    "type": ("type", "household_type", "户类型", "户类别", "户属性"),
    "policy_enjoying": ("policy_enjoying", "是否享受政策", "享受政策"),
    "income_year": ("income_year", "year", "收入年度", "年度"),
    "income_total": ("annual_income", "income_total", "家庭纯收入", "家庭年纯收入", "年纯收入"),
    "wage": ("wage", "wage_income", "工资性收入"),
    "business": ("business", "business_income", "生产经营性收入", "经营性收入"),
    "transfer": ("transfer", "transfer_income", "转移性收入"),
    "property": ("property", "property_income", "财产性收入"),
    "special_groups": ("special_groups", "特殊群体", "特困群体"),
    "labor_capacity": ("labor_capacity", "劳动能力", "劳动技能"),
    "schooling": ("schooling", "在校生状况", "在校生情况", "就学情况"),
    "medical_insurance": (
        "medical_insurance",
        "是否参加基本医疗保险",
        "参加医保",
        "是否参加城乡居民基本医疗保险",
    ),
    "contact_role": ("contact_role", "联系人类型"),
    "contact_name": ("contact_name", "联系人", "联系人姓名", "帮扶责任人"),
    "contact_phone": ("contact_phone", "联系人电话", "联系电话"),
}
_LOOKUP = {h.replace(" ", "").lower(): canon for canon, hs in HEADERS.items() for h in hs}

RELATIONS = {
    "户主": "head",
    "本人": "head",
    "配偶": "spouse",
    "妻": "spouse",
    "夫": "spouse",
    "妻子": "spouse",
    "丈夫": "spouse",
    "子": "child",
    "女": "child",
    "之子": "child",
    "之女": "child",
    "儿子": "child",
    "女儿": "child",
    "独生子": "child",
    "独生女": "child",
    "长子": "child",
    "次子": "child",
    "长女": "child",
    "次女": "child",
    "父亲": "parent",
    "母亲": "parent",
    "父母": "parent",
    "公公": "parent",
    "婆婆": "parent",
    "岳父": "parent",
    "岳母": "parent",
}
TYPES = {
    "脱贫户": "alleviated",
    "已脱贫户": "alleviated",
    "脱贫不稳定户": "unstable",
    "边缘易致贫户": "marginal",
    "边缘户": "marginal",
    "突发严重困难户": "sudden_hardship",
    "一般农户": "ordinary",
    "一般户": "ordinary",
}
SPECIAL_GROUPS = {
    "重特大疾病": "major_illness",
    "大病": "major_illness",
    "失能": "disabled_without_carer",
    "失能人员": "disabled_without_carer",
    "困境儿童": "child_in_distress",
    "严重精神障碍": "severe_mental_disorder",
    "严重精神障碍患者": "severe_mental_disorder",
    "残疾": "disability",
    "残疾人": "disability",
}
LABOR = {
    "普通劳动力": "full",
    "技能劳动力": "full",
    "有劳动能力": "full",
    "全劳动力": "full",
    "弱劳动力或半劳动力": "partial",
    "弱劳动力": "partial",
    "半劳动力": "partial",
    "丧失劳动力": "none",
    "无劳动力": "none",
    "无劳动能力": "none",
}
SCHOOLING = {
    "学前教育": "preschool",
    "学前": "preschool",
    "小学": "primary",
    "初中": "junior",
    "高中": "senior",
    "中职": "vocational",
    "高职": "vocational",
    "大专": "college",
    "本科": "college",
    "失学": "out_of_school",
    "辍学": "out_of_school",
    "失学辍学": "out_of_school",
    "非在校生": "none",
}
# 联系人身份 as counties write it, to the seed's titles (三(三)2) and 帮扶责任人.
CONTACT_ROLES = {
    "帮扶单位": "assisting_unit",
    "镇党委政府负责人": "town_leader",
    "镇领导": "town_leader",
    "领导": "town_leader",
    "镇包村干部": "town_cadre",
    "包村干部": "town_cadre",
    "干部": "town_cadre",
    "驻村工作队员": "work_team",
    "驻村工作队": "work_team",
    "工作队": "work_team",
    "村包片干部": "village_cadre",
    "包片干部": "village_cadre",
    "帮扶责任人": "assistance_officer",
    **LEGACY_CONTACT_ROLES,
}
# The canonical values of each table, for English exports that use them directly.
_TYPE_VALUES = frozenset(TYPES.values())
_SPECIAL_GROUP_VALUES = frozenset(SPECIAL_GROUPS.values())
_LABOR_VALUES = frozenset(("full", "partial", "none"))
_SCHOOLING_VALUES = frozenset(SCHOOLING.values())
_CONTACT_ROLE_VALUES = frozenset(CONTACT_ROLE_WORDS)
_NO_GROUP = ("", "无", "none")
YES = {"是", "yes", "true", "1", "y", "t"}
NO = {"否", "no", "false", "0", "n", "f", ""}
_SPLIT = re.compile(r"[、,，;；|/]+")


class ImportFileError(Exception):
    """The file as a whole cannot be read (no header, missing required columns)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass
class RowError:
    row: int
    household_number: str | None
    field: str
    message: str


@dataclass
class HouseholdRows:
    """One household's draft, or the first error that kept it from being one. The draft
    is `body`: what `HouseholdCreate.model_validate(...).model_dump()` gives, without the
    models (see `checked_body`)."""

    household_number: str
    first_row: int
    body: dict[str, Any] | None = None
    error: RowError | None = None
    rows: int = 0

    @property
    def draft(self) -> HouseholdCreate | None:
        return None if self.body is None else HouseholdCreate.model_validate(self.body)


@dataclass
class _Group:
    number: str
    first_row: int
    rows: list[tuple[int, dict[str, str]]] = field(default_factory=list)


REQUIRED = ("household_number", "id_number", "name", "relation", "region_code")


def _canonical(header: list[Any]) -> list[str | None]:
    columns = [_LOOKUP.get(str(h or "").replace(" ", "").strip().lower()) for h in header]
    missing = [c for c in REQUIRED if c not in columns]
    if missing:
        raise ImportFileError(missing[0], f"missing column(s): {', '.join(missing)}")
    return columns


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _text_stream(binary: IO[bytes]) -> io.TextIOWrapper:
    """UTF-8 (with or without BOM); GB18030 when the first block is not UTF-8."""
    head = binary.read(65536)
    binary.seek(0)
    try:
        codecs.getincrementaldecoder("utf-8-sig")().decode(head, final=False)
        encoding = "utf-8-sig"
    except UnicodeDecodeError:
        encoding = "gb18030"
    return io.TextIOWrapper(cast(IO[bytes], binary), encoding=encoding, newline="")


def iter_rows(binary: IO[bytes], kind: str) -> Iterator[tuple[int, dict[str, str]]]:
    """(row number, canonical column -> text) for every data row; row 1 is the header."""
    return _xlsx_rows(binary) if kind == "xlsx" else _csv_rows(binary)


def _xlsx_rows(binary: IO[bytes]) -> Iterator[tuple[int, dict[str, str]]]:
    from openpyxl import load_workbook

    try:
        check_xlsx(binary, Limits())  # a zip bomb is refused before any XML is parsed
    except SheetProblem as exc:
        raise exc.problem() from None
    try:
        book = load_workbook(binary, read_only=True, data_only=True)
    except Exception as exc:
        raise ImportFileError("file", f"not a readable XLSX workbook: {exc}") from None
    try:
        rows = book.worksheets[0].iter_rows(values_only=True)
        first = next(rows, None)
        if first is None:
            raise ImportFileError("file", "the sheet is empty")
        columns = _canonical(list(first))
        for n, values in enumerate(rows, start=2):
            record = {c: _cell(v) for c, v in zip(columns, values, strict=False) if c}
            if any(record.values()):
                yield n, record
    finally:
        book.close()


def _csv_rows(binary: IO[bytes]) -> Iterator[tuple[int, dict[str, str]]]:
    text = _text_stream(binary)
    reader = csv.reader(text)
    try:
        header = next(reader, None)
        if header is None:
            raise ImportFileError("file", "the file is empty")
        columns = _canonical(list(header))
        known = [i for i, c in enumerate(columns) if c]
        names = [c for c in columns if c]
        pick = itemgetter(*known)  # the known columns of a row (REQUIRED: more than one)
        for n, values in enumerate(reader, start=2):
            if len(values) > known[-1]:
                record = dict(zip(names, map(str.strip, pick(values)), strict=True))
            else:  # a short row: the cells it has
                record = {c: v.strip() for c, v in zip(columns, values, strict=False) if c}
            if any(record.values()):
                yield n, record
    except (UnicodeDecodeError, csv.Error) as exc:
        raise ImportFileError("file", f"not a readable CSV file: {exc}") from None
    finally:
        text.detach()


def _map(value: str, table: dict[str, str], allowed: frozenset[str]) -> str:
    if value in table:
        return table[value]
    low = value.lower()
    return low if low in allowed else value


def _relation(value: str) -> str:
    """与户主关系 in the export's words; grandchildren, in-laws etc. are "other"."""
    if value in RELATIONS:
        return RELATIONS[value]
    low = value.strip().lower()
    if low in ("head", "spouse", "child", "parent", "other") or not low:
        return low
    return "other"


def _bool(value: str, name: str) -> bool | None:
    low = value.strip().lower()
    if low in YES:
        return True
    if low in NO:
        return False if low else None
    raise ValueError(f"{name}: expected 是/否 or true/false, got {value!r}")


def _number(value: str) -> float | None:
    return float(value.replace(",", "")) if value else None


def _member(r: dict[str, str]) -> dict[str, Any]:
    groups = r.get("special_groups", "")
    insurance = _bool(r.get("medical_insurance", ""), "medical_insurance")
    return {
        "id_number": r.get("id_number", ""),
        "name": r.get("name", ""),
        "relation": _relation(r.get("relation", "")),
        "special_groups": [
            _map(s, SPECIAL_GROUPS, _SPECIAL_GROUP_VALUES)
            for s in _SPLIT.split(groups)
            if s not in _NO_GROUP
        ]
        if groups
        else [],
        "labor_capacity": _map(r.get("labor_capacity", ""), LABOR, _LABOR_VALUES) or "full",
        "schooling": _map(r.get("schooling", ""), SCHOOLING, _SCHOOLING_VALUES) or None,
        "medical_insurance": True if insurance is None else insurance,
    }


def _draft(group: _Group) -> HouseholdRows:
    result = HouseholdRows(group.number, group.first_row, rows=len(group.rows))
    head = next((r for _, r in group.rows if _relation(r.get("relation", "")) == "head"), None)
    lead = head or group.rows[0][1]

    def household(name: str) -> str:
        """A household-level column: the head's, or the first row's that has it."""
        value = lead.get(name, "")
        if not value:
            for _, r in group.rows:
                if value := r.get(name, ""):
                    break
        return value

    try:
        members = [_member(r) for _, r in group.rows]
        body: dict[str, Any] = {
            "household_number": group.number,
            "region_code": household("region_code"),
            "type": _map(household("type") or "alleviated", TYPES, _TYPE_VALUES),
            "policy_enjoying": bool(_bool(household("policy_enjoying"), "policy_enjoying")),
            "members": members,
        }
        parts = {k: _number(household(k)) for k in ("wage", "business", "transfer", "property")}
        total = _number(household("income_total"))
        if total is not None or any(v is not None for v in parts.values()):
            year = household("income_year")
            body["annual_income"] = {"year": int(year) if year else None, "total": total, **parts}
        if household("contact_name"):
            role = household("contact_role")
            body["contacts"] = [
                {
                    # A blank role is refused by the model: the seed's duty follows the role.
                    "role": _map(role, CONTACT_ROLES, _CONTACT_ROLE_VALUES),
                    "name": household("contact_name"),
                    "phone": household("contact_phone"),
                }
            ]
        checked = checked_body(body)
        if checked is None:  # the model names the first problem (or accepts it after all)
            checked = HouseholdCreate.model_validate(body).model_dump()
        result.body = checked
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = [str(p) for p in err["loc"]]
        row = group.first_row
        if len(loc) >= 2 and loc[0] == "members" and loc[1].isdigit():
            row = group.rows[int(loc[1])][0]
            loc = loc[2:]
        result.error = RowError(row, group.number, ".".join(loc) or "row", str(err["msg"]))
    except ValueError as exc:
        field_name, _, message = str(exc).partition(": ")
        result.error = RowError(group.first_row, group.number, field_name, message or str(exc))
    return result


# --- HouseholdCreate, fast ----------------------------------------------------------------
# An import drafts a household per few rows: its body (plain values from the readers above)
# is checked against HouseholdCreate's constraints here, read from the models, without
# building them. A body that passes is what `HouseholdCreate.model_validate(body)
# .model_dump()` gives (tests check both agree); any other goes through the model, for
# its canonical error.


def _limits(model: type[BaseModel], name: str) -> tuple[float, float]:
    """The (minimum, maximum) length or value of a field, from its constraints."""
    low, high = float("-inf"), float("inf")
    for constraint in model.model_fields[name].metadata:
        low = getattr(constraint, "min_length", getattr(constraint, "ge", low))
        high = getattr(constraint, "max_length", getattr(constraint, "le", high))
    return low, high


_REGION_CODE = _limits(HouseholdCreate, "region_code")
_HOUSEHOLD_NUMBER = _limits(HouseholdCreate, "household_number")
_MEMBER_COUNT = _limits(HouseholdCreate, "members")
_CONTACT_COUNT = _limits(HouseholdCreate, "contacts")
_ID_NUMBER = _limits(MemberCreate, "id_number")
_MEMBER_NAME = _limits(MemberCreate, "name")
_CONTACT_NAME = _limits(ContactIn, "name")
_PHONE = _limits(ContactIn, "phone")
_YEAR = _limits(AnnualIncome, "year")
_INCOME_FIELDS = tuple(name for name in AnnualIncome.model_fields if name != "year")
_HOUSEHOLD_TYPES = frozenset(get_args(HouseholdType))
_RELATION_VALUES = frozenset(get_args(Relation))
_GROUP_VALUES = frozenset(get_args(SpecialGroup))
_LABOR_CAPACITIES = frozenset(get_args(LaborCapacity))
_SCHOOLINGS = frozenset(get_args(Schooling))
_ROLES = frozenset(get_args(ContactRole))


_GROUP_COUNT = _limits(MemberCreate, "special_groups")
_FORBIDDEN = FORBIDDEN_CHARACTERS.search
_PHONE_SHAPE = re.compile(PHONE_PATTERN).match


def _text(value: object, limits: tuple[float, float]) -> bool:
    """A string within `limits` without the characters the kernel's RequestModel refuses."""
    return type(value) is str and limits[0] <= len(value) <= limits[1] and not _FORBIDDEN(value)


def _code(value: object, limits: tuple[float, float]) -> bool:
    # ASCII only: the model folds full-width digits (backstop.requests.fold), this does not.
    return type(value) is str and value.isascii() and _text(value, limits)


def checked_body(body: dict[str, Any]) -> dict[str, Any] | None:
    """A body as `_draft` builds it, completed with HouseholdCreate's defaults, if it
    certainly passes the model as it is (no value to convert); else None."""
    number = body["household_number"]
    members = body["members"]
    income = body.get("annual_income")
    contacts = body.get("contacts", [])
    if not (
        _code(body["region_code"], _REGION_CODE)
        and body["type"] in _HOUSEHOLD_TYPES
        and type(body["policy_enjoying"]) is bool
        and (number is None or _code(number, _HOUSEHOLD_NUMBER))
        and _MEMBER_COUNT[0] <= len(members) <= _MEMBER_COUNT[1]
        and len(contacts) <= _CONTACT_COUNT[1]
        and "guarantees" not in body
    ):
        return None
    for m in members:
        if not (
            _code(m["id_number"], _ID_NUMBER)
            and _text(m["name"], _MEMBER_NAME)
            and m["relation"] in _RELATION_VALUES
            and len(m["special_groups"]) <= _GROUP_COUNT[1]
            and all(g in _GROUP_VALUES for g in m["special_groups"])
            and m["labor_capacity"] in _LABOR_CAPACITIES
            and (m["schooling"] is None or m["schooling"] in _SCHOOLINGS)
            and type(m["medical_insurance"]) is bool
        ):
            return None
    if income is not None:
        year = income["year"]
        if not (type(year) is int and _YEAR[0] <= year <= _YEAR[1]):
            return None
        for name in _INCOME_FIELDS:
            value = income[name]
            if value is not None and not (type(value) is float and 0 <= value <= MAX_AMOUNT):
                return None
    for c in contacts:
        if not (
            c["role"] in _ROLES
            and _text(c["name"], _CONTACT_NAME)
            and _code(c["phone"], _PHONE)
            and _PHONE_SHAPE(c["phone"])
            and "unit" not in c
        ):
            return None
    for c in contacts:
        c["unit"] = None
    body["annual_income"] = income
    body["contacts"] = contacts
    body["guarantees"] = {}
    return body


def iter_households(
    rows: Iterator[tuple[int, dict[str, str]]],
) -> Iterator[HouseholdRows]:
    """Group consecutive rows of the same household number into drafts. A row without a
    household number, or one whose household's rows came earlier and stopped, is an
    error of its own (never silently merged or dropped)."""
    current: _Group | None = None
    finished: set[str] = set()
    for n, record in rows:
        number = record.get("household_number", "")
        if not number:
            yield HouseholdRows(
                "",
                n,
                error=RowError(n, None, "household_number", "missing household number"),
                rows=1,
            )
            continue
        if current is not None and current.number != number:
            finished.add(current.number)
            yield _draft(current)
            current = None
        if current is None:
            if number in finished:
                message = "the rows of this household are not together in the file"
                yield HouseholdRows(
                    number, n, error=RowError(n, number, "household_number", message), rows=1
                )
                continue
            current = _Group(number, n)
        current.rows.append((n, record))
    if current is not None:
        yield _draft(current)
