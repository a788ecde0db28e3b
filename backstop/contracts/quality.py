"""`quality.findings` (key = town code): what the data-quality audit (数据质量核查) tells
the towns. Counts and rule codes only: no household ids, names or ID numbers."""

from __future__ import annotations

from datetime import date

from pydantic import BaseModel

from backstop.events import event_type

TOPIC = "quality.findings"


@event_type("backstop.quality.errors.opened.v1", topic=TOPIC)
class ErrorFindingsOpened(BaseModel):
    """New error-level findings in a town, from one check or one chunk of a sweep."""

    town_code: str
    opened: int
    rules: dict[str, int]  # rule code -> new findings


@event_type("backstop.quality.errors.overdue.v1", topic=TOPIC)
class ErrorFindingsOverdue(BaseModel):
    """Error-level findings a town has left open longer than the configured days (once a
    day per town while any is)."""

    town_code: str
    count: int
    days: int
    oldest_opened_on: date
