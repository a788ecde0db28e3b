"""Commands and event handlers of the notify service. Event handlers run inside the
consumer's transaction (they never commit); commands own their unit of work."""

from __future__ import annotations

import asyncio
import logging
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from prometheus_client import Counter
from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from backstop import outbox
from backstop.contracts import assistance, datasync, registry, risk
from backstop.contracts.notify import ReminderDelivered
from backstop.db import SessionFactory, unit_of_work
from backstop.errors import Problem, invalid
from backstop.events import CloudEvent, make_event, registered_types
from backstop.logs import correlation_id
from services.notify import domain
from services.notify.config import NotifySettings
from services.notify.domain import Message, RecipientKey
from services.notify.models import (
    HouseholdRecord,
    Recipient,
    RecipientPut,
    Reminder,
    Schedule,
    SchedulePatch,
    Subscription,
    SubscriptionCreate,
    WebhookDelivery,
    table,
)

log = logging.getLogger("backstop.notify")

REMINDERS = table(Reminder)
RECIPIENTS = table(Recipient)
HOUSEHOLDS = table(HouseholdRecord)
SUBSCRIPTIONS = table(Subscription)
WEBHOOK_DELIVERIES = table(WebhookDelivery)
SCHEDULES = table(Schedule)


REMINDERS_FINAL = Counter(
    "backstop_notify_reminders_final_total",
    "Reminders that reached their final status, by kind and status.",
    ["kind", "status"],
)


def utcnow() -> datetime:
    return datetime.now(UTC)


# ---------------------------------------------------------------- creating reminders


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
            dedup_key=get("dedup_key"),
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


# ---------------------------------------------------------------- event handlers


Known = dict[str, Any]  # household id -> its read-model row


def _household_of(event: CloudEvent) -> str | None:
    value = event.data.get("household_id")
    return value if isinstance(value, str) else None


class EventHandlers:
    """Turns the other services' facts into reminders. Events that yield reminders are
    applied a consumer batch at a time (one household lookup, one directory lookup and
    one de-duplicating INSERT per batch); the others one by one."""

    def __init__(self, settings: NotifySettings) -> None:
        self.settings = settings

    def _escalate_at(self, now: datetime) -> datetime:
        return now + timedelta(seconds=self.settings.escalation_delay_s)

    @staticmethod
    def _label(known: Known, household_id: str) -> str:
        row = known.get(household_id)
        return domain.household_label(household_id, row.household_number if row else None)

    def _draft_task_opened(self, event: CloudEvent, known: Known) -> list[Draft]:
        data = event.payload()
        assert isinstance(data, assistance.TaskOpened)
        who = domain.assignee_key(data.assignee.type, data.assignee.code)
        message = domain.task_opened(
            kind=data.kind,
            household=self._label(known, data.household_id),
            region_code=data.region_code,
            reason=data.reason,
            due_on=data.due_on,
        )
        return [
            Draft(
                dedup_key=f"task.opened:{data.task_id}:{who}",
                kind="task_opened",
                recipient=who,
                region_code=data.region_code,
                message=message,
                subject_id=data.household_id,
                ref=data.task_id,
            )
        ]

    def _draft_task_overdue(self, event: CloudEvent, known: Known) -> list[Draft]:
        """First the assignee; the town leader after the escalation delay, unless the
        task is completed first. Once per task and due date, however often it is seen."""
        data = event.payload()
        assert isinstance(data, assistance.TaskOverdue)
        now = utcnow()
        who = domain.assignee_key(data.assignee.type, data.assignee.code)
        household = self._label(known, data.household_id)
        episode = f"{data.task_id}:{data.due_on.isoformat()}"
        return [
            Draft(
                dedup_key=f"task.overdue:{episode}:{who}",
                kind="task_overdue",
                recipient=who,
                region_code=data.region_code,
                message=domain.task_overdue(
                    kind=data.kind,
                    household=household,
                    region_code=data.region_code,
                    due_on=data.due_on,
                    days_overdue=data.days_overdue,
                ),
                subject_id=data.household_id,
                ref=data.task_id,
            ),
            Draft(
                dedup_key=f"task.escalated:{episode}",
                kind="task_escalated",
                recipient=domain.town_leader_key(data.region_code),
                region_code=data.region_code,
                message=domain.task_escalated(
                    kind=data.kind,
                    household=household,
                    region_code=data.region_code,
                    assignee=str(who),
                    due_on=data.due_on,
                ),
                subject_id=data.household_id,
                ref=data.task_id,
                not_before=self._escalate_at(now),
            ),
        ]

    async def task_completed(self, session: AsyncSession, event: CloudEvent) -> None:
        """A completed task makes its pending escalation moot: cancel it (recorded)."""
        data = event.payload()
        assert isinstance(data, assistance.TaskCompleted)
        await cancel_pending(session, ref=data.task_id, kinds=("task_escalated",))

    def _draft_rectification_overdue(self, event: CloudEvent, known: Known) -> list[Draft]:
        data = event.payload()
        assert isinstance(data, assistance.RectificationOverdue)
        now = utcnow()
        episode = f"{data.issue_id}:{data.deadline.isoformat()}"
        drafts = [
            Draft(
                dedup_key=f"rectification.overdue:{episode}",
                kind="rectification_overdue",
                recipient=self._unit_office(data.region_code),
                region_code=data.region_code,
                message=domain.rectification_overdue(
                    region_code=data.region_code,
                    responsible_unit=data.responsible_unit,
                    deadline=data.deadline,
                    summary=data.summary,
                    escalated=False,
                ),
                ref=data.issue_id,
            )
        ]
        if len(data.region_code) >= 9:
            drafts.append(
                Draft(
                    dedup_key=f"rectification.escalated:{episode}",
                    kind="rectification_escalated",
                    recipient=domain.town_leader_key(data.region_code),
                    region_code=data.region_code,
                    message=domain.rectification_overdue(
                        region_code=data.region_code,
                        responsible_unit=data.responsible_unit,
                        deadline=data.deadline,
                        summary=data.summary,
                        escalated=True,
                    ),
                    ref=data.issue_id,
                    not_before=self._escalate_at(now),
                )
            )
        return drafts

    def _unit_office(self, region_code: str) -> RecipientKey:
        if len(region_code) >= 9:
            return domain.town_office_key(region_code)
        return domain.county_office_key()

    def _draft_clue_overdue(self, event: CloudEvent, known: Known) -> list[Draft]:
        data = event.payload()
        assert isinstance(data, assistance.ClueOverdue)
        now = utcnow()
        household = self._label(known, data.household_id) if data.household_id else None
        drafts = [
            Draft(
                dedup_key=f"clue.overdue:{data.clue_id}",
                kind="clue_overdue",
                recipient=self._unit_office(data.region_code),
                region_code=data.region_code,
                message=domain.clue_overdue(
                    region_code=data.region_code,
                    household=household,
                    source=data.source,
                    received_at=data.received_at,
                    escalated=False,
                ),
                subject_id=data.household_id,
                ref=data.clue_id,
            )
        ]
        if len(data.region_code) >= 9:
            drafts.append(
                Draft(
                    dedup_key=f"clue.escalated:{data.clue_id}",
                    kind="clue_escalated",
                    recipient=domain.town_leader_key(data.region_code),
                    region_code=data.region_code,
                    message=domain.clue_overdue(
                        region_code=data.region_code,
                        household=household,
                        source=data.source,
                        received_at=data.received_at,
                        escalated=True,
                    ),
                    subject_id=data.household_id,
                    ref=data.clue_id,
                    not_before=self._escalate_at(now),
                )
            )
        return drafts

    def _to_key_contacts(
        self,
        known: Known,
        *,
        household_id: str,
        region_code: str,
        kind: str,
        case_id: str,
        build: Any,
    ) -> list[Draft]:
        row = known.get(household_id)
        label = domain.household_label(household_id, row.household_number if row else None)
        message: Message = build(label)
        contacts = list(row.contacts) if row else []
        drafts: list[Draft] = []
        for c in contacts:
            phone = domain.normalize_phone(str(c.get("phone", "")))
            if not phone:
                continue
            drafts.append(
                Draft(
                    dedup_key=f"{kind}:{case_id}:{phone}",
                    kind=kind,
                    recipient=domain.contact_key(phone),
                    region_code=region_code,
                    message=message,
                    subject_id=household_id,
                    ref=case_id,
                    fallback=(str(c.get("name", "")), "sms", phone),
                )
            )
        if not drafts:
            # Nobody is silently forgotten: record that the household has no key contact.
            drafts.append(
                Draft(
                    dedup_key=f"{kind}:{case_id}:no-contact",
                    kind=kind,
                    recipient=RecipientKey("contact", f"household-{household_id}"),
                    region_code=region_code,
                    message=message,
                    subject_id=household_id,
                    ref=case_id,
                )
            )
        return drafts

    def _draft_monitoring_started(self, event: CloudEvent, known: Known) -> list[Draft]:
        data = event.payload()
        assert isinstance(data, assistance.MonitoringStarted)
        return self._to_key_contacts(
            known,
            household_id=data.household_id,
            region_code=data.region_code,
            kind="monitoring_started",
            case_id=data.case_id,
            build=lambda label: domain.monitoring_started(
                household=label,
                region_code=data.region_code,
                monitoring_type=data.monitoring_type,
                risk_factors=data.risk_factors,
            ),
        )

    def _draft_risk_eliminated(self, event: CloudEvent, known: Known) -> list[Draft]:
        data = event.payload()
        assert isinstance(data, assistance.RiskEliminated)
        return self._to_key_contacts(
            known,
            household_id=data.household_id,
            region_code=data.region_code,
            kind="risk_eliminated",
            case_id=data.case_id,
            build=lambda label: domain.risk_eliminated(
                household=label, region_code=data.region_code, method=data.method
            ),
        )

    def _draft_delivery_late(self, event: CloudEvent, known: Known) -> list[Draft]:
        data = event.payload()
        assert isinstance(data, datasync.DeliveryLate)
        episode = f"{data.source}:{data.period}"
        county = self.settings.county_code
        return [
            Draft(
                dedup_key=f"delivery.late:{episode}:department",
                kind="delivery_late",
                recipient=domain.department_key(data.source),
                region_code=county,
                message=domain.delivery_late(
                    source=data.source, period=data.period, due_on=data.due_on, to_county=False
                ),
                ref=episode,
            ),
            Draft(
                dedup_key=f"delivery.late:{episode}:county_office",
                kind="delivery_late",
                recipient=domain.county_office_key(),
                region_code=county,
                message=domain.delivery_late(
                    source=data.source, period=data.period, due_on=data.due_on, to_county=True
                ),
                ref=episode,
            ),
        ]

    async def household_changed(self, session: AsyncSession, event: CloudEvent) -> None:
        """Keep the read model at the newest snapshot; an older version changes nothing."""
        data = event.payload()
        assert isinstance(data, registry.HouseholdEvent)
        h = data.household
        values = {
            "household_id": h.household_id,
            "version": h.version,
            "region_code": h.region_code,
            "town_code": h.town_code,
            "household_number": h.household_number,
            "type": h.type,
            "monitoring_status": h.monitoring_status,
            "contacts": [c.model_dump() for c in h.contacts],
            "updated_at": utcnow(),
        }
        stmt = insert(HOUSEHOLDS).values(values)
        await session.execute(
            stmt.on_conflict_do_update(
                index_elements=["household_id"],
                set_={k: stmt.excluded[k] for k in values if k != "household_id"},
                where=HOUSEHOLDS.c.version < stmt.excluded.version,
            )
        )

    async def alert(self, session: AsyncSession, event: CloudEvent) -> None:
        """Queue the alert for every subscription matching its type and region; the
        webhook job delivers each row on its own."""
        data = event.payload()
        assert isinstance(data, risk.AlertData)
        subs = (
            await session.execute(
                select(
                    SUBSCRIPTIONS.c.id, SUBSCRIPTIONS.c.event_types, SUBSCRIPTIONS.c.region_prefix
                )
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

    def _drafters(self) -> dict[str, Any]:
        return {
            "backstop.assistance.task.opened.v1": self._draft_task_opened,
            "backstop.assistance.task.overdue.v1": self._draft_task_overdue,
            "backstop.assistance.rectification.overdue.v1": self._draft_rectification_overdue,
            "backstop.assistance.clue.overdue.v1": self._draft_clue_overdue,
            "backstop.assistance.monitoring.started.v1": self._draft_monitoring_started,
            "backstop.assistance.risk.eliminated.v1": self._draft_risk_eliminated,
            "backstop.datasync.delivery.late.v1": self._draft_delivery_late,
        }

    @property
    def reminder_types(self) -> frozenset[str]:
        return frozenset(self._drafters())

    async def remind(self, session: AsyncSession, events: Sequence[CloudEvent]) -> None:
        """The batch handler: every reminder the events call for, created once."""
        drafters = self._drafters()
        ids = {h for e in events if (h := _household_of(e))}
        known: Known = {}
        if ids:
            rows = await session.execute(
                select(HOUSEHOLDS).where(HOUSEHOLDS.c.household_id.in_(ids))
            )
            known = {r.household_id: r for r in rows}
        drafts = [d for e in events for d in drafters[e.type](e, known)]
        await create_reminders(session, drafts)

    # One-event entry points (the consumer uses `remind` for these types).
    async def task_opened(self, session: AsyncSession, event: CloudEvent) -> None:
        await self.remind(session, [event])

    async def task_overdue(self, session: AsyncSession, event: CloudEvent) -> None:
        """First the assignee; the town leader after the escalation delay, unless the
        task is completed first. Once per task and due date, however often it is seen."""
        await self.remind(session, [event])

    async def rectification_overdue(self, session: AsyncSession, event: CloudEvent) -> None:
        await self.remind(session, [event])

    async def clue_overdue(self, session: AsyncSession, event: CloudEvent) -> None:
        await self.remind(session, [event])

    async def monitoring_started(self, session: AsyncSession, event: CloudEvent) -> None:
        await self.remind(session, [event])

    async def risk_eliminated(self, session: AsyncSession, event: CloudEvent) -> None:
        await self.remind(session, [event])

    async def delivery_late(self, session: AsyncSession, event: CloudEvent) -> None:
        await self.remind(session, [event])

    def by_type(self) -> dict[str, Any]:
        """Handlers of the events applied one by one."""
        return {
            "backstop.assistance.task.completed.v1": self.task_completed,
            **{t: self.household_changed for t in HOUSEHOLD_EVENT_TYPES},
        }


HOUSEHOLD_EVENT_TYPES = tuple(
    name for name, spec in registered_types().items() if spec.topic == registry.TOPIC
)
ALERT_EVENT_TYPES = tuple(
    name for name, spec in registered_types().items() if spec.topic == risk.ALERTS_TOPIC
)


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


# ---------------------------------------------------------------- commands


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


async def check_callback(url: str) -> None:
    """Refuse a callback URL whose host is, or resolves to, an internal address."""
    host = urlsplit(url).hostname
    if not host:
        raise invalid(["body", "callback_url"], "has no host")
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, None)
    except OSError:
        raise invalid(["body", "callback_url"], f"host {host!r} does not resolve") from None
    found = domain.internal_address(host, [str(info[4][0]) for info in infos])
    if found is not None:
        raise invalid(
            ["body", "callback_url"],
            f"host {host!r} is an internal address ({found}); callbacks must be public",
        )


async def create_subscription(
    sessions: SessionFactory,
    *,
    body: SubscriptionCreate,
    created_by: str,
    allow_internal: bool,
) -> dict[str, Any]:
    for i, t in enumerate(body.event_types):
        if t not in ALERT_EVENT_TYPES:
            raise invalid(
                ["body", "event_types", i],
                f"not a risk.alerts event type; one of {ALERT_EVENT_TYPES}",
            )
    if not allow_internal:
        await check_callback(body.callback_url)
    values = {
        "id": uuid.uuid4(),
        "callback_url": body.callback_url,
        "event_types": sorted(set(body.event_types)),
        "region_prefix": body.region_prefix,
        "secret": secrets.token_hex(32),
        "active": True,
        "created_by": created_by,
        "created_at": utcnow(),
    }
    async with unit_of_work(sessions) as session:
        await session.execute(insert(SUBSCRIPTIONS).values(values))
    return values


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


async def patch_schedule(
    sessions: SessionFactory, *, name: str, body: SchedulePatch
) -> dict[str, Any]:
    changes = body.model_dump(exclude_none=True)
    async with unit_of_work(sessions) as session:
        stmt = update(SCHEDULES).where(SCHEDULES.c.name == name).returning(*SCHEDULES.c)
        if changes:
            stmt = stmt.values(**changes)
        else:
            stmt = stmt.values(name=SCHEDULES.c.name)
        row = (await session.execute(stmt)).first()
        if row is None:
            raise Problem(404, f"no schedule named {name}")
    return dict(row._mapping)


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
