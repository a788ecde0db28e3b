from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from backstop.settings import Settings
from backstop.tables import kernel_metadata
from tests.support import Stack


@pytest.fixture(scope="session")
async def kernel_settings(stack: Stack) -> AsyncIterator[Settings]:
    """A database with only the kernel tables and a table the probe consumer writes to."""
    settings = await stack.create_database("kernel", migrate=False)
    engine = create_async_engine(settings.db_url)
    async with engine.begin() as conn:
        await conn.run_sync(kernel_metadata.create_all)
        await conn.execute(
            text(
                "CREATE TABLE probe_effects (id bigserial PRIMARY KEY, event_id text NOT NULL,"
                " household_id text NOT NULL, seq int NOT NULL, consumer text NOT NULL)"
            )
        )
    await engine.dispose()
    yield settings
