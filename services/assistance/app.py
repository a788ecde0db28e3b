"""The assistance service: `uvicorn services.assistance.app:create --factory`."""

from fastapi import FastAPI

from backstop.app import ServiceSpec, create_app
from backstop.settings import Settings
from services.assistance.api import router

SPEC = ServiceSpec(
    name="assistance",
    title="Backstop assistance",
    description=(
        "Verification tasks (入户核实), the identification procedure, visits, assistance plan"
        "s, funds and supervision."
    ),
    routers=[router],
)


def create(settings: Settings | None = None, *, background: bool = True) -> FastAPI:
    return create_app(SPEC, settings, background=background)
