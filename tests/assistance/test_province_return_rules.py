"""The quarterly return's pure part (季度动态监测上报): what counts as a guarantee or income
change between two household snapshots, net changes over a quarter, counts, the cut to a
caller's regions, the difference between two quarters, and the XLSX."""

from __future__ import annotations

import io
from datetime import date
from typing import Any

from openpyxl import load_workbook

from services.assistance import province_return as pr
from services.assistance.province_return_xlsx import COLUMNS, workbook_bytes

ON = date(2026, 11, 20)


def snap(
    guarantees: dict[str, str], incomes: list[dict[str, Any]], **verified: str
) -> dict[str, Any]:
    return {"guarantees": guarantees, "incomes": incomes, "guarantees_verified_on": verified}


def test_snapshot_changes_keep_guarantee_moves_and_new_or_corrected_incomes() -> None:
    before = snap(
        {"housing": "ok", "basic_medical": "possible_issue"},
        [{"year": 2025, "total": 30000, "per_capita": 10000}],
    )
    after = snap(
        {"housing": "prominent_issue", "basic_medical": "possible_issue", "food": "ok",
         "drinking_water": "possible_issue"},
        [{"year": 2026, "total": 12000, "per_capita": 4000},
         {"year": 2025, "total": 30000, "per_capita": 10000}],
        housing="2026-11-12",
    )  # fmt: skip
    changes = pr.snapshot_changes(before, after, on=ON)
    assert changes == [
        # first recorded with a problem: a change; food first recorded ok: none.
        {"kind": "guarantee", "item": "drinking_water", "before": None,
         "after": "possible_issue", "on": ON},
        # dated by registry's verification date of the item
        {"kind": "guarantee", "item": "housing", "before": "ok", "after": "prominent_issue",
         "on": date(2026, 11, 12)},
        {"kind": "income", "item": "2026", "before": None, "after": 12000.0,
         "per_capita": 4000.0, "on": ON},
    ]  # fmt: skip
    # A corrected total of a known year is an update; the same snapshot again is nothing.
    corrected = snap(after["guarantees"], [{"year": 2026, "total": 13500, "per_capita": 4500}])
    [income] = pr.snapshot_changes(after, corrected, on=ON)
    assert (income["before"], income["after"]) == (12000.0, 13500.0)
    assert pr.snapshot_changes(after, after, on=ON) == []
    assert pr.snapshot_changes({}, {}, on=ON) == []


def test_net_changes_over_a_quarter() -> None:
    key = ("household_id", "item")
    rows = [
        {"household_id": "h1", "item": "housing", "before": "ok", "after": "possible_issue", "on": 1},
        {"household_id": "h1", "item": "housing", "before": "possible_issue",
         "after": "prominent_issue", "on": 2},
        {"household_id": "h2", "item": "food", "before": "ok", "after": "possible_issue", "on": 1},
        {"household_id": "h2", "item": "food", "before": "possible_issue", "after": "ok", "on": 3},
    ]  # fmt: skip
    assert pr.net_changes(rows, key) == [
        {
            "household_id": "h1",
            "item": "housing",
            "before": "ok",
            "after": "prominent_issue",
            "on": 2,
        }
    ]  # fmt: skip  (h2's change was undone within the quarter)
    assert pr.direction("ok", "prominent_issue") == "worse"
    assert pr.direction("prominent_issue", "possible_issue") == "better"
    assert pr.direction(None, "ok") == "unchanged"


def household(hid: str, region: str = "441881101001") -> dict[str, Any]:
    return {"household_id": hid, "household_number": f"N-{hid}", "region_code": region,
            "town_code": region[:9]}  # fmt: skip


def a_return(quarter: str, **sections: list[dict[str, Any]]) -> dict[str, Any]:
    full = {s: sections.get(s, []) for s in pr.SECTIONS}
    return {"quarter": quarter, "status": "open", "sections": full, "counts": pr.counts(full)}


def entered(case: str, hid: str, region: str = "441881101001", **extra: Any) -> dict[str, Any]:
    return {**household(hid, region), "case_id": case, "monitoring_type": "marginal",
            "risk_factors": ["illness", "low_income"], "decided_on": "2026-11-20", **extra}  # fmt: skip


def monitored(hid: str, region: str = "441881101001", **extra: Any) -> dict[str, Any]:
    return {**household(hid, region), "type": "marginal", "monitoring_since": "2026-08-01",
            "risk_factors": ["illness"], "guarantee_issues": {}, "income_year": 2025,
            "per_capita": 5000.0, "measures_in_force": 0, **extra}  # fmt: skip


def test_counts_and_the_cut_to_a_town() -> None:
    other = "441881102003"
    ret = a_return(
        "2026Q4",
        entered=[entered("c1", "h1"), entered("c2", "h2", other, monitoring_type="unstable")],
        guarantee_changes=[{**household("h1"), "item": "housing", "direction": "worse"}],
        monitored=[monitored("h1"), monitored("h2", other), monitored("h3")],
    )
    counts = ret["counts"]
    assert (counts["entered"], counts["guarantee_changes"], counts["monitored"]) == (2, 1, 3)
    assert counts["households"] == 2  # h1 and h2 in the quarter's sections; h3 only monitored
    assert counts["entered_by_monitoring_type"] == {"marginal": 1, "unstable": 1}
    assert counts["entered_by_factor"] == {"illness": 2, "low_income": 2}
    assert counts["guarantee_changes_by_direction"] == {"worse": 1}
    assert counts["by_town"]["441881101"]["monitored"] == 2
    assert counts["by_town"]["441881102"]["entered"] == 1

    mine = pr.cut(ret, lambda region: region.startswith("441881101"))
    assert [r["household_id"] for r in mine["sections"]["entered"]] == ["h1"]
    assert mine["counts"]["monitored"] == 2 and list(mine["counts"]["by_town"]) == ["441881101"]
    assert ret["counts"]["monitored"] == 3  # the stored return is not touched


def test_diff_against_the_previous_quarter() -> None:
    previous = a_return(
        "2026Q3",
        entered=[entered("c0", "h0")],
        monitored=[monitored("h0"), monitored("h1"), monitored("gone")],
    )
    current = a_return(
        "2026Q4",
        entered=[entered("c1", "new")],
        monitored=[
            monitored("h0"),
            monitored("h1", measures_in_force=2, per_capita=6900.0),
            monitored("new"),
        ],
    )
    d = pr.diff(current, previous)
    assert (d["quarter"], d["previous_quarter"]) == ("2026Q4", "2026Q3")
    roll = d["sections"]["monitored"]
    assert [r["household_id"] for r in roll["added"]] == ["new"]
    assert [r["household_id"] for r in roll["removed"]] == ["gone"]
    assert roll["changed"] == [
        {
            "household_id": "h1",
            "household_number": "N-h1",
            "fields": {
                "measures_in_force": {"before": 0, "after": 2},
                "per_capita": {"before": 5000.0, "after": 6900.0},
            },
        }
    ]
    assert [r["case_id"] for r in d["sections"]["entered"]["added"]] == ["c1"]
    assert [r["case_id"] for r in d["sections"]["entered"]["removed"]] == ["c0"]
    assert d["counts"]["monitored"] == {"previous": 3, "current": 3, "change": 0}
    assert d["counts"]["entered"] == {"previous": 1, "current": 1, "change": 0}
    # The same return against itself: nothing added, removed or changed.
    same = pr.diff(current, current)
    assert all(not any(v.values()) for v in same["sections"].values())


def test_workbook_has_chinese_headers_and_no_formulas() -> None:
    hostile = '=HYPERLINK("http://x")'
    ret = a_return(
        "2026Q4",
        entered=[entered("c1", "h1")],
        measures=[{**household("h1"), "measure_id": "m1", "category": "health",
                   "description": hostile, "start_on": "2026-12-01", "end_on": "2027-11-30",
                   "amount": "3000.00", "responsible_unit": "镇卫生院"}],
        monitored=[monitored("h1", guarantee_issues={"housing": "prominent_issue"})],
    )  # fmt: skip
    ret |= {"start": "2026-10-01", "end": "2026-12-31", "computed_at": "now"}
    previous = a_return("2026Q3", monitored=[monitored("h1")])
    book = load_workbook(io.BytesIO(workbook_bytes(ret, pr.diff(ret, previous))))
    assert book.sheetnames == ["汇总", *pr.SECTION_LABELS.values(), "与上季度比较", "说明"]
    entered_rows = list(book["新纳入监测对象"].iter_rows(values_only=True))
    assert entered_rows[0] == tuple(name for name, _ in COLUMNS["entered"])
    assert entered_rows[0][:2] == ("户编号", "乡镇代码")
    assert (
        entered_rows[1][0] == "N-h1"
        and entered_rows[1][5] == "因病刚性支出较大、人均纯收入低于监测线"
    )
    measure = list(book["帮扶措施"].iter_rows(values_only=True))[1]
    assert measure[5] == "'" + hostile and measure[8] == 3000.0
    roll = list(book["监测对象名单"].iter_rows(values_only=True))[1]
    assert "住房安全保障（存在突出问题有返贫致贫风险）" in roll
    changes = list(book["与上季度比较"].iter_rows(values_only=True))
    assert ("监测对象名单", "变更", "N-h1", "h1", "guarantee_issues") in changes
    summary = list(book["汇总"].iter_rows(values_only=True))
    assert summary[-1][0] == "全县合计" and summary[-1][1] == 1
