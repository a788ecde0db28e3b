"""The headline scenario, end to end: five services as processes, the real PostgreSQL and
Kafka, REST in and out, events checked on the broker."""

from __future__ import annotations

import hashlib
import hmac
import uuid
from datetime import date, timedelta
from typing import Any

import httpx
import orjson
import pytest
from aiokafka import AIOKafkaConsumer

from backstop.events import CloudEvent
from backstop.idnumber import check_digit
from tests.assistance.conftest import backdate_case
from tests.e2e.conftest import Receiver
from tests.e2e.system import System
from tests.security.test_privacy import ID_NUMBER, rebuildable
from tests.support import checklist, read_topic, serving, wait_for

pytestmark = pytest.mark.integration

VILLAGE = "441881101201"  # 园山村委会, 沙口镇, 英德市
TOWN = VILLAGE[:9]
ALL = ("registry:read", "registry:write", "registry:pii", "risk:read", "assistance:read",
       "assistance:write", "notify:read", "notify:admin", "feeds:read")  # fmt: skip


def id_number(born: date, seq: int) -> str:
    first17 = f"441881{born:%Y%m%d}{seq:03d}"
    return first17 + check_digit(first17)


def household(kind: str, income: float, names: tuple[str, str, str], seq: int) -> dict[str, Any]:
    return {
        "region_code": VILLAGE,
        "type": kind,
        "annual_income": {"year": 2025, "total": income},
        "members": [
            {"id_number": id_number(date(1978, 4, 2), seq), "name": names[0], "relation": "head",
             "labor_capacity": "full"},
            {"id_number": id_number(date(1980, 9, 17), seq + 2), "name": names[1],
             "relation": "spouse", "labor_capacity": "partial"},
            {"id_number": id_number(date(2012, 6, 1), seq + 4), "name": names[2],
             "relation": "child", "schooling": "junior"},
        ],
        "contacts": [{"role": "cadre", "name": "黄志明", "phone": "13800138000"}],
    }  # fmt: skip


async def poll_json(
    client: httpx.AsyncClient, url: str, check: Any, *, timeout: float = 60, **params: Any
) -> Any:
    async def probe() -> Any:
        r = await client.get(url, params=params)
        if r.status_code != 200:
            return None
        body = r.json()
        return body if check(body) else None

    return await wait_for(probe, timeout=timeout, interval=0.3, message=f"GET {url} {params}")


async def test_medical_bill_to_monitoring_decision(system: System) -> None:
    seq = uuid.uuid4().int % 300 * 3  # fresh ID numbers on every run
    sick = household("alleviated", 30000, ("李建国", "陈秀英", "李明"), seq)
    well = household("ordinary", 200000, ("张伟", "王芳", "张杰"), seq + 1)
    receiver = Receiver()
    async with (
        serving(receiver, "/hook") as callback_url,
        system.client("registry", *ALL) as registry,
        system.client("datasync", "feeds:medical") as datasync,
        system.client("risk", *ALL) as risk,
        system.client("assistance", *ALL) as assistance,
        system.client("notify", *ALL) as notify,
    ):
        # The county sends department-flagged cases to the town here (the insurer by default).
        r = await assistance.put("/v1/policy", json={"changed_by": "county-office",
                                 "policy": {"department_cases_to_insurer": False}})  # fmt: skip
        assert r.status_code == 200, r.text
        r = await notify.post("/v1/subscriptions", json={
            "callback_url": callback_url, "event_types": ["backstop.risk.alert.raised.v1"],
            "region_prefix": "441881"})  # fmt: skip
        assert r.status_code == 201, r.text
        secret = r.json()["secret"]

        # 1. a household in a real village (and a well-off one beside it)
        r = await registry.post("/v1/households", json=sick)
        assert r.status_code == 201, r.text
        sick_id = r.json()["id"]
        r = await registry.post("/v1/households", json=well)
        assert r.status_code == 201, r.text
        well_id = r.json()["id"]

        # 2. 医保局 posts its batch: a large bill for the sick household's head, a small one
        #    for the well-off household.
        batch = {
            "batch_id": f"yb-e2e-{uuid.uuid4().hex[:8]}",
            "period": "2026-11",
            "records": [
                {"record_id": f"r-{uuid.uuid4().hex[:10]}", "id_number": sick["members"][0]["id_number"],
                 "name": "李建国", "settled_on": "2026-11-10", "total_cost": 90000,
                 "insurance_paid": 45000, "assistance_paid": 5000, "out_of_pocket": 40000},
                {"record_id": f"r-{uuid.uuid4().hex[:10]}", "id_number": well["members"][0]["id_number"],
                 "name": "张伟", "settled_on": "2026-11-12", "total_cost": 1200,
                 "insurance_paid": 800, "assistance_paid": 0, "out_of_pocket": 400},
            ],
        }  # fmt: skip
        r = await datasync.post("/v1/feeds/medical/batches", json=batch)
        assert r.status_code in (200, 201), r.text
        summary = r.json()
        assert summary["accepted"] == 2 and summary["rejected"] == 0

        # 3. at_risk with `illness` and its Chinese evidence
        assessment = await poll_json(
            risk, f"/v1/households/{sick_id}/risk", lambda b: b["level"] == "at_risk"
        )
        illness = next(f for f in assessment["factors"] if f["code"] == "illness")
        assert "医疗自付" in illness["evidence"] and "40,000" in illness["evidence"]

        # 4. the public alert on risk.alerts, with no name and no ID number in it
        alerts = await read_topic(
            system.settings("risk"), "risk.alerts",
            match=lambda e: e.subject == sick_id and e.type == "backstop.risk.alert.raised.v1",
        )  # fmt: skip
        assert len(alerts) == 1
        raw = alerts[0].to_bytes().decode()
        for member in sick["members"]:
            assert member["id_number"] not in raw and member["name"] not in raw
        assert alerts[0].data["region_code"] == VILLAGE and "illness" in alerts[0].data["factors"]
        assert alerts[0].correlationid

        # 5. one verification task for the household's town
        tasks = await poll_json(
            assistance, "/v1/tasks", lambda b: len(b["items"]) >= 1, household_id=sick_id
        )
        assert len(tasks["items"]) == 1
        task = tasks["items"][0]
        assert task["kind"] == "verification" and task["status"] == "open"
        assert task["assignee"] == {"type": "town", "code": TOWN}

        # 6. the assignee is reminded
        await poll_json(
            notify, "/v1/reminders",
            lambda b: any(i["subject_id"] == sick_id for i in b["items"]), recipient=f"town:{TOWN}",
        )  # fmt: skip

        # 7. the subscribed county system got the alert, signed
        await wait_for(lambda: any(orjson.loads(b)["subject"] == sick_id for b, _ in receiver.received),
                       timeout=60, message="webhook delivery")  # fmt: skip
        body, headers = next(
            (b, h) for b, h in receiver.received if orjson.loads(b)["subject"] == sick_id
        )
        expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(headers["x-backstop-signature"], expected)
        assert CloudEvent.model_validate_json(body).type == "backstop.risk.alert.raised.v1"

        # 8. the verification is completed and the identification procedure runs
        r = await assistance.post(f"/v1/tasks/{task['id']}/complete", json={
            "outcome": "confirmed", "verified_by": "沙口镇 黄志明", "notes": "住院治疗，自付较多",
            "monitoring_type": "unstable", **checklist()})  # fmt: skip
        assert r.status_code == 200, r.text
        r = await assistance.post(f"/v1/tasks/{task['id']}/complete", json={
            "outcome": "confirmed", "verified_by": "again", **checklist()})  # fmt: skip
        assert r.status_code == 409
        cases = await poll_json(
            assistance, "/v1/cases", lambda b: len(b["items"]) >= 1, household_id=sick_id
        )
        case_id = cases["items"][0]["id"]
        # Steps are dated from 8 days ago: as if the verification had been 9 days ago.
        await backdate_case(system.database_urls["assistance"], case_id, days=9)
        today = date.today()
        steps: list[tuple[str, dict[str, Any]]] = [
            ("appraisal", {"held_on": str(today - timedelta(days=8)), "chaired_by": "村委会主任",
                           "attendance": 23, "votes_for": 21, "votes_against": 1}),
            ("notice", {"start_on": str(today - timedelta(days=7)), "end_on": str(today - timedelta(days=1)),
                        "posted_at": "村务公开栏", "recorded_by": "村文书"}),
            ("town-review", {"approved": True, "reviewed_by": "沙口镇", "reviewed_on": str(today)}),
            ("county-approval", {"approved": True, "reviewed_by": "英德市扶贫办", "reviewed_on": str(today)}),
        ]  # fmt: skip
        r = await assistance.post(f"/v1/cases/{case_id}/town-review", json=steps[2][1])
        assert r.status_code in (409, 422) and r.headers["content-type"].startswith(
            "application/problem+json"
        )
        for step, body_ in steps:
            r = await assistance.post(f"/v1/cases/{case_id}/{step}", json=body_)
            assert r.status_code in (200, 201), f"{step}: {r.text}"

        # 9. the registry shows the household as monitored
        await poll_json(
            registry, f"/v1/households/{sick_id}", lambda b: b["monitoring_status"] == "monitored"
        )

        # 10. the key contact is reminded of the decision
        await poll_json(
            notify, "/v1/reminders", lambda b: any(i["subject_id"] == sick_id for i in b["items"]),
            recipient="contact:13800138000",
        )  # fmt: skip

        # The well-off household with a small bill stays `none`, with no task.
        well_risk = await poll_json(risk, f"/v1/households/{well_id}/risk", lambda b: True)
        assert well_risk["level"] == "none"
        assert (await assistance.get("/v1/tasks", params={"household_id": well_id})).json()[
            "items"
        ] == []


async def test_nothing_on_the_bus_or_in_the_logs_rebuilds_an_id_number(system: System) -> None:
    """After the headline flow (ID numbers in registry bodies and the medical feed, a key
    contact's phone): every message on every topic of this system and every line of every
    service's log is scanned for a full ID number, a masked one beside a birth date, and
    the contact's phone."""
    prefix = system.settings("registry").topic_prefix
    consumer = AIOKafkaConsumer(
        bootstrap_servers=system.settings("registry").kafka_bootstrap_servers,
        group_id=None, auto_offset_reset="earliest", enable_auto_commit=False,
    )  # fmt: skip
    await consumer.start()
    messages: list[bytes] = []
    try:
        topics = [t for t in await consumer.topics() if t.startswith(prefix)]
        consumer.subscribe(topics)
        idle = 0
        while idle < 3:
            batches = await consumer.getmany(timeout_ms=1000)
            idle = 0 if batches else idle + 1
            messages += [r.value for records in batches.values() for r in records if r.value]
    finally:
        await consumer.stop()
    assert len(messages) > 10
    for raw in messages:
        assert rebuildable(orjson.loads(raw)) == [], raw[:300]
        assert b"13800138000" not in raw
    for service in ("registry", "datasync", "risk", "assistance", "notify", "quality"):
        text = system.log_of(service).read_text(errors="replace")
        assert ID_NUMBER.findall(text) == [], service
        assert "13800138000" not in text, service
