"""§7 of the hardening issue: unbounded work. The contact compliance report (1.7 MB
unpaged in the finding) gives its counts whole and the households not contacted a page
at a time; a campaign (23k tasks in one request in the finding) runs in chunks."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import date, timedelta
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from backstop.bus import ensure_topics
from services.assistance import campaigns
from services.assistance.app import create
from tests.assistance.conftest import Assistance
from tests.support import Stack, serve, wait_for

pytestmark = pytest.mark.integration

TOWN = "441881177"


@pytest.fixture(scope="module")
async def a(stack: Stack) -> AsyncIterator[Assistance]:
    """The assistance service on a database and topics of its own (not tests/assistance's:
    the two would share consumer groups)."""
    settings = await stack.create_database("assistance", label="unbounded")
    settings = settings.model_copy(update={"topic_prefix": f"{stack.prefix}unbounded."})
    await ensure_topics(settings)  # dropped with the run's (same prefix)
    producer = AIOKafkaProducer(**settings.kafka_client_options())
    await producer.start()
    try:
        async with serve(create, settings) as (client, runtime):
            yield Assistance(client, runtime, settings, stack, producer)
    finally:
        await producer.stop()


async def test_the_compliance_report_is_aggregated_and_paged(a: Assistance) -> None:
    households = [
        await a.household(region_code=f"{TOWN}{i:03d}", town_code=TOWN, type="marginal")
        for i in range(1, 6)
    ]
    params: dict[str, str | int] = {"region": TOWN, "limit": 2}
    seen: list[str] = []
    pages = 0
    while True:
        r = await a.client.get("/v1/visits/compliance", params=params, headers=a.rw)
        assert r.status_code == 200, r.text
        body = r.json()
        assert (body["due"], body["not_contacted"]) == (5, 5)  # counts are whole
        assert all("households" not in c for c in body["by_contact"])  # counts, not lists
        assert len(body["households"]) <= 2
        seen += [h["household_id"] for h in body["households"]]
        pages += 1
        if body["next_cursor"] is None:
            break
        params["cursor"] = body["next_cursor"]
    assert pages == 3
    assert sorted(seen) == sorted(h.household_id for h in households)
    r = await a.client.get("/v1/visits/compliance", params={"cursor": "nope"}, headers=a.rw)
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["query", "cursor"]


async def test_a_large_campaign_runs_in_chunks_with_visible_progress(
    a: Assistance, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One chunk in the launching request, the rest by the campaign-chunks job, each in
    its own transaction; the campaign shows how far it is (CHUNK made small here)."""
    monkeypatch.setattr(campaigns, "CHUNK", 2)
    town = "441881178"
    households = [
        await a.household(region_code=f"{town}{i:03d}", town_code=town, type="marginal")
        for i in range(1, 6)
    ]
    body = {"name": "回头看", "region_prefix": town, "launched_by": "县扶贫办",
            "deadline": str(date.today() + timedelta(days=30))}  # fmt: skip
    r = await a.client.post("/v1/campaigns", json=body, headers=a.rw)
    assert r.status_code == 201, r.text
    launched = r.json()
    assert (launched["selected"], launched["generated"], launched["status"]) == (5, 2, "generating")

    async def done() -> dict[str, Any] | None:
        r = await a.client.get(f"/v1/campaigns/{launched['id']}/progress", headers=a.rw)
        progress: dict[str, Any] = r.json()
        return progress if progress["campaign"]["status"] == "ready" else None

    progress = await wait_for(done, message="campaign generated")
    assert progress["total"] == progress["campaign"]["tasks"] == 5
    r = await a.client.get("/v1/tasks", params={"kind": "review", "limit": 100}, headers=a.rw)
    mine = [
        t for t in r.json()["items"] if t["household_id"] in {h.household_id for h in households}
    ]
    assert sorted(t["household_id"] for t in mine) == sorted(h.household_id for h in households)
    # Launching it again makes nothing new.
    again = (await a.client.post("/v1/campaigns", json=body, headers=a.rw)).json()
    assert (again["generated"], again["tasks"], again["status"]) == (0, 5, "ready")
