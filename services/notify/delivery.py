"""The delivery jobs: reminders through their channels, alerts to webhook subscribers.

Both work the same way, safe with any number of replicas: claim due rows with
`FOR UPDATE SKIP LOCKED` and a lease in one short transaction, send outside any
transaction, then record each outcome (guarded by the lease) in a second one. A row whose
worker died is claimed again when its lease runs out.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
from prometheus_client import Counter
from sqlalchemy import bindparam, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from backstop import crypto, tracing
from backstop.db import SessionFactory, unit_of_work
from backstop.events import CONTENT_TYPE
from backstop.settings import Settings
from services.notify import domain
from services.notify.channels import Channels, Outgoing, SendResult, send_safely
from services.notify.config import NotifySettings
from services.notify.egress import pinned_client
from services.notify.models import (
    REMINDER_ATTEMPTS,
    REMINDERS,
    SUBSCRIPTIONS,
    WEBHOOK_ATTEMPTS,
    WEBHOOK_DELIVERIES,
    utcnow,
)
from services.notify.reminders import publish_final

log = logging.getLogger("backstop.notify.delivery")

_SEND_CONCURRENCY = 16
_PER_SUBSCRIBER_CONCURRENCY = 8

REMINDER_SENDS = Counter(
    "backstop_notify_reminder_attempts_total",
    "Attempts to deliver a reminder, by channel and outcome.",
    ["channel", "outcome"],
)
WEBHOOK_SENDS = Counter(
    "backstop_notify_webhook_attempts_total",
    "Attempts to deliver an alert to a webhook subscriber, by subscription and outcome.",
    ["subscription", "outcome"],
)


def _client(settings: NotifySettings, service: Settings) -> httpx.AsyncClient:
    """Every address is checked and pinned when connecting (egress.PinnedTransport),
    except the deployment's own SMS gateway."""
    return pinned_client(
        timeout=settings.http_timeout_s,
        allow_internal=settings.internal_callbacks_allowed(service.environment),
        trusted_hosts=[h for h in (httpx.URL(settings.sms_gateway_url or "").host,) if h],
    )


# ---------------------------------------------------------------- reminders


async def _claim_reminders(
    session: AsyncSession, settings: NotifySettings, now: datetime, lease: datetime
) -> list[Any]:
    due = (
        select(REMINDERS.c.id)
        .where(
            REMINDERS.c.status == domain.PENDING,
            REMINDERS.c.next_attempt_at <= now,
            or_(REMINDERS.c.locked_until.is_(None), REMINDERS.c.locked_until < now),
        )
        .order_by(REMINDERS.c.next_attempt_at, REMINDERS.c.seq)
        .limit(settings.batch_size)
        .with_for_update(skip_locked=True)
    )
    rows = await session.execute(
        update(REMINDERS)
        .where(REMINDERS.c.id.in_(due.scalar_subquery()))
        .values(locked_until=lease, attempts=REMINDERS.c.attempts + 1)
        .returning(*REMINDERS.c)
    )
    return list(rows.all())


async def deliver_reminders(
    sessions: SessionFactory,
    settings: NotifySettings,
    service: Settings,
    *,
    worker: str,
    now: datetime | None = None,
    client: httpx.AsyncClient | None = None,
) -> int:
    """Send the reminders that are due; returns how many were attempted."""
    now = now or utcnow()
    lease = now + timedelta(seconds=settings.lease_s)
    async with unit_of_work(sessions) as session:
        claimed = await _claim_reminders(session, settings, now, lease)
    if not claimed:
        return 0
    own_client = client is None
    http = client or _client(settings, service)
    try:
        channels = Channels(settings, http)
        gate = asyncio.Semaphore(_SEND_CONCURRENCY)

        async def send(row: Any) -> tuple[Any, str, SendResult]:
            channel = channels.pick(row.channel)
            message = Outgoing(
                reminder_id=str(row.id),
                dedup_key=row.dedup_key,
                recipient=row.recipient,
                recipient_name=row.recipient_name,
                address=row.address or "",
                title=row.title,
                body=row.body,
            )
            async with gate:
                result = await send_safely(channel, message, settings.http_timeout_s + 5)
            return row, channel.name, result

        results = await asyncio.gather(*(send(r) for r in claimed))
    finally:
        if own_client:
            await http.aclose()
    await _record_reminders(sessions, settings, results, worker=worker, lease=lease)
    return len(claimed)


async def _still_ours(
    session: AsyncSession, table: Any, ids: list[Any], lease: datetime
) -> set[Any]:
    """The claimed rows whose lease is still ours (locked until we have recorded them)."""
    rows = await session.execute(
        select(table.c.id)
        .where(table.c.id.in_(ids), table.c.locked_until == lease)
        .with_for_update()
    )
    return set(rows.scalars().all())


_RECORD_REMINDER = (
    update(REMINDERS)
    .where(REMINDERS.c.id == bindparam("rid"))
    .values(
        status=bindparam("status"),
        channel=bindparam("channel"),
        delivered_at=bindparam("delivered_at"),
        next_attempt_at=bindparam("next_attempt_at"),
        last_error=bindparam("last_error"),
        failure_reason=bindparam("failure_reason"),
        locked_until=None,
    )
)


async def _record_reminders(
    sessions: SessionFactory,
    settings: NotifySettings,
    results: list[tuple[Any, str, SendResult]],
    *,
    worker: str,
    lease: datetime,
) -> None:
    """Record a round's outcomes in one transaction: statuses, the attempt log, and the
    `reminder.delivered` events of those that reached their final status."""
    done = utcnow()
    async with unit_of_work(sessions) as session:
        ours = await _still_ours(session, REMINDERS, [r.id for r, _, _ in results], lease)
        updates: list[dict[str, Any]] = []
        attempts: list[dict[str, Any]] = []
        finals: list[dict[str, Any]] = []
        for row, channel, result in results:
            if row.id not in ours:  # our lease ran out and another worker took it over
                log.warning("reminder %s: lease lost, outcome not recorded", row.id)
                continue
            final = (
                result.ok or not result.retryable or row.attempts >= settings.reminder_max_attempts
            )
            values: dict[str, Any] = {
                "rid": row.id,
                "channel": channel,
                "status": domain.PENDING,
                "delivered_at": None,
                "next_attempt_at": row.next_attempt_at,
                "last_error": result.error,
                "failure_reason": None,
            }
            if result.ok:
                values |= {"status": domain.SENT, "delivered_at": done}
            elif final:
                values |= {
                    "status": domain.FAILED,
                    "delivered_at": done,
                    "failure_reason": "channel_error"
                    if result.retryable
                    else "rejected_by_channel",
                }
            else:
                delay = domain.retry_delay(
                    row.attempts,
                    base_s=settings.reminder_backoff_s,
                    max_s=settings.reminder_backoff_max_s,
                )
                values["next_attempt_at"] = done + timedelta(seconds=delay)
            updates.append(values)
            attempts.append(
                {
                    "reminder_id": row.id,
                    "attempt": row.attempts,
                    "channel": channel,
                    "ok": result.ok,
                    "error": result.error,
                    "worker": worker,
                }
            )
            REMINDER_SENDS.labels(channel, "ok" if result.ok else "error").inc()
            if final:
                finals.append({**row._mapping, **values, "id": row.id})
        if updates:
            await session.execute(_RECORD_REMINDER, updates)
            await session.execute(insert(REMINDER_ATTEMPTS), attempts)
        await publish_final(session, finals, now=done)


# ---------------------------------------------------------------- webhooks


_RECORD_WEBHOOK = (
    update(WEBHOOK_DELIVERIES)
    .where(WEBHOOK_DELIVERIES.c.id == bindparam("did"))
    .values(
        status=bindparam("status"),
        delivered_at=bindparam("delivered_at"),
        next_attempt_at=bindparam("next_attempt_at"),
        last_status_code=bindparam("last_status_code"),
        last_error=bindparam("last_error"),
        locked_until=None,
    )
)


@dataclass(frozen=True)
class _Target:
    url: str
    sealed_secret: str  # backstop.crypto: opened only to sign


async def deliver_webhooks(
    sessions: SessionFactory,
    settings: NotifySettings,
    service: Settings,
    *,
    now: datetime | None = None,
    client: httpx.AsyncClient | None = None,
    background: set[asyncio.Task[None]] | None = None,
) -> int:
    """POST due alert deliveries, each subscriber in its own task that sends its rows
    and records their outcomes in its own transaction: a subscriber that is down only
    backs off its own rows. With `background`, waits at most `webhook_round_wait_s` and
    leaves a slow subscriber's task running there (its rows stay leased), so the next
    round serves the others. Returns how many rows were claimed."""
    now = now or utcnow()
    lease = now + timedelta(seconds=settings.lease_s)
    d = WEBHOOK_DELIVERIES
    async with unit_of_work(sessions) as session:
        ranked = (
            select(
                d.c.id,
                func.row_number()
                .over(partition_by=d.c.subscription_id, order_by=(d.c.next_attempt_at, d.c.seq))
                .label("rank"),
            )
            .where(
                d.c.status == domain.PENDING,
                d.c.next_attempt_at <= now,
                or_(d.c.locked_until.is_(None), d.c.locked_until < now),
            )
            .subquery()
        )
        fair = select(ranked.c.id).where(ranked.c.rank <= settings.webhook_per_subscription)
        due = (
            select(d.c.id)
            .where(d.c.id.in_(fair.scalar_subquery()))
            .limit(settings.batch_size)
            .with_for_update(skip_locked=True)
        )
        claimed = (
            await session.execute(
                update(d)
                .where(d.c.id.in_(due.scalar_subquery()))
                .values(locked_until=lease, attempts=d.c.attempts + 1)
                .returning(
                    d.c.id,
                    d.c.subscription_id,
                    d.c.event_id,
                    d.c.body,
                    d.c.attempts,
                    d.c.next_attempt_at,
                )
            )
        ).all()
        if not claimed:
            return 0
        targets = {
            r.id: _Target(r.callback_url, r.secret)
            for r in (
                await session.execute(
                    select(
                        SUBSCRIPTIONS.c.id, SUBSCRIPTIONS.c.callback_url, SUBSCRIPTIONS.c.secret
                    ).where(SUBSCRIPTIONS.c.id.in_({c.subscription_id for c in claimed}))
                )
            ).all()
        }

    by_subscription: dict[Any, list[Any]] = {}
    for row in claimed:
        by_subscription.setdefault(row.subscription_id, []).append(row)
    tasks = [
        asyncio.create_task(
            _deliver_to(
                sessions, settings, service, targets[sub], rows, lease=lease, client=client
            ),
            name=f"webhook-{sub}",
        )
        for sub, rows in by_subscription.items()
    ]
    if background is None:
        await asyncio.gather(*tasks)
    else:
        for task in tasks:
            background.add(task)
            task.add_done_callback(background.discard)
        await asyncio.wait(tasks, timeout=settings.webhook_round_wait_s)
    return len(claimed)


async def _deliver_to(
    sessions: SessionFactory,
    settings: NotifySettings,
    service: Settings,
    target: _Target,
    rows: list[Any],
    *,
    lease: datetime,
    client: httpx.AsyncClient | None,
) -> None:
    """Send one subscriber's claimed rows, then record the outcomes."""
    d = WEBHOOK_DELIVERIES
    own_client = client is None
    http = client or _client(settings, service)
    gate = asyncio.Semaphore(_PER_SUBSCRIBER_CONCURRENCY)
    try:
        secret: str | None = crypto.open_secret(service, target.sealed_secret)
    except crypto.InvalidToken:
        secret = None
        log.error("a webhook secret does not open with BACKSTOP_SECRETS_KEY; not sent")

    async def post(row: Any) -> tuple[Any, int | None, str | None]:
        if secret is None:
            return row, None, "the subscription's secret does not open (BACKSTOP_SECRETS_KEY)"
        headers = {
            "Content-Type": CONTENT_TYPE,
            **domain.signature_headers(secret, row.body, time.time()),
            "X-Backstop-Delivery": str(row.id),
            "X-Backstop-Event-Id": row.event_id,
            "X-Backstop-Attempt": str(row.attempts),
        }
        async with gate:
            try:
                with tracing.restored(row.body):  # the alert's trace goes on to the subscriber
                    response = await asyncio.wait_for(
                        http.post(target.url, content=row.body, headers=headers),
                        settings.http_timeout_s + 5,
                    )
            except TimeoutError:
                return row, None, "timed out"
            except httpx.HTTPError as exc:
                return row, None, f"{type(exc).__name__}: {exc}"[:1000]
        if response.is_success:
            return row, response.status_code, None
        return row, response.status_code, f"HTTP {response.status_code}"

    try:
        try:
            results = await asyncio.gather(*(post(r) for r in rows))
        finally:
            if own_client:
                await http.aclose()
        done = utcnow()
        async with unit_of_work(sessions) as session:
            ours = await _still_ours(session, d, [r.id for r, _, _ in results], lease)
            updates: list[dict[str, Any]] = []
            attempts: list[dict[str, Any]] = []
            for row, status_code, error in results:
                if row.id not in ours:
                    continue
                values: dict[str, Any] = {
                    "did": row.id,
                    "status": domain.PENDING,
                    "delivered_at": None,
                    "next_attempt_at": row.next_attempt_at,
                    "last_status_code": status_code,
                    "last_error": error,
                }
                if error is None:
                    values |= {"status": "delivered", "delivered_at": done}
                elif row.attempts >= settings.webhook_max_attempts:
                    values["status"] = domain.FAILED
                else:
                    delay = domain.retry_delay(
                        row.attempts,
                        base_s=settings.webhook_backoff_s,
                        max_s=settings.webhook_backoff_max_s,
                    )
                    values["next_attempt_at"] = done + timedelta(seconds=delay)
                updates.append(values)
                attempts.append(
                    {
                        "delivery_id": row.id,
                        "attempt": row.attempts,
                        "status_code": status_code,
                        "error": error,
                    }
                )
                WEBHOOK_SENDS.labels(
                    str(row.subscription_id), "ok" if error is None else "error"
                ).inc()
            if updates:
                await session.execute(_RECORD_WEBHOOK, updates)
                await session.execute(insert(WEBHOOK_ATTEMPTS), attempts)
    except asyncio.CancelledError:
        raise
    except Exception:  # the rows stay leased and are retried when the lease runs out
        log.exception("webhook deliveries to %s could not be recorded", target.url)
