"""What the people who fix things read: the summary by town × category with its change
since the last sweep, and each town's 整改清单 (rectification list) as XLSX."""

from __future__ import annotations

import io
from collections import defaultdict

from openpyxl import Workbook
from openpyxl.styles import Alignment, Font
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from backstop.auth import Principal
from backstop.exports import safe_row
from services.quality import domain
from services.quality import models as m
from services.quality.common import COUNTY_TZ

HEADERS = (
    "序号",
    "乡镇代码",
    "村代码",
    "户ID",
    "规则编号",
    "问题类别",
    "严重程度",
    "问题描述",
    "整改要求",
    "发现时间",
    "整改结果",
)


async def summary(
    session: AsyncSession, *, principal: Principal, region: str | None
) -> m.SummaryPublic:
    f = m.findings.c
    stmt = (
        select(f.town_code, f.category, f.severity, func.count().label("n"))
        .where(f.status == "open", principal.region_clause(f.region_code))
        .group_by(f.town_code, f.category, f.severity)
    )
    if region:
        stmt = stmt.where(f.region_code.startswith(region, autoescape=True))
    by_town: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    errors: dict[str, int] = defaultdict(int)
    for r in await session.execute(stmt):
        by_town[r.town_code][r.category] += r.n
        if r.severity == "error":
            errors[r.town_code] += r.n
    s = m.sweeps.c
    last = (
        await session.execute(
            select(m.sweeps)
            .where(s.status == "done", s.region_prefix == "")
            .order_by(s.finished_at.desc())
            .limit(1)
        )
    ).one_or_none()
    before: dict[str, dict[str, int]] = (last.counts or {}) if last else {}
    towns = []
    # Towns with no open finding now still show their change if they had some then.
    gone = {t for t in before if principal.can_see(t) and (not region or t.startswith(region))}
    for town in sorted(set(by_town) | gone):
        categories = dict(by_town.get(town, {}))
        total = sum(categories.values())
        then = (
            sum(n for c, n in before[town].items() if c != "error")
            if town in before
            else (0 if last else None)
        )
        towns.append(
            m.TownSummary(
                town_code=town,
                total=total,
                errors=errors.get(town, 0),
                by_category=categories,
                last_sweep_total=then,
                change=None if then is None else total - then,
            )
        )
    return m.SummaryPublic(
        categories=domain.CATEGORY_LABELS,
        towns=towns,
        total=sum(t.total for t in towns),
        last_sweep=m.SweepPublic.model_validate(last._mapping) if last else None,
    )


async def rectification_xlsx(session: AsyncSession, *, town_code: str) -> bytes:
    """The town's open findings, errors first, one row each, with the fix to make."""
    rows = await session.execute(
        text(
            "SELECT id, region_code, household_id, rule_code, category, severity, message, "
            "opened_at FROM quality_findings WHERE status = 'open' AND town_code = :town "
            "ORDER BY CASE severity WHEN 'error' THEN 0 WHEN 'warning' THEN 1 ELSE 2 END, "
            "region_code, household_id, rule_code"
        ),
        {"town": town_code},
    )
    wb = Workbook()
    sheet = wb.active
    assert sheet is not None
    sheet.title = "整改清单"
    sheet.append(safe_row(HEADERS))
    for n, r in enumerate(rows, start=1):
        rule = domain.RULES_BY_CODE.get(r.rule_code)
        sheet.append(
            safe_row(
                (
                    n,
                    town_code,
                    r.region_code,
                    r.household_id,
                    r.rule_code,
                    domain.CATEGORY_LABELS.get(r.category, r.category),
                    domain.SEVERITY_LABELS.get(r.severity, r.severity),
                    r.message,
                    rule.fix if rule else "",
                    r.opened_at.astimezone(COUNTY_TZ).strftime("%Y-%m-%d %H:%M"),
                    "",
                )
            )
        )
    for cell in sheet[1]:
        cell.font = Font(bold=True)
    for column, width in zip("ABCDEFGHIJK", (6, 11, 14, 38, 9, 16, 8, 60, 48, 17, 20), strict=True):
        sheet.column_dimensions[column].width = width
    for row in sheet.iter_rows(min_row=2, min_col=8, max_col=9):
        for cell in row:
            cell.alignment = Alignment(wrap_text=True, vertical="top")
    sheet.freeze_panes = "A2"
    about = wb.create_sheet("说明")
    for line in (
        ("乡镇", town_code),
        ("规则版本", domain.RULESET_VERSION),
        ("严重程度", "错误：必须整改；警告：核实后整改或说明；提示：建议核实"),
        ("例外", "数据确实无误的，由县级在系统中标注为例外并说明理由，之后不再列入清单"),
    ):
        about.append(safe_row(line))
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()
