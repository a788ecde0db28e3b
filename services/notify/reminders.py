"""The reminder store: a reminder is created once per de-duplication key with its
recipient resolved in the directory (or failed at once, so nobody is silently
forgotten), reaches a final status announced by `reminder.delivered`, is cancelled
when moot and retried by hand; the recipient directory (通讯录) itself."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from prometheus_client import Counter
from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from backstop import outbox
from backstop.contracts.notify import ReminderDelivered
from backstop.db import SessionFactory, unit_of_work
from backstop.errors import Problem
from backstop.events import CloudEvent, make_event
from backstop.logs import correlation_id
from services.notify import domain
from services.notify.domain import Message, RecipientKey
from services.notify.models import RECIPIENTS, REMINDERS, RecipientPut, utcnow

REMINDERS_FINAL = Counter(
    "backstop_notify_reminders_final_total",
    "Reminders that reached their final status, by kind and status.",
    ["kind", "status"],
)


@dataclass(frozen=True)
class Draft:
    """A reminder to be created; `dedup_key` decides whether it already exists."""

    dedup_key: str
    kind: str
    recipient: RecipientKey
    region_code: str
    message: Message
    subject_id: str | None = None
    ref: str | None = None
    not_before: datetime | None = None
    # Key contacts come with their own phone from the registry snapshot.
    fallback: tuple[str, str, str] | None = None  # (name, channel, address)


async def create_reminders(
    session: AsyncSession, drafts: Sequence[Draft], *, now: datetime | None = None
) -> int:
    """Insert the drafts that do not exist yet, resolving each recipient in the directory.

    A recipient nobody registered still gets its reminder row, failed at once with the
    reason, so the county office sees who could not be reached. Returns how many rows
    were new.
    """
    if not drafts:
        return 0
    now = now or utcnow()
    keys = {(d.recipient.kind, d.recipient.code) for d in drafts}
    found: dict[tuple[str, str], Any] = {}
    rows = await session.execute(
        select(RECIPIENTS).where(
            RECIPIENTS.c.kind.in_({k for k, _ in keys}),
            RECIPIENTS.c.code.in_({c for _, c in keys}),
        )
    )
    for row in rows:
        found[(row.kind, row.code)] = row
    values: list[dict[str, Any]] = []
    cid = correlation_id.get()
    seen: set[str] = set()
    for d in drafts:
        if d.dedup_key in seen:
            continue
        seen.add(d.dedup_key)
        entry = found.get((d.recipient.kind, d.recipient.code))
        name: str | None
        channel: str | None
        address: str | None
        status, reason, error = domain.PENDING, None, None
        if entry is not None and entry.active:
            name, channel, address = entry.name, entry.channel, entry.address
        elif d.fallback is not None:
            name, channel, address = d.fallback
        else:
            name, channel, address = None, None, None
            status = domain.FAILED
            reason = "recipient_inactive" if entry is not None else "unknown_recipient"
            error = (
                f"收件人已停用：{d.recipient}"
                if entry is not None
                else f"收件人未登记：{d.recipient}（请在通讯录中登记）"
            )
        if status == domain.PENDING and channel != "local" and not address:
            status, reason, error = domain.FAILED, "no_address", f"收件人{d.recipient}无联系地址"
        values.append(
            {
                "id": uuid.uuid4(),
                "dedup_key": d.dedup_key[:300],
                "kind": d.kind,
                "ref": d.ref,
                "subject_id": d.subject_id,
                "region_code": d.region_code[:12],
                "recipient": str(d.recipient)[:100],
                "recipient_name": name,
                "channel": channel,
                "address": address,
                "title": d.message.title,
                "body": d.message.body,
                "status": status,
                "failure_reason": reason,
                "last_error": error,
                "attempts": 0,
                "next_attempt_at": d.not_before or now,
                "correlation_id": cid,
                "delivered_at": now if status != domain.PENDING else None,
            }
        )
    inserted = 0
    for chunk_start in range(0, len(values), 1000):
        chunk = values[chunk_start : chunk_start + 1000]
        result = await session.execute(
            insert(REMINDERS)
            .on_conflict_do_nothing(index_elements=["dedup_key"])
            .returning(REMINDERS.c.id, REMINDERS.c.status),
            chunk,
        )
        new = result.all()
        inserted += len(new)
        failed = {r.id for r in new if r.status == domain.FAILED}
        if failed:
            await publish_final(session, [v for v in chunk if v["id"] in failed], now=now)
    return inserted


async def publish_final(
    session: AsyncSession, reminders: Sequence[dict[str, Any] | Any], *, now: datetime
) -> None:
    """Emit `reminder.delivered` for reminders that reached their final status."""
    events: list[CloudEvent] = []
    for r in reminders:
        get = r.get if isinstance(r, dict) else lambda k, r=r: getattr(r, k)
        rid = str(get("id"))
        payload = ReminderDelivered(
            reminder_id=rid,
            kind=get("kind"),
            recipient=domain.public_recipient(str(get("recipient"))),
            channel=get("channel") or "none",
            status=get("status"),
            subject_id=get("subject_id"),
            delivered_at=now,
            failure_reason=get("failure_reason"),
            attempts=get("attempts"),
            region_code=get("region_code"),
            dedup_key=domain.public_dedup_key(str(get("dedup_key"))),
        )
        REMINDERS_FINAL.labels(payload.kind, payload.status).inc()
        events.append(
            make_event(
                "notify",
                payload,
                subject=get("subject_id") or rid,
                correlation_id=get("correlation_id"),
            )
        )
    await outbox.publish_many(session, events)


async def cancel_pending(
    session: AsyncSession,
    *,
    kinds: Sequence[str],
    ref: str | None = None,
    recipient: str | None = None,
) -> int:
    now = utcnow()
    stmt = (
        update(REMINDERS)
        .where(REMINDERS.c.status == domain.PENDING, REMINDERS.c.kind.in_(kinds))
        .values(status=domain.CANCELLED, failure_reason="moot", delivered_at=now)
        .returning(*REMINDERS.c)
    )
    if ref is not None:
        stmt = stmt.where(REMINDERS.c.ref == ref)
    if recipient is not None:
        stmt = stmt.where(REMINDERS.c.recipient == recipient)
    rows = (await session.execute(stmt)).all()
    await publish_final(session, rows, now=now)
    return len(rows)


async def retry_reminder(sessions: SessionFactory, *, reminder_id: uuid.UUID) -> dict[str, Any]:
    """Send a failed reminder again, resolving its recipient anew (e.g. once an unknown
    recipient has been registered)."""
    async with unit_of_work(sessions) as session:
        row = (
            await session.execute(
                select(REMINDERS).where(REMINDERS.c.id == reminder_id).with_for_update()
            )
        ).first()
        if row is None:
            raise Problem(404, f"no reminder {reminder_id}")
        if row.status != domain.FAILED:
            raise Problem(409, f"only a failed reminder can be retried; this one is {row.status}")
        key = RecipientKey.parse(row.recipient)
        entry = (
            await session.execute(
                select(RECIPIENTS).where(
                    RECIPIENTS.c.kind == key.kind,
                    RECIPIENTS.c.code == key.code,
                    RECIPIENTS.c.active,
                )
            )
        ).first()
        name, channel, address = (
            (entry.name, entry.channel, entry.address)
            if entry is not None
            else (row.recipient_name, row.channel, row.address)
        )
        if channel is None or (channel != "local" and not address):
            raise Problem(409, f"recipient {row.recipient} is still not registered with an address")
        updated = (
            await session.execute(
                update(REMINDERS)
                .where(REMINDERS.c.id == reminder_id)
                .values(
                    status=domain.PENDING,
                    recipient_name=name,
                    channel=channel,
                    address=address,
                    failure_reason=None,
                    attempts=0,  # a fresh round of retries; the log keeps the old ones
                    next_attempt_at=utcnow(),
                    delivered_at=None,
                    locked_until=None,
                )
                .returning(*REMINDERS.c)
            )
        ).one()
    return dict(updated._mapping)


async def put_recipient(
    sessions: SessionFactory, *, kind: str, code: str, body: RecipientPut
) -> dict[str, Any]:
    values = {"kind": kind, "code": code, **body.model_dump(), "updated_at": utcnow()}
    async with unit_of_work(sessions) as session:
        stmt = insert(RECIPIENTS).values(values)
        row = (
            await session.execute(
                stmt.on_conflict_do_update(
                    index_elements=["kind", "code"],
                    set_={k: stmt.excluded[k] for k in values if k not in ("kind", "code")},
                ).returning(*RECIPIENTS.c)
            )
        ).one()
    return dict(row._mapping)
