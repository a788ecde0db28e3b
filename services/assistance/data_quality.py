"""The quarterly report's 数据质量 section: the quality service's sweep summaries
(`backstop.quality.sweep.completed.v1`) kept as they come, and the quarter's last
county-wide sweep, town by town."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from backstop.contracts.quality import SweepCompleted
from backstop.events import CloudEvent
from services.assistance.models import DataQualitySweep
from services.assistance.quarterly import Quarter

SWEEP_COMPLETED = "backstop.quality.sweep.completed.v1"


async def apply_sweep(session: AsyncSession, event: CloudEvent) -> None:
    """quality.findings → one row per sweep (a replay changes nothing)."""
    payload = event.payload()
    assert isinstance(payload, SweepCompleted)
    await session.execute(
        insert(DataQualitySweep)
        .values(
            sweep_id=payload.sweep_id,
            region_prefix=payload.region_prefix,
            finished_at=payload.finished_at,
            summary=payload.model_dump(mode="json"),
        )
        .on_conflict_do_nothing(index_elements=["sweep_id"])
    )


async def last_sweep(
    session: AsyncSession, *, quarter: Quarter, sees_town: Callable[[str], bool]
) -> tuple[dict[str, Any] | None, dict[str, list[dict[str, Any]]]]:
    """The last county-wide sweep that finished in the quarter (county calendar): what it
    was (None if there was none), and its counts by category × severity for each town
    the client may see."""
    row = (
        await session.execute(
            select(DataQualitySweep)
            .where(
                col(DataQualitySweep.region_prefix) == "",
                col(DataQualitySweep.finished_at) >= quarter.start_at,
                col(DataQualitySweep.finished_at) < quarter.end_at,
            )
            .order_by(col(DataQualitySweep.finished_at).desc())
            .limit(1)
        )
    ).scalar_one_or_none()
    if row is None:
        return None, {}
    summary = dict(row.summary)
    by_town: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for count in summary.pop("counts"):
        if sees_town(count["town_code"]):
            by_town[count["town_code"]].append(count)
    return summary, by_town
