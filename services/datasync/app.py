"""The datasync service: `uvicorn services.datasync.app:create --factory`."""

from fastapi import FastAPI

from backstop.app import ServiceSpec, create_app
from backstop.settings import Settings
from services.datasync.api import router

SPEC = ServiceSpec(
    name="datasync",
    title="Backstop datasync",
    description=(
        "Department feeds (医保局, 应急管理局, 民政局, 教育局): batches, validation, matching to househ"
        "olds, the delivery calendar."
    ),
    routers=[router],
)


def create(settings: Settings | None = None, *, background: bool = True) -> FastAPI:
    return create_app(SPEC, settings, background=background)
