"""Bulk import of register exports: CSV, XLSX or XLS, one row per person. Headers of the
national monitoring system's export (全国防返贫监测信息系统: 户编号, 证件号码, 与户主关系,
劳动技能, 务工状况, 在校生状况, 健康状况, 是否参加城乡居民基本医疗保险, 脱贫年度,
监测对象类别, 省/市/县/乡/村 …), of the older 建档立卡 exports, or English ones. The table is
found the way department files are (`backstop.sheets`: title rows, layered and merged
headers, totals and footers), read as a stream and grouped into households by household
number; a household's rows are expected together, as the exports list them.
docs/national-export.md lists the columns read and those still ignored."""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass, field
from operator import itemgetter
from typing import IO, Any, get_args

from pydantic import BaseModel, ValidationError

from backstop.contracts.policy import CONTACT_ROLES as CONTACT_ROLE_WORDS
from backstop.contracts.policy import LEGACY_CONTACT_ROLES
from backstop.requests import FORBIDDEN_CHARACTERS, MAX_AMOUNT, PHONE_PATTERN
from backstop.sheets import CellProblem, Limits, Table, excel_id_text, header_key, open_table
from services.registry import domain
from services.registry.models import (
    AnnualIncome,
    ContactIn,
    ContactRole,
    HealthStatus,
    HouseholdCreate,
    HouseholdType,
    LaborCapacity,
    LaborSkill,
    MemberCreate,
    Relation,
    Schooling,
    SpecialGroup,
    WorkStatus,
)

# Canonical column -> accepted headers (compared as `backstop.sheets.header_key` does:
# spaces and a unit in brackets dropped, so 务工时间（月） is 务工时间 and 乡(镇) is 乡).
HEADERS: dict[str, tuple[str, ...]] = {
    "household_number": ("household_number", "household_no", "户编号", "户号", "家庭编号"),
    "id_number": ("id_number", "身份证号", "身份证号码", "证件号码", "公民身份号码"),
    "name": ("name", "姓名"),
    # The household export (户信息): one row a household, named by its head.
    "head_id_number": ("head_id_number", "户主证件号码", "户主身份证号", "户主身份证号码"),
    "head_name": ("head_name", "户主姓名"),
    "relation": ("relation", "与户主关系"),
    "region_code": ("region_code", "village_code", "行政区划代码", "村代码", "所属村代码"),
    # The national export names the place instead: 省, 市, 县 (this county), 乡, 村.
    "town_name": ("town_name", "乡", "乡镇", "镇", "乡镇（街道）", "镇街"),
    "village_name": ("village_name", "村", "行政村", "村（社区）", "村居"),
    "type": ("type", "household_type", "户类型", "户类别", "户属性"),
    # 监测对象类别: 脱贫不稳定户 / 边缘易致贫户 / 突发严重困难户, blank for other households.
    "monitoring_type": ("monitoring_type", "监测对象类别", "监测对象类型"),
    "exit_year": ("exit_year", "脱贫年度", "脱贫年份"),
    "policy_enjoying": ("policy_enjoying", "是否享受政策", "享受政策"),
    "income_year": ("income_year", "year", "收入年度", "年度"),
    "income_total": ("annual_income", "income_total", "家庭纯收入", "家庭年纯收入", "年纯收入"),
    "wage": ("wage", "wage_income", "工资性收入"),
    "business": ("business", "business_income", "生产经营性收入", "经营性收入"),
    "transfer": ("transfer", "transfer_income", "转移性收入"),
    "property": ("property", "property_income", "财产性收入"),
    "special_groups": ("special_groups", "特殊群体", "特困群体"),
    "labor_capacity": ("labor_capacity", "劳动能力"),
    # 劳动技能 is its own field in the national system (skill and capacity in one).
    "labor_skill": ("labor_skill", "劳动技能"),
    "health_status": ("health_status", "健康状况"),
    "work_status": ("work_status", "务工状况", "务工所在地", "务工区域"),
    "work_months": ("work_months", "务工时间", "年内务工时间", "务工时长", "务工月数"),
    "schooling": ("schooling", "在校生状况", "在校生情况", "就学情况"),
    "dropout": ("dropout", "是否义务教育阶段适龄儿童少年失学辍学"),
    "medical_insurance": ("medical_insurance", "是否参加基本医疗保险", "参加医保"),
    "resident_medical": ("resident_medical", "是否参加城乡居民基本医疗保险"),
    "employee_medical": ("employee_medical", "是否参加城镇职工基本医疗保险"),
    "critical_illness_insurance": (
        "critical_illness_insurance",
        "是否参加大病保险",
        "参加大病医疗",
        "是否参加大病医疗保险",
    ),
    "supplementary_insurance": (
        "supplementary_insurance",
        "是否参加商业补充医疗保险",
        "是否参加商业补充保险",
    ),
    "resident_pension": ("resident_pension", "是否参加城乡居民基本养老保险"),
    "employee_pension": ("employee_pension", "是否参加城镇职工基本养老保险"),
    "contact_role": ("contact_role", "联系人类型"),
    "contact_name": ("contact_name", "联系人", "联系人姓名", "帮扶责任人"),
    "contact_phone": ("contact_phone", "联系人电话", "联系电话"),
}
_LOOKUP = {header_key(h): canon for canon, hs in HEADERS.items() for h in hs}
# Where a draft's field comes from: the export columns (canonical names) that give it,
# best first. A field not listed comes from the column of its own name.
SOURCES: dict[str, tuple[str, ...]] = {
    "region_code": ("region_code", "village_name", "town_name"),
    "type": ("monitoring_type", "type"),
    "labor_capacity": ("labor_capacity", "labor_skill"),
    "medical_insurance": ("medical_insurance", "resident_medical", "employee_medical"),
    "pension_insurance": ("resident_pension", "employee_pension"),
    "schooling": ("schooling", "dropout"),
    "annual_income": ("income_total", "wage", "business", "transfer", "property", "income_year"),
}


def sources(field_name: str) -> tuple[str, ...]:
    """The export columns that give a draft's field."""
    return SOURCES.get(field_name, (field_name,))


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
# 劳动能力 as counties write it (often in 劳动技能's words).
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
# 劳动技能, the national system's five values (代码表 100A14).
LABOR_SKILLS = {
    "技能劳动力": "skilled",
    "普通劳动力": "ordinary",
    "弱劳动力或半劳动力": "weak",
    "弱劳动力": "weak",
    "半劳动力": "weak",
    "丧失劳动力": "lost",
    "无劳动力": "none",
}
HEALTH = {
    "健康": "healthy",
    "长期慢性病": "chronic_illness",
    "慢性病": "chronic_illness",
    "患有大病": "serious_illness",
    "大病": "serious_illness",
    "残疾": "disabled",
}
# 务工状况 / 务工所在地, compared without 务工, brackets and 镇: 乡（镇）外县内务工 → 乡外县内.
WORK = {
    "乡内": "in_town",
    "乡外县内": "in_county",
    "县内": "in_county",
    "县外省内": "in_province",
    "省内县外": "in_province",
    "省内": "in_province",
    "省外": "out_of_province",
    "境外": "abroad",
    "国外": "abroad",
    "其他": "other",
    "无": "not_working",
    "未": "not_working",
    "不": "not_working",
    "非": "not_working",
}
_WORK_NOISE = re.compile(r"[（(]?镇[）)]?|务工|[\s\u3000]")
SCHOOLING = {
    "学前教育": "preschool",
    "学前": "preschool",
    "幼儿园": "preschool",
    "小学": "primary",
    "初中": "junior",
    "高中": "senior",
    "中职": "vocational",
    "高职": "vocational",
    "技校": "vocational",
    "大专": "college",
    "本科": "college",
    "研究生": "college",
    "失学": "out_of_school",
    "辍学": "out_of_school",
    "失学辍学": "out_of_school",
    "非在校生": "none",
}
# The national system writes the grade: 小学三年级, 七年级, 高中一年级, 中职二年级 …
_GRADE_STAGES = (
    ("学前", "preschool"), ("幼儿", "preschool"), ("小学", "primary"), ("七年级", "junior"),
    ("八年级", "junior"), ("九年级", "junior"), ("初", "junior"), ("高中", "senior"),
    ("中职", "vocational"), ("技工", "vocational"), ("高职", "vocational"),
    ("大专", "college"), ("本科", "college"), ("研究生", "college"), ("硕士", "college"),
    ("博士", "college"),
)  # fmt: skip
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
_SKILL_VALUES = frozenset(domain.LABOR_SKILL_CAPACITY)
_HEALTH_VALUES = frozenset(domain.HEALTH_STATUSES)
_WORK_VALUES = frozenset(domain.WORK_STATUSES)
_SCHOOLING_VALUES = frozenset(SCHOOLING.values())
_CONTACT_ROLE_VALUES = frozenset(CONTACT_ROLE_WORDS)
_NO_GROUP = ("", "无", "none")
YES = {"是", "yes", "true", "1", "y", "t"}
NO = {"否", "no", "false", "0", "n", "f", ""}
_SPLIT = re.compile(r"[、,，;；|/]+")
_SPACES = re.compile(r"[\s\u3000]+")


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


def _match(text: str) -> str | None:
    return _LOOKUP.get(header_key(text))


def _missing(fields: set[str]) -> list[str]:
    """The required columns a header lacks: the village by code or by name (村); in the
    household export, the head's ID number and name for the member's."""
    have = set(fields)
    if "village_name" in have:
        have.add("region_code")
    if _household_layout(have):
        have |= {"id_number", "relation"} | ({"name"} if "head_name" in have else set())
    return [c for c in REQUIRED if c not in have]


def _household_layout(fields: Collection[str]) -> bool:
    return "head_id_number" in fields and "id_number" not in fields


@dataclass
class Export:
    """An opened export: its table (where the header is, each column's field) and its
    data rows as (Excel row number, field -> text)."""

    table: Table
    rows: Iterator[tuple[int, dict[str, str]]]
    # The household export (one row a household, its head's 户主证件号码): it updates
    # registered households and creates none (their members come from the member export).
    households_only: bool = False

    def column(self, field_name: str) -> str | None:
        """The header, as the file writes it, of the column a draft's field was read
        from (`members.labor_skill` → 劳动技能); None when no column gave it."""
        written = {f: self.table.headers[i] for i, f in self.table.fields.items()}
        parts = field_name.split(".")
        for name in (parts[-1], parts[0]):  # labor_skill; annual_income(.total)
            for source in sources(name):
                if source in written:
                    return written[source]
        return None


def open_export(binary: IO[bytes], fmt: str) -> Export:
    """Find the table of a `fmt` file (`csv`, `xlsx`, `xls`, from `sheets.file_format`).
    Raises `backstop.sheets.SheetProblem` (a 4xx) when the file cannot be read or no
    header row holds the required columns, before any row is read."""
    table = open_table(binary, fmt, _match, _missing, limits=Limits())
    households_only = _household_layout(table.fields.values())
    if households_only:  # the head is the household's one member row
        heads = {"head_id_number": "id_number", "head_name": "name"}
        kept = set(table.fields.values())
        table.header.fields = {
            i: heads[f] if f in heads and heads[f] not in kept else f
            for i, f in table.fields.items()
        }
    return Export(table, _records(table, households_only), households_only)


def iter_rows(binary: IO[bytes], kind: str) -> Iterator[tuple[int, dict[str, str]]]:
    """(row number, canonical column -> text) for every data row of an export."""
    return open_export(binary, kind).rows


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if type(value) is str:
        return value.strip()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


# An ID number cell that Excel turned into a number: kept as this marker, so the row's
# error says how to export the column again (without repeating what is left of it).
_LOST_DIGITS = "\x00lost"
LOST_DIGITS_MESSAGE = (
    "Excel stored the ID number as a number and lost its last digits: format the column as"
    " Text (or export it with a leading ') and export the file again"
)


def _id_cell(value: Any) -> str:
    try:
        return excel_id_text(value) if value is not None else ""
    except CellProblem:
        return _LOST_DIGITS


def _records(table: Table, heads: bool) -> Iterator[tuple[int, dict[str, str]]]:
    mapping = table.fields
    indexes = list(mapping)
    names = [mapping[i] for i in indexes]
    id_at = names.index("id_number")
    pick = itemgetter(*indexes)  # the known columns of a row (REQUIRED: more than one)
    last = max(indexes)
    text = table.format == "csv"
    for n, values in table.rows:
        if len(values) <= last:  # a short row: the cells it lacks are empty
            values = [*values, *([""] * (last + 1 - len(values)))]
        cells = pick(values)
        record = dict(zip(names, map(str.strip, cells) if text else map(_cell, cells), strict=True))
        raw_id = cells[id_at]
        if raw_id is not None and (type(raw_id) is not str or raw_id[:1] in ("'", "‘")):
            record["id_number"] = _id_cell(raw_id)
        if any(record.values()):
            if heads:
                record["relation"] = "户主"
            yield n, record


# --- villages by name ------------------------------------------------------------------

_TOWN_SUFFIX = re.compile(r"(人民政府|街道办事处|办事处|街道|镇|乡)$")
_VILLAGE_SUFFIX = re.compile(r"(村民委员会|居民委员会|村委会|居委会|社区|村)$")


def _stem(name: str, suffix: re.Pattern[str]) -> str:
    """A place name without its kind: 城中居委会 and 城中社区 are both 城中."""
    name = _SPACES.sub("", name)
    for _ in range(2):  # 新村村委会 → 新村 → 新
        shorter = suffix.sub("", name)
        if not shorter or shorter == name:
            break
        name = shorter
    return name


class VillageNames:
    """The county's villages by name, for exports that give 乡 and 村 instead of a code.
    Names are compared without their kind (镇/街道, 村/社区/居委会) and spaces."""

    def __init__(self, regions: Iterable[tuple[str, str, str, str]]) -> None:
        """`regions`: (code, name, level, parent code) of the county's towns and villages."""
        rows = list(regions)
        self._towns: dict[str, set[str]] = {}
        for code, name, level, _ in rows:
            if level == "town":
                self._towns.setdefault(_stem(name, _TOWN_SUFFIX), set()).add(code)
        self._villages: dict[str, list[tuple[str, str]]] = {}
        for code, name, level, parent in rows:
            if level == "village":
                self._villages.setdefault(_stem(name, _VILLAGE_SUFFIX), []).append((parent, code))

    def code(self, town: str, village: str) -> str:
        """The village's 12-digit code; ValueError naming the column when there is none
        or more than one."""
        found = self._villages.get(_stem(village, _VILLAGE_SUFFIX), [])
        if town:
            towns = self._towns.get(_stem(town, _TOWN_SUFFIX), set())
            if not towns:
                raise ValueError(f"town_name: no town {town!r} in this county")
            found = [f for f in found if f[0] in towns]
        if len(found) == 1:
            return found[0][1]
        if not found:
            where = f" of {town}" if town else ""
            raise ValueError(f"village_name: no village {village!r}{where} in this county")
        raise ValueError(f"village_name: {village!r} is in several towns; give the town (乡)")


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


def _any(r: dict[str, str], *names: str) -> bool | None:
    """True when any of the yes/no columns says yes, False when those given all say no,
    None when none is given (not known)."""
    said = [_bool(value, n) for n in names if (value := r.get(n))]
    return any(said) if said else None


def _number(value: str) -> float | None:
    return float(value.replace(",", "")) if value else None


def _whole(value: str, name: str, unit: str) -> int | None:
    """A whole number as written: 6, 6.0, 6个月, 2019年."""
    if not value:
        return None
    text = value.replace(unit, "").replace("个", "").strip()
    if not text:
        return None
    try:
        number = float(text)
    except ValueError:
        raise ValueError(f"{name}: expected a whole number, got {value!r}") from None
    if not number.is_integer():
        raise ValueError(f"{name}: expected a whole number, got {value!r}")
    return int(number)


def _schooling(r: dict[str, str]) -> str | None:
    """在校生状况 as a stage; a 是 in 是否…失学辍学 makes it out_of_school."""
    if (dropout := r.get("dropout")) and _bool(dropout, "dropout"):
        return "out_of_school"
    value = r.get("schooling", "")
    if not value or value in SCHOOLING:
        return SCHOOLING.get(value) if value else None
    low = value.lower()
    if low in _SCHOOLING_VALUES:
        return low
    for prefix, stage in _GRADE_STAGES:
        if value.startswith(prefix):
            return stage
    return value  # refused by the model, naming the column


def _work_status(value: str) -> str | None:
    if not value:
        return None
    key = _WORK_NOISE.sub("", value)
    return WORK.get(key) or _map(value, {}, _WORK_VALUES)


def _member(r: dict[str, str]) -> dict[str, Any]:
    raw_id = r.get("id_number", "")
    if raw_id == _LOST_DIGITS:
        raise ValueError(f"id_number: {LOST_DIGITS_MESSAGE}")
    groups = r.get("special_groups", "")
    capacity_text = r.get("labor_capacity", "")
    skill_text = r.get("labor_skill", "")
    # 劳动技能 is kept as written; a 劳动能力 column in its words gives it too.
    skill = _map(skill_text, LABOR_SKILLS, _SKILL_VALUES) if skill_text else None
    if skill is None and capacity_text in LABOR_SKILLS:
        skill = LABOR_SKILLS[capacity_text]
    if capacity_text:
        capacity = _map(capacity_text, LABOR, _LABOR_VALUES)
    else:  # implied by 劳动技能; a member with neither is taken as able to work
        capacity = domain.LABOR_SKILL_CAPACITY.get(skill or "", "full")
    medical = _bool(r.get("medical_insurance", ""), "medical_insurance")
    if medical is None:
        medical = _any(r, "resident_medical", "employee_medical")
    health = r.get("health_status", "")
    return {
        "id_number": raw_id,
        "name": r.get("name", ""),
        "relation": _relation(r.get("relation", "")),
        "special_groups": [
            _map(s, SPECIAL_GROUPS, _SPECIAL_GROUP_VALUES)
            for s in _SPLIT.split(groups)
            if s not in _NO_GROUP
        ]
        if groups
        else [],
        "labor_capacity": capacity,
        "schooling": _schooling(r),
        "medical_insurance": True if medical is None else medical,
        "labor_skill": skill,
        "health_status": _map(health, HEALTH, _HEALTH_VALUES) if health else None,
        "work_status": _work_status(r.get("work_status", "")),
        "work_months": _whole(r.get("work_months", ""), "work_months", "月"),
        "critical_illness_insurance": _any(r, "critical_illness_insurance"),
        "supplementary_insurance": _any(r, "supplementary_insurance"),
        "pension_insurance": _any(r, "resident_pension", "employee_pension"),
    }


def _draft(group: _Group, villages: VillageNames | None) -> HouseholdRows:
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
        members = []
        for n, r in group.rows:
            try:
                members.append(_member(r))
            except ValueError as exc:  # on the member's own row
                field_name, _, message = str(exc).partition(": ")
                result.error = RowError(n, group.number, field_name, message or str(exc))
                return result
        region = household("region_code")
        village = household("village_name")
        if not region and village and villages is not None:
            region = villages.code(household("town_name"), village)
        kind = household("monitoring_type") or household("type") or "alleviated"
        body: dict[str, Any] = {
            "household_number": group.number,
            "region_code": region,
            "type": _map(kind, TYPES, _TYPE_VALUES),
            "policy_enjoying": bool(_bool(household("policy_enjoying"), "policy_enjoying")),
            "exit_year": _whole(household("exit_year"), "exit_year", "年"),
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
_LABOR_SKILLS = frozenset(get_args(LaborSkill))
_HEALTH_STATUSES = frozenset(get_args(HealthStatus))
_WORK_STATUSES = frozenset(get_args(WorkStatus))
_WORK_MONTHS = _limits(MemberCreate, "work_months")
_EXIT_YEAR = _limits(HouseholdCreate, "exit_year")
_NATIONAL_FLAGS = ("critical_illness_insurance", "supplementary_insurance", "pension_insurance")
_SCHOOLINGS = frozenset(get_args(Schooling))
_ROLES = frozenset(get_args(ContactRole))


_GROUP_COUNT = _limits(MemberCreate, "special_groups")
_FORBIDDEN = FORBIDDEN_CHARACTERS.search
_PHONE_SHAPE = re.compile(PHONE_PATTERN).match


def _text(value: object, limits: tuple[float, float]) -> bool:
    """A string within `limits` without the characters the kernel's RequestModel refuses."""
    return type(value) is str and limits[0] <= len(value) <= limits[1] and not _FORBIDDEN(value)


def _whole_within(value: object, limits: tuple[float, float]) -> bool:
    """None, or an int within `limits`."""
    return value is None or (type(value) is int and limits[0] <= value <= limits[1])


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
        and _whole_within(body["exit_year"], _EXIT_YEAR)
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
            and (m["labor_skill"] is None or m["labor_skill"] in _LABOR_SKILLS)
            and (m["health_status"] is None or m["health_status"] in _HEALTH_STATUSES)
            and (m["work_status"] is None or m["work_status"] in _WORK_STATUSES)
            and _whole_within(m["work_months"], _WORK_MONTHS)
            and all(m[k] is None or type(m[k]) is bool for k in _NATIONAL_FLAGS)
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
    rows: Iterator[tuple[int, dict[str, str]]], villages: VillageNames | None = None
) -> Iterator[HouseholdRows]:
    """Group consecutive rows of the same household number into drafts. A row without a
    household number, or one whose household's rows came earlier and stopped, is an
    error of its own (never silently merged or dropped). `villages` finds the village
    of rows that name it (乡, 村) instead of giving its code."""
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
            yield _draft(current, villages)
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
        yield _draft(current, villages)
