"""The quarterly return (季度动态监测) as the county office's XLSX workbook: one sheet per
section with the Chinese headers the office types into the monitoring system, a sheet of
counts per town, the differences from the previous quarter, and a sheet describing it.
Every row goes through `backstop.exports.safe_row` (no cell runs as a formula)."""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

from openpyxl import Workbook
from openpyxl.styles import Font
from openpyxl.worksheet.worksheet import Worksheet

from backstop.exports import safe_row
from services.assistance import domain
from services.assistance.province_return import (
    GUARANTEE_LABELS,
    SECTION_LABELS,
    SECTIONS,
    STATUS_LABELS,
)
from services.assistance.quarterly_xlsx import METHOD_LABELS, TYPE_LABELS

Row = Mapping[str, Any]
DIRECTION_LABELS = {"worse": "恶化", "better": "改善", "unchanged": "程度未变"}
CHANGE_LABELS = {"added": "新增", "removed": "减少", "changed": "变更"}


def _factors(codes: list[str]) -> str:
    return "、".join(domain.FACTOR_LABELS.get(c, c) for c in codes)


def _money(value: Any) -> float | None:
    return None if value is None else float(Decimal(str(value)))


_WHO: list[tuple[str, Callable[[Row], Any]]] = [
    ("户编号", lambda r: r.get("household_number") or ""),
    ("乡镇代码", lambda r: r["town_code"]),
    ("行政村代码", lambda r: r["region_code"]),
    ("户ID", lambda r: r["household_id"]),
]
# section -> [(Chinese header, the cell from a row)]
COLUMNS: dict[str, list[tuple[str, Callable[[Row], Any]]]] = {
    "entered": [
        *_WHO,
        ("监测对象类型", lambda r: TYPE_LABELS.get(r["monitoring_type"], r["monitoring_type"])),
        ("风险类型", lambda r: _factors(r["risk_factors"])),
        ("纳入监测日期", lambda r: r["decided_on"]),
    ],
    "eliminated": [
        *_WHO,
        ("消除方式", lambda r: METHOD_LABELS.get(r["method"], r["method"])),
        ("消除原因", lambda r: r["reason"]),
        ("风险消除日期", lambda r: r["decided_on"]),
    ],
    "guarantee_changes": [
        *_WHO,
        ("保障项目", lambda r: GUARANTEE_LABELS.get(r["item"], r["item"])),
        ("变化前", lambda r: STATUS_LABELS.get(r["before"], r["before"])),
        ("变化后", lambda r: STATUS_LABELS.get(r["after"], r["after"])),
        ("变化情况", lambda r: DIRECTION_LABELS.get(r["direction"], r["direction"])),
        ("核实日期", lambda r: r["changed_on"]),
    ],
    "income_updates": [
        *_WHO,
        ("收入年度", lambda r: r["year"]),
        ("原家庭纯收入（元）", lambda r: r["before"]),
        ("家庭纯收入（元）", lambda r: r["after"]),
        ("人均纯收入（元）", lambda r: r["per_capita"]),
        ("更新日期", lambda r: r["changed_on"]),
    ],
    "measures": [
        *_WHO,
        ("帮扶措施类别", lambda r: domain.MEASURES.get(r["category"], r["category"])),
        ("措施内容", lambda r: r["description"]),
        ("开始日期", lambda r: r["start_on"]),
        ("结束日期", lambda r: r["end_on"]),
        ("金额（元）", lambda r: _money(r["amount"])),
        ("责任单位", lambda r: r["responsible_unit"]),
    ],
    "monitored": [
        *_WHO,
        ("户类型", lambda r: TYPE_LABELS.get(r["type"], r["type"])),
        ("纳入监测日期", lambda r: r["monitoring_since"] or ""),
        ("风险类型", lambda r: _factors(r["risk_factors"])),
        (
            "存在问题的保障项目",
            lambda r: "、".join(
                f"{GUARANTEE_LABELS.get(k, k)}（{STATUS_LABELS.get(v, v)}）"
                for k, v in r["guarantee_issues"].items()
            ),
        ),
        ("收入年度", lambda r: r["income_year"]),
        ("人均纯收入（元）", lambda r: r["per_capita"]),
        ("本季度在帮措施数", lambda r: r["measures_in_force"]),
    ],
}
COUNT_HEADERS = ["乡镇代码", *[SECTION_LABELS[s] + "（条）" for s in SECTIONS]]
DIFF_HEADERS = ["类别", "与上季度相比", "户编号", "户ID", "变更字段"]


def _sheet(wb: Workbook, title: str, headers: list[str]) -> Worksheet:
    sheet = wb.create_sheet(title)
    sheet.append(safe_row(headers))
    for cell in sheet[1]:
        cell.font = Font(bold=True)
    sheet.freeze_panes = "A2"
    return sheet


def workbook_bytes(ret: Mapping[str, Any], diff: Mapping[str, Any] | None = None) -> bytes:
    """The return as an XLSX workbook: counts by town (汇总), one sheet per section, the
    differences from the previous quarter when given, and 说明."""
    wb = Workbook()
    default = wb.active
    assert default is not None
    wb.remove(default)
    summary = _sheet(wb, "汇总", COUNT_HEADERS)
    for town, n in ret["counts"]["by_town"].items():
        summary.append(safe_row([town, *[n[s] for s in SECTIONS]]))
    summary.append(safe_row(["全县合计", *[ret["counts"][s] for s in SECTIONS]]))
    for section in SECTIONS:
        columns = COLUMNS[section]
        sheet = _sheet(wb, SECTION_LABELS[section], [name for name, _ in columns])
        for row in ret["sections"][section]:
            sheet.append(safe_row([cell(row) for _, cell in columns]))
    if diff is not None:
        changes = _sheet(wb, "与上季度比较", DIFF_HEADERS)
        for section in SECTIONS:
            for change, rows in diff["sections"][section].items():
                for row in rows:
                    changes.append(
                        safe_row(
                            [
                                SECTION_LABELS[section],
                                CHANGE_LABELS[change],
                                row.get("household_number") or "",
                                row.get("household_id", ""),
                                "、".join(row.get("fields", {})),
                            ]
                        )
                    )
    about = wb.create_sheet("说明")
    for line in (
        ("季度", ret["quarter"]),
        ("统计期间", f"{ret['start']} 至 {ret['end']}"),
        ("状态", "已关账" if ret["status"] == "closed" else "未关账（数据可能变化）"),
        ("统计时间", ret["computed_at"]),
        ("关账人", ret.get("closed_by") or ""),
        ("关账时间", ret.get("closed_at") or ""),
        ("比较季度", diff["previous_quarter"] if diff else ""),
        (
            "说明",
            "新纳入监测与风险消除按县级确认日期计；保障与收入变化按核实或登记日期计，"
            "同一户同一项目季度内多次变化按净变化记一条；帮扶措施按开始日期计；"
            "关账后补录的数据计入补录时仍未关账的下一季度；监测对象名单为统计时的状态。",
        ),
    ):
        about.append(safe_row(line))
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()
