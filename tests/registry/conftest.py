from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date
from typing import Any

import httpx
import pytest

from backstop.app import Runtime
from backstop.settings import Settings
from services.registry.app import create
from services.registry.seed import make_id_number
from tests.support import Stack, serve

# Villages of 英德市 from the committed regions: two in 英城街道, one in 沙口镇.
VILLAGE = "441881001001"
VILLAGE_2 = "441881001002"
OTHER_TOWN_VILLAGE = "441881101201"


@dataclass
class Registry:
    client: httpx.AsyncClient
    runtime: Runtime
    settings: Settings
    stack: Stack

    def headers(self, *scopes: str, regions: tuple[str, ...] = ("*",)) -> dict[str, str]:
        return self.stack.headers(*scopes, regions=regions)

    @property
    def writer(self) -> dict[str, str]:
        return self.headers("registry:read", "registry:write")

    @property
    def reader(self) -> dict[str, str]:
        return self.headers("registry:read")


_sequence = itertools.count(1)


def person_id_number(year: int = 1980) -> str:
    """A fresh valid ID number of the county for every call."""
    n = next(_sequence)
    born = date(year, 1 + n % 12, 1 + n % 28)
    return make_id_number("441881", born, n % 1000)


def household_body(region: str = VILLAGE, size: int = 3, **extra: Any) -> dict[str, Any]:
    members: list[dict[str, Any]] = [
        {"id_number": person_id_number(1975), "name": "陈大明", "relation": "head"},
        {"id_number": person_id_number(1978), "name": "李小芳", "relation": "spouse"},
    ]
    for _ in range(size - 2):
        members.append(
            {"id_number": person_id_number(2015), "name": "陈小华", "relation": "child",
             "schooling": "primary"}
        )  # fmt: skip
    body: dict[str, Any] = {
        "region_code": region,
        "type": "alleviated",
        "policy_enjoying": True,
        "annual_income": {"year": 2025, "total": 30000},
        "members": members[:size],
    }
    body.update(extra)
    return body


@pytest.fixture(scope="session")
async def registry(stack: Stack) -> AsyncIterator[Registry]:
    settings = await stack.create_database("registry")
    async with serve(create, settings) as (client, runtime):
        yield Registry(client, runtime, settings, stack)
