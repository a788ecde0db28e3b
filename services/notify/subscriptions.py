"""Webhook subscriptions of other counties' systems to risk alerts: creating one (its
callback must be a public address), deactivating it, and queueing each alert for
every matching subscription. `delivery.py` sends the queued rows, signed."""

from __future__ import annotations

import secrets
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from backstop import crypto
from backstop.contracts import risk
from backstop.db import SessionFactory, unit_of_work
from backstop.errors import invalid
from backstop.events import CloudEvent, registered_types
from backstop.settings import Settings
from services.notify import domain
from services.notify.egress import check_url
from services.notify.models import SUBSCRIPTIONS, WEBHOOK_DELIVERIES, SubscriptionCreate, utcnow

ALERT_EVENT_TYPES = tuple(
    name for name, spec in registered_types().items() if spec.topic == risk.ALERTS_TOPIC
)


async def queue_alert(session: AsyncSession, event: CloudEvent) -> None:
    """Queue the alert for every subscription matching its type and region; the
    webhook job delivers each row on its own."""
    data = event.payload()
    assert isinstance(data, risk.AlertData)
    subs = (
        await session.execute(
            select(SUBSCRIPTIONS.c.id, SUBSCRIPTIONS.c.event_types, SUBSCRIPTIONS.c.region_prefix)
            .where(SUBSCRIPTIONS.c.active)
            .where(SUBSCRIPTIONS.c.event_types.any(event.type))
        )
    ).all()
    now = utcnow()
    body = event.to_bytes()
    rows = [
        {
            "id": uuid.uuid4(),
            "subscription_id": s.id,
            "event_id": event.id,
            "event_type": event.type,
            "region_code": data.region_code,
            "body": body,
            "status": domain.PENDING,
            "attempts": 0,
            "next_attempt_at": now,
        }
        for s in subs
        if domain.subscription_matches(
            event_types=s.event_types,
            region_prefix=s.region_prefix,
            event_type=event.type,
            region_code=data.region_code,
        )
    ]
    if rows:
        await session.execute(
            insert(WEBHOOK_DELIVERIES)
            .values(rows)
            .on_conflict_do_nothing(constraint="uq_webhook_delivery_event")
        )


async def create_subscription(
    sessions: SessionFactory,
    *,
    body: SubscriptionCreate,
    created_by: str,
    allow_internal: bool,
    service: Settings,
) -> dict[str, Any]:
    """Store the subscription with its secret sealed (backstop.crypto); the values
    returned carry the secret in clear, to be shown once."""
    for i, t in enumerate(body.event_types):
        if t not in ALERT_EVENT_TYPES:
            raise invalid(
                ["body", "event_types", i],
                f"not a risk.alerts event type; one of {ALERT_EVENT_TYPES}",
            )
    if not allow_internal:
        await check_url(body.callback_url, ["body", "callback_url"])
    secret = secrets.token_hex(32)
    values = {
        "id": uuid.uuid4(),
        "callback_url": body.callback_url,
        "event_types": sorted(set(body.event_types)),
        "region_prefix": body.region_prefix,
        "secret": crypto.seal(service, secret),
        "active": True,
        "created_by": created_by,
        "created_at": utcnow(),
    }
    async with unit_of_work(sessions) as session:
        await session.execute(insert(SUBSCRIPTIONS).values(values))
    return values | {"secret": secret}


async def deactivate_subscription(sessions: SessionFactory, *, subscription_id: uuid.UUID) -> None:
    async with unit_of_work(sessions) as session:
        await session.execute(
            update(SUBSCRIPTIONS).where(SUBSCRIPTIONS.c.id == subscription_id).values(active=False)
        )
        # Pending deliveries to a removed subscriber stop; the log keeps them.
        await session.execute(
            update(WEBHOOK_DELIVERIES)
            .where(
                WEBHOOK_DELIVERIES.c.subscription_id == subscription_id,
                WEBHOOK_DELIVERIES.c.status == domain.PENDING,
            )
            .values(status=domain.CANCELLED, last_error="subscription deactivated")
        )


async def redeliver(
    sessions: SessionFactory, *, subscription_id: uuid.UUID, since: datetime, until: datetime
) -> int:
    """Queue again, to be sent as new, every alert queued for the subscriber in
    [since, until): delivered, failed or cancelled alike (a subscriber that lost what it
    received may ask too). Receivers dedupe by the event id. Returns how many."""
    d = WEBHOOK_DELIVERIES
    async with unit_of_work(sessions) as session:
        result = await session.execute(
            update(d)
            .where(
                d.c.subscription_id == subscription_id,
                d.c.created_at >= since,
                d.c.created_at < until,
                d.c.status != domain.PENDING,
            )
            .values(
                status=domain.PENDING,
                attempts=0,
                next_attempt_at=utcnow(),
                locked_until=None,
                last_error=None,
                last_status_code=None,
                delivered_at=None,
            )
        )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
