"""The delivery calendar's periodic job: `delivery.late` once per source and period
whose due date passed with no batch (seed 三(三)3).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from prometheus_client import Counter, Gauge

from backstop import outbox
from backstop.contracts.datasync import DeliveryLate
from backstop.db import SessionFactory, raw_connection, unit_of_work
from backstop.events import make_event
from services.datasync.config import DatasyncConfig
from services.datasync.domain import DEPARTMENTS, SERVICE, SOURCES

log = logging.getLogger("backstop.datasync")

LATE_NOW = Gauge(
    "backstop_datasync_deliveries_late",
    "Periods past their calendar deadline with no batch yet, by source.",
    ["source"],
)
LATE_DELIVERIES = Counter(
    "backstop_datasync_late_deliveries_total",
    "Deliveries that became late (delivery.late emitted), by source.",
    ["source"],
)


async def check_late_deliveries(
    *,
    sessions: SessionFactory,
    config: DatasyncConfig,
    now: datetime | None = None,
) -> list[DeliveryLate]:
    """Emit `delivery.late` once per source and period whose due date passed with no
    batch. The `late_notices` primary key makes it once across restarts and replicas."""
    today = (now or datetime.now(UTC)).astimezone(config.tz).date()
    rules = config.rules
    candidates = [
        (source, period, due)
        for source in SOURCES
        for period in rules.expected_periods(
            source, today=today, lookback=config.late_lookback_months
        )
        if (due := rules.due_on(source, period)) is not None
    ]
    emitted: list[DeliveryLate] = []
    async with unit_of_work(sessions) as session:
        conn = await raw_connection(session)
        delivered = {
            (r["source"], r["period"])
            for r in await conn.fetch(
                # A batch whose every record was rejected delivered nothing.
                "SELECT DISTINCT source, period FROM feed_batches WHERE accepted > 0"
                " AND (source, period) IN (SELECT * FROM unnest($1::text[], $2::text[]))",
                [c[0] for c in candidates],
                [str(c[1]) for c in candidates],
            )
        }
        missing = [c for c in candidates if (c[0], str(c[1])) not in delivered]
        for source in SOURCES:
            LATE_NOW.labels(source).set(sum(1 for c in missing if c[0] == source))
        for source, period, due in missing:
            fresh = await conn.fetchval(
                "INSERT INTO late_notices (source, period, due_on) VALUES ($1, $2, $3)"
                " ON CONFLICT DO NOTHING RETURNING true",
                source,
                str(period),
                due,
            )
            if not fresh:
                continue
            late = DeliveryLate(
                source=source,
                period=str(period),
                due_on=due,
                department=DEPARTMENTS[source],
            )
            await outbox.publish(
                session,
                make_event(SERVICE, late, subject=f"{source}/{period}"),
                key=source,
            )
            emitted.append(late)
    for late in emitted:
        LATE_DELIVERIES.labels(late.source).inc()
        log.info(
            "%s (%s) is late with period %s, due %s",
            late.department,
            late.source,
            late.period,
            late.due_on,
        )
    return emitted
