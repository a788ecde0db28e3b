"""The registry service: `uvicorn services.registry.app:create --factory`."""

from fastapi import FastAPI

from backstop.app import Runtime, ServiceSpec, create_app
from backstop.bus import ConsumerSpec
from backstop.contracts.assistance import (
    DECISIONS_TOPIC,
    FINDINGS_TOPIC,
    FindingObserved,
    MonitoringStarted,
    RiskEliminated,
)
from backstop.db import unit_of_work
from backstop.settings import Settings
from services.registry import reactions
from services.registry.api import MAX_UPLOAD_BYTES, router
from services.registry.county import load_regions


def _type(model: type) -> str:
    name: str = model.__event_type__  # type: ignore[attr-defined]
    return name


async def refresh_regions(runtime: Runtime) -> None:
    """Load the configured county's towns and villages (idempotent), so a change of
    BACKSTOP_COUNTY_CODE or of the regions file takes effect at the next start."""
    async with unit_of_work(runtime.sessions) as session:
        await load_regions(session)


SPEC = ServiceSpec(
    name="registry",
    title="Backstop registry",
    description=(
        "The household register (建档立卡): households, members, regions, incomes, guarantees"
        ", key contacts and monitoring status."
    ),
    routers=[router],
    consumers=[
        ConsumerSpec(
            group="registry",
            # Monitoring decisions and field findings from assistance, applied to households.
            topics=[DECISIONS_TOPIC, FINDINGS_TOPIC],
            handlers={
                _type(MonitoringStarted): reactions.on_monitoring_started,
                _type(RiskEliminated): reactions.on_risk_eliminated,
                _type(FindingObserved): reactions.on_finding_observed,
            },
        )
    ],
    jobs=[("refresh-regions", 24 * 3600, refresh_regions)],
    max_upload_bytes=MAX_UPLOAD_BYTES,  # register exports (CSV/XLSX)
)


def create(settings: Settings | None = None, *, background: bool = True) -> FastAPI:
    return create_app(SPEC, settings, background=background)
