"""The inbox: the event ids each consumer has applied, so redelivery changes nothing."""

from __future__ import annotations

from collections.abc import Sequence

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from backstop.events import CloudEvent

# One statement whatever the batch size: the events as one JSON parameter, not a
# compiled multi-row VALUES, nor arrays (asyncpg checks every array element against the
# collections.abc classes). Built once: text() parses its bind parameters.
_CLAIM = text(
    "INSERT INTO inbox (consumer, event_id, event_type)"
    " SELECT :consumer, e.id, e.type"
    " FROM json_to_recordset(CAST(:events AS json)) AS e(id text, type text)"
    " ON CONFLICT DO NOTHING RETURNING event_id"
)


async def claim(
    session: AsyncSession, consumer: str, events: Sequence[CloudEvent]
) -> list[CloudEvent]:
    """Record the events as applied by `consumer` in this transaction and return those
    not applied before, in order. A concurrent claimer of the same id waits for this
    transaction and then gets nothing back, so an event is applied exactly once."""
    unique: dict[str, CloudEvent] = {}
    for event in events:
        unique.setdefault(event.id, event)
    if not unique:
        return []
    params = {
        "consumer": consumer,
        "events": orjson.dumps([{"id": e.id, "type": e.type} for e in unique.values()]).decode(),
    }
    claimed = set((await session.execute(_CLAIM, params)).scalars().all())
    return [e for e in unique.values() if e.id in claimed]
