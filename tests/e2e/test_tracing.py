"""One department record, one trace: the services run as processes with tracing on
(spans written by each process as JSON lines, BACKSTOP_TRACES_FILE), a medical record
goes datasync -> risk -> assistance -> notify -> the subscriber's webhook, and every span
of that chain, in every service, carries the trace id of the HTTP request that brought
the record in; the webhook request carries it in its `traceparent` header."""

from __future__ import annotations

import json
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.e2e.conftest import Receiver, start_system, stop_system
from tests.e2e.system import LOGS, System
from tests.e2e.test_headline import ALL, household, poll_json
from tests.support import serving, wait_for

pytestmark = pytest.mark.integration
# The chain of one record; quality (数据质量核查) consumes the records too.
CHAIN = {"backstop-datasync", "backstop-risk", "backstop-assistance", "backstop-notify"}


@pytest.fixture(scope="module")
async def traced() -> AsyncIterator[tuple[System, Path]]:
    LOGS.mkdir(parents=True, exist_ok=True)
    spans = LOGS / f"spans-{uuid.uuid4().hex[:8]}.jsonl"
    system = await start_system("_trace", BACKSTOP_TRACES_FILE=str(spans))
    try:
        yield system, spans
    finally:
        await stop_system(system)


def read_spans(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


async def test_one_record_one_trace_through_every_service_to_the_webhook(
    traced: tuple[System, Path],
) -> None:
    system, path = traced
    seq = uuid.uuid4().int % 300 * 3
    sick = household("alleviated", 30000, ("李建国", "陈秀英", "李明"), seq)
    receiver = Receiver()
    async with (
        serving(receiver, "/hook") as callback_url,
        system.client("registry", *ALL) as registry,
        system.client("datasync", "feeds:medical") as datasync,
        system.client("risk", *ALL) as risk,
        system.client("notify", *ALL) as notify,
    ):
        r = await notify.post("/v1/subscriptions", json={
            "callback_url": callback_url, "event_types": ["backstop.risk.alert.raised.v1"],
            "region_prefix": "441881"})  # fmt: skip
        assert r.status_code == 201, r.text
        r = await registry.post("/v1/households", json=sick)
        assert r.status_code == 201, r.text
        sick_id = r.json()["id"]
        await poll_json(risk, f"/v1/households/{sick_id}/risk", lambda b: b["level"] is not None)

        r = await datasync.post("/v1/feeds/medical/batches", json={
            "batch_id": f"yb-trace-{uuid.uuid4().hex[:8]}", "period": "2026-11",
            "records": [{"record_id": f"r-{uuid.uuid4().hex[:10]}",
                         "id_number": sick["members"][0]["id_number"], "name": "李建国",
                         "settled_on": "2026-11-10", "total_cost": 90000, "insurance_paid": 45000,
                         "assistance_paid": 5000, "out_of_pocket": 40000}],
        })  # fmt: skip
        assert r.status_code in (200, 201), r.text

        await wait_for(
            lambda: any(orjson.loads(b)["subject"] == sick_id for b, _ in receiver.received),
            timeout=90, message="webhook delivery",
        )  # fmt: skip
        _, headers = next(
            (b, h) for b, h in receiver.received if orjson.loads(b)["subject"] == sick_id
        )

    ingest = next(
        s for s in read_spans(path)
        if s["kind"] == "SpanKind.SERVER" and s["attributes"].get("http.route") == "/v1/feeds/{source}/batches"
        and s["resource"]["attributes"]["service.name"] == "backstop-datasync"
    )  # fmt: skip
    trace_id = ingest["context"]["trace_id"]  # "0x..."
    assert headers["traceparent"].split("-")[1] == trace_id.removeprefix("0x")

    async def chain_complete() -> list[dict[str, Any]] | None:
        mine = [s for s in read_spans(path) if s["context"]["trace_id"] == trace_id]
        services = {s["resource"]["attributes"]["service.name"] for s in mine}
        return mine if CHAIN <= services else None

    spans = await wait_for(chain_complete, timeout=30, message="spans of every service")
    by_service: dict[str, set[str]] = defaultdict(set)
    for s in spans:
        by_service[s["resource"]["attributes"]["service.name"]].add(s["name"])
    assert any(n.endswith("datasync.records send") for n in by_service["backstop-datasync"])
    assert any("apply" in n for n in by_service["backstop-risk"])
    assert any(n.endswith("risk.alerts send") for n in by_service["backstop-risk"])
    assert any("assistance.alerts apply" in n for n in by_service["backstop-assistance"])
    assert "POST" in by_service["backstop-notify"]  # httpx: the webhook request
    print_trace(spans)


def print_trace(spans: list[dict[str, Any]]) -> None:
    """The trace as a list, in start order, for a person to read (pytest -s)."""
    from datetime import datetime

    def at(s: dict[str, Any], key: str) -> datetime:
        return datetime.fromisoformat(s[key].replace("Z", "+00:00"))

    start = min(at(s, "start_time") for s in spans)
    for s in sorted(spans, key=lambda s: at(s, "start_time")):
        offset = (at(s, "start_time") - start).total_seconds() * 1000
        took = (at(s, "end_time") - at(s, "start_time")).total_seconds() * 1000
        service = s["resource"]["attributes"]["service.name"].removeprefix("backstop-")
        print(f"{offset:9.1f} ms  {took:8.1f} ms  {service:<10} {s['name']}")
