"""The quarterly report as the county office's XLSX workbook (Chinese headers): one row
per town and the county total, the reasons for inclusion and elimination, the
data-quality findings (数据质量) by town, category and severity, and a sheet describing the
report."""

from __future__ import annotations

import io
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from openpyxl import Workbook
from openpyxl.styles import Font

from backstop.exports import safe_row
from services.assistance import domain
from services.assistance.quarterly import MONITORING_TYPES

TYPE_LABELS = {
    "alleviated": "脱贫户",
    "unstable": "脱贫不稳定户",
    "marginal": "边缘易致贫户",
    "sudden_hardship": "突发严重困难户",
    "ordinary": "一般农户",
}
STATUS_LABELS = {"none": "未纳入监测", "monitored": "监测中", "eliminated": "已消除风险"}
LEVEL_LABELS = {
    "none": "无风险",
    "watch": "可能存在问题尚无致贫返贫风险",
    "at_risk": "存在突出问题有返贫致贫风险",
    "unassessed": "未评估",
}
METHOD_LABELS = {"assisted": "帮扶消除", "natural": "自然消除"}
SEVERITY_LABELS = {"error": "错误", "warning": "警告", "hint": "提示"}

# (Chinese header, path into a town's entry)
COLUMNS: list[tuple[str, tuple[str, ...]]] = [
    ("农户总数", ("households", "total")),
    *[(f"户类型：{v}", ("households", "by_type", k)) for k, v in TYPE_LABELS.items()],
    *[(f"监测状态：{v}", ("households", "by_monitoring_status", k)) for k, v in STATUS_LABELS.items()],
    *[(f"风险等级：{v}", ("households", "by_risk_level", k)) for k, v in LEVEL_LABELS.items()],
    ("本季度新纳入监测户", ("inclusions", "total")),
    *[(f"其中{TYPE_LABELS[k]}", ("inclusions", "by_monitoring_type", k)) for k in MONITORING_TYPES],
    ("本季度风险消除户", ("eliminations", "total")),
    *[(f"其中{v}", ("eliminations", "by_method", k)) for k, v in METHOD_LABELS.items()],
    ("核实任务新增", ("verification_tasks", "opened")),
    ("核实任务办结", ("verification_tasks", "closed")),
    ("核实任务逾期", ("verification_tasks", "overdue")),
    ("回头看任务新增", ("review_tasks", "opened")),
    ("回头看任务办结", ("review_tasks", "closed")),
    ("回头看任务逾期", ("review_tasks", "overdue")),
    ("应联系户数", ("contact", "due")),
    ("每月联系达标户数", ("contact", "compliant")),
    ("联系达标率", ("contact", "rate")),
    ("救助发放笔数", ("grants", "count")),
    ("救助发放金额（元）", ("grants", "amount")),
    ("数据质量：未整改问题", ("data_quality", "open")),
    *[(f"其中{v}", ("data_quality", "by_severity", k)) for k, v in SEVERITY_LABELS.items()],
    ("已认定例外", ("data_quality", "accepted")),
    ("较上次核查新发现", ("data_quality", "opened")),
    ("较上次核查已整改", ("data_quality", "closed")),
    ("上次核查未整改", ("data_quality", "previous_open")),
    ("未整改增减", ("data_quality", "change")),
]  # fmt: skip


def cell_value(entry: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = entry
    for key in path:
        value = value.get(key, 0) if isinstance(value, Mapping) else 0
    if path == ("grants", "amount"):
        return float(Decimal(value))
    return value


HEADERS = ["乡镇代码", *[name for name, _ in COLUMNS]]
REASON_HEADERS = ["乡镇代码", "类别", "原因", "户数"]
QUALITY_HEADERS = ["乡镇代码", "问题类别", "严重程度", "未整改", "已认定例外", "较上次核查新发现",
                   "较上次核查已整改", "上次核查未整改"]  # fmt: skip
QUALITY_KEYS = ("open", "accepted", "opened", "closed", "previous_open")


def workbook_bytes(report: Mapping[str, Any]) -> bytes:
    """The report as an XLSX workbook: one row per town and the county total (全县合计),
    the reasons for inclusion and elimination, the data-quality findings by category and
    severity, and a sheet describing the report."""
    wb = Workbook()
    sheet = wb.active
    assert sheet is not None
    sheet.title = "季度动态监测"
    sheet.append(safe_row(HEADERS))
    for town in report["towns"]:
        sheet.append(
            safe_row([town["town_code"], *[cell_value(town, path) for _, path in COLUMNS]])
        )
    sheet.append(
        safe_row(["全县合计", *[cell_value(report["totals"], path) for _, path in COLUMNS]])
    )
    for cell in sheet[1]:
        cell.font = Font(bold=True)
    sheet.freeze_panes = "B2"

    reasons = wb.create_sheet("纳入与消除原因")
    reasons.append(safe_row(REASON_HEADERS))
    for town in report["towns"]:
        for factor, n in sorted(town["inclusions"]["by_factor"].items()):
            label = domain.FACTOR_LABELS.get(factor, factor)
            reasons.append(safe_row([town["town_code"], "新纳入监测", label, n]))
        for r in town["eliminations"]["reasons"]:
            method = METHOD_LABELS.get(r["method"], r["method"])
            reasons.append(safe_row([town["town_code"], method, r["reason"], r["count"]]))
    for cell in reasons[1]:
        cell.font = Font(bold=True)

    sweep = report.get("data_quality")  # reports closed before the section lack it
    quality = wb.create_sheet("数据质量")
    quality.append(safe_row(QUALITY_HEADERS))
    categories = sweep["categories"] if sweep else {}
    for code, entry in [
        *((t["town_code"], t.get("data_quality")) for t in report["towns"]),
        ("全县合计", report["totals"].get("data_quality")),
    ]:
        for item in entry["items"] if entry else ():
            quality.append(
                safe_row(
                    [
                        code,
                        categories.get(item["category"], item["category"]),
                        SEVERITY_LABELS.get(item["severity"], item["severity"]),
                        *(item[key] for key in QUALITY_KEYS),
                    ]
                )
            )
    for cell in quality[1]:
        cell.font = Font(bold=True)

    about = wb.create_sheet("说明")
    for row in (
        ("季度", report["quarter"]),
        ("统计期间", f"{report['start']} 至 {report['end']}"),
        ("状态", "已关账" if report["status"] == "closed" else "未关账（数据可能变化）"),
        ("统计时间", report["computed_at"]),
        ("关账人", report.get("closed_by") or ""),
        ("关账时间", report.get("closed_at") or ""),
        (
            "数据质量核查",
            f"本季度最后一次全县核查：{sweep['finished_at']}，核查{sweep['households']}户，"
            f"规则版本{sweep['ruleset_version']}"
            if sweep
            else "本季度无全县数据质量核查",
        ),
        (
            "迟报数据规则",
            "关账后补录的数据（按其日期属于已关账季度）计入补录时仍未关账的下一季度；"
            "农户数按统计时的状态计算。",
        ),
    ):
        about.append(safe_row(row))
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()
