"""The local runner behind `make run`: starts the five services as separate processes
(uvicorn, one port each), waits until each is ready, seeds the demo county, and leaves them
running. `python -m deploy.run --stop` stops them. Idempotent: a service already up is
left alone."""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from backstop.settings import PORTS, SERVICES

ROOT = Path(__file__).resolve().parent.parent
RUN_DIR = ROOT / "deploy" / ".run"


def pid_file(service: str) -> Path:
    return RUN_DIR / f"{service}.pid"


def alive(service: str) -> int | None:
    try:
        pid = int(pid_file(service).read_text())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return None


def start(service: str, env: dict[str, str]) -> None:
    if alive(service):
        print(f"{service:<10} already running (pid {alive(service)})")
        return
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    log = open(RUN_DIR / f"{service}.log", "ab")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            f"services.{service}.app:create",
            "--factory",
            "--host",
            "127.0.0.1",
            "--port",
            str(PORTS[service]),
            "--loop",
            "uvloop",
            "--http",
            "httptools",
            "--no-access-log",
        ],
        cwd=ROOT,
        env={**env, "BACKSTOP_SERVICE": service},
        stdout=log,
        stderr=log,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    pid_file(service).write_text(str(proc.pid))


def stop(service: str) -> None:
    pid = alive(service)
    if pid:
        os.killpg(pid, signal.SIGTERM)
        for _ in range(50):
            if not alive(service):
                break
            time.sleep(0.2)
        print(f"{service:<10} stopped")
    pid_file(service).unlink(missing_ok=True)


def wait_ready(service: str, timeout: float = 60) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{PORTS[service]}/readyz", timeout=5).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        if not alive(service):
            return False
        time.sleep(0.5)
    return False


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m deploy.run")
    parser.add_argument("--stop", action="store_true", help="stop the five services")
    parser.add_argument("--no-demo", action="store_true", help="do not seed the demo county")
    parser.add_argument("--households", type=int, default=2000)
    args = parser.parse_args()
    if args.stop:
        for service in SERVICES:
            stop(service)
        return
    env = dict(os.environ)
    for service in SERVICES:
        start(service, env)
    failed = [s for s in SERVICES if not wait_ready(s)]
    for service in SERVICES:
        state = f"FAILED (see deploy/.run/{service}.log)" if service in failed else "ready"
        print(f"{service:<10} http://127.0.0.1:{PORTS[service]}/docs  {state}")
    if failed:
        sys.exit(1)
    if not args.no_demo and importlib.util.find_spec("deploy.demo"):
        demo = importlib.import_module("deploy.demo")
        asyncio.run(demo.run(households=args.households))
    print(
        "\nA token for everything (8 h):\n"
        "  .venv/bin/python -m backstop.auth token --sub me --regions '*' --scope "
        "registry:read registry:write registry:pii feeds:medical feeds:disaster "
        "feeds:civil_affairs feeds:education feeds:read risk:read risk:admin "
        "assistance:read assistance:write funds:write notify:read notify:admin "
        "quality:read quality:write\n"
        "Stop the services with `make stop`, and PostgreSQL and Kafka too with `make down`."
    )


if __name__ == "__main__":
    main()
