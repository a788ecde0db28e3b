"""The assistance service: `uvicorn services.assistance.app:create --factory`."""

from __future__ import annotations

from fastapi import FastAPI
from prometheus_client import Gauge
from sqlalchemy.ext.asyncio import AsyncSession

from backstop.app import Runtime, ServiceSpec, create_app
from backstop.bus import ConsumerSpec
from backstop.contracts.quality import TOPIC as QUALITY_TOPIC
from backstop.contracts.registry import TOPIC as HOUSEHOLDS_TOPIC
from backstop.contracts.risk import ALERTS_TOPIC, ASSESSMENTS_TOPIC
from backstop.events import CloudEvent
from backstop.metrics import set_from_query
from backstop.settings import Settings
from services.assistance import (
    campaigns,
    clues,
    common,
    data_quality,
    domain,
    enrolment,
    monthly_reports,
    province_warnings,
    reports,
    returns,
    supervision,
    tasks,
)
from services.assistance.api import router

HOUSEHOLD_TYPES = (
    "backstop.registry.household.created.v1",
    "backstop.registry.household.updated.v1",
    "backstop.registry.member.added.v1",
    "backstop.registry.member.removed.v1",
    "backstop.registry.member.moved.v1",
    "backstop.registry.monitoring.changed.v1",
)


async def on_household(session: AsyncSession, event: CloudEvent) -> None:
    await returns.record_changes(session, event)  # against the read model before it moves on
    await common.apply_household(session, event)
    await enrolment.link_household(session, event)  # the checks of people it now holds


async def on_assessment(session: AsyncSession, event: CloudEvent) -> None:
    await reports.apply_assessment(session, event)
    await tasks.on_watch_level(session, event)


TASKS_OPEN = Gauge(
    "backstop_assistance_tasks",
    "Open tasks by kind, and of them those past their due date (state overdue).",
    ["kind", "state"],
)


async def task_gauges_job(runtime: Runtime) -> None:
    await set_from_query(
        TASKS_OPEN,
        runtime.sessions,
        "SELECT kind, 'open', count(*) FROM tasks WHERE status = 'open' GROUP BY kind"
        " UNION ALL SELECT kind, 'overdue', count(*) FROM tasks"
        " WHERE status = 'open' AND due_on < :today GROUP BY kind",
        today=domain.today(),
    )


async def overdue_tasks_job(runtime: Runtime) -> None:
    await tasks.emit_overdue_tasks(runtime.sessions)


async def overdue_rectifications_job(runtime: Runtime) -> None:
    await supervision.emit_overdue_rectifications(runtime.sessions)


async def unaccepted_clues_job(runtime: Runtime) -> None:
    await clues.emit_overdue_clues(runtime.sessions)


async def overdue_enrolment_checks_job(runtime: Runtime) -> None:
    await enrolment.emit_overdue_checks(runtime.sessions)


async def late_monthly_reports_job(runtime: Runtime) -> None:
    await monthly_reports.emit_late_reports(runtime.sessions)


async def campaign_chunks_job(runtime: Runtime) -> None:
    await campaigns.continue_campaigns(runtime.sessions)


async def rematch_warnings_job(runtime: Runtime) -> None:
    await province_warnings.rematch_warnings(runtime.sessions)


SPEC = ServiceSpec(
    name="assistance",
    title="Backstop assistance",
    description=(
        "Verification tasks (入户核实), the identification procedure, visits, assistance plan"
        "s, funds and supervision."
    ),
    routers=[
        router,
        clues.router,
        campaigns.router,
        reports.router,
        province_warnings.router,
        returns.router,
        monthly_reports.router,
        enrolment.router,
    ],
    consumers=[
        ConsumerSpec(
            group="assistance.alerts",
            topics=[ALERTS_TOPIC],
            handlers={
                "backstop.risk.alert.raised.v1": tasks.on_alert_raised,
                "backstop.risk.alert.renewed.v1": tasks.on_alert_raised,
            },
        ),
        ConsumerSpec(
            group="assistance.households",
            topics=[HOUSEHOLDS_TOPIC],
            handlers={t: on_household for t in HOUSEHOLD_TYPES},
        ),
        ConsumerSpec(  # risk levels for the quarterly report (季度动态监测); watch checks
            group="assistance.risk-levels",
            topics=[ASSESSMENTS_TOPIC],
            handlers={
                "backstop.risk.assessment.changed.v1": on_assessment,
                # 纳入建档立卡核查 of a person not in the register
                "backstop.risk.unregistered.flagged.v1": enrolment.on_unregistered_flagged,
            },
        ),
        ConsumerSpec(  # sweep summaries for the quarterly report's 数据质量 section
            group="assistance.data-quality",
            topics=[QUALITY_TOPIC],
            handlers={data_quality.SWEEP_COMPLETED: data_quality.apply_sweep},
        ),
    ],
    max_upload_bytes=province_warnings.MAX_FILE_BYTES,  # the platform's warnings export
    jobs=[
        ("overdue-tasks", 60.0, overdue_tasks_job),
        ("overdue-rectifications", 300.0, overdue_rectifications_job),
        ("unaccepted-clues", 300.0, unaccepted_clues_job),
        ("overdue-enrolment-checks", 300.0, overdue_enrolment_checks_job),
        ("late-monthly-reports", 300.0, late_monthly_reports_job),
        ("campaign-chunks", 2.0, campaign_chunks_job),
        ("task-gauges", 60.0, task_gauges_job),
        ("rematch-province-warnings", 300.0, rematch_warnings_job),
    ],
)


def create(settings: Settings | None = None, *, background: bool = True) -> FastAPI:
    return create_app(SPEC, settings, background=background)
