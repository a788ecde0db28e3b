"""The five services as separate processes (uvicorn, as deployed), on the real
PostgreSQL and Kafka, with this test run's databases and topic prefix."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from backstop.settings import SERVICES, Settings
from tests.support import ROOT, Stack, free_port

LOGS = ROOT / "deploy" / ".run" / "e2e"


@dataclass
class System:
    stack: Stack
    label: str = "_e2e"  # keeps its databases apart from the service tests and other systems
    env: dict[str, str] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    database_urls: dict[str, str] = field(default_factory=dict)

    def settings(self, service: str) -> Settings:
        """This system's settings for `service` (its broker, its topic prefix)."""
        extra = {}
        if "KAFKA_BOOTSTRAP_SERVERS" in self.env:
            extra["KAFKA_BOOTSTRAP_SERVERS"] = self.env["KAFKA_BOOTSTRAP_SERVERS"]
        return self.stack.settings(service, DATABASE_URL=self.database_urls.get(service), **extra)

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}"

    def client(
        self, service: str, *scopes: str, regions: tuple[str, ...] = ("*",)
    ) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.url(service),
            headers=self.stack.headers(*scopes, regions=regions),
            timeout=60,
        )

    async def setup(self) -> None:
        for service in SERVICES:
            settings = await self.stack.create_database(service, label=self.label)
            assert settings.database_url is not None
            self.database_urls[service] = settings.database_url
            self.ports[service] = free_port()

    def service_env(self, service: str) -> dict[str, str]:
        settings = self.stack.settings(service)
        return {
            **os.environ,
            **self.env,
            "BACKSTOP_SERVICE": service,
            "BACKSTOP_ENV": "test",
            "DATABASE_URL": self.database_urls[service],
            "BACKSTOP_TOPIC_PREFIX": settings.topic_prefix,
            "BACKSTOP_OUTBOX_POLL_INTERVAL": "0.1",
            "BACKSTOP_LOG_JSON": "true",
        }

    def start(self, service: str) -> None:
        LOGS.mkdir(parents=True, exist_ok=True)
        log = open(self.log_of(service), "ab")
        self.procs[service] = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", f"services.{service}.app:create", "--factory",
             "--host", "127.0.0.1", "--port", str(self.ports[service]), "--no-access-log"],
            cwd=ROOT, env=self.service_env(service), stdout=log, stderr=log,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip

    def kill(self, service: str, sig: int = signal.SIGKILL) -> None:
        proc = self.procs.pop(service, None)
        if proc is not None:
            proc.send_signal(sig)
            proc.wait(timeout=30)

    async def wait_ready(self, service: str, timeout: float = 60) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        async with httpx.AsyncClient(timeout=5) as client:
            while True:
                proc = self.procs.get(service)
                if proc is not None and proc.poll() is not None:
                    raise RuntimeError(
                        f"{service} exited: see {LOGS}/{self.stack.run_id}-{service}.log"
                    )
                try:
                    if (await client.get(f"{self.url(service)}/readyz")).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                if asyncio.get_running_loop().time() > deadline:
                    raise TimeoutError(f"{service} not ready after {timeout}s")
                await asyncio.sleep(0.3)

    async def start_all(self) -> None:
        for service in SERVICES:
            self.start(service)
        for service in SERVICES:
            await self.wait_ready(service)

    def stop_all(self) -> None:
        for service in list(self.procs):
            self.kill(service, signal.SIGTERM)

    def log_of(self, service: str) -> Path:
        return LOGS / f"{self.stack.run_id}{self.label}-{service}.log"
