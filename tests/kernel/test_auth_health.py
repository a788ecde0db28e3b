"""Auth (401/403 problem+json), /healthz, /readyz and /metrics on a real service app."""

from __future__ import annotations

import asyncio
import time

import httpx
import jwt
import pytest
from fastapi import APIRouter, FastAPI
from sqlalchemy import text

from backstop.app import ServiceSpec, SessionDep, create_app
from backstop.auth import Principal, require
from backstop.settings import Settings
from tests.support import PrivateKafka, Stack, serve

router = APIRouter(prefix="/v1")


@router.get("/regions/{code}/things")
async def things(code: str, principal: Principal = require("registry:read")) -> dict[str, str]:
    principal.require_region(code)
    return {"region": code, "sub": principal.sub}


@router.post("/echo")
async def echo(body: dict[str, str], session: SessionDep) -> dict[str, str]:
    await session.execute(text("SELECT CAST(:v AS text)"), {"v": body["v"]})
    return body


def create(settings: Settings | None = None, *, background: bool = True) -> FastAPI:
    spec = ServiceSpec(name="kernel", title="t", description="t", routers=[router])
    return create_app(spec, settings, background=background)


def assert_problem(response: httpx.Response, status: int, fragment: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == status and fragment in body["detail"]
    assert {"type", "title", "status", "detail"} <= body.keys()


@pytest.mark.integration
async def test_auth_errors_are_problem_json(stack: Stack, kernel_settings: Settings) -> None:
    async with serve(create, kernel_settings, background=False) as (client, _):
        url = "/v1/regions/441881100201/things"
        assert_problem(await client.get(url), 401, "missing bearer token")

        expired = stack.token("registry:read", ttl_s=-10)
        r = await client.get(url, headers={"Authorization": f"Bearer {expired}"})
        assert_problem(r, 401, "expired")
        assert r.headers["www-authenticate"].startswith("Bearer")

        forged = jwt.encode(
            {"sub": "x", "scope": "registry:read", "regions": ["*"], "exp": time.time() + 60},
            "not-the-secret-not-the-secret-not-the-secret",
            algorithm="HS256",
        )
        r = await client.get(url, headers={"Authorization": f"Bearer {forged}"})
        assert_problem(r, 401, "Signature verification failed")

        r = await client.get(url, headers=stack.headers("risk:read"))
        assert_problem(r, 403, "missing scope: registry:read")

        r = await client.get(url, headers=stack.headers("registry:read", regions=["441882"]))
        assert_problem(r, 403, "outside this client's regions")

        r = await client.get(url, headers=stack.headers("registry:read", regions=["4418811"]))
        assert r.status_code == 200 and r.json() == {"region": "441881100201", "sub": "test"}

        assert_problem(await client.get("/v1/nowhere"), 404, "Not Found")


@pytest.mark.integration
async def test_health_ready_and_metrics(kernel_settings: Settings) -> None:
    async with serve(create, kernel_settings, background=False) as (client, _):
        assert (await client.get("/healthz")).json()["status"] == "ok"
        ready = await client.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json()["checks"] == {"database": "ok", "kafka": "ok"}
        metrics = (await client.get("/metrics")).text
        assert 'backstop_http_request_duration_seconds_count{method="GET"' in metrics
        assert 'route="/readyz"' in metrics


@pytest.mark.integration
async def test_readyz_reports_a_database_that_is_down(kernel_settings: Settings) -> None:
    down = kernel_settings.model_copy(
        update={"database_url": "postgresql+asyncpg://backstop:backstop@127.0.0.1:1/nowhere"}
    )
    async with serve(create, down, background=False) as (client, _):
        r = await client.get("/readyz")
        assert r.status_code == 503
        assert r.json()["checks"]["database"].startswith("unreachable")
        assert r.json()["checks"]["kafka"] == "ok"


@pytest.mark.integration
async def test_readyz_reports_kafka_down_then_recovers(kernel_settings: Settings) -> None:
    kafka = PrivateKafka(port=19192)
    settings = kernel_settings.model_copy(update={"kafka_bootstrap_servers": kafka.bootstrap})
    async with serve(create, settings, background=False) as (client, _):
        r = await client.get("/readyz")
        assert r.status_code == 503 and r.json()["checks"]["kafka"].startswith("unreachable")
        await asyncio.to_thread(kafka.up)
        try:
            r = await client.get("/readyz")
            assert r.status_code == 200, r.text
        finally:
            await asyncio.to_thread(kafka.down)


@pytest.mark.integration
async def test_input_the_database_cannot_store_is_a_422(kernel_settings: Settings) -> None:
    async with serve(create, kernel_settings, background=False) as (client, _):
        assert (await client.post("/v1/echo", json={"v": "ok"})).status_code == 200
        r = await client.post("/v1/echo", json={"v": "nul\u0000byte"})
        assert_problem(r, 422, "cannot be stored")
