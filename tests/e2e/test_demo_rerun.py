"""`make run` can be run again: the demo seeds and sends its month once, and a second run
after the register changed reports the county as it stands instead of failing on its own
earlier batches (datasync refuses other content under a known batch id with 409)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import date

import pytest

from deploy import demo
from tests.e2e.conftest import start_system, stop_system
from tests.e2e.system import System

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
async def demo_system() -> AsyncIterator[System]:
    system = await start_system("_demo")
    try:
        yield system
    finally:
        await stop_system(system)


async def test_a_second_demo_run_reports_the_county_as_it_stands(demo_system: System) -> None:
    registry = demo_system.settings("registry")
    first = await demo.run(households=40, ports=demo_system.ports, registry_settings=registry)
    assert first["households"] == 40 and first["records_in"] > 0

    # Some work through the API between the runs: the register gains a household, so the
    # month generated now differs from the one sent the first time.
    first17 = f"441881{date(1970, 1, 1):%Y%m%d}777"
    async with demo_system.client("registry", "registry:write") as client:
        r = await client.post("/v1/households", json={
            "region_code": "441881101201", "type": "marginal",
            "annual_income": {"year": 2025, "total": 9000},
            "members": [{"id_number": first17 + demo.check_digit(first17), "name": "新户",
                         "relation": "head", "labor_capacity": "full"}],
        })  # fmt: skip
        assert r.status_code == 201, r.text

    second = await demo.run(households=40, ports=demo_system.ports, registry_settings=registry)
    assert second["households"] == 41
    # The batches of the first run, reported as stored, not sent again.
    for key in ("records_in", "accepted", "rejected", "matched", "unmatched"):
        assert second[key] == first[key], key
    assert second["tasks_opened"] >= first["tasks_opened"]
