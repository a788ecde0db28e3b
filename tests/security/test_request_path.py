"""The kernel's request path against the real registry over a real socket (uvicorn):
request bodies are bounded on the stream (§7), a 4xx never closes the keep-alive
connection and a long X-Correlation-Id never breaks a write (§2), and /metrics labels
requests by route template, so no ID number reaches Prometheus (§3)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from backstop.idnumber import check_digit
from backstop.settings import Settings
from services.registry.app import create
from services.registry.seed import generate
from tests.support import Stack, serving

pytestmark = pytest.mark.integration

ID_NUMBER = "44188119800101" + "123"
ID_NUMBER += check_digit(ID_NUMBER)


@pytest.fixture(scope="module")
async def registry(stack: Stack) -> AsyncIterator[tuple[str, Settings]]:
    """The registry app served by uvicorn on a free port (HTTP only)."""
    settings = await stack.create_database("registry", label="_http")
    app = create(settings, background=False)
    async with app.router.lifespan_context(app), serving(app) as url:
        yield url, settings


def household(seed: int) -> bytes:
    draft, _ = next(iter(generate(1, seed=seed)))
    return draft.model_dump_json().encode()


async def exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> tuple[int, dict[str, str], bytes]:
    """One request and its response on an open connection."""
    writer.write(request)
    await writer.drain()
    status_line = await reader.readline()
    assert status_line, "the server closed the connection"
    headers: dict[str, str] = {}
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode().partition(":")
        headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return int(status_line.split()[1]), headers, body


def raw(method: str, path: str, token: str, body: bytes = b"", **headers: str) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: test", f"Authorization: Bearer {token}",
             "Content-Type: application/json", f"Content-Length: {len(body)}",
             *(f"{k.replace('_', '-')}: {v}" for k, v in headers.items())]  # fmt: skip
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def test_a_4xx_keeps_the_connection_open(
    registry: tuple[str, Settings], stack: Stack
) -> None:
    url, _ = registry
    token = stack.token("registry:read", "registry:write")
    port = int(url.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        nul = household(11).replace(b'"name":"', b'"name":"\\u0000', 1)
        requests = [
            raw("GET", "/v1/households/not-a-uuid", token),  # 422, validation
            raw("GET", f"/v1/households/{'0' * 8}-0000-0000-0000-{'0' * 12}", token),  # 404
            raw("POST", "/v1/households", token, b"{not json"),  # 400
            raw("POST", "/v1/households", token, nul),  # 422, NUL byte (refused or by the DB)
            raw("GET", "/healthz", token),
        ]
        statuses = []
        for request in requests:
            status, headers, _ = await exchange(reader, writer, request)
            statuses.append(status)
            assert headers.get("connection", "").lower() != "close", (status, headers)
        assert statuses[:4] == [422, 404, 400, 422] and statuses[4] == 200
    finally:
        writer.close()


async def test_bodies_are_bounded_on_the_stream(
    registry: tuple[str, Settings], stack: Stack
) -> None:
    url, _ = registry
    headers = stack.headers("registry:write")
    big = b'{"region_code": "' + b"4" * (2 * 1024 * 1024) + b'"}'
    async with httpx.AsyncClient(base_url=url, headers=headers) as client:
        declared = await client.post("/v1/households", content=big)

        async def chunks() -> AsyncIterator[bytes]:
            for i in range(0, len(big), 64 * 1024):
                yield big[i : i + 64 * 1024]

        # No Content-Length (chunked): counted as it streams in.
        streamed = await client.post("/v1/households", content=chunks())
        assert "content-length" not in streamed.request.headers
    for response in (declared, streamed):
        assert response.status_code == 413, response.text
        assert response.headers["content-type"].startswith("application/problem+json")
        assert "larger than this service's limit" in response.json()["detail"]


async def test_a_long_correlation_id_never_breaks_a_write(
    registry: tuple[str, Settings], stack: Stack
) -> None:
    url, settings = registry
    async with httpx.AsyncClient(base_url=url, headers=stack.headers("registry:write")) as client:
        r = await client.post(
            "/v1/households",
            content=household(12),
            headers={"Content-Type": "application/json", "X-Correlation-Id": "c" * 300},
        )
        assert r.status_code == 201, r.text
        replaced = r.headers["x-correlation-id"]
        assert 0 < len(replaced) <= 100 and replaced != "c" * 300
        ok = await client.post(
            "/v1/households",
            content=household(13),
            headers={"Content-Type": "application/json", "X-Correlation-Id": "town-7:req/42"},
        )
        assert ok.status_code == 201 and ok.headers["x-correlation-id"] == "town-7:req/42"
    engine = create_async_engine(settings.db_url)
    try:
        async with engine.connect() as conn:
            ids = set((await conn.execute(text("SELECT correlation_id FROM outbox"))).scalars())
    finally:
        await engine.dispose()
    assert {replaced, "town-7:req/42"} <= ids


async def test_metrics_label_the_route_template_never_the_id_number(
    registry: tuple[str, Settings], stack: Stack
) -> None:
    url, _ = registry
    async with httpx.AsyncClient(base_url=url) as client:
        await client.get(f"/v1/persons/{ID_NUMBER}", headers=stack.headers("registry:read"))
        await client.get(f"/nowhere/{ID_NUMBER}")
        metrics = (await client.get("/metrics")).text
    assert ID_NUMBER not in metrics and ID_NUMBER[:14] not in metrics
    assert 'route="/v1/persons/{id_number}"' in metrics
    assert 'route="unmatched"' in metrics
