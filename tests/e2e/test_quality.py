"""数据质量核查 end to end: registry's API writes the household, the quality service (its
own process) hears it through Kafka and opens findings; fixing the data closes them; an
accepted exception stays closed through the next sweep, whose summary reaches the
quarterly report (assistance); a town sees only its town."""

from __future__ import annotations

import random
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import httpx

from backstop.idnumber import check_digit
from tests.e2e.system import System
from tests.support import wait_for

TOWN_A, TOWN_B = "441881101", "441881001"
VILLAGE_A, VILLAGE_B = "441881101001", "441881001001"
THIS_YEAR = date.today().year


_GIVEN: set[str] = set()


def id_number(rng: random.Random, born: date, *, male: bool) -> str:
    """A valid ID number not given before in this run (the tests register several people
    born the same day: one repeated is a 409); the 17th digit is odd for a man."""
    while True:
        sequence = rng.randint(0, 499) * 2 + (1 if male else 0)
        first17 = f"441881{born:%Y%m%d}{sequence:03d}"
        number = first17 + check_digit(first17)
        if number not in _GIVEN:
            _GIVEN.add(number)
            return number


async def register(system: System, body: dict[str, Any]) -> dict[str, Any]:
    async with system.client("registry", "registry:write", "registry:read") as registry:
        r = await registry.post("/v1/households", json=body)
        assert r.status_code == 201, r.text
        got = await registry.get(f"/v1/households/{r.json()['id']}")
        assert got.status_code == 200
        return dict(got.json())


async def open_codes(
    quality: httpx.AsyncClient, household_id: str, status: str = "open"
) -> dict[str, Any]:
    r = await quality.get(
        "/v1/quality/findings", params={"household_id": household_id, "status": status}
    )
    assert r.status_code == 200, r.text
    return {f["rule_code"]: f for f in r.json()["items"]}


async def test_findings_follow_the_register(system: System) -> None:
    rng = random.Random()
    body = {
        "region_code": VILLAGE_A,
        "type": "alleviated",
        "annual_income": {"year": THIS_YEAR - 1, "total": 36000},
        "members": [
            {"id_number": id_number(rng, date(1975, 3, 1), male=True), "name": "户主",
             "relation": "head"},
            {"id_number": id_number(rng, date(1977, 5, 1), male=True), "name": "配偶",
             "relation": "spouse"},
            {"id_number": id_number(rng, date(THIS_YEAR - 10, 2, 1), male=False), "name": "女儿",
             "relation": "child", "labor_capacity": "full", "schooling": "primary"},
        ],
    }  # fmt: skip
    household = await register(system, body)
    hid = household["id"]
    spouse, child = household["members"][1], household["members"][2]
    assert spouse["relation"] == "spouse" and child["relation"] == "child"

    async with system.client("quality", "quality:read", "quality:write") as quality:

        async def both() -> dict[str, Any] | None:
            found = await open_codes(quality, hid)
            return found if {"ID003", "LS001"} <= found.keys() else None

        found = await wait_for(both, timeout=30, message="same-sex spouse and under-16 findings")
        assert found["ID003"]["severity"] == "error" and found["LS001"]["severity"] == "error"
        assert found["LS001"]["evidence"]["person_ids"] == [child["person_id"]]

        # Fixing the data closes both.
        async with system.client("registry", "registry:write") as registry:
            for person_id, patch in (
                (spouse["person_id"], {"relation": "other"}),
                (child["person_id"], {"labor_capacity": "none"}),
            ):
                r = await registry.patch(f"/v1/households/{hid}/members/{person_id}", json=patch)
                assert r.status_code == 204, r.text

        async def closed() -> bool:
            return not {"ID003", "LS001"} & (await open_codes(quality, hid)).keys()

        await wait_for(closed, timeout=30, message="findings closed")
        assert {"ID003", "LS001"} <= (await open_codes(quality, hid, "closed")).keys()


async def test_accepted_exception_survives_a_sweep_and_towns_are_isolated(system: System) -> None:
    rng = random.Random()

    def elder_household(village: str) -> dict[str, Any]:
        # A 70-year-old head recorded with full labour (LS004, a warning).
        return {
            "region_code": village,
            "type": "alleviated",
            "annual_income": {"year": THIS_YEAR - 1, "total": 20000},
            "members": [
                {"id_number": id_number(rng, date(THIS_YEAR - 70, 1, 1), male=True),
                 "name": "户主", "relation": "head", "labor_capacity": "full"},
            ],
        }  # fmt: skip

    a = await register(system, elder_household(VILLAGE_A))
    b = await register(system, elder_household(VILLAGE_B))
    county = system.client("quality", "quality:read", "quality:write", regions=("441881",))
    town_a = system.client("quality", "quality:read", "quality:write", regions=(TOWN_A,))
    async with county, town_a:

        async def ls004(hid: str) -> Any:
            return (await open_codes(county, hid)).get("LS004")

        finding = await wait_for(lambda: ls004(a["id"]), timeout=30, message="LS004 in A")
        await wait_for(lambda: ls004(b["id"]), timeout=30, message="LS004 in B")

        # Isolation: the town's token lists its own town's findings only.
        r = await town_a.get("/v1/quality/findings", params={"rule": "LS004", "limit": 500})
        seen = {f["household_id"] for f in r.json()["items"]}
        assert a["id"] in seen and b["id"] not in seen
        assert all(f["town_code"] == TOWN_A for f in r.json()["items"])
        r = await town_a.get(f"/v1/quality/rectification/{TOWN_B}.xlsx")
        assert r.status_code == 403

        # Only the county accepts an exception.
        body = {"accepted_by": "县扶贫办 李四", "reason": "入户核实：仍在务农，劳动能力属实"}
        r = await town_a.post(f"/v1/quality/findings/{finding['id']}/accept", json=body)
        assert r.status_code == 403
        r = await county.post(f"/v1/quality/findings/{finding['id']}/accept", json=body)
        assert r.status_code == 200, r.text

        r = await county.post("/v1/quality/sweeps", json={})
        assert r.status_code == 202, r.text
        sweep_id = r.json()["id"]

        async def swept() -> Any:
            s = (await county.get(f"/v1/quality/sweeps/{sweep_id}")).json()
            return s if s["status"] == "done" else None

        sweep = await wait_for(swept, timeout=60, message="sweep done")
        assert sweep["households"] >= 2
        assert "LS004" not in await open_codes(county, a["id"])
        accepted = await open_codes(county, a["id"], "accepted")
        assert accepted["LS004"]["accepted_by"] == body["accepted_by"]
        assert "LS004" in await open_codes(county, b["id"])  # not accepted: still open

        summary = (await county.get("/v1/quality/summary")).json()
        assert summary["last_sweep"]["id"] == sweep_id
        towns = {t["town_code"]: t for t in summary["towns"]}
        assert towns[TOWN_B]["by_category"]["labour_schooling"] >= 1
        assert towns[TOWN_B]["change"] == 0  # nothing changed since the sweep

    # The sweep's summary reaches assistance: the quarterly report's 数据质量 section.
    today = datetime.now(ZoneInfo("Asia/Shanghai")).date()
    quarter = f"{today.year}Q{(today.month - 1) // 3 + 1}"
    async with system.client("assistance", "assistance:read", regions=("441881",)) as assistance:

        async def reported() -> Any:
            report = (await assistance.get(f"/v1/reports/quarterly/{quarter}")).json()
            sweep = report["data_quality"]
            return report if sweep and sweep["sweep_id"] >= sweep_id else None

        report = await wait_for(reported, timeout=30, message="数据质量 in the quarterly report")
        quality = {t["town_code"]: t["data_quality"] for t in report["towns"]}
        assert quality[TOWN_A]["accepted"] >= 1
        assert quality[TOWN_B]["by_category"]["labour_schooling"] >= 1
        assert report["totals"]["data_quality"]["open"] >= quality[TOWN_B]["open"]
