"""The risk service: `uvicorn services.risk.app:create --factory`."""

from fastapi import FastAPI

from backstop.app import ServiceSpec, create_app
from backstop.settings import Settings
from services.risk.api import router

SPEC = ServiceSpec(
    name="risk",
    title="Backstop risk",
    description="Explainable risk scoring (监测预警) under a versioned policy.",
    routers=[router],
)


def create(settings: Settings | None = None, *, background: bool = True) -> FastAPI:
    return create_app(SPEC, settings, background=background)
