"""The provincial platform's words, pure (no SQL, HTTP or Kafka): its three monitoring
systems, the items it watches (一达标、两不愁、三保障 and 饮水安全), its two warning
levels, and how one row of its warnings export reads (二(二) 后台系统数据监测预警)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from backstop.sheets import CellProblem, excel_date, excel_id_text, header_key

# code -> the system's name as the platform writes it.
SYSTEMS: dict[str, str] = {
    "classification": "脱贫人口分类管理系统",
    "return_warning": "返贫预警监测系统",
    "marginal": "边缘人口监测管理系统",
}

# code -> (the item's name, the risk factor code it stands for).
ITEMS: dict[str, tuple[str, str]] = {
    "income": ("收入", "low_income"),  # 一达标
    "food_clothing": ("吃穿", "other"),  # 两不愁
    "compulsory_education": ("义务教育", "compulsory_education"),
    "basic_medical": ("基本医疗", "basic_medical"),
    "housing": ("住房安全", "housing"),
    "drinking_water": ("饮水安全", "drinking_water"),
}
_ITEM_WORDS = {
    "一达标": "income",
    "收入达标": "income",
    "人均纯收入": "income",
    "两不愁": "food_clothing",
    "不愁吃": "food_clothing",
    "不愁穿": "food_clothing",
    "不愁吃穿": "food_clothing",
    "教育": "compulsory_education",
    "义务教育有保障": "compulsory_education",
    "医疗": "basic_medical",
    "基本医疗有保障": "basic_medical",
    "住房": "housing",
    "住房安全有保障": "housing",
    "饮水": "drinking_water",
    "饮水安全有保障": "drinking_water",
}

# code -> the level as the platform writes it; the codes are registry's guarantee words.
LEVELS: dict[str, str] = {
    "possible_issue": "可能存在问题尚无致贫返贫风险",
    "prominent_issue": "存在突出问题有返贫致贫风险",
}
_LEVEL_WORDS = {"可能存在问题": "possible_issue", "存在突出问题": "prominent_issue"}


def _lookup(value: Any, names: dict[str, str], extra: dict[str, str], what: str, known: str) -> str:
    text = header_key(value) if value is not None else ""
    for code, name in names.items():
        if text in (code, header_key(name)):
            return code
    if text in extra:
        return extra[text]
    for word, code in extra.items():  # "住房安全（C级危房）" and the like
        if text.startswith(word):
            return code
    raise ValueError(f"unknown {what} {str(value)[:40]!r}; expected one of {known}")


def system_code(value: Any) -> str:
    """The system's code from its code or its Chinese name (预警来源系统)."""
    return _lookup(
        value,
        SYSTEMS,
        {
            "分类管理系统": "classification",
            "返贫预警系统": "return_warning",
            "边缘人口": "marginal",
        },
        "system",
        "、".join(SYSTEMS.values()),
    )


def item_code(value: Any) -> str:
    """The item's code from its code, its name (收入, 住房安全…) or a longer wording."""
    return _lookup(
        value,
        {code: name for code, (name, _) in ITEMS.items()},
        _ITEM_WORDS,
        "item",
        "、".join(name for name, _ in ITEMS.values()),
    )


def level_code(value: Any) -> str:
    """possible_issue (可能存在问题尚无致贫返贫风险) or prominent_issue (存在突出问题有返贫致贫风险)."""
    return _lookup(value, LEVELS, _LEVEL_WORDS, "level", " / ".join(LEVELS.values()))


def task_reason(system: str, item: str, level: str) -> str:
    """The verification task's reason as a town cadre reads it."""
    return f"省平台预警核实（{SYSTEMS[system]}）：{ITEMS[item][0]}{LEVELS[level]}"


def warning_status(task_status: str | None) -> str:
    """What became of a warning, as the platform reads it back: unmatched (no household
    yet), verifying (its task is open), verified, or cancelled."""
    if task_status is None:
        return "unmatched"
    return {"open": "verifying", "done": "verified"}.get(task_status, "cancelled")


# --- the platform's XLSX export ------------------------------------------------------------

# field -> headers of the platform's export (compared with backstop.sheets.header_key).
HEADERS: dict[str, tuple[str, ...]] = {
    "warning_id": ("warning_id", "预警编号", "预警ID", "预警标识", "预警信息编号"),
    "system": ("system", "预警系统", "预警来源", "来源系统", "预警来源系统"),
    "item": ("item", "预警指标", "预警项目", "预警内容", "监测指标", "预警事项"),
    "level": ("level", "预警等级", "预警级别", "风险等级", "预警类型"),
    "warned_on": ("warned_on", "预警日期", "预警时间", "推送日期", "下发日期"),
    "household_number": ("household_number", "户编号", "户号"),
    "id_number": ("id_number", "证件号码", "身份证号", "身份证号码", "公民身份号码"),
    "detail": ("detail", "预警说明", "问题描述", "备注"),
}
REQUIRED = ("warning_id", "system", "item", "level", "warned_on")
_HEADER_INDEX = {header_key(h): field for field, hs in HEADERS.items() for h in hs}


def match_header(text: str) -> str | None:
    return _HEADER_INDEX.get(header_key(text))


def missing_fields(found: set[str]) -> list[str]:
    missing = [f for f in REQUIRED if f not in found]
    if "household_number" not in found and "id_number" not in found:
        missing.append("household_number")
    return missing


@dataclass(frozen=True)
class RowProblem:
    field: str
    message: str


_CELLS: dict[str, Callable[[Any], Any]] = {
    "system": system_code,
    "item": item_code,
    "level": level_code,
    "warned_on": excel_date,
    "id_number": excel_id_text,
}


def read_row(values: list[Any], fields: dict[int, str]) -> tuple[dict[str, Any], list[RowProblem]]:
    """One row of the export as the JSON fields of a warning, and what could not be read."""
    record: dict[str, Any] = {}
    problems: list[RowProblem] = []
    for index, field in fields.items():
        value = values[index] if index < len(values) else None
        if value is None or (isinstance(value, str) and not value.strip()):
            continue
        try:
            convert = _CELLS.get(field)
            if convert is not None:
                record[field] = convert(value)
            elif isinstance(value, float) and value.is_integer():
                record[field] = str(int(value))  # a number typed into a text column
            else:
                record[field] = str(value).strip()
        except CellProblem as exc:
            problems.append(RowProblem(field, exc.message))
        except ValueError as exc:
            problems.append(RowProblem(field, str(exc)))
    for field in REQUIRED:
        if field not in record and not any(p.field == field for p in problems):
            problems.append(RowProblem(field, "is empty"))
    if not record.get("household_number") and not record.get("id_number"):
        problems.append(RowProblem("household_number", "name the household or a member"))
    return record, problems
