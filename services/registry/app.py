"""The registry service: `uvicorn services.registry.app:create --factory`."""

from fastapi import FastAPI

from backstop.app import ServiceSpec, create_app
from backstop.settings import Settings
from services.registry.api import router

SPEC = ServiceSpec(
    name="registry",
    title="Backstop registry",
    description=(
        "The household register (建档立卡): households, members, regions, incomes, guarantees"
        ", key contacts and monitoring status."
    ),
    routers=[router],
)


def create(settings: Settings | None = None, *, background: bool = True) -> FastAPI:
    return create_app(SPEC, settings, background=background)
