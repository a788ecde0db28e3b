"""A department corrects and voids a record, end to end: the services as processes, the
real PostgreSQL and Kafka. A medical bill puts a household at risk; its correction to a
small amount re-scores it below the line (the 12-month sum counts only the corrected
amount); its void removes it; datasync's history shows every version."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from backstop.requests import Period
from tests.e2e.flows import register, risk_features, wait_known_to_risk
from tests.e2e.system import System
from tests.support import wait_for

pytestmark = pytest.mark.integration

PERIOD = Period.of(datetime.now(ZoneInfo("Asia/Shanghai")).date()).shift(-1)


def bill(record_id: str, head: str, out_of_pocket: float, **flags: Any) -> dict[str, Any]:
    return {
        "record_id": record_id, "id_number": head, "name": "李建国",
        "settled_on": PERIOD.first_day.replace(day=10).isoformat(),
        "total_cost": 90000, "insurance_paid": 45000, "assistance_paid": 5000,
        "out_of_pocket": out_of_pocket, **flags,
    }  # fmt: skip


async def test_a_corrected_then_voided_bill_rescores_the_household(system: System) -> None:
    [household] = await register(system, 1, income=30000)
    hid, head = household["id"], household["head"]
    await wait_known_to_risk(system, [household])
    rid = f"yb-{uuid.uuid4().hex[:12]}"
    async with (
        system.client("datasync", "feeds:medical", "feeds:read") as datasync,
        system.client("risk", "risk:read") as risk,
    ):

        async def post(*records: dict[str, Any]) -> dict[str, Any]:
            batch = {"batch_id": f"yb-{uuid.uuid4().hex[:12]}", "period": str(PERIOD),
                     "records": list(records)}  # fmt: skip
            r = await datasync.post("/v1/feeds/medical/batches", json=batch)
            assert r.status_code == 201, r.text
            return dict(r.json())

        async def scored(amount: float, records: int) -> dict[str, Any] | None:
            """The assessment once risk's 12-month medical sum is `amount` over `records`."""
            features = await risk_features(risk, hid)
            medical = features["medical"] if features is not None else {}
            if (medical.get("amount_12m"), medical.get("records")) != (amount, records):
                return None
            r = await risk.get(f"/v1/households/{hid}/risk")
            return dict(r.json()) if r.status_code == 200 else None

        # 1. the bill: 40,000 out of pocket on 30,000 a year puts the household at risk
        assert (await post(bill(rid, head, 40000)))["accepted"] == 1  # matched now or later
        first = await wait_for(lambda: scored(40000, 1), timeout=120, message="bill scored")
        assert first["level"] == "at_risk"
        assert "illness" in {f["code"] for f in first["factors"]}

        # 2. 医保局 corrects it to 2,000: one record of 2,000, no longer at risk
        summary = await post(bill(rid, head, 2000, correction=True))
        assert (summary["accepted"], summary["corrected"], summary["rejected"]) == (1, 1, 0)
        corrected = await wait_for(
            lambda: scored(2000, 1), timeout=120, message="correction scored"
        )
        assert corrected["level"] != "at_risk" and corrected["score"] < first["score"]
        assert "illness" not in {f["code"] for f in corrected["factors"]}

        # 3. then voids it: nothing left to count
        assert (await post({"record_id": rid, "void": True}))["voided"] == 1
        await wait_for(lambda: scored(0, 0), timeout=120, message="void applied")

        # 4. the history keeps every version
        r = await datasync.get(f"/v1/feeds/medical/records/{rid}/history")
        assert r.status_code == 200, r.text
        history = r.json()
        assert history["household_id"] == hid and history["voided"] is True
        assert [(i["revision"], i["action"]) for i in history["items"]] == [
            (1, "original"),
            (2, "correction"),
            (3, "void"),
        ]
        assert [(i["data"] or {}).get("out_of_pocket") for i in history["items"]] == [
            40000.0,
            2000.0,
            None,
        ]
        assert head not in r.text  # masked without registry:pii

        # 5. a correction of a record datasync never received is refused, with the reason
        unknown = await post(bill(f"yb-{uuid.uuid4().hex[:12]}", head, 100, correction=True))
        assert (unknown["accepted"], unknown["rejected"]) == (0, 1)
        [error] = unknown["errors"]
        assert (error["field"], error["code"]) == ("record_id", "unknown_record")
        assert "never received" in error["message"]
