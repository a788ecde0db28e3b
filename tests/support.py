"""Test support shared by every test package: per-run databases and topic prefix on the
real PostgreSQL and Kafka, tokens, and in-process services."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import uvicorn
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from fastapi import FastAPI

from backstop.app import Runtime, ServiceSpec
from backstop.auth import issue_token
from backstop.bus import ensure_topics
from backstop.events import CloudEvent
from backstop.migrate import upgrade
from backstop.settings import SERVICES, Settings

ROOT = Path(__file__).resolve().parent.parent


# A home check's required checklist (POST /v1/tasks/{id}/complete): 两不愁、三保障、饮水安全
# all "ok" unless `guarantees` says otherwise, and the income observed (一达标).
def checklist(income: float = 30000, **guarantees: str) -> dict[str, Any]:
    items = (
        "food",
        "clothing",
        "compulsory_education",
        "basic_medical",
        "housing",
        "drinking_water",
    )
    return {
        "guarantees": {item: guarantees.get(item, "ok") for item in items},
        "income": {"year": 2025, "total": income},
    }


INFRA = ROOT / "deploy" / "infra.sh"


def admin_dsn(port: int | None = None) -> str:
    s = Settings()
    return f"postgresql://{s.pg_user}:{s.pg_password}@{s.pg_host}:{port or s.pg_port}/postgres"


@dataclass
class Stack:
    """One test run's isolated slice of the shared infrastructure."""

    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    created: list[str] = field(default_factory=list)
    pg_port: int | None = None  # a private PostgreSQL (see PrivatePostgres)

    @property
    def prefix(self) -> str:
        return f"t{self.run_id}."

    def db_name(self, service: str, label: str = "") -> str:
        return f"backstop_{service}{label}_t{self.run_id}"

    def settings(self, service: str, **overrides: Any) -> Settings:
        base = Settings()
        values: dict[str, Any] = {
            "BACKSTOP_SERVICE": service,
            "BACKSTOP_ENV": "test",
            "DATABASE_URL": base.database_url_for(service, self.db_name(service)),
            "BACKSTOP_TOPIC_PREFIX": self.prefix,
            "BACKSTOP_LOG_JSON": False,
            "BACKSTOP_CONSUMER_RETRY_BACKOFF": 0.05,
            "BACKSTOP_OUTBOX_POLL_INTERVAL": 0.1,
            "BACKSTOP_DB_POOL_SIZE": 10,
        }
        values.update(overrides)
        return Settings(**values)

    async def create_database(
        self, service: str, *, migrate: bool = True, label: str = ""
    ) -> Settings:
        """A fresh database for `service` (migrated); `label` tells apart several systems."""
        name = self.db_name(service, label)
        conn = await asyncpg.connect(admin_dsn(self.pg_port))
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        self.created.append(name)
        base = Settings(PGPORT=self.pg_port) if self.pg_port else Settings()
        settings = self.settings(service, DATABASE_URL=base.database_url_for(service, name))
        if migrate and service in SERVICES:
            await asyncio.to_thread(upgrade, service, settings.db_url)
        return settings

    async def drop_databases(self) -> None:
        conn = await asyncpg.connect(admin_dsn(self.pg_port))
        try:
            for name in self.created:
                for attempt in range(10):
                    try:
                        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                        break
                    except asyncpg.InsufficientPrivilegeError:
                        # FORCE may not end an autovacuum worker for a non-superuser: wait.
                        await asyncio.sleep(0.5 * (attempt + 1))
        finally:
            await conn.close()

    async def create_topics(self) -> None:
        await ensure_topics(self.settings("tests"))

    async def drop_topics(self) -> None:
        """Delete this run's topics: a broker that keeps every run's partitions takes
        minutes to start."""
        admin = AIOKafkaAdminClient(
            bootstrap_servers=self.settings("tests").kafka_bootstrap_servers
        )
        await admin.start()
        try:
            mine = [t for t in await admin.list_topics() if t.startswith(self.prefix)]
            if mine:
                await admin.delete_topics(mine)
        finally:
            await admin.close()

    async def destroy(self) -> None:
        await self.drop_databases()
        await self.drop_topics()

    def token(
        self, *scopes: str, regions: Sequence[str] = ("*",), sub: str = "test", ttl_s: int = 600
    ) -> str:
        return issue_token(
            self.settings("tests"), sub=sub, scopes=scopes, regions=regions, ttl_s=ttl_s
        )

    def headers(self, *scopes: str, regions: Sequence[str] = ("*",)) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(*scopes, regions=regions)}"}


@asynccontextmanager
async def serve(
    create: Callable[..., FastAPI], settings: Settings, *, background: bool = True
) -> AsyncIterator[tuple[httpx.AsyncClient, Runtime]]:
    """Run a service in-process: its lifespan (relay, consumers, jobs) and an HTTP client."""
    app = create(settings, background=background)
    async with app.router.lifespan_context(app):
        # As a real server: the client gets the error response, the exception is logged.
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client, app.state.runtime


async def start_runtime(spec: ServiceSpec, settings: Settings, **kw: bool) -> Runtime:
    runtime = Runtime(spec, settings)
    await runtime.start(**kw)
    return runtime


async def wait_for(
    predicate: Callable[[], Any],
    *,
    timeout: float = 20.0,
    interval: float = 0.1,
    message: str = "condition",
) -> Any:
    """Poll an (async) predicate until it returns something truthy."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = predicate()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        await asyncio.sleep(interval)


async def read_topic(
    settings: Settings,
    topic: str,
    *,
    min_count: int = 1,
    timeout: float = 20.0,
    match: Callable[[CloudEvent], bool] = lambda e: True,
) -> list[CloudEvent]:
    """Read a (contract) topic from the beginning until `min_count` matching events."""
    consumer = AIOKafkaConsumer(
        settings.topic(topic),
        bootstrap_servers=settings.kafka_bootstrap_servers,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    found: list[CloudEvent] = []
    try:
        deadline = asyncio.get_running_loop().time() + timeout
        while len(found) < min_count and asyncio.get_running_loop().time() < deadline:
            batches = await consumer.getmany(timeout_ms=200)
            for records in batches.values():
                for record in records:
                    try:
                        event = CloudEvent.from_bytes(record.value)
                    except ValueError:
                        continue  # another test's poison message on the shared topic
                    if match(event):
                        found.append(event)
    finally:
        await consumer.stop()
    return found


class PrivateKafka:
    """A second, private broker for tests that stop and start Kafka, so they never disturb
    the shared one. Its first start is empty; later starts keep what it holds."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.env = {
            **os.environ,
            "BACKSTOP_KAFKA_PORT": str(port),
            "BACKSTOP_KAFKA_NODE": f"kafka-node-{port}",
            "BACKSTOP_KAFKA_FRESH": "1",
        }
        self.env.pop("KAFKA_BOOTSTRAP_SERVERS", None)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def up(self) -> None:
        subprocess.run([str(INFRA), "kafka-up"], env=self.env, check=True)
        self.env.pop("BACKSTOP_KAFKA_FRESH", None)

    def down(self) -> None:
        subprocess.run([str(INFRA), "kafka-down"], env=self.env, check=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@asynccontextmanager
async def serving(app: Any, path: str = "") -> AsyncIterator[str]:
    """Serve an ASGI app (a webhook receiver, a gateway) on a free 127.0.0.1 port; yields
    its URL (base URL plus `path`)."""
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    await wait_for(lambda: server.started, timeout=10, interval=0.05, message="receiver")
    try:
        yield f"http://127.0.0.1:{port}{path}"
    finally:
        server.should_exit = True
        await task


class PrivatePostgres:
    """A second PostgreSQL cluster (Debian's cluster tools) for tests that restart the
    database, so they never disturb the shared one."""

    def __init__(self, port: int, name: str = "drill") -> None:
        self.port = port
        self.name = name
        s = Settings()
        self.user, self.password = s.pg_user, s.pg_password

    def _version(self) -> str:
        return sorted(os.listdir("/usr/lib/postgresql"), key=int)[-1]

    def _ctl(self, action: str) -> None:
        subprocess.run(
            ["pg_ctlcluster", "--skip-systemctl-redirect", self._version(), self.name, action,
             *(["-m", "fast"] if action in ("stop", "restart") else [])],
            check=True,
        )  # fmt: skip

    def up(self) -> None:
        version = self._version()
        clusters = subprocess.run(["pg_lsclusters", "-h"], capture_output=True, text=True).stdout
        if not any(line.split()[:2] == [version, self.name] for line in clusters.splitlines()):
            subprocess.run(
                ["pg_createcluster", version, self.name, "-p", str(self.port), "--",
                 "--auth-local=trust", "--auth-host=scram-sha-256"],
                check=True, capture_output=True,
            )  # fmt: skip
        if not self.online():
            self._ctl("start")
        sql = (
            f"DO $$BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname='{self.user}') THEN "
            f"CREATE ROLE {self.user} LOGIN CREATEDB PASSWORD '{self.password}'; END IF; END$$"
        )
        subprocess.run(
            ["runuser", "-u", "postgres", "--", "psql", "-p", str(self.port), "-qc", sql],
            check=True,
        )

    def online(self) -> bool:
        clusters = subprocess.run(["pg_lsclusters", "-h"], capture_output=True, text=True).stdout
        return any(
            line.split()[:2] == [self._version(), self.name] and "online" in line
            for line in clusters.splitlines()
        )

    def stop(self) -> None:
        self._ctl("stop")

    def start(self) -> None:
        self._ctl("start")

    def drop(self) -> None:
        subprocess.run(
            ["pg_dropcluster", "--stop", self._version(), self.name],
            check=False,
            capture_output=True,
        )
