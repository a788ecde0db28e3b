"""The notify service: `uvicorn services.notify.app:create --factory`."""

from fastapi import FastAPI

from backstop.app import ServiceSpec, create_app
from backstop.settings import Settings
from services.notify.api import router

SPEC = ServiceSpec(
    name="notify",
    title="Backstop notify",
    description="Reminders, schedules, escalation and signed webhooks.",
    routers=[router],
)


def create(settings: Settings | None = None, *, background: bool = True) -> FastAPI:
    return create_app(SPEC, settings, background=background)
