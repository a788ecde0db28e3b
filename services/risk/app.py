"""The risk service: `uvicorn services.risk.app:create --factory`.

Consumes `registry.households` and `datasync.records` in batches (one transaction per
partition batch), re-scores the households they touch, and publishes
`risk.assessments` and `risk.alerts` through the outbox. A periodic job runs the
re-score that follows a policy change, resuming at its cursor after a crash.
"""

from collections.abc import Sequence

from fastapi import FastAPI
from prometheus_client import Gauge
from sqlalchemy.ext.asyncio import AsyncSession

from backstop.app import Runtime, ServiceSpec, create_app
from backstop.bus import ConsumerSpec
from backstop.contracts import assistance, datasync, registry
from backstop.events import CloudEvent
from backstop.metrics import set_from_query
from backstop.settings import Settings
from services.risk import policies, reactions, unregistered
from services.risk.api import router


async def rescore_job(runtime: Runtime) -> None:
    await policies.run_rescore(runtime.sessions)


async def apply_batch(session: AsyncSession, events: Sequence[CloudEvent]) -> None:
    """Households' events (reactions.py), then people not in the register (unregistered.py),
    each in bulk, in the batch's one transaction."""
    await reactions.apply_events(session, events)
    unmatched = [e for e in events if e.type == unregistered.RECORDS_UNMATCHED]
    if unmatched:
        await unregistered.apply_unmatched(session, unmatched)


HOUSEHOLDS_BY_LEVEL = Gauge(
    "backstop_risk_households", "Households by town and current risk level.", ["town", "level"]
)


async def level_gauges_job(runtime: Runtime) -> None:
    await set_from_query(
        HOUSEHOLDS_BY_LEVEL,
        runtime.sessions,
        "SELECT left(region_code, 9), level, count(*) FROM risk_current GROUP BY 1, 2",
    )


SPEC = ServiceSpec(
    name="risk",
    title="Backstop risk",
    description="Explainable risk scoring (监测预警) under a versioned policy.",
    routers=[router],
    consumers=[
        ConsumerSpec(
            group="risk",
            topics=[registry.TOPIC, datasync.TOPIC, assistance.TASKS_TOPIC],  # + 省平台预警
            batch_handler=apply_batch,
            batch_types=reactions.CONSUMED_TYPES | {unregistered.RECORDS_UNMATCHED},
            # Safe: a batch locks its households before reading them (reactions.py).
            partitions_at_once=3,
        )
    ],
    jobs=[("rescore", 2.0, rescore_job), ("level-gauges", 60.0, level_gauges_job)],
)


def create(settings: Settings | None = None, *, background: bool = True) -> FastAPI:
    return create_app(SPEC, settings, background=background)
