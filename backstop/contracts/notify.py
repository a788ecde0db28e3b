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
    status: str  # "sent" or "failed"
    subject_id: str | None = None
    delivered_at: datetime
