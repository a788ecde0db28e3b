"""§1 and §2 of the hardening issue against the real services, PostgreSQL and Kafka: bad
numbers, dates and characters get a clear 4xx (never a 500, never a logged traceback
with SQL parameters, never a closed connection), full-width digits are folded, and a
request whose event the broker would refuse is a 413 that writes nothing."""

from __future__ import annotations

import asyncio
import copy
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backstop.pagination import encode_cursor
from backstop.settings import Settings
from services.assistance.app import create as create_assistance
from services.datasync.app import create as create_datasync
from services.registry.app import create as create_registry
from services.registry.seed import make_id_number
from services.risk.app import create as create_risk
from tests.support import Stack, serve, serving

pytestmark = pytest.mark.integration

PROBLEM = "application/problem+json"
VILLAGE = "441881001001"
PHONE = "13812345678"


@dataclass
class Served:
    client: httpx.AsyncClient
    app: FastAPI
    settings: Settings


@pytest.fixture(scope="module")
async def registry(stack: Stack) -> AsyncIterator[Served]:
    settings = await stack.create_database("registry", label="_sec")
    async with serve(create_registry, settings) as (client, _):
        client.headers.update(stack.headers("registry:read", "registry:write", "registry:pii"))
        yield Served(client, create_registry(settings, background=False), settings)


_people = iter(range(1, 10_000))


def _member(relation: str = "head", **extra: Any) -> dict[str, Any]:
    n = next(_people)
    number = make_id_number("441881", date(1970 + n % 30, 1 + n % 12, 1 + n % 28), n % 1000)
    return {"id_number": number, "name": "陈大明", "relation": relation, **extra}


def household(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "region_code": VILLAGE,
        "type": "alleviated",
        "annual_income": {"year": 2025, "total": 30000},
        "members": [_member()],
        "contacts": [{"role": "cadre", "name": "王书记", "phone": PHONE}],
    }
    body.update(changes)
    return body


def assert_problem(r: httpx.Response, status: int, *field: str) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith(PROBLEM)
    if field:
        locs = [".".join(map(str, e["loc"])) for e in r.json()["errors"]]
        assert any(".".join(field) in loc for loc in locs), (field, locs)


async def test_infinite_income_is_a_422_naming_the_field(registry: Served) -> None:
    text = (
        '{"region_code": "441881001001", "type": "alleviated", "members": [{"id_number": "'
        + _member()["id_number"]
        + '", "name": "陈", "relation": "head"}], "annual_income": {"year": 2025, "total": 1e400}}'
    )
    r = await registry.client.post(
        "/v1/households", content=text, headers={"content-type": "application/json"}
    )
    assert_problem(r, 422, "annual_income")
    r = await registry.client.post(
        "/v1/households", json=household(annual_income={"year": 2025, "total": 2e9})
    )
    assert_problem(r, 422, "annual_income", "total")


@pytest.mark.parametrize("day", ["0001-01-01", "9999-12-31", "1999-12-31"])
async def test_a_date_out_of_its_window_is_a_422(registry: Served, day: str) -> None:
    body = household(guarantees={"housing": {"status": "ok", "verified_on": day}})
    assert_problem(await registry.client.post("/v1/households", json=body), 422, "guarantees")


async def test_full_width_digits_are_folded_to_one_person(registry: Served) -> None:
    member = _member()
    wide = "".join(chr(ord(c) + 0xFEE0) if c.isdigit() else c for c in member["id_number"])
    r = await registry.client.post(
        "/v1/households", json=household(members=[{**member, "id_number": wide}])
    )
    assert r.status_code == 201, r.text
    found = await registry.client.post(
        "/v1/persons/lookup", json={"id_number": member["id_number"]}
    )
    assert found.status_code == 200 and found.json()["household_id"] == r.json()["id"]
    again = await registry.client.post("/v1/households", json=household(members=[member]))
    assert_problem(again, 409)  # the same person, however the digits were typed


async def test_a_nul_byte_is_a_422_with_nothing_logged(
    registry: Served, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    body = household(members=[_member(name="陈\x00大明")])
    assert_problem(await registry.client.post("/v1/households", json=body), 422, "members")
    assert PHONE not in caplog.text and "Traceback" not in caplog.text


@pytest.fixture(scope="module")
async def risk(stack: Stack) -> AsyncIterator[Served]:
    settings = await stack.create_database("risk", label="_sec")
    async with serve(create_risk, settings, background=False) as (client, _):
        client.headers.update(stack.headers("risk:read"))
        yield Served(client, create_risk(settings, background=False), settings)


async def test_a_value_postgresql_refuses_is_a_422_logged_without_parameters_and_the_connection_stays_open(
    risk: Served, caplog: pytest.LogCaptureFixture
) -> None:
    """A cursor is opaque to clients, so a forged one carries a NUL byte past every model
    into SQL: the database refuses it (SQLSTATE 22), the client gets a 422 on a
    connection that stays open, and no log line shows the statement's parameters."""
    caplog.set_level(logging.INFO)
    forged = encode_cursor(50, f"{PHONE}\x00")
    app = create_risk(risk.settings, background=False)
    async with app.router.lifespan_context(app), serving(app) as url:
        host, port = url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            for path in (f"/v1/assessments?cursor={forged}", "/v1/assessments"):
                head = await _get(reader, writer, path, risk.client.headers["Authorization"])
                assert head.startswith(b"HTTP/1.1 4") or head.startswith(b"HTTP/1.1 200"), head
                assert b"connection: close" not in head.lower()
            first = await _get(reader, writer, f"/v1/assessments?cursor={forged}",
                               risk.client.headers["Authorization"])  # fmt: skip
            assert first.startswith(b"HTTP/1.1 422"), first
        finally:
            writer.close()
    assert PHONE not in caplog.text and "Traceback" not in caplog.text


async def _get(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, path: str, auth: str
) -> bytes:
    """One GET on an open keep-alive connection; returns the status line and headers
    (the body is read and dropped). Fails if the server closed the connection."""
    writer.write(f"GET {path} HTTP/1.1\r\nHost: t\r\nAuthorization: {auth}\r\n\r\n".encode())
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length:"))  # fmt: skip
    await reader.readexactly(length)
    return head


async def test_a_period_out_of_its_window_is_a_422_wherever_it_is_given(stack: Stack) -> None:
    """GET /v1/deliveries?period=0000-01 answered 500: every period parameter goes
    through the kernel's Period."""
    datasync = await stack.create_database("datasync", label="_sec")
    assistance = await stack.create_database("assistance", label="_sec")
    routes = [
        (create_datasync, datasync, "/v1/deliveries", "feeds:read"),
        (create_datasync, datasync, "/v1/feeds/medical/batches", "feeds:medical"),
        (create_datasync, datasync, "/v1/unmatched", "feeds:read"),
        (create_assistance, assistance, "/v1/visits/compliance", "assistance:read"),
    ]
    for create, service_settings, path, scope in routes:
        async with serve(create, service_settings, background=False) as (client, _):
            headers = stack.headers(scope)
            for period in ("0000-01", "9999-12", "2026-13", "２０２６-１３", "2026-1\x00"):
                r = await client.get(path, params={"period": period}, headers=headers)
                assert_problem(r, 422, "query", "period")
            ok = await client.get(path, params={"period": "２０２６-１０"}, headers=headers)
            assert ok.status_code == 200, (path, ok.text)


async def test_a_request_whose_event_the_broker_would_refuse_is_a_413_and_writes_nothing(
    stack: Stack, registry: Served
) -> None:
    small = registry.settings.model_copy(update={"kafka_max_message_bytes": 2048})
    async with serve(create_registry, small, background=False) as (client, _):
        client.headers.update(registry.client.headers)
        before = (await client.get("/v1/households", params={"limit": 500})).json()["items"]
        big = household(members=[_member()] + [_member("child") for _ in range(20)])
        r = await client.post("/v1/households", json=big)
        assert_problem(r, 413)
        assert "2048" in r.json()["detail"]
        after = (await client.get("/v1/households", params={"limit": 500})).json()["items"]
        assert len(after) == len(before)  # nothing of the request was written
        lookup = await client.post("/v1/persons/lookup", json={"id_number": big["members"][0]["id_number"]})  # fmt: skip
        assert lookup.status_code == 404


# --- generated hostile values, posted to the real registry ------------------------------

HOSTILE = st.one_of(
    st.sampled_from([float("inf"), float("-inf"), float("nan"), -1.0, 1e12, 10**30,
                     "0001-01-01", "9999-12-31", "", "x" * 5000, [], {}, None, True]),
    st.builds(lambda a, c: a + c, st.text(max_size=10), st.sampled_from(["\x00", "\x07", "\x1f"])),
)  # fmt: skip
PATHS = [
    ("region_code",), ("type",), ("household_number",), ("annual_income", "year"),
    ("annual_income", "total"), ("annual_income", "wage"), ("members", 0, "id_number"),
    ("members", 0, "name"), ("members", 0, "special_groups"), ("members", 0, "schooling"),
    ("contacts", 0, "name"), ("contacts", 0, "phone"), ("contacts", 0, "unit"),
    ("guarantees", "housing"), ("guarantees", "housing", "verified_on"), ("members",),
]  # fmt: skip


def _put(body: dict[str, Any], path: tuple[str | int, ...], value: Any) -> dict[str, Any]:
    body = copy.deepcopy(body)
    body.setdefault("guarantees", {"housing": {"status": "ok", "verified_on": "2026-01-05"}})
    node: Any = body
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = value
    return body


async def test_generated_hostile_households_never_get_a_5xx(registry: Served) -> None:
    loop = asyncio.get_running_loop()

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    @given(path=st.sampled_from(PATHS), value=HOSTILE)
    def post(path: tuple[str | int, ...], value: Any) -> None:
        body = _put(household(), path, value)
        # json.dumps writes Infinity and NaN as JavaScript does; FastAPI's parser reads them.
        call = registry.client.post("/v1/households", content=json.dumps(body),
                                    headers={"content-type": "application/json"})  # fmt: skip
        r = asyncio.run_coroutine_threadsafe(call, loop).result(timeout=30)
        assert r.status_code < 500, (path, value, r.text)
        if r.status_code >= 400:
            assert r.headers["content-type"].startswith(PROBLEM)

    await asyncio.to_thread(post)  # hypothesis drives; the requests run on this loop
