"""The quarterly report's 数据质量 section: quality's sweep summaries (played here by
producing `backstop.quality.sweep.completed.v1`) kept by assistance, the quarter's last
county-wide sweep shown per town and for the county, region isolation, the XLSX sheet,
and a closed quarter that a later sweep does not change. The real quality service
emitting the summary is covered in tests/quality and tests/e2e."""

from __future__ import annotations

import io
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from openpyxl import load_workbook
from sqlalchemy import func, select
from sqlmodel import col

from backstop.contracts.quality import SweepCompleted, SweepCount
from backstop.events import CloudEvent, make_event
from services.assistance.models import DataQualitySweep
from services.assistance.quarterly import Quarter, county_totals, empty_town, quality_entry
from tests.assistance.conftest import Assistance
from tests.support import wait_for

T1, T2 = "441881181", "441881182"
LABELS = {"identity": "身份与家庭结构", "income": "收入", "procedure": "监测与认定程序"}

# ------------------------------------------------------------------------ unit


def count(town: str, category: str, severity: str, **n: int | None) -> dict[str, Any]:
    base: dict[str, Any] = {**dict.fromkeys(("open", "accepted", "opened", "closed"), 0),
                            "previous_open": None}  # fmt: skip
    return {"town_code": town, "category": category, "severity": severity, **base, **n}


def test_a_towns_entry_and_the_county_total() -> None:
    items = [
        count(T1, "identity", "error", open=3, accepted=1, closed=2, previous_open=5),
        count(T1, "income", "warning", open=2, opened=2, previous_open=0),
    ]
    entry = quality_entry(items, compared=True)
    assert {k: entry[k] for k in ("open", "accepted", "opened", "closed")} == {
        "open": 5, "accepted": 1, "opened": 2, "closed": 2
    }  # fmt: skip
    assert (entry["previous_open"], entry["change"]) == (5, 0)
    assert entry["by_severity"] == {"error": 3, "warning": 2, "hint": 0}
    assert entry["by_category"] == {"identity": 3, "income": 2}
    assert [(i["category"], i["severity"], i["open"]) for i in entry["items"]] == [
        ("identity", "error", 3), ("income", "warning", 2)
    ]  # fmt: skip
    # The first sweep has nothing to compare with: no trend.
    first = quality_entry([count(T2, "procedure", "hint", open=1)], compared=False)
    assert (first["previous_open"], first["change"]) == (None, None)
    assert first["items"][0]["previous_open"] is None

    a, b = empty_town(), empty_town()
    a["data_quality"] = entry
    b["data_quality"] = quality_entry([count(T2, "identity", "error", open=1)], compared=True)
    total = county_totals([a, b])["data_quality"]
    assert (total["open"], total["previous_open"], total["change"]) == (6, 5, 1)
    assert total["by_category"] == {"identity": 4, "income": 2}
    # A stored report closed before the section existed still totals.
    old = empty_town()
    del old["data_quality"]
    assert county_totals([old])["data_quality"]["open"] == 0


# ---------------------------------------------------------------- integration


def sweep(
    sweep_id: int,
    finished_at: datetime,
    counts: list[dict[str, Any]],
    *,
    previous: int | None = None,
    region_prefix: str = "",
) -> CloudEvent:
    return make_event(
        "quality",
        SweepCompleted(
            sweep_id=sweep_id,
            trigger="nightly",
            region_prefix=region_prefix,
            finished_at=finished_at,
            households=1000,
            ruleset_version="2026.12.1",
            previous_sweep_id=previous,
            previous_finished_at=finished_at - timedelta(days=1) if previous else None,
            categories=LABELS,
            counts=[SweepCount.model_validate(c) for c in counts],
        ),
        subject=f"sweep/{sweep_id}",
    )


async def kept(a: Assistance, ids: list[int]) -> bool:
    async with a.runtime.sessions() as session:
        n = await session.scalar(
            select(func.count()).where(col(DataQualitySweep.sweep_id).in_(ids))
        )
    return n == len(ids)


@pytest.mark.integration
async def test_the_quarters_last_county_sweep_and_a_closed_quarter(a: Assistance) -> None:
    quarter = Quarter(2023, 3)
    base = random.randrange(10**9, 10**12)
    last_evening = datetime(2023, 9, 30, 10, tzinfo=UTC)  # 18:00 county time, 30 Sept
    events = [
        sweep(base, last_evening - timedelta(days=1),
              [count(T1, "identity", "error", open=5, opened=5)]),
        sweep(base + 1, last_evening, [
            count(T1, "identity", "error", open=3, accepted=1, closed=2, previous_open=5),
            count(T1, "income", "warning", open=2, opened=2, previous_open=0),
            count(T2, "procedure", "hint", open=1, opened=1, previous_open=0),
        ], previous=base),
        # One town's sweep, later: not county-wide, so not the quarter's figure.
        sweep(base + 2, last_evening + timedelta(hours=1),
              [count(T1, "identity", "error", open=0, closed=3, previous_open=3)],
              previous=base + 1, region_prefix=T1),
        # 00:30 on 1 October, county time: the next quarter's.
        sweep(base + 3, datetime(2023, 9, 30, 16, 30, tzinfo=UTC),
              [count(T1, "identity", "error", open=9, opened=9, previous_open=0)],
              previous=base + 1),
    ]  # fmt: skip
    for event in [*events, events[1]]:  # the last sweep twice: kept once
        await a.send(event)
    await wait_for(lambda: kept(a, [base, base + 1, base + 2, base + 3]), message="sweeps kept")

    r = await a.client.get(f"/v1/reports/quarterly/{quarter}", headers=a.rw)
    assert r.status_code == 200, r.text
    report = r.json()
    assert report["data_quality"]["sweep_id"] == base + 1
    assert report["data_quality"]["categories"] == LABELS
    towns = {t["town_code"]: t["data_quality"] for t in report["towns"]}
    assert {k: towns[T1][k] for k in ("open", "accepted", "opened", "closed", "change")} == {
        "open": 5, "accepted": 1, "opened": 2, "closed": 2, "change": 0
    }  # fmt: skip
    assert towns[T1]["by_severity"] == {"error": 3, "warning": 2, "hint": 0}
    assert (towns[T2]["open"], towns[T2]["previous_open"], towns[T2]["change"]) == (1, 0, 1)
    assert (report["totals"]["data_quality"]["open"], report["totals"]["data_quality"]["change"]) == (6, 1)  # fmt: skip

    # A town's token sees its own town's counts only.
    mine = await a.client.get(
        f"/v1/reports/quarterly/{quarter}", headers=a.headers("assistance:read", regions=(T2,))
    )
    assert [t["town_code"] for t in mine.json()["towns"]] == [T2]
    assert mine.json()["totals"]["data_quality"]["open"] == 1

    xlsx = await a.client.get(f"/v1/reports/quarterly/{quarter}.xlsx", headers=a.rw)
    book = load_workbook(io.BytesIO(xlsx.content), read_only=True)
    rows = list(book["数据质量"].iter_rows(values_only=True))
    assert rows[0][:4] == ("乡镇代码", "问题类别", "严重程度", "未整改")
    assert (T1, "身份与家庭结构", "错误", 3, 1, 0, 2, 5) in rows
    assert ("全县合计", "监测与认定程序", "提示", 1, 0, 1, 0, 0) in rows
    main = list(book["季度动态监测"].iter_rows(values_only=True))
    column = main[0].index("数据质量：未整改问题")
    assert [row[column] for row in main if row[0] == T1] == [5]

    # Closed, the quarter keeps the sweep it was closed with, whatever comes after.
    r = await a.client.post(f"/v1/reports/quarterly/{quarter}/close", headers=a.rw)
    assert r.status_code == 201, r.text
    closed = r.json()["report"]
    assert closed["data_quality"]["sweep_id"] == base + 1
    late = sweep(base + 4, last_evening + timedelta(hours=2),
                 [count(T1, "identity", "error", open=40, opened=40, previous_open=3)],
                 previous=base + 1)  # fmt: skip
    await a.send(late)
    await wait_for(lambda: kept(a, [base + 4]), message="late sweep kept")
    again = await a.client.get(f"/v1/reports/quarterly/{quarter}", headers=a.rw)
    assert again.json() == closed
