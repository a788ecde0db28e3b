"""Incomes updated in bulk and the province's incremental sync, against the real
PostgreSQL and Kafka."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from tests.registry.conftest import OTHER_TOWN_VILLAGE, VILLAGE, Registry, household_body
from tests.registry.test_households import create

pytestmark = pytest.mark.integration


async def test_a_yearly_income_import_updates_households_with_history(registry: Registry) -> None:
    first = await create(registry, household_body())
    second = await create(registry, household_body())
    since = datetime.now(UTC).isoformat()
    body = {
        "year": 2026,
        "incomes": [
            {"household_id": first, "total": 36000},
            {"household_id": second, "wage": 20000, "transfer": 1000},
        ],
    }
    r = await registry.client.post("/v1/incomes/import", json=body, headers=registry.writer)
    assert r.status_code == 200, r.text
    assert r.json() == {"year": 2026, "received": 2, "updated": 2}
    got = (await registry.client.get(f"/v1/households/{second}", headers=registry.reader)).json()
    assert got["annual_income"]["year"] == 2026 and got["annual_income"]["total"] == 21000.0
    history = (
        await registry.client.get(f"/v1/households/{first}/history", headers=registry.reader)
    ).json()["items"]
    [entry] = [h for h in history if h["action"] == "income.recorded"]
    assert "income.2026" in entry["changes"]
    # The same import again changes nothing.
    r = await registry.client.post("/v1/incomes/import", json=body, headers=registry.writer)
    assert r.json()["updated"] == 0

    # All or none: an unknown household, or one outside the caller's regions, names its row.
    other_town = await create(registry, household_body(region=OTHER_TOWN_VILLAGE))
    bad = {
        "year": 2026,
        "incomes": [
            {"household_id": first, "total": 1},
            {"household_id": str(uuid.uuid4()), "total": 1},
        ],
    }
    r = await registry.client.post("/v1/incomes/import", json=bad, headers=registry.writer)
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == [
        "body",
        "incomes",
        1,
        "household_id",
    ]
    town = registry.headers("registry:write", "registry:read", regions=(VILLAGE[:9],))
    hidden = {"year": 2026, "incomes": [{"household_id": other_town, "total": 1}]}
    r = await registry.client.post("/v1/incomes/import", json=hidden, headers=town)
    assert r.status_code == 422
    got = (await registry.client.get(f"/v1/households/{first}", headers=registry.reader)).json()
    assert got["annual_income"]["total"] == 36000.0
    negative = {"year": 2026, "incomes": [{"household_id": first, "total": -5}]}
    r = await registry.client.post("/v1/incomes/import", json=negative, headers=registry.writer)
    assert r.status_code == 422

    # The province's incremental sync: changed since `since`, cursor-paged, region-scoped.
    seen: list[str] = []
    cursor = None
    while True:
        params = {"updated_since": since, "limit": 1, **({"cursor": cursor} if cursor else {})}
        page = await registry.client.get("/v1/households", params=params, headers=registry.reader)
        assert page.status_code == 200, page.text
        seen += [h["id"] for h in page.json()["items"]]
        cursor = page.json()["next_cursor"]
        if not cursor:
            break
    assert {first, second, other_town} <= set(seen) and len(seen) == len(set(seen))
    stamps = [h for h in seen if h in (first, second, other_town)]
    assert stamps.index(other_town) > stamps.index(first)  # oldest change first
    scoped = await registry.client.get(
        "/v1/households", params={"updated_since": since, "limit": 500},
        headers=registry.headers("registry:read", regions=(VILLAGE[:9],)),
    )  # fmt: skip
    ids = {h["id"] for h in scoped.json()["items"]}
    assert first in ids and other_town not in ids
    naive = await registry.client.get(
        "/v1/households", params={"updated_since": "2026-01-01T00:00:00"}, headers=registry.reader
    )
    assert naive.status_code == 422
