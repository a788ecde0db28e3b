"""The inbox: the event ids each consumer has applied, so redelivery changes nothing."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from backstop.events import CloudEvent
from backstop.tables import inbox


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
    stmt = (
        insert(inbox)
        .values(
            [
                {"consumer": consumer, "event_id": e.id, "event_type": e.type}
                for e in unique.values()
            ]
        )
        .on_conflict_do_nothing()
        .returning(inbox.c.event_id)
    )
    claimed = set((await session.execute(stmt)).scalars().all())
    return [e for e in unique.values() if e.id in claimed]
