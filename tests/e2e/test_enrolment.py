"""People not in the register, end to end (纳入建档立卡核查, seed 二(一) and 二(三)): a
department's costs for an unknown person over the warning line open a check at the county,
which hands it to a town; a second record joins it; the confirmed person's household,
registered the normal way, takes the check, enters the identification procedure and is
scored from the earlier records. A clue about an unknown person becomes a check too. No
event carries an ID number. Six services as processes, the real PostgreSQL and Kafka."""

from __future__ import annotations

import uuid
from datetime import date
from typing import Any

import httpx
import orjson
import pytest

from backstop.idnumber import check_digit, id_hash
from tests.e2e.system import System
from tests.security.test_privacy import rebuildable
from tests.support import checklist, read_topic, wait_for

pytestmark = pytest.mark.integration

COUNTY = "441881"
VILLAGE = "441881101201"  # 园山村委会, 沙口镇
TOWN = VILLAGE[:9]
OTHER_TOWN = "441881102"
UNMATCHED = "backstop.datasync.records.unmatched.v1"
FLAGGED = "backstop.risk.unregistered.flagged.v1"


def id_number(born: date) -> str:
    first17 = f"441881{born:%Y%m%d}{uuid.uuid4().int % 1000:03d}"
    return first17 + check_digit(first17)


def bill(number: str, out_of_pocket: float, day: int) -> dict[str, Any]:
    return {
        "record_id": f"un-{uuid.uuid4().hex[:12]}", "id_number": number, "name": "赵春梅",
        "settled_on": f"2026-11-{day:02d}", "total_cost": out_of_pocket * 3,
        "insurance_paid": out_of_pocket * 2, "assistance_paid": 0, "out_of_pocket": out_of_pocket,
    }  # fmt: skip


async def post_bills(datasync: httpx.AsyncClient, records: list[dict[str, Any]]) -> None:
    batch = {"batch_id": f"un-{uuid.uuid4().hex[:10]}", "period": "2026-11", "records": records}
    r = await datasync.post("/v1/feeds/medical/batches", json=batch)
    assert r.status_code == 201, r.text
    assert r.json()["unmatched"] == len(records)


async def poll(client: httpx.AsyncClient, url: str, check: Any, **params: Any) -> Any:
    async def probe() -> Any:
        r = await client.get(url, params=params)
        body = r.json() if r.status_code == 200 else None
        return body if body is not None and check(body) else None

    return await wait_for(probe, timeout=90, interval=0.5, message=f"GET {url} {params}")


async def test_an_unregistered_person_over_the_line_to_the_register(system: System) -> None:
    person = id_number(date(1969, 3, 8))
    person_hash = id_hash(person, system.settings("datasync").pii_key)
    first, second = bill(person, 12000, 3), bill(person, 800, 20)
    county = ("assistance:read", "assistance:write")
    async with (
        system.client("datasync", "feeds:medical") as datasync,
        system.client("datasync", "feeds:read", "registry:pii", regions=(COUNTY,)) as data_office,
        system.client("assistance", *county, regions=(COUNTY,)) as office,
        system.client("assistance", *county, regions=(TOWN,)) as town,
        system.client("assistance", *county, regions=(OTHER_TOWN,)) as other_town,
        system.client("assistance", *county, regions=(VILLAGE,)) as village,
        system.client("registry", "registry:write", "registry:read") as registry,
        system.client("risk", "risk:read") as risk,
        system.client("notify", "notify:read") as reminders,
    ):
        # 1. 医保局's bill for a person in no household, over the line (10,000 without an
        #    income on record): a check at the county, which only the county sees.
        await post_bills(datasync, [first])
        listed = await poll(
            office, "/v1/enrolment-checks", lambda b: len(b["items"]) == 1, id_hash=person_hash
        )
        check = listed["items"][0]
        assert check["kind"] == "enrolment_check" and check["kind_label"] == "纳入建档立卡核查"
        assert check["region_code"] == COUNTY and check["status"] == "open"
        assert check["factors"] == ["illness"]
        assert check["evidence"] == [f"medical:{first['record_id']}"]
        assert "医疗自付" in check["reason"] and "12,000" in check["reason"]
        hidden = await town.get("/v1/enrolment-checks", params={"id_hash": person_hash})
        assert hidden.json()["items"] == []
        assert (await town.get(f"/v1/enrolment-checks/{check['id']}")).status_code == 404

        # 2. A second bill joins the open check: new evidence, no second check.
        await post_bills(datasync, [second])
        joined = await poll(
            office,
            f"/v1/enrolment-checks/{check['id']}",
            lambda b: len(b["evidence"]) == 2,
        )
        assert "新证据" in joined["reason"]
        again = await office.get("/v1/enrolment-checks", params={"id_hash": person_hash})
        assert len(again.json()["items"]) == 1

        # 3. 下发各镇: only the county hands it down, to a town of its own; then the town
        #    sees it and the other town does not.
        r = await town.post(
            f"/v1/enrolment-checks/{check['id']}/assign",
            json={"town_code": TOWN, "assigned_by": "沙口镇"},
        )
        assert r.status_code == 403, r.text  # 下发 is the county's
        r = await office.post(
            f"/v1/enrolment-checks/{check['id']}/assign",
            json={"town_code": "440000101", "assigned_by": "扶贫办"},
        )
        assert r.status_code == 422, r.text
        assert r.headers["content-type"].startswith("application/problem+json")
        r = await office.post(
            f"/v1/enrolment-checks/{check['id']}/assign",
            json={"town_code": TOWN, "assigned_by": "扶贫办"},
        )
        assert r.status_code == 200, r.text
        assert r.json()["assignee"] == {"type": "town", "code": TOWN}
        assert (await town.get(f"/v1/enrolment-checks/{check['id']}")).status_code == 200
        assert (await other_town.get(f"/v1/enrolment-checks/{check['id']}")).status_code == 404
        # notify reminded the county office when it opened, the town when handed down.
        for recipient in ("county_office:county", f"town:{TOWN}"):
            await poll(
                reminders,
                "/v1/reminders",
                lambda b: any(i["ref"] == check["id"] for i in b["items"]),
                recipient=recipient,
            )

        # 4. The town reads who the person is from datasync (the county's data office,
        #    registry:pii) and checks at home: a village cannot complete, an empty
        #    checklist is refused, "confirmed" awaits the household's registration.
        r = await data_office.get("/v1/unmatched", params={"id_hash": person_hash})
        assert r.status_code == 200, r.text
        assert {i["id_number"] for i in r.json()["items"]} == {person}
        done = {"outcome": "confirmed", "verified_by": "沙口镇 黄志明", **checklist(9000)}
        r = await village.post(f"/v1/enrolment-checks/{check['id']}/complete", json=done)
        assert r.status_code == 403, r.text
        r = await town.post(
            f"/v1/enrolment-checks/{check['id']}/complete",
            json={"outcome": "confirmed", "verified_by": "x", "guarantees": {}},
        )
        assert r.status_code == 422, r.text
        r = await town.post(f"/v1/enrolment-checks/{check['id']}/complete", json=done)
        assert r.status_code == 200, r.text
        assert r.json()["outcome"] == "confirmed" and "POST /v1/households" in r.json()["next_step"]

        # 5. 纳入建档立卡: the household is registered the normal way; the check follows it
        #    into its village and the household enters the identification procedure.
        body = {
            "region_code": VILLAGE, "type": "ordinary",
            "annual_income": {"year": 2025, "total": 18000},
            "members": [{"id_number": person, "name": "赵春梅", "relation": "head"}],
        }  # fmt: skip
        r = await registry.post("/v1/households", json=body)
        assert r.status_code == 201, r.text
        household_id = r.json()["id"]
        linked = await poll(
            office, f"/v1/enrolment-checks/{check['id']}", lambda b: b["case_id"] is not None
        )
        assert linked["household_id"] == household_id and linked["region_code"] == VILLAGE
        r = await town.get(f"/v1/cases/{linked['case_id']}")
        assert r.status_code == 200, r.text
        case = r.json()
        assert case["kind"] == "identification" and case["household_id"] == household_id
        assert case["status"] == "in_progress" and case["risk_factors"] == ["illness"]

        # 6. datasync re-matched the earlier bills to the household: risk scores it from
        #    them (12,800 of 18,000 yuan: over 50 %).
        assessment = await poll(
            risk, f"/v1/households/{household_id}/risk", lambda b: b["level"] == "at_risk"
        )
        illness = next(f for f in assessment["factors"] if f["code"] == "illness")
        assert "12,800" in illness["evidence"]

    # No ID number in any event of the person: the records, the flag.
    events = await read_topic(
        system.settings("datasync"),
        "datasync.records",
        min_count=2,
        match=lambda e: (
            e.type == UNMATCHED and any(p["id_hash"] == person_hash for p in e.data["people"])
        ),
    )
    events += await read_topic(
        system.settings("risk"),
        "risk.assessments",
        min_count=2,
        match=lambda e: e.type == FLAGGED and e.subject == person_hash,
    )
    assert len(events) == 4
    for event in events:
        raw = event.to_bytes()
        assert rebuildable(orjson.loads(raw)) == [], raw[:300]
        assert b"\xe8\xb5\xb5\xe6\x98\xa5\xe6\xa2\x85" not in raw  # the name 赵春梅


async def test_a_clue_about_an_unregistered_person_becomes_a_check(system: System) -> None:
    neighbour = id_number(date(1975, 6, 1))  # the village must be known: one household
    stranger = id_number(date(1958, 12, 24))
    rw = ("assistance:read", "assistance:write")
    async with (
        system.client("registry", "registry:write") as registry,
        system.client("assistance", *rw, regions=(TOWN,)) as town,
        system.client("assistance", *rw, regions=(VILLAGE,)) as village,
    ):
        r = await registry.post("/v1/households", json={
            "region_code": VILLAGE, "type": "ordinary",
            "annual_income": {"year": 2025, "total": 60000},
            "members": [{"id_number": neighbour, "name": "钟伟", "relation": "head"}],
        })  # fmt: skip
        assert r.status_code == 201, r.text

        async def filed() -> Any:
            r = await village.post("/v1/clues", json={
                "source": "cadre_screening", "summary": "独居老人，因病无力就医，未建档",
                "village_code": VILLAGE, "person": {"name": "罗桂英", "id_number": stranger},
                "concerns": ["illness"],
            })  # fmt: skip
            return r.json() if r.status_code == 201 else None  # until the village is known

        clue = await wait_for(filed, timeout=60, interval=0.5, message="clue filed")
        assert clue["household_id"] is None and clue["task_id"] is None
        url = f"/v1/clues/{clue['id']}/enrolment-check"
        assert (await town.post(url, json={"opened_by": "沙口镇"})).status_code == 409
        r = await town.post(f"/v1/clues/{clue['id']}/accept", json={"accepted_by": "沙口镇"})
        assert r.status_code == 200, r.text
        assert (await village.post(url, json={"opened_by": "村委"})).status_code == 403
        r = await town.post(url, json={"opened_by": "沙口镇"})
        assert r.status_code == 201, r.text
        check = r.json()
        assert check["region_code"] == VILLAGE and check["assignee"] == {
            "type": "town",
            "code": TOWN,
        }
        assert check["origin"] == "clue" and check["clue_id"] == clue["id"]
        assert check["evidence"] == [f"clue:{clue['id']}"]

        # Not confirmed closes it with its reason, which the clue's filer reads back.
        no = {"outcome": "not_confirmed", "verified_by": "沙口镇 黄志明", **checklist(30000)}
        r = await town.post(f"/v1/enrolment-checks/{check['id']}/complete", json=no)
        assert r.status_code == 422, r.text
        assert r.headers["content-type"].startswith("application/problem+json")
        r = await town.post(
            f"/v1/enrolment-checks/{check['id']}/complete",
            json={**no, "notes": "有固定退休金，不符合纳入条件"},
        )
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "done" and r.json()["outcome"] == "not_confirmed"
        r = await village.get(f"/v1/clues/{clue['id']}")
        assert r.json()["status"] == "closed" and r.json()["outcome"] == "not_confirmed"
        assert r.json()["outcome_notes"] == "有固定退休金，不符合纳入条件"
