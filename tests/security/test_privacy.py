"""§3 of the hardening issue: personal data cannot be rebuilt or leaked sideways.
Without registry:pii a household carries no birth date (the masked ID's hidden middle)
and masked phones; a household or person outside the caller's regions is answered
exactly as one that does not exist (no region oracle)."""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest

from backstop import crypto
from backstop.bus import ensure_topics
from backstop.contracts.registry import TOPIC
from backstop.settings import Settings
from services.registry.app import create
from tests.registry.conftest import OTHER_TOWN_VILLAGE, VILLAGE, household_body
from tests.support import Stack, read_topic, serve

pytestmark = pytest.mark.integration

ID_NUMBER = re.compile(r"(?<![0-9A-Za-z])\d{17}[\dXx](?![0-9A-Za-z])")
MASKED_ID = re.compile(r"^\d{6}\*{8}\d{3}[\dXx]$")
PHONE = "13812345678"


def rebuildable(value: Any) -> list[str]:
    """What in a JSON value would give a full ID number: the number itself anywhere, or
    an object holding a masked number and a full birth date."""
    found: list[str] = []
    if isinstance(value, str):
        found += ID_NUMBER.findall(value)
    elif isinstance(value, list):
        for item in value:
            found += rebuildable(item)
    elif isinstance(value, dict):
        texts = [v for v in value.values() if isinstance(v, str)]
        if any(MASKED_ID.match(t) for t in texts) and any(
            re.fullmatch(r"\d{4}-\d{2}-\d{2}", t) for t in texts
        ):
            found.append(f"masked ID beside a birth date in {sorted(value)}")
        for item in value.values():
            found += rebuildable(item)
    return found


@pytest.fixture(scope="module")
async def settings(stack: Stack) -> Settings:
    """Registry on a database and topics of its own (its relay publishes here)."""
    settings = await stack.create_database("registry", label="privacy")
    settings = settings.model_copy(update={"topic_prefix": f"{stack.prefix}privacy."})
    await ensure_topics(settings)  # dropped with the run's (same prefix)
    return settings


@pytest.fixture(scope="module")
async def registry(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with serve(create, settings) as (client, _):
        yield client


async def test_without_pii_nothing_rebuilds_an_id_number(
    registry: httpx.AsyncClient, stack: Stack, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """Every response without registry:pii, every event on the topic and every log line
    of the run is scanned."""
    caplog.set_level(logging.DEBUG)
    contact = {"role": "town_cadre", "name": "王干部", "phone": PHONE}
    body = household_body(type="marginal", contacts=[contact])
    r = await registry.post("/v1/households", json=body,
                            headers=stack.headers("registry:write"))  # fmt: skip
    assert r.status_code == 201, r.text
    url = f"/v1/households/{r.json()['id']}"
    plain = (await registry.get(url, headers=stack.headers("registry:read"))).json()
    assert rebuildable(plain) == []
    assert [m["birth_date"] for m in plain["members"]] == [None] * len(body["members"])
    assert plain["members"][0]["birth_year"] == 1975
    assert plain["contacts"][0]["phone"] == "138****5678"
    listed = (await registry.get("/v1/households", headers=stack.headers("registry:read"))).json()
    assert rebuildable(listed) == [] and PHONE not in str(listed)

    pii = (await registry.get(url, headers=stack.headers("registry:read", "registry:pii"))).json()
    assert rebuildable(pii)  # the scan sees a full number when there is one
    assert pii["contacts"][0]["phone"] == PHONE

    [event] = await read_topic(settings, TOPIC, match=lambda e: e.subject == r.json()["id"])
    raw = event.to_bytes().decode()
    assert rebuildable(orjson.loads(raw)) == [] and PHONE not in raw
    [contact] = event.data["household"]["contacts"]
    assert contact["phone"] == "138****5678"
    assert crypto.open_secret(settings, contact["phone_sealed"]) == PHONE  # for notify only
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert ID_NUMBER.findall(logged) == [] and PHONE not in logged


async def test_outside_the_regions_is_answered_as_not_found(
    registry: httpx.AsyncClient, stack: Stack
) -> None:
    body = household_body(region=OTHER_TOWN_VILLAGE)
    r = await registry.post("/v1/households", json=body, headers=stack.headers("registry:write"))
    assert r.status_code == 201, r.text
    elsewhere, unknown = r.json()["id"], str(uuid.uuid4())
    person = body["members"][0]["id_number"]
    nobody = household_body()["members"][0]["id_number"]  # valid, never registered
    town = stack.headers("registry:read", "registry:write", regions=(VILLAGE[:9],))

    async def same(outside: httpx.Response, absent: httpx.Response, ids: tuple[str, str]) -> None:
        assert outside.status_code == absent.status_code == 404, outside.text
        assert outside.json()["detail"].replace(ids[0], "X") == absent.json()["detail"].replace(
            ids[1], "X"
        )

    for method, path, payload in (
        ("GET", "/v1/households/{}", None),
        ("GET", "/v1/households/{}/history", None),
        ("PATCH", "/v1/households/{}", {"policy_enjoying": False}),
        ("PUT", "/v1/households/{}/contacts", {"contacts": []}),
    ):
        outside = await registry.request(method, path.format(elsewhere), json=payload,
                                         headers=town)  # fmt: skip
        absent = await registry.request(method, path.format(unknown), json=payload, headers=town)
        await same(outside, absent, (elsewhere, unknown))
    await same(await registry.get(f"/v1/persons/{person}", headers=town),
               await registry.get(f"/v1/persons/{nobody}", headers=town), ("", ""))  # fmt: skip
    await same(
        await registry.post("/v1/persons/lookup", json={"id_number": person}, headers=town),
        await registry.post("/v1/persons/lookup", json={"id_number": nobody}, headers=town),
        ("", ""),
    )
    # Inside its regions the same token finds them.
    county = stack.headers("registry:read")
    assert (await registry.get(f"/v1/persons/{person}", headers=county)).status_code == 200
