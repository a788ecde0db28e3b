"""The quarterly return to the province (季度动态监测上报) on the real PostgreSQL and Kafka,
registry played by producing its household events: guarantee and income changes heard
from snapshots, entries and measures, a town's view, bad quarters, the XLSX, and a closed
quarter frozen with the report while late facts move to the next quarter."""

from __future__ import annotations

import io
from datetime import date
from typing import Any

import pytest
from openpyxl import load_workbook

from backstop.contracts.registry import HouseholdSnapshot, HouseholdUpdated, IncomeSnapshot
from backstop.events import make_event
from services.assistance import domain, reports
from services.assistance.models import Household
from services.assistance.quarterly import Quarter
from tests.assistance.conftest import Assistance
from tests.assistance.test_reports import approved_identification
from tests.support import wait_for

pytestmark = pytest.mark.integration
READ = ("province:read",)


async def update(a: Assistance, before: HouseholdSnapshot, **changes: Any) -> HouseholdSnapshot:
    """Play registry: the household's next version, and wait until assistance has it."""
    after = before.model_copy(update={**changes, "version": before.version + 1})
    event = HouseholdUpdated(household=after, changed_fields=sorted(changes))
    await a.send(make_event("registry", event, subject=after.household_id))

    async def applied() -> bool:
        async with a.runtime.sessions() as session:
            row = await session.get(Household, after.household_id)
            return row is not None and row.version >= after.version

    await wait_for(applied, message="the household's update")
    return after


async def get_return(a: Assistance, quarter: Any, **params: str) -> dict[str, Any]:
    r = await a.client.get(
        f"/v1/province/returns/{quarter}", params=params, headers=a.headers(*READ)
    )
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def ids(rows: list[dict[str, Any]]) -> list[str]:
    return [r["household_id"] for r in rows]


async def test_changes_entries_and_measures_of_the_quarter(a: Assistance) -> None:
    town, other = "441881181", "441881182"
    quarter = Quarter.of(domain.today())
    h = await a.household(
        region_code=town + "001", town_code=town, type="marginal", household_number="HN-181-1"
    )
    elsewhere = await a.household(region_code=other + "001", town_code=other, type="alleviated")

    # Guarantees: housing worsens, then worsens again (one net row); water is first recorded
    # ok (no change). Income: a new year, then the same year corrected (one net row).
    h2 = await update(a, h, guarantees={"housing": "possible_issue", "drinking_water": "ok"})
    h3 = await update(
        a,
        h2,
        guarantees={"housing": "prominent_issue", "drinking_water": "ok"},
        incomes=[IncomeSnapshot(year=2026, total=9000, per_capita=3000), *h.incomes],
    )
    h4 = await update(
        a, h3, incomes=[IncomeSnapshot(year=2026, total=9600, per_capita=3200), *h.incomes]
    )
    await update(a, elsewhere, guarantees={"basic_medical": "prominent_issue"})
    case_id = await approved_identification(a, h.household_id, h.region_code, domain.today())
    r = await a.client.post(
        "/v1/plans",
        json={
            "household_id": h.household_id,
            "year": 2026,
            "created_by": "帮扶责任人",
            "measures": [
                {
                    "category": "housing",
                    "description": "危房改造",
                    "start_on": str(quarter.start),
                    "end_on": str(quarter.last_day),
                    "amount": "20000.00",
                    "responsible_unit": "镇住建办",
                }
            ],
        },
        headers=a.rw,
    )
    assert r.status_code == 201, r.text

    ret = await get_return(a, quarter, town=town)
    sections = ret["sections"]
    [entered] = sections["entered"]
    assert entered["case_id"] == case_id and entered["household_number"] == "HN-181-1"
    assert (entered["monitoring_type"], entered["risk_factors"]) == ("marginal", ["low_income"])
    assert entered["decided_on"] == str(domain.today())
    [housing] = [g for g in sections["guarantee_changes"] if g["household_id"] == h.household_id]
    assert (housing["item"], housing["before"], housing["after"]) == (
        "housing",
        None,
        "prominent_issue",
    )
    assert housing["direction"] == "worse"
    incomes = [i for i in sections["income_updates"] if i["year"] == 2026]
    assert [(i["before"], i["after"], i["per_capita"]) for i in incomes] == [(None, 9600.0, 3200.0)]
    [measure] = sections["measures"]
    assert (measure["category"], measure["amount"]) == ("housing", "20000.00")
    assert ids(sections["monitored"]) == []  # registry has not (been played to) set the status
    assert ret["counts"]["entered"] == 1 and ret["counts"]["measures"] == 1
    assert ret["counts"]["by_town"][town]["guarantee_changes"] == 1
    assert elsewhere.household_id not in {
        r["household_id"] for rows in sections.values() for r in rows
    }

    # Registry applies the decision: the household joins the roll, with its facts.
    await update(a, h4, monitoring_status="monitored", monitoring_since=domain.today())
    [row] = (await get_return(a, quarter, town=town))["sections"]["monitored"]
    assert row["risk_factors"] == ["low_income"] and row["measures_in_force"] == 1
    assert row["guarantee_issues"] == {"housing": "prominent_issue"}

    # Region isolation: a town token sees its own town only; naming another town is a 403.
    theirs = a.headers(*READ, regions=(other,))
    r = await a.client.get(f"/v1/province/returns/{quarter}", headers=theirs)
    seen = {x["town_code"] for rows in r.json()["sections"].values() for x in rows}
    assert town not in seen and other in seen
    r = await a.client.get(f"/v1/province/returns/{quarter}", params={"town": town}, headers=theirs)
    assert r.status_code == 403

    # The county office's workbook.
    r = await a.client.get(
        f"/v1/province/returns/{quarter}.xlsx?town={town}", headers=a.headers(*READ)
    )
    assert r.status_code == 200 and r.headers["content-type"] == reports.XLSX
    book = load_workbook(io.BytesIO(r.content), read_only=True)
    rows = list(book["新纳入监测对象"].iter_rows(values_only=True))
    assert rows[0][0] == "户编号" and rows[1][0] == "HN-181-1"
    assert "与上季度比较" in book.sheetnames


async def test_bad_quarters_and_scopes_are_problems(a: Assistance) -> None:
    future = Quarter.of(domain.today()).next()
    for quarter in (str(future), "2026Q5", "2026-10", "x" * 300):
        for path in (f"/v1/province/returns/{quarter}", f"/v1/province/returns/{quarter}/diff"):
            r = await a.client.get(path, headers=a.headers(*READ))
            assert r.status_code == 422, (path, r.text)
            assert r.headers["content-type"].startswith("application/problem+json")
            assert r.json()["errors"][0]["loc"] == ["path", "quarter"]
    now = Quarter.of(domain.today())
    r = await a.client.get(
        f"/v1/province/returns/{now}", params={"town": "4418"}, headers=a.headers(*READ)
    )
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["query", "town"]
    r = await a.client.get(f"/v1/province/returns/{now}", headers=a.headers("assistance:read"))
    assert r.status_code == 403
    r = await a.client.get(f"/v1/province/returns/{now}")
    assert r.status_code == 401


async def test_a_closed_quarter_is_frozen_and_late_facts_count_next(a: Assistance) -> None:
    town = "441881183"
    q, next_q = Quarter(2022, 2), Quarter(2022, 3)  # quarters no other test closes
    in_q = date(2022, 6, 20)
    h = await a.household(region_code=town + "001", town_code=town, type="alleviated")
    late = await a.household(region_code=town + "002", town_code=town, type="alleviated")
    h2 = await update(
        a,
        h,
        guarantees={"housing": "prominent_issue"},
        guarantees_verified_on={"housing": date(2022, 5, 10)},
    )
    await approved_identification(a, h.household_id, h.region_code, in_q)
    before = await get_return(a, q, town=town)
    assert (before["counts"]["entered"], before["counts"]["guarantee_changes"]) == (1, 1)
    assert before["status"] == "open"

    r = await a.client.post(
        f"/v1/reports/quarterly/{q}/close", json={"closed_by": "县扶贫办"}, headers=a.rw
    )
    assert r.status_code == 201, r.text
    closed = await get_return(a, q, town=town)
    assert closed["status"] == "closed" and closed["closed_by"] == "县扶贫办"
    assert {k: v for k, v in closed["sections"].items() if k != "monitored"} == {
        k: v for k, v in before["sections"].items() if k != "monitored"
    }

    # Late facts dated in the closed quarter: a guarantee change and an identification.
    await update(
        a,
        h2,
        guarantees={"housing": "ok"},
        guarantees_verified_on={"housing": date(2022, 6, 1)},
    )
    case_id = await approved_identification(a, late.household_id, late.region_code, in_q)
    await a.household(region_code=town + "003", town_code=town, type="marginal")
    assert await get_return(a, q, town=town) == closed  # as stored, whatever came after

    following = await get_return(a, next_q, town=town)
    assert [e["case_id"] for e in following["sections"]["entered"]] == [case_id]
    [change] = following["sections"]["guarantee_changes"]
    assert (change["before"], change["after"], change["direction"]) == (
        "prominent_issue",
        "ok",
        "better",
    )

    r = await a.client.get(
        f"/v1/province/returns/{next_q}/diff", params={"town": town}, headers=a.headers(*READ)
    )
    assert r.status_code == 200, r.text
    diff = r.json()
    assert (diff["previous_quarter"], diff["previous_status"]) == (str(q), "closed")
    assert diff["counts"]["entered"] == {"previous": 1, "current": 1, "change": 0}
    assert [x["case_id"] for x in diff["sections"]["entered"]["added"]] == [case_id]
    changed = diff["sections"]["guarantee_changes"]["changed"]
    assert [(c["household_id"], sorted(c["fields"])) for c in changed] == [
        (h.household_id, ["after", "before", "changed_on", "direction"])
    ]
