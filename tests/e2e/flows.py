"""Steps the drills share: register households through the API, wait until risk knows
them, post medical records, and read back what risk and the alerts topic say."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections import Counter
from typing import Any

import httpx

from backstop.idnumber import check_digit
from tests.e2e.system import System
from tests.support import read_topic, wait_for

VILLAGES = ("441881101201", "441881101001", "441881001001")
RAISED = "backstop.risk.alert.raised.v1"


def id_number(rng: random.Random, born_year: int) -> str:
    first17 = f"441881{born_year}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}{rng.randint(0, 999):03d}"
    return first17 + check_digit(first17)


async def register(
    system: System, n: int, *, income: float = 30000, seed: int | None = None
) -> list[dict[str, Any]]:
    """`n` alleviated households of two adults; returns [{id, head_id_number}]."""
    rng = random.Random(seed if seed is not None else uuid.uuid4().int)
    created: list[dict[str, Any]] = []
    sem = asyncio.Semaphore(8)
    async with system.client("registry", "registry:write", "registry:read") as registry:

        async def one(i: int) -> None:
            head, spouse = id_number(rng, 1970 + i % 20), id_number(rng, 1972 + i % 20)
            body = {
                "region_code": VILLAGES[i % len(VILLAGES)], "type": "alleviated",
                "annual_income": {"year": 2025, "total": income},
                "members": [
                    {"id_number": head, "name": f"户主{i}", "relation": "head"},
                    {"id_number": spouse, "name": f"配偶{i}", "relation": "spouse"},
                ],
            }  # fmt: skip
            async with sem:
                r = await registry.post("/v1/households", json=body)
            if r.status_code == 409:  # a random ID number collided with an earlier one
                return
            assert r.status_code == 201, r.text
            created.append({"id": r.json()["id"], "head": head})

        await asyncio.gather(*(one(i) for i in range(n)))
    return created


async def risk_features(client: httpx.AsyncClient, household_id: str) -> dict[str, Any] | None:
    r = await client.get(f"/v1/households/{household_id}/features")
    return r.json() if r.status_code == 200 else None


async def wait_known_to_risk(
    system: System, households: list[dict[str, Any]], timeout: float = 120
) -> None:
    async with system.client("risk", "risk:read") as risk:

        async def all_known() -> bool:
            for h in households:
                if await risk_features(risk, h["id"]) is None:
                    return False
            return True

        await wait_for(
            all_known, timeout=timeout, interval=1, message="risk to know every household"
        )


def medical_records(
    households: list[dict[str, Any]], per_household: int, amount: float = 500
) -> list[dict[str, Any]]:
    records = []
    for k in range(per_household):
        for h in households:
            records.append({
                "record_id": f"e2e-{uuid.uuid4().hex}", "id_number": h["head"], "name": "患者",
                "settled_on": f"2026-11-{1 + k % 27:02d}", "total_cost": amount * 2,
                "insurance_paid": amount, "assistance_paid": 0, "out_of_pocket": amount,
            })  # fmt: skip
    return records


async def post_medical(
    system: System, records: list[dict[str, Any]], batch_size: int = 1000
) -> list[dict[str, Any]]:
    summaries = []
    async with system.client("datasync", "feeds:medical") as datasync:
        for i in range(0, len(records), batch_size):
            batch = {"batch_id": f"e2e-{uuid.uuid4().hex[:12]}", "period": "2026-11",
                     "records": records[i : i + batch_size]}  # fmt: skip
            r = await datasync.post("/v1/feeds/medical/batches", json=batch)
            assert r.status_code == 201, r.text
            summaries.append(r.json())
    return summaries


async def wait_scored(
    system: System, households: list[dict[str, Any]], records_each: int, timeout: float = 300
) -> None:
    """Until risk's features hold exactly `records_each` medical records for every household."""
    pending = {h["id"] for h in households}
    async with system.client("risk", "risk:read") as risk:

        async def done() -> bool:
            for hid in list(pending):
                features = await risk_features(risk, hid)
                if features is not None:
                    assert features["medical"]["records"] <= records_each, features["medical"]
                    if features["medical"]["records"] == records_each:
                        pending.discard(hid)
            return not pending

        await wait_for(
            done, timeout=timeout, interval=2, message=f"{len(pending)} households to be scored"
        )


async def alerts_by_household(
    system: System, households: list[dict[str, Any]], expected: int
) -> Counter[str]:
    ids = {h["id"] for h in households}
    events = await read_topic(
        system.settings("risk"), "risk.alerts", min_count=expected, timeout=60,
        match=lambda e: e.type == RAISED and e.subject in ids,
    )  # fmt: skip
    await asyncio.sleep(2)  # and nothing more arrives
    again = await read_topic(
        system.settings("risk"), "risk.alerts", min_count=expected + 1, timeout=3,
        match=lambda e: e.type == RAISED and e.subject in ids,
    )  # fmt: skip
    return Counter(e.subject or "" for e in (again if len(again) > len(events) else events))


async def levels(system: System, households: list[dict[str, Any]]) -> dict[str, str]:
    out = {}
    async with system.client("risk", "risk:read") as risk:
        for h in households:
            r = await risk.get(f"/v1/households/{h['id']}/risk")
            out[h["id"]] = r.json()["level"] if r.status_code == 200 else "unknown"
    return out


async def open_tasks(system: System) -> Counter[str]:
    counts: Counter[str] = Counter()
    async with system.client("assistance", "assistance:read") as assistance:
        cursor = None
        while True:
            params: dict[str, Any] = {"kind": "verification", "limit": 200}
            if cursor:
                params["cursor"] = cursor
            body = (await assistance.get("/v1/tasks", params=params)).json()
            counts.update(t["household_id"] for t in body["items"] if t["status"] == "open")
            cursor = body.get("next_cursor")
            if not cursor:
                return counts
