"""Tables of the notify database and their Create/Public schemas."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Generic, Literal, TypeVar

import sqlalchemy as sa
from pydantic import BaseModel, field_validator, model_validator
from pydantic import Field as PydanticField
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

from backstop.requests import RequestModel


class NotifyBase(SQLModel, registry=registry()):
    """Base of every notify table: its own metadata, so its migrations see only these."""


def _now() -> sa.ColumnElement[datetime]:
    return sa.func.now()


class Recipient(NotifyBase, table=True):
    """The directory: town offices and leaders, village offices, the insurer, the
    departments and the county office, each with the channel and address to reach it."""

    __tablename__ = "recipients"

    kind: str = Field(sa_column=sa.Column(sa.String(20), primary_key=True))
    code: str = Field(sa_column=sa.Column(sa.String(64), primary_key=True))
    name: str = Field(sa_column=sa.Column(sa.String(200), nullable=False))
    region_code: str = Field(sa_column=sa.Column(sa.String(12), nullable=False, index=True))
    channel: str = Field(sa_column=sa.Column(sa.String(20), nullable=False))
    address: str = Field(sa_column=sa.Column(sa.String(500), nullable=False))
    active: bool = Field(sa_column=sa.Column(sa.Boolean, nullable=False, server_default="true"))
    updated_at: datetime = Field(
        sa_column=sa.Column(sa.DateTime(timezone=True), nullable=False, server_default=_now())
    )


class HouseholdRecord(NotifyBase, table=True):
    """Read model of registry.households: a household's region and its key contacts."""

    __tablename__ = "households"

    household_id: str = Field(sa_column=sa.Column(sa.String(36), primary_key=True))
    version: int = Field(sa_column=sa.Column(sa.Integer, nullable=False))
    region_code: str = Field(sa_column=sa.Column(sa.String(12), nullable=False, index=True))
    town_code: str = Field(sa_column=sa.Column(sa.String(9), nullable=False))
    household_number: str | None = Field(default=None, sa_column=sa.Column(sa.String(64)))
    type: str = Field(sa_column=sa.Column(sa.String(20), nullable=False))
    monitoring_status: str = Field(sa_column=sa.Column(sa.String(20), nullable=False))
    contacts: list[dict[str, Any]] = Field(
        sa_column=sa.Column(JSONB, nullable=False, server_default="[]")
    )
    updated_at: datetime = Field(
        sa_column=sa.Column(sa.DateTime(timezone=True), nullable=False, server_default=_now())
    )


class Reminder(NotifyBase, table=True):
    """One message to one recipient. `dedup_key` is unique: an event or a schedule
    occurrence that is seen twice still yields one reminder."""

    __tablename__ = "reminders"
    __table_args__ = (
        sa.Index("ix_reminders_due", "status", "next_attempt_at"),
        sa.Index("ix_reminders_recipient_seq", "recipient", "seq"),
        sa.Index("ix_reminders_ref", "ref"),
    )

    id: uuid.UUID = Field(sa_column=sa.Column(UUID(as_uuid=True), primary_key=True))
    seq: int = Field(
        sa_column=sa.Column(sa.BigInteger, sa.Identity(always=True), nullable=False, unique=True)
    )
    dedup_key: str = Field(sa_column=sa.Column(sa.String(300), nullable=False, unique=True))
    kind: str = Field(sa_column=sa.Column(sa.String(40), nullable=False))
    ref: str | None = Field(default=None, sa_column=sa.Column(sa.String(64)))
    subject_id: str | None = Field(default=None, sa_column=sa.Column(sa.String(64)))
    region_code: str = Field(sa_column=sa.Column(sa.String(12), nullable=False, index=True))
    recipient: str = Field(sa_column=sa.Column(sa.String(100), nullable=False))
    recipient_name: str | None = Field(default=None, sa_column=sa.Column(sa.String(200)))
    channel: str | None = Field(default=None, sa_column=sa.Column(sa.String(20)))
    address: str | None = Field(default=None, sa_column=sa.Column(sa.String(500)))
    title: str = Field(sa_column=sa.Column(sa.String(200), nullable=False))
    body: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    status: str = Field(sa_column=sa.Column(sa.String(20), nullable=False))
    failure_reason: str | None = Field(default=None, sa_column=sa.Column(sa.String(40)))
    last_error: str | None = Field(default=None, sa_column=sa.Column(sa.Text))
    attempts: int = Field(sa_column=sa.Column(sa.Integer, nullable=False, server_default="0"))
    next_attempt_at: datetime = Field(
        sa_column=sa.Column(sa.DateTime(timezone=True), nullable=False)
    )
    locked_until: datetime | None = Field(
        default=None, sa_column=sa.Column(sa.DateTime(timezone=True))
    )
    correlation_id: str | None = Field(default=None, sa_column=sa.Column(sa.String(100)))
    created_at: datetime = Field(
        sa_column=sa.Column(sa.DateTime(timezone=True), nullable=False, server_default=_now())
    )
    delivered_at: datetime | None = Field(
        default=None, sa_column=sa.Column(sa.DateTime(timezone=True))
    )


class ReminderAttempt(NotifyBase, table=True):
    """The delivery log: every attempt to send a reminder, with its outcome."""

    __tablename__ = "reminder_attempts"

    id: int = Field(sa_column=sa.Column(sa.BigInteger, sa.Identity(always=True), primary_key=True))
    reminder_id: uuid.UUID = Field(
        sa_column=sa.Column(
            UUID(as_uuid=True), sa.ForeignKey("reminders.id"), nullable=False, index=True
        )
    )
    attempt: int = Field(sa_column=sa.Column(sa.Integer, nullable=False))
    channel: str = Field(sa_column=sa.Column(sa.String(20), nullable=False))
    ok: bool = Field(sa_column=sa.Column(sa.Boolean, nullable=False))
    error: str | None = Field(default=None, sa_column=sa.Column(sa.Text))
    worker: str = Field(sa_column=sa.Column(sa.String(64), nullable=False))
    at: datetime = Field(
        sa_column=sa.Column(sa.DateTime(timezone=True), nullable=False, server_default=_now())
    )


class Schedule(NotifyBase, table=True):
    """A recurring reminder, stored so every replica agrees on it (see domain.ScheduleRule)."""

    __tablename__ = "schedules"

    name: str = Field(sa_column=sa.Column(sa.String(64), primary_key=True))
    kind: str = Field(sa_column=sa.Column(sa.String(32), nullable=False))
    source: str | None = Field(default=None, sa_column=sa.Column(sa.String(32)))
    months: list[int] = Field(sa_column=sa.Column(ARRAY(sa.Integer), nullable=False))
    due_day: int = Field(sa_column=sa.Column(sa.Integer, nullable=False, server_default="0"))
    lead_days: int = Field(sa_column=sa.Column(sa.Integer, nullable=False, server_default="0"))
    send_hour: int = Field(sa_column=sa.Column(sa.Integer, nullable=False, server_default="8"))
    enabled: bool = Field(sa_column=sa.Column(sa.Boolean, nullable=False, server_default="true"))
    last_occurrence: str | None = Field(default=None, sa_column=sa.Column(sa.String(100)))
    last_fired_at: datetime | None = Field(
        default=None, sa_column=sa.Column(sa.DateTime(timezone=True))
    )


class ScheduleOccurrence(NotifyBase, table=True):
    """A claimed occurrence: its unique key is what makes a schedule fire exactly once."""

    __tablename__ = "schedule_occurrences"

    key: str = Field(sa_column=sa.Column(sa.String(100), primary_key=True))
    schedule: str = Field(sa_column=sa.Column(sa.String(64), nullable=False))
    fire_at: datetime = Field(sa_column=sa.Column(sa.DateTime(timezone=True), nullable=False))
    claimed_by: str = Field(sa_column=sa.Column(sa.String(64), nullable=False))
    claimed_at: datetime = Field(
        sa_column=sa.Column(sa.DateTime(timezone=True), nullable=False, server_default=_now())
    )
    reminders: int = Field(sa_column=sa.Column(sa.Integer, nullable=False))


class Subscription(NotifyBase, table=True):
    """A county system subscribed to risk events by webhook."""

    __tablename__ = "subscriptions"

    id: uuid.UUID = Field(sa_column=sa.Column(UUID(as_uuid=True), primary_key=True))
    callback_url: str = Field(sa_column=sa.Column(sa.String(2000), nullable=False))
    event_types: list[str] = Field(sa_column=sa.Column(ARRAY(sa.String(200)), nullable=False))
    region_prefix: str = Field(sa_column=sa.Column(sa.String(12), nullable=False))
    # Kept to sign every delivery (HMAC needs the key itself), sealed under
    # BACKSTOP_SECRETS_KEY (backstop.crypto); never returned after creation.
    secret: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    active: bool = Field(sa_column=sa.Column(sa.Boolean, nullable=False, server_default="true"))
    created_by: str = Field(sa_column=sa.Column(sa.String(200), nullable=False))
    created_at: datetime = Field(
        sa_column=sa.Column(sa.DateTime(timezone=True), nullable=False, server_default=_now())
    )


class WebhookDelivery(NotifyBase, table=True):
    """One event for one subscriber: a row the webhook job works on independently."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        sa.UniqueConstraint("subscription_id", "event_id", name="uq_webhook_delivery_event"),
        sa.Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
        sa.Index("ix_webhook_deliveries_sub_seq", "subscription_id", "seq"),
    )

    id: uuid.UUID = Field(sa_column=sa.Column(UUID(as_uuid=True), primary_key=True))
    seq: int = Field(
        sa_column=sa.Column(sa.BigInteger, sa.Identity(always=True), nullable=False, unique=True)
    )
    subscription_id: uuid.UUID = Field(
        sa_column=sa.Column(UUID(as_uuid=True), sa.ForeignKey("subscriptions.id"), nullable=False)
    )
    event_id: str = Field(sa_column=sa.Column(sa.String(36), nullable=False))
    event_type: str = Field(sa_column=sa.Column(sa.String(200), nullable=False))
    region_code: str = Field(sa_column=sa.Column(sa.String(12), nullable=False))
    body: bytes = Field(sa_column=sa.Column(sa.LargeBinary, nullable=False))
    status: str = Field(sa_column=sa.Column(sa.String(20), nullable=False))
    attempts: int = Field(sa_column=sa.Column(sa.Integer, nullable=False, server_default="0"))
    next_attempt_at: datetime = Field(
        sa_column=sa.Column(sa.DateTime(timezone=True), nullable=False)
    )
    locked_until: datetime | None = Field(
        default=None, sa_column=sa.Column(sa.DateTime(timezone=True))
    )
    last_status_code: int | None = Field(default=None, sa_column=sa.Column(sa.Integer))
    last_error: str | None = Field(default=None, sa_column=sa.Column(sa.Text))
    created_at: datetime = Field(
        sa_column=sa.Column(sa.DateTime(timezone=True), nullable=False, server_default=_now())
    )
    delivered_at: datetime | None = Field(
        default=None, sa_column=sa.Column(sa.DateTime(timezone=True))
    )


class WebhookAttempt(NotifyBase, table=True):
    __tablename__ = "webhook_attempts"

    id: int = Field(sa_column=sa.Column(sa.BigInteger, sa.Identity(always=True), primary_key=True))
    delivery_id: uuid.UUID = Field(
        sa_column=sa.Column(
            UUID(as_uuid=True), sa.ForeignKey("webhook_deliveries.id"), nullable=False, index=True
        )
    )
    attempt: int = Field(sa_column=sa.Column(sa.Integer, nullable=False))
    status_code: int | None = Field(default=None, sa_column=sa.Column(sa.Integer))
    error: str | None = Field(default=None, sa_column=sa.Column(sa.Text))
    at: datetime = Field(
        sa_column=sa.Column(sa.DateTime(timezone=True), nullable=False, server_default=_now())
    )


def table(model: type[SQLModel]) -> sa.Table:
    """The Core table of a model, for INSERT ... ON CONFLICT and bulk statements."""
    t = model.__table__  # type: ignore[attr-defined]
    assert isinstance(t, sa.Table)
    return t


RECIPIENTS = table(Recipient)
HOUSEHOLDS = table(HouseholdRecord)
REMINDERS = table(Reminder)
REMINDER_ATTEMPTS = table(ReminderAttempt)
SCHEDULES = table(Schedule)
OCCURRENCES = table(ScheduleOccurrence)
SUBSCRIPTIONS = table(Subscription)
WEBHOOK_DELIVERIES = table(WebhookDelivery)
WEBHOOK_ATTEMPTS = table(WebhookAttempt)


def utcnow() -> datetime:
    return datetime.now(UTC)


# ---------------------------------------------------------------- API schemas

ChannelName = Literal["local", "sms", "wecom", "email", "webhook"]
RecipientKind = Literal["town", "town_leader", "village", "insurer", "department", "county_office"]


class RecipientPut(RequestModel):
    name: str = PydanticField(min_length=1, max_length=200)
    region_code: str = PydanticField(
        default="",
        max_length=12,
        pattern=r"^[0-9]*$",
        description="town/village code; the county code (or empty) for county-level units",
    )
    channel: ChannelName = "local"
    address: str = PydanticField(
        default="", max_length=500, description="phone, bot webhook URL, e-mail or URL"
    )
    active: bool = True


class RecipientPublic(RecipientPut):
    kind: str
    code: str
    updated_at: datetime


class ReminderPublic(BaseModel):
    id: uuid.UUID
    dedup_key: str
    kind: str
    subject_id: str | None
    ref: str | None
    region_code: str
    recipient: str
    recipient_name: str | None
    channel: str | None
    title: str
    body: str
    status: str
    failure_reason: str | None
    last_error: str | None
    attempts: int
    next_attempt_at: datetime
    created_at: datetime
    delivered_at: datetime | None


class ReminderAttemptPublic(BaseModel):
    attempt: int
    channel: str
    ok: bool
    error: str | None
    worker: str
    at: datetime


class SubscriptionCreate(RequestModel):
    callback_url: str = PydanticField(min_length=8, max_length=2000)
    event_types: list[Annotated[str, PydanticField(min_length=1, max_length=200)]] = PydanticField(
        min_length=1, max_length=20
    )
    region_prefix: str = PydanticField(default="", max_length=12, pattern=r"^[0-9]*$")

    @field_validator("callback_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("https://", "http://")):
            raise ValueError("must be an http(s) URL")
        return value


class SubscriptionPublic(BaseModel):
    id: uuid.UUID
    callback_url: str
    event_types: list[str]
    region_prefix: str
    active: bool
    created_by: str
    created_at: datetime


class SubscriptionCreated(SubscriptionPublic):
    secret: str = PydanticField(description="shown once: sign-check deliveries with it")


# A county system down for a day (or a month) catches up in one request; longer is a
# backfill from risk.alerts itself (docs/integration.md).
MAX_REDELIVERY = timedelta(days=92)


class RedeliveryRequest(RequestModel):
    """A time range of alerts to send again: those queued for the subscriber from
    `since` (inclusive) to `until` (exclusive), whatever became of them."""

    since: datetime
    until: datetime

    @model_validator(mode="after")
    def _a_range(self) -> RedeliveryRequest:
        if self.since.tzinfo is None or self.until.tzinfo is None:
            raise ValueError("since and until need a time zone (e.g. 2026-11-05T00:00:00+08:00)")
        if self.until <= self.since:
            raise ValueError("until must be after since")
        if self.until - self.since > MAX_REDELIVERY:
            raise ValueError(f"at most {MAX_REDELIVERY.days} days at once")
        return self


class Redelivery(BaseModel):
    subscription_id: uuid.UUID
    since: datetime
    until: datetime
    requeued: int = PydanticField(description="deliveries queued again, sent by the webhook job")


class WebhookAttemptPublic(BaseModel):
    attempt: int
    status_code: int | None
    error: str | None
    at: datetime


class WebhookDeliveryPublic(BaseModel):
    id: uuid.UUID
    event_id: str
    event_type: str
    region_code: str
    status: str
    attempts: int
    next_attempt_at: datetime
    last_status_code: int | None
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None
    log: list[WebhookAttemptPublic] = PydanticField(default_factory=list)


class SchedulePublic(BaseModel):
    name: str
    kind: str
    source: str | None
    months: list[int]
    due_day: int
    lead_days: int
    send_hour: int
    enabled: bool
    last_occurrence: str | None
    last_fired_at: datetime | None


class SchedulePatch(RequestModel):
    lead_days: int | None = PydanticField(default=None, ge=0, le=60)
    send_hour: int | None = PydanticField(default=None, ge=0, le=23)
    enabled: bool | None = None


T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None
