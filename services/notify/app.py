"""The notify service: `uvicorn services.notify.app:create --factory`."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator

from fastapi import FastAPI

from backstop.app import Runtime, ServiceSpec, create_app
from backstop.bus import ConsumerSpec
from backstop.contracts import assistance, datasync, quality, registry, risk
from backstop.settings import Settings
from services.notify import delivery, scheduler, subscriptions
from services.notify.api import router
from services.notify.config import NotifySettings, get_notify_settings
from services.notify.reactions import EventHandlers


def build_spec(
    notify: NotifySettings, inflight: set[asyncio.Task[None]] | None = None
) -> ServiceSpec:
    """The service, wired to this deployment's channels and job cadences. `inflight`
    holds webhook sends to slow subscribers that outlive a job round."""
    handlers = EventHandlers(notify)
    worker = f"notify-{uuid.uuid4().hex[:8]}"
    inflight = set() if inflight is None else inflight

    async def fire_schedules(runtime: Runtime) -> None:
        await scheduler.run_schedules(runtime.sessions, notify, worker=worker)

    async def send_reminders(runtime: Runtime) -> None:
        # Drain what is due, then wait for the next tick.
        while await delivery.deliver_reminders(
            runtime.sessions, notify, runtime.settings, worker=worker
        ):
            pass

    async def send_webhooks(runtime: Runtime) -> None:
        while await delivery.deliver_webhooks(
            runtime.sessions, notify, runtime.settings, background=inflight
        ):
            pass

    return ServiceSpec(
        name="notify",
        title="Backstop notify",
        description=(
            "Reminders from events and schedules (Asia/Shanghai), escalation of overdue "
            "work, delivery channels, and signed webhooks of risk alerts for other counties."
        ),
        routers=[router],
        consumers=[
            ConsumerSpec(
                group="notify",
                topics=[
                    assistance.TASKS_TOPIC,
                    assistance.DECISIONS_TOPIC,
                    datasync.DELIVERIES_TOPIC,
                    registry.TOPIC,
                    quality.TOPIC,
                ],
                handlers=handlers.by_type(),
                batch_handler=handlers.remind,
                batch_types=handlers.reminder_types,
            ),
            # Alerts fan out to subscribers on their own group, so neither waits for the other.
            ConsumerSpec(
                group="notify-webhooks",
                topics=[risk.ALERTS_TOPIC],
                handlers={t: subscriptions.queue_alert for t in subscriptions.ALERT_EVENT_TYPES},
            ),
        ],
        jobs=[
            ("notify-schedules", notify.schedule_interval_s, fire_schedules),
            ("notify-reminders", notify.reminder_interval_s, send_reminders),
            ("notify-webhooks", notify.webhook_interval_s, send_webhooks),
        ],
    )


def create(
    settings: Settings | None = None,
    *,
    background: bool = True,
    notify: NotifySettings | None = None,
) -> FastAPI:
    notify = notify or get_notify_settings()
    inflight: set[asyncio.Task[None]] = set()
    app = create_app(build_spec(notify, inflight), settings, background=background)
    app.state.notify_settings = notify
    runtime_lifespan = app.router.lifespan_context

    async def cancel_inflight() -> None:
        # Sends still waiting on slow subscribers stop with the service; their rows stay
        # leased and are sent again once the lease runs out.
        tasks = list(inflight)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with runtime_lifespan(app):
            try:
                yield
            finally:
                await cancel_inflight()  # before the engine is disposed
        await cancel_inflight()  # any a last job round started

    app.router.lifespan_context = lifespan
    return app
