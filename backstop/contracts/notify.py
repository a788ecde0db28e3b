"""`notify.reminders`: each reminder once it reached its final status."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel

from backstop.events import event_type

TOPIC = "notify.reminders"


@event_type("backstop.notify.reminder.delivered.v1", topic=TOPIC)
class ReminderDelivered(BaseModel):
    reminder_id: str
    kind: str
    recipient: str
    channel: str
    status: str  # "sent", "failed" or "cancelled" (an escalation made moot)
    subject_id: str | None = None
    delivered_at: datetime
    # Additive: why a reminder failed ("unknown_recipient", "no_address",
    # "channel_error", ...), how many attempts it took, and its region for routing.
    failure_reason: str | None = None
    attempts: int = 0
    region_code: str | None = None
    dedup_key: str | None = None
