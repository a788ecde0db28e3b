"""`quality.findings` (key = town code, or `sweep/<id>` for a sweep's summary): what the
data-quality audit (数据质量核查) tells the towns and the county. Counts and rule codes
only: no household ids, names or ID numbers."""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal

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


class SweepCount(BaseModel):
    """Findings of one town, category and severity when a sweep finished."""

    town_code: str
    category: str
    severity: Literal["error", "warning", "hint"]
    open: int
    accepted: int  # accepted exceptions (例外) standing
    opened: int  # opened since the previous sweep finished (by any check)
    closed: int  # closed (rectified) since the previous sweep finished
    previous_open: int | None  # open when the previous sweep finished; None: no previous


@event_type("backstop.quality.sweep.completed.v1", topic=TOPIC)
class SweepCompleted(BaseModel):
    """A sweep's summary when it finished (the quarterly report's 数据质量 section): counts by
    town × category × severity of the swept region, and the trend against the previous
    sweep of the same region."""

    sweep_id: int
    trigger: str  # manual | nightly
    region_prefix: str  # "" = the whole county
    finished_at: datetime
    households: int
    ruleset_version: str
    previous_sweep_id: int | None
    previous_finished_at: datetime | None
    categories: dict[str, str]  # category code -> Chinese label
    counts: list[SweepCount]
