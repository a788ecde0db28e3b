"""The delivery calendar against the database: GET /v1/deliveries and the late job."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import text

from backstop.contracts.datasync import DELIVERIES_TOPIC, BatchReceived
from backstop.events import CloudEvent
from backstop.settings import Settings
from services.datasync.app import create
from services.datasync.config import DatasyncConfig
from services.datasync.deliveries import check_late_deliveries
from tests.datasync.conftest import unique
from tests.datasync.test_ingest import LAST_MONTH, PERIOD, medical
from tests.support import Stack, read_topic, serve

pytestmark = pytest.mark.integration


async def test_deliveries_show_delivered_due_and_late(
    datasync_settings: Settings, stack: Stack
) -> None:
    async with serve(create, datasync_settings, background=False) as (http, runtime):
        batch = unique("cal")
        r = await http.post(
            "/v1/feeds/medical/batches",
            json={"batch_id": batch, "period": PERIOD, "records": [medical()]},
            headers=stack.headers("feeds:medical"),
        )
        assert r.status_code == 201
        async with runtime.sessions() as session:
            row = (
                await session.execute(
                    text(
                        "SELECT key, value FROM outbox WHERE event_type = :t"
                        " AND convert_from(value, 'UTF8') LIKE :b"
                    ),
                    {"t": "backstop.datasync.batch.received.v1", "b": f"%{batch}%"},
                )
            ).one()
        received = CloudEvent.from_bytes(row.value).payload()
        assert isinstance(received, BatchReceived) and row.key == "medical"
        due = LAST_MONTH.shift(1).first_day.replace(day=5)
        today = datetime.now(ZoneInfo("Asia/Shanghai")).date()
        assert (received.accepted, received.department) == (1, "医保局")
        assert (received.due_on, received.on_time) == (due, today <= due)
        # A batch whose every record is rejected is not a delivery (the late notice still
        # goes out): 应急管理局 sent only a record with a bad ID number.
        rejected = {"record_id": "d-bad", "id_number": "4418811990010112", "occurred_on":
                    f"{PERIOD}-03", "disaster_type": "flood", "loss_amount": 5000,
                    "housing_damaged": False}  # fmt: skip
        r = await http.post(
            "/v1/feeds/disaster/batches",
            json={"batch_id": unique("cal-bad"), "period": PERIOD, "records": [rejected]},
            headers=stack.headers("feeds:disaster"),
        )
        assert r.status_code == 201 and (r.json()["accepted"], r.json()["rejected"]) == (0, 1)
        got = await http.get(f"/v1/deliveries?period={PERIOD}", headers=stack.headers("feeds:read"))
        assert got.status_code == 200, got.text
        items: dict[str, Any] = {i["source"]: i for i in got.json()["items"]}
        assert set(items) == {"medical", "disaster", "civil_affairs", "education"}
        med = items["medical"]
        assert med["delivered"] and med["status"] == "delivered" and med["department"] == "医保局"
        assert med["due_on"] == LAST_MONTH.shift(1).first_day.replace(day=5).isoformat()
        assert items["disaster"]["delivered"] is False and items["disaster"]["batches"] == 1
        assert items["disaster"]["status"] in ("due", "late")
        bad = await http.get("/v1/deliveries?period=11-2026", headers=stack.headers("feeds:read"))
        assert bad.status_code == 422 and bad.json()["errors"][0]["loc"] == ["query", "period"]
        assert (await http.get(f"/v1/deliveries?period={PERIOD}")).status_code == 401


async def test_late_delivery_emitted_once_per_source_and_period(
    datasync_settings: Settings,
) -> None:
    async with serve(create, datasync_settings, background=False) as (_, runtime):
        config = DatasyncConfig(late_lookback_months=2)
        # 2031-04-06: March 2031 is late for the monthly sources (due 04-05); education's
        # March 2031 is late too (due 03-31).
        now = datetime(2031, 4, 6, 1, 0, tzinfo=UTC)  # 09:00 in Asia/Shanghai
        first = await check_late_deliveries(sessions=runtime.sessions, config=config, now=now)
        keys = {(late.source, late.period) for late in first}
        assert ("medical", "2031-03") in keys and ("education", "2031-03") in keys
        assert ("medical", "2031-04") not in keys
        assert ("disaster", "2031-02") in keys
        again = await check_late_deliveries(sessions=runtime.sessions, config=config, now=now)
        assert again == []  # once, even when the job runs again (or on another replica)
        # ...while the alerting gauge stays up as long as the period is undelivered.
        late_now = {
            s: REGISTRY.get_sample_value("backstop_datasync_deliveries_late", {"source": s})
            for s in ("medical", "disaster")
        }
        assert late_now == {
            s: sum(1 for x in first if x.source == s) for s in ("medical", "disaster")
        }
        # On 2032-04-05 (Shanghai) the monthly March feeds are still on time; education's
        # March (due 03-31) is late.
        early = datetime(2032, 4, 4, 17, 0, tzinfo=UTC)  # 2032-04-05 01:00 in Shanghai
        one_back = DatasyncConfig(late_lookback_months=1)
        late = await check_late_deliveries(sessions=runtime.sessions, config=one_back, now=early)
        assert [(x.source, x.period) for x in late] == [("education", "2032-03")]

    async with serve(create, datasync_settings) as _:  # relay on: the events reach Kafka
        events = await read_topic(
            datasync_settings,
            DELIVERIES_TOPIC,
            min_count=len(first),
            match=lambda e: (
                e.type.endswith("delivery.late.v1") and e.data["period"].startswith("2031")
            ),
        )
    assert {(e.data["source"], e.data["period"]) for e in events} == keys
    assert {e.data["department"] for e in events} >= {"医保局", "教育局"}
