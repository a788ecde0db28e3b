"""The quality service (数据质量核查): `uvicorn services.quality.app:create --factory`.

Keeps a per-household snapshot from the events of registry, datasync, risk and
assistance (it never reads their databases), re-checks a household within seconds of
any event about it, and sweeps the county on demand and nightly.
"""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession

from backstop.app import Runtime, ServiceSpec, create_app
from backstop.bus import ConsumerSpec
from backstop.events import CloudEvent
from backstop.settings import Settings
from services.quality import escalation, reactions, sweeps
from services.quality.api import router
from services.quality.config import QualitySettings, get_quality_settings


def build_spec(config: QualitySettings) -> ServiceSpec:
    thresholds = config.thresholds()

    async def apply(session: AsyncSession, events: Sequence[CloudEvent]) -> None:
        await reactions.apply_events(session, events, thresholds=thresholds)

    async def run_sweeps(runtime: Runtime) -> None:
        await sweeps.run_sweeps(runtime.sessions, chunk=config.sweep_chunk, thresholds=thresholds)

    async def schedule_nightly(runtime: Runtime) -> None:
        await sweeps.schedule_nightly(runtime.sessions, hour=config.nightly_hour)

    async def escalations(runtime: Runtime) -> None:
        await escalation.escalate_overdue(runtime.sessions, days=config.escalate_after_days)

    return ServiceSpec(
        name="quality",
        title="Backstop quality",
        description="数据质量核查: the register checked the way provincial inspections do.",
        routers=[router],
        consumers=[
            ConsumerSpec(
                group="quality",
                topics=reactions.CONSUMED_TOPICS,
                batch_handler=apply,
                batch_types=reactions.CONSUMED_TYPES,
            )
        ],
        jobs=[
            ("sweeps", config.sweep_interval_s, run_sweeps),
            ("nightly-sweep", 300.0, schedule_nightly),
            ("escalations", 300.0, escalations),
        ],
    )


SPEC = build_spec(get_quality_settings())


def create(
    settings: Settings | None = None,
    *,
    background: bool = True,
    config: QualitySettings | None = None,
) -> FastAPI:
    return create_app(build_spec(config or get_quality_settings()), settings, background=background)
