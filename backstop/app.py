"""The service runtime and FastAPI app factory every service uses: settings, engine,
outbox relay, consumers, periodic jobs, errors, metrics, logs and health endpoints."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Annotated, Any

import asyncpg
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from backstop import tracing
from backstop.admin import outbox_admin_router
from backstop.asgi import RequestMiddleware
from backstop.asyncapi import document as asyncapi_document
from backstop.auth import ADMIN_SCOPES
from backstop.bus import Consumer, ConsumerSpec, kafka_ping
from backstop.db import (
    SessionFactory,
    close_sessions,
    driver_connection,
    make_engine,
    make_session_factory,
    ping,
)
from backstop.errors import PROBLEM_JSON, install_error_handlers
from backstop.logs import configure_logging
from backstop.metrics import SERVICE_READY, install_metrics
from backstop.outbox import MAX_MESSAGE_BYTES, OutboxRelay
from backstop.settings import Settings, get_settings

log = logging.getLogger("backstop.app")

Job = Callable[["Runtime"], Awaitable[None]]


@dataclass
class ServiceSpec:
    """What makes one service: its routers, what it consumes, and its periodic jobs."""

    name: str
    title: str
    description: str
    routers: list[APIRouter]
    consumers: list[ConsumerSpec] = field(default_factory=list)
    # (name, interval seconds, job): run every interval while the service is up.
    jobs: list[tuple[str, float, Job]] = field(default_factory=list)
    version: str = "0.1.0"
    # Request bodies, counted as they stream in (413 beyond): every body but multipart
    # uploads, and multipart uploads. BACKSTOP_MAX_BODY_BYTES overrides the first.
    max_body_bytes: int = 1024 * 1024
    max_upload_bytes: int = 1024 * 1024


YOUNG_GENERATION = 20_000  # allocations between two collections of the youngest objects


class Runtime:
    """Everything a running service holds. Tests start and stop it without HTTP."""

    def __init__(self, spec: ServiceSpec, settings: Settings) -> None:
        self.spec = spec
        self.settings = settings
        self.engine: AsyncEngine = make_engine(settings.db_url, settings.db_pool_size)
        tracing.instrument_engine(self.engine)
        self.sessions: SessionFactory = make_session_factory(
            self.engine,
            info={MAX_MESSAGE_BYTES: settings.kafka_max_message_bytes},
            driver_pool_size=settings.db_driver_pool_size,
        )
        self.relay = OutboxRelay(sessions=self.sessions, settings=settings)
        self.consumers = [
            Consumer(c, sessions=self.sessions, settings=settings) for c in spec.consumers
        ]
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = asyncio.Event()

    async def start(self, *, relay: bool = True, consumers: bool = True, jobs: bool = True) -> None:
        # Every role keeps backstop_service_ready current, whether or not a prober calls.
        self._tasks.append(asyncio.create_task(self._every("readiness", 15, _check_readiness)))
        if relay:
            self._tasks.append(asyncio.create_task(self.relay.run(), name="outbox-relay"))
            self._tasks.append(
                asyncio.create_task(self._every("outbox-backlog", 15, _refresh_backlog))
            )
        if consumers:
            for consumer in self.consumers:
                self._tasks.append(asyncio.create_task(consumer.run(), name=consumer.group))
        if jobs:
            for name, interval, job in self.spec.jobs:
                self._tasks.append(asyncio.create_task(self._every(name, interval, job), name=name))

    async def _every(self, name: str, interval: float, job: Job) -> None:
        while not self._stopping.is_set():
            try:
                with tracing.quiet():
                    await job(self)
            except Exception:
                log.exception("job %s failed; it runs again in %.0fs", name, interval)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=interval)

    async def stop(self) -> None:
        self._stopping.set()
        self.relay.stop()
        for consumer in self.consumers:
            consumer.stop()
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=10)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        self._tasks.clear()
        await close_sessions(self.sessions)

    async def readiness(self) -> dict[str, str]:
        checks: dict[str, str] = {}
        try:
            await asyncio.wait_for(ping(self.engine), 3)
            checks["database"] = "ok"
        except Exception as exc:
            checks["database"] = f"unreachable: {type(exc).__name__}"
        try:
            await kafka_ping(self.settings)
            checks["kafka"] = "ok"
        except Exception as exc:
            checks["kafka"] = f"unreachable: {type(exc).__name__}"
        SERVICE_READY.labels(self.spec.name).set(all(v == "ok" for v in checks.values()))
        return checks


async def _check_readiness(runtime: Runtime) -> None:
    await runtime.readiness()


async def _refresh_backlog(runtime: Runtime) -> None:
    await runtime.relay.refresh_backlog()


# The dependencies are `async def` although they do no I/O: FastAPI runs a plain `def`
# dependency in the threadpool, a thread hop per request.
async def runtime_of(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """A read session. Writes go through a handler's `unit_of_work`, which commits once."""
    async with request.app.state.runtime.sessions() as session:
        yield session


async def get_sessions(request: Request) -> SessionFactory:
    sessions: SessionFactory = request.app.state.runtime.sessions
    return sessions


def reading(request: Request) -> AbstractAsyncContextManager[asyncpg.Connection]:
    """`backstop.db.driver_connection` of the service, for a hot GET route that takes the
    Request (one dependency fewer to resolve per request than RuntimeDep)."""
    return driver_connection(request.app.state.runtime.sessions)


SessionDep = Annotated[AsyncSession, Depends(get_session)]
SessionsDep = Annotated[SessionFactory, Depends(get_sessions)]
RuntimeDep = Annotated[Runtime, Depends(runtime_of)]


def create_app(
    spec: ServiceSpec, settings: Settings | None = None, *, background: bool = True
) -> FastAPI:
    """Build the service's app. `background=False` serves HTTP only (no relay, consumers
    or jobs), for tests that drive those by hand."""
    settings = settings or get_settings(spec.name)
    configure_logging(spec.name, settings.log_level, settings.log_json)
    # BACKSTOP_ROLE splits a service over processes: api replicas behind the balancer,
    # worker replicas sharing the topics' partitions (docs/scaling.md).
    background = background and settings.role != "api"
    routes = settings.role != "worker"
    tracing.configure(spec.name)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = Runtime(spec, settings)
        app.state.runtime = runtime
        await runtime.start(relay=background, consumers=background, jobs=background)
        # What start-up built (modules, models, routes: ~150k objects) leaves the garbage
        # collector's generations: every full collection walked it all, a pause of the
        # event loop of 100-200 ms that made the p99 of every route.
        gc.collect()
        gc.freeze()
        # A request allocates a few thousand objects and frees nearly all of them: the
        # default young generation (700 allocations) ran several collections a request,
        # 8-14 % of a household GET's CPU (bench/results/http.md).
        thresholds = gc.get_threshold()
        gc.set_threshold(YOUNG_GENERATION, *thresholds[1:])
        try:
            yield
        finally:
            await runtime.stop()
            # Collectable again: where several apps share a process (tests), what one froze
            # (a stopped app's connections among it) would otherwise never be freed.
            gc.unfreeze()
            gc.set_threshold(*thresholds)

    app = FastAPI(
        title=spec.title,
        description=spec.description,
        version=spec.version,
        lifespan=lifespan,
        responses={
            "4XX": {
                "description": "Problem details (RFC 9457)",
                "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
            },
        },
    )
    app.state.settings = settings
    install_error_handlers(app)
    tracing.instrument_app(app)
    install_metrics(app)
    app.add_middleware(
        RequestMiddleware,
        service=spec.name,
        max_body_bytes=settings.max_body_bytes or spec.max_body_bytes,
        max_upload_bytes=spec.max_upload_bytes,
    )

    @app.get("/asyncapi.json", include_in_schema=False)
    async def asyncapi() -> dict[str, Any]:
        """The AsyncAPI 3.0 contract of the topics this service publishes."""
        return asyncapi_document(spec.name)

    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "service": spec.name}

    @app.get("/readyz", tags=["health"])
    async def readyz(request: Request) -> JSONResponse:
        checks = await request.app.state.runtime.readiness()
        ready = all(v == "ok" for v in checks.values())
        return JSONResponse(
            {"status": "ready" if ready else "not ready", "checks": checks},
            status_code=200 if ready else 503,
        )

    if routes:
        for router in spec.routers:
            app.include_router(router)
        app.include_router(outbox_admin_router(ADMIN_SCOPES.get(spec.name, f"{spec.name}:admin")))
    _add_problem_schema(app)
    return app


def _add_problem_schema(app: FastAPI) -> None:
    original = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = original()
        schema.setdefault("components", {}).setdefault("schemas", {})["Problem"] = {
            "type": "object",
            "required": ["type", "title", "status", "detail"],
            "properties": {
                "type": {"type": "string"},
                "title": {"type": "string"},
                "status": {"type": "integer"},
                "detail": {"type": "string"},
                "errors": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "loc": {"type": "array", "items": {}},
                            "msg": {"type": "string"},
                        },
                    },
                },
            },
        }
        schema.setdefault("components", {}).setdefault("securitySchemes", {})
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
