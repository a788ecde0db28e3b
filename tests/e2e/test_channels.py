"""The other channels of discovery, across the running services: a household's own
declaration (农户自主申报) opens a task, and a cadre's visit (基层干部排查) that finds a child
out of school makes the household at_risk for 义务教育 — the field is a source of risk too."""

from __future__ import annotations

import random
import uuid
from datetime import date

import pytest

from tests.e2e import flows
from tests.e2e.system import System
from tests.e2e.test_headline import poll_json

pytestmark = pytest.mark.integration


async def test_self_declaration_opens_a_verification_task(system: System) -> None:
    [household] = await flows.register(system, 1)
    await flows.wait_known_to_risk(system, [household])
    async with system.client("assistance", "assistance:read", "assistance:write") as assistance:
        r = await assistance.post("/v1/clues", json={
            "source": "self_declaration", "household_id": household["id"],
            "summary": "12317 热线来电：家中老人住院，自付医疗费用较多，申请核实", "concerns": ["illness"],
        })  # fmt: skip
        assert r.status_code == 201, r.text
        clue = r.json()
        tasks = await poll_json(assistance, "/v1/tasks", lambda b: len(b["items"]) == 1,
                                household_id=household["id"])  # fmt: skip
        assert tasks["items"][0]["status"] == "open"
        # A second clue joins the task already open.
        r = await assistance.post("/v1/clues", json={
            "source": "public_report", "household_id": household["id"], "anonymous": True,
            "summary": "群众反映该户生活困难",
        })  # fmt: skip
        assert r.status_code == 201, r.text
        tasks = (await assistance.get("/v1/tasks", params={"household_id": household["id"]})).json()
        assert len(tasks["items"]) == 1
        assert (await assistance.get(f"/v1/clues/{clue['id']}")).status_code == 200


async def test_visit_finding_a_child_out_of_school_makes_the_household_at_risk(
    system: System,
) -> None:
    rng = random.Random(uuid.uuid4().int)
    child_id = flows.id_number(rng, 2014)  # 12 years old: compulsory schooling
    body = {
        "region_code": "441881101201", "type": "alleviated",
        "annual_income": {"year": 2025, "total": 60000},
        "members": [
            {"id_number": flows.id_number(rng, 1980), "name": "户主", "relation": "head"},
            {"id_number": child_id, "name": "孩子", "relation": "child", "schooling": "primary"},
        ],
    }  # fmt: skip
    async with (
        system.client("registry", "registry:read", "registry:write") as registry,
        system.client("risk", "risk:read") as risk,
        system.client("assistance", "assistance:read", "assistance:write") as assistance,
    ):
        r = await registry.post("/v1/households", json=body)
        assert r.status_code == 201, r.text
        hid = r.json()["id"]
        first = await poll_json(risk, f"/v1/households/{hid}/risk", lambda b: True)
        assert first["level"] == "none"
        child = next(m for m in (await registry.get(f"/v1/households/{hid}")).json()["members"]
                     if m["relation"] == "child")  # fmt: skip

        r = await assistance.post("/v1/visits", json={
            "household_id": hid, "channel": "home", "visitor": "驻村工作队 王强",
            "visited_on": str(date.today()), "findings": "孩子已辍学在家",
            "schooling": {child["person_id"]: "out_of_school"},
        })  # fmt: skip
        assert r.status_code == 201, r.text

        assessed = await poll_json(
            risk, f"/v1/households/{hid}/risk", lambda b: b["level"] == "at_risk"
        )
        codes = {f["code"] for f in assessed["factors"]}
        assert "compulsory_education" in codes
