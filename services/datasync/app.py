"""The datasync service: `uvicorn services.datasync.app:create --factory`."""

from __future__ import annotations

from fastapi import FastAPI

from backstop.app import Runtime, ServiceSpec, create_app
from backstop.bus import ConsumerSpec
from backstop.contracts.registry import TOPIC as REGISTRY_TOPIC
from backstop.events import registered_types
from backstop.settings import Settings
from services.datasync.api import router
from services.datasync.config import DatasyncConfig, get_config
from services.datasync.deliveries import check_late_deliveries
from services.datasync.matching import apply_household_snapshots

# Every registry event carries the household's full snapshot: all of them feed the index.
REGISTRY_TYPES = frozenset(
    name for name, spec in registered_types().items() if spec.topic == REGISTRY_TOPIC
)


def build_spec(config: DatasyncConfig) -> ServiceSpec:
    async def late_deliveries(runtime: Runtime) -> None:
        await check_late_deliveries(sessions=runtime.sessions, config=config)

    return ServiceSpec(
        name="datasync",
        title="Backstop datasync",
        description=(
            "Department feeds (医保局, 应急管理局, 民政局, 教育局): batches, validation, matching"
            " to households, the delivery calendar."
        ),
        routers=[router],
        consumers=[
            ConsumerSpec(
                group="datasync.person-index",
                topics=[REGISTRY_TOPIC],
                batch_handler=apply_household_snapshots,
                batch_types=REGISTRY_TYPES,
            )
        ],
        jobs=[("late-deliveries", config.late_check_interval_s, late_deliveries)],
        # Department deliveries are larger than any other body: the kernel's limit is
        # datasync's own (its handler tells JSON from files and says which to send).
        max_body_bytes=config.max_json_bytes,
        max_upload_bytes=config.max_upload_bytes,
    )


SPEC = build_spec(get_config())


def create(
    settings: Settings | None = None,
    *,
    background: bool = True,
    config: DatasyncConfig | None = None,
) -> FastAPI:
    config = config or get_config()
    app = create_app(build_spec(config), settings, background=background)
    app.state.datasync_config = config
    return app
