"""The inbox: the event ids each consumer has applied, so redelivery changes nothing."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from backstop.events import CloudEvent


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
    # One statement whatever the batch size: arrays, not a compiled multi-row VALUES.
    stmt = text(
        "INSERT INTO inbox (consumer, event_id, event_type)"
        " SELECT :consumer, e.id, e.type"
        " FROM unnest(CAST(:ids AS text[]), CAST(:types AS text[])) AS e(id, type)"
        " ON CONFLICT DO NOTHING RETURNING event_id"
    )
    params = {
        "consumer": consumer,
        "ids": list(unique),
        "types": [e.type for e in unique.values()],
    }
    claimed = set((await session.execute(stmt, params)).scalars().all())
    return [e for e in unique.values() if e.id in claimed]
