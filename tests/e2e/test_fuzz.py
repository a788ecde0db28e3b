"""schemathesis against every service's OpenAPI, on the running processes: with a valid
token no input gives a 5xx and every error is problem+json; without a token everything
but the open endpoints is 401; a token for another county sees nothing of this one."""

from __future__ import annotations

import asyncio
from typing import Any

import hypothesis
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase

from backstop.auth import SCOPES
from backstop.settings import SERVICES
from tests.e2e import flows
from tests.e2e.system import System

pytestmark = pytest.mark.integration

OPEN = {"/healthz", "/readyz", "/metrics", "/openapi.json", "/docs"}
PROBLEM = "application/problem+json"


def fuzz(base_url: str, headers: dict[str, str], *, examples: int, negative: bool) -> list[str]:
    """Run generated cases against every operation; return what went wrong."""
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    failures: list[str] = []
    modes = [schemathesis.GenerationMode.POSITIVE]
    if negative:
        modes.append(schemathesis.GenerationMode.NEGATIVE)
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.path in OPEN:
            continue
        for mode in modes:

            @hypothesis.settings(
                max_examples=examples, deadline=None, database=None, phases=[Phase.generate],
                suppress_health_check=list(HealthCheck),
            )  # fmt: skip
            @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
            def check(case: Any) -> None:
                case.headers = {**(case.headers or {}), **headers}  # a valid token always
                response = case.call(base_url=base_url, timeout=30)
                label = f"{case.method} {case.formatted_path} -> {response.status_code}"
                if response.status_code >= 500:
                    failures.append(f"{label}: {response.text[:300]}")
                elif response.status_code >= 400:
                    content_type = response.headers.get("content-type") or [""]
                    if not str(content_type[0]).startswith(PROBLEM):
                        failures.append(f"{label}: not problem+json")

            try:
                check()
            except hypothesis.errors.Unsatisfiable:
                pass
    return failures


@pytest.mark.parametrize("service", SERVICES)
async def test_no_5xx_and_problem_json_with_a_valid_token(system: System, service: str) -> None:
    # Some real data first, so generated ids and filters sometimes hit something.
    if service == "registry":
        await flows.register(system, 3)
    headers = system.stack.headers(*SCOPES, regions=("*",))
    failures = await asyncio.to_thread(
        fuzz, system.url(service), headers, examples=15, negative=True
    )
    assert not failures, "\n".join(failures[:20])


@pytest.mark.parametrize("service", SERVICES)
async def test_without_a_token_everything_is_401(system: System, service: str) -> None:
    async with system.client(service) as client:
        client.headers.pop("Authorization")
        spec = (await client.get("/openapi.json")).json()
        for path, methods in spec["paths"].items():
            if path in OPEN:
                continue
            for method in methods:
                url = path.replace("{", "").replace("}", "")  # any value: auth comes first
                r = await client.request(method.upper(), url)
                assert r.status_code == 401, f"{method} {path}: {r.status_code}"
                assert r.headers["content-type"].startswith(PROBLEM)


async def test_a_token_for_another_county_sees_nothing_here(system: System) -> None:
    households = await flows.register(system, 2)
    await flows.wait_known_to_risk(system, households)
    elsewhere = ("441882",)  # a neighbouring county
    hid = households[0]["id"]
    async with system.client("registry", *SCOPES, regions=elsewhere) as registry:
        r = await registry.get(f"/v1/households/{hid}")  # as if it did not exist
        assert r.status_code == 404 and r.headers["content-type"].startswith(PROBLEM)
        listed = (await registry.get("/v1/households")).json()["items"]
        assert all(h["region_code"].startswith("441882") for h in listed)
    async with system.client("risk", *SCOPES, regions=elsewhere) as risk:
        assert (await risk.get(f"/v1/households/{hid}/risk")).status_code == 404
        assert (await risk.get("/v1/assessments")).json()["items"] == []
    async with system.client("assistance", *SCOPES, regions=elsewhere) as assistance:
        assert (await assistance.get("/v1/tasks")).json()["items"] == []
    async with system.client("notify", *SCOPES, regions=elsewhere) as notify:
        assert (await notify.get("/v1/reminders")).json()["items"] == []
