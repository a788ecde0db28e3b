"""§7 of the hardening issue: every list is paged or aggregated. The contact compliance
report (1.7 MB unpaged in the finding) gives its counts whole and the households not
contacted a page at a time."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiokafka import AIOKafkaProducer

from backstop.bus import ensure_topics
from services.assistance.app import create
from tests.assistance.conftest import Assistance
from tests.support import Stack, serve

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
