"""How the department files name their columns (字段与表头), and the Chinese words of
the error messages: the aliases each source's headers may take, the county's mapping
profiles, the fields' and the error codes' Chinese names. Pure data and lookups.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache

from backstop.sheets import header_key

# Each field's Chinese name, as the error messages name it.
FIELD_NAMES_ZH: dict[str, str] = {
    "record": "记录",
    "record_id": "记录编号",
    "id_number": "身份证号码",
    "name": "姓名",
    "settled_on": "结算日期",
    "total_cost": "医疗总费用",
    "insurance_paid": "基本医保支付（统筹+大病）",
    "pooled_fund_paid": "统筹基金支付",
    "critical_illness_paid": "大病保险支付",
    "assistance_paid": "医疗救助支付",
    "out_of_pocket": "个人自付",
    "occurred_on": "受灾时间",
    "disaster_type": "灾种",
    "loss_amount": "直接经济损失",
    "housing_damaged": "房屋倒损",
    "kind": "救助类别",
    "status": "保障状态",
    "amount": "保障金额",
    "start_on": "起始日期",
    "end_on": "终止日期",
    "stage": "学段",
    "term": "学期",
    "fees": "应缴费用",
    "aid_received": "资助金额",
    "enrolled": "是否在校",
    "correction": "更正标志",
    "void": "作废标志",
}

# Error codes (English, stable: docs/department-files.md lists them) and their Chinese.
CODES_ZH: dict[str, str] = {
    "required": "不能为空",
    "not_a_number": "应为数字",
    "negative": "不能为负数",
    "not_a_date": "应为日期（如 2026-11-03、2026/11/3、2026年11月3日 或 20261103）",
    "not_a_real_date": "不是真实存在的日期",
    "date_too_early": "早于 2000-01-01",
    "date_in_future": "晚于今天",
    "date_after_period": "晚于报送期",
    "unknown_value": "不是可识别的取值",
    "not_yes_no": "应为“是”或“否”",
    "invalid_term": "学期格式不对（如 2026年秋季学期、2026-2027学年第一学期）",
    "term_after_period": "学期开始于报送期之后",
    "too_long": "过长",
    "invalid_id_number": "身份证号码不正确（位数、出生日期或校验位）",
    "id_number_lost_digits": "被 Excel 存成了数字，后几位已丢失：请将该列设为文本格式后重新导出",
    "amounts_exceed_total": "各项支付之和超过总额",
    "amounts_disagree": "与按其他列计算的结果不一致",
    "end_before_start": "早于起始日期",
    "end_required": "保障状态为终止时必须填写终止日期",
    "changed_record": "该记录编号已报送过且内容不同，不予覆盖（如需更正，请填更正标志“是”）",
    "unknown_record": "该记录编号从未报送过，无法更正或作废",
    "voided_record": "该记录已作废，不能再更正或报送（请用新的记录编号）",
    "changed_person": "更正不能改变人员：请作废原记录，再用新的记录编号报送",
    "correction_and_void": "不能同时标为更正和作废",
    "not_an_object": "应为 JSON 对象",
}


_COMMON: dict[str, tuple[str, ...]] = {
    "record_id": (
        "record_id",
        "recordid",
        "id",
        "记录编号",
        "记录号",
        "记录id",
        "业务编号",
        "流水号",
        "单据号",
    ),
    "id_number": (
        "id_number",
        "idnumber",
        "id_no",
        "身份证号",
        "身份证号码",
        "证件号码",
        "证件号",
        "公民身份号码",
        "身份证件号码",
    ),
    "name": ("name", "姓名", "人员姓名", "参保人姓名", "学生姓名", "户主姓名"),
    # 更正/作废 of a record sent before under the same record id: yes/no columns
    "correction": ("correction", "更正", "是否更正", "更正标志", "更正记录"),
    "void": ("void", "作废", "是否作废", "作废标志", "作废记录"),
}

FIELD_ALIASES: dict[str, dict[str, tuple[str, ...]]] = {
    "medical": {
        **_COMMON,
        "record_id": (
            *_COMMON["record_id"],
            "结算单号",
            "结算编号",
            "结算id",
            "就诊流水号",
            "结算流水号",
            "就诊登记号",
            "住院号",
        ),
        # 出院日期: a stay is settled on discharge
        "settled_on": (
            "settled_on",
            "settledon",
            "结算日期",
            "结算时间",
            "费用结算日期",
            "出院日期",
            "出院时间",
        ),
        "total_cost": (
            "total_cost",
            "totalcost",
            "医疗总费用",
            "总费用",
            "医疗费用总额",
            "费用总额",
            "医疗费总额",
            "总金额",
        ),
        # 基本医保支付 as one column; a file that splits it gives the parts below
        "insurance_paid": (
            "insurance_paid",
            "insurancepaid",
            "基本医保支付",
            "医保支付",
            "统筹支付",
            "基本医保统筹支付",
            "医保统筹支付",
            "医保基金支付",
        ),
        "pooled_fund_paid": (
            "pooled_fund_paid",
            "统筹基金支付",
            "基本医疗保险统筹基金支付",
            "基本医疗保险基金支付",
            "统筹基金",
        ),
        "critical_illness_paid": (
            "critical_illness_paid",
            "大病保险支付",
            "大病保险",
            "城乡居民大病保险支付",
            "大病保险基金支付",
        ),
        "assistance_paid": (
            "assistance_paid",
            "assistancepaid",
            "医疗救助",
            "医疗救助支付",
            "救助支付",
            "医疗救助基金支付",
        ),
        "out_of_pocket": (
            "out_of_pocket",
            "outofpocket",
            "个人自付",
            "个人自付费用",
            "个人负担",
            "个人自付金额",
            "个人现金支付",
            "个人负担金额",
            "个人支付",
        ),
    },
    "disaster": {
        **_COMMON,
        "occurred_on": (
            "occurred_on",
            "occurredon",
            "发生日期",
            "受灾日期",
            "灾害发生日期",
            "受灾时间",
            "灾害发生时间",
        ),
        "disaster_type": (
            "disaster_type",
            "disastertype",
            "灾害类型",
            "灾种",
            "受灾类型",
            "灾害种类",
        ),
        "loss_amount": (
            "loss_amount",
            "lossamount",
            "损失金额",
            "直接经济损失",
            "经济损失",
            "直接经济损失金额",
        ),
        "housing_damaged": (
            "housing_damaged",
            "housingdamaged",
            "房屋受损",
            "房屋损毁",
            "是否房屋受损",
            "住房受损",
            "房屋倒损",
            "房屋倒损情况",
            "是否房屋倒损",
        ),
    },
    "civil_affairs": {
        **_COMMON,
        "kind": ("kind", "救助类型", "保障类型", "救助类别", "类别", "保障类别", "救助项目"),
        "status": ("status", "状态", "发放状态", "保障状态", "享受状态"),
        "amount": ("amount", "金额", "发放金额", "救助金额", "保障金额", "月保障金额"),
        "start_on": (
            "start_on",
            "starton",
            "开始日期",
            "起始日期",
            "享受开始日期",
            "起始时间",
            "保障起始日期",
        ),
        "end_on": (
            "end_on",
            "endon",
            "结束日期",
            "终止日期",
            "享受结束日期",
            "终止时间",
            "保障终止日期",
        ),
    },
    "education": {
        **_COMMON,
        "stage": ("stage", "学段", "教育阶段", "就读阶段", "就读学段"),
        "term": ("term", "学期", "资助学期"),
        "fees": ("fees", "费用", "学杂费", "应缴费用", "教育费用", "应缴金额"),
        "aid_received": (
            "aid_received",
            "aidreceived",
            "资助金额",
            "已获资助",
            "资助",
            "已资助金额",
            "资助总额",
        ),
        "out_of_pocket": (
            "out_of_pocket",
            "outofpocket",
            "个人自付",
            "自付金额",
            "个人负担",
            "家庭负担",
        ),
        "enrolled": ("enrolled", "在读", "是否在读", "在校状态", "就读状态", "是否在校"),
    },
}


def normalize_header(text: str) -> str:
    """How headers are compared (the kernel's `header_key`): `" 医疗总费用（元）"` →
    `"医疗总费用"`; English names lower-cased, spaces dropped."""
    return header_key(text)


@lru_cache(maxsize=8)
def _aliases(source: str) -> dict[str, str]:
    return {
        normalize_header(alias): canonical
        for canonical, aliases in FIELD_ALIASES[source].items()
        for alias in aliases
    }


def header_matcher(
    source: str, profile: Mapping[str, str] | None = None
) -> Callable[[str], str | None]:
    """Header text → field: the source's mapping profile (file header → field) first,
    then the usual names (`FIELD_ALIASES`)."""
    known = _aliases(source)
    mine = {normalize_header(h): f for h, f in (profile or {}).items()}

    def match(header: str) -> str | None:
        key = normalize_header(header)
        return mine.get(key) or known.get(key)

    return match


def column_map(source: str, headers: list[str]) -> dict[int, str]:
    """Column position → canonical field for a one-line header row; unknown columns
    are kept only in the raw record."""
    match = header_matcher(source)
    found: dict[int, str] = {}
    for position, header in enumerate(headers):
        field_name = match(header) if header is not None else None
        if field_name is not None and field_name not in found.values():
            found[position] = field_name
    return found


@dataclass(frozen=True)
class MappingProfile:
    """A county's column mapping for one source's files (映射配置), versioned: file
    header → field, and where the header is (its first Excel row, how many rows it
    spans, the sheet) when the finding needs help."""

    version: int
    columns: Mapping[str, str]
    header_row: int | None = None
    header_rows: int | None = None
    sheet: str | None = None


def fields_of(source: str) -> frozenset[str]:
    """Every field a column of `source` can map to (a mapping profile's targets)."""
    return frozenset(FIELD_ALIASES[source])
