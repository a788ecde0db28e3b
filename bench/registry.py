"""Registry benchmark.

1. Bulk import: a generated register export (CSV, Chinese headers, one row per person) of
   100k households posted to `POST /v1/households/import` (in-process ASGI); every
   household is validated, inserted with members, income, contacts, history and a
   HouseholdCreated outbox row. Figure: households/s.
2. `GET /v1/households/{id}` under 32 concurrent clients over real HTTP (uvicorn, one
   worker, subprocess, 127.0.0.1) against a bare FastAPI route returning a constant served
   the same way in the same run. Figures: p50/p99 of each and their ratio.

`.venv/bin/python -m bench.registry [--quick]`
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import text

from bench.common import percentile, scratch_stack
from services.registry.app import create
from services.registry.seed import write_export
from tests.support import ROOT, serve

CONCURRENCY = 32


def http_only() -> FastAPI:
    """The registry app without relay or consumers (uvicorn --factory target)."""
    return create(background=False)


def bare() -> FastAPI:
    """The baseline: a FastAPI route returning a constant."""
    app = FastAPI()

    @app.get("/const")
    async def const() -> dict[str, str]:
        return {"status": "ok"}

    return app


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def _start_server(target: str, env: dict[str, str]) -> tuple[asyncio.subprocess.Process, str]:
    port = _free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "uvicorn", target, "--factory", "--host", "127.0.0.1",
        "--port", str(port), "--log-level", "warning", "--no-access-log",
        cwd=ROOT, env=env,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient() as client:
        for _ in range(200):
            try:
                await client.get(f"{base}/healthz" if "http_only" in target else f"{base}/const")
                return process, base
            except httpx.TransportError:
                await asyncio.sleep(0.1)
    process.terminate()
    raise RuntimeError(f"{target} did not start")


async def _load(base: str, paths: list[str], headers: dict[str, str], total: int) -> list[float]:
    """`total` GETs from CONCURRENCY clients; latencies in ms."""
    latencies: list[float] = []
    remaining = total
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    async with httpx.AsyncClient(base_url=base, headers=headers, limits=limits) as client:

        async def worker(seed: int) -> None:
            nonlocal remaining
            rng = random.Random(seed)
            while remaining > 0:
                remaining -= 1
                path = rng.choice(paths)
                started = time.perf_counter()
                try:
                    response = await client.get(path)
                except (httpx.ReadError, httpx.RemoteProtocolError):
                    # A keep-alive connection closed by the server as it was reused: retry once.
                    response = await client.get(path)
                latencies.append((time.perf_counter() - started) * 1000)
                if response.status_code != 200:
                    raise RuntimeError(f"GET {path}: {response.status_code} {response.text[:200]}")

        await asyncio.gather(*(worker(i) for i in range(CONCURRENCY)))
    return latencies


async def run(quick: bool = False) -> dict[str, object]:
    households = 5_000 if quick else 100_000
    requests = 1_000 if quick else 5_000
    stack = scratch_stack()
    results: dict[str, object] = {"households": households, "concurrency": CONCURRENCY}
    try:
        settings = await stack.create_database("registry")
        with tempfile.TemporaryDirectory() as tmp:
            export = Path(tmp) / "register.csv"
            with export.open("w", encoding="utf-8", newline="") as f:
                rows = write_export(f, households, seed=7)
            results["rows"] = rows
            results["file_mb"] = round(export.stat().st_size / 1e6, 1)
            token = stack.headers("registry:read", "registry:write")
            async with serve(create, settings, background=False) as (client, runtime):
                started = time.perf_counter()
                with export.open("rb") as f:
                    response = await client.post(
                        "/v1/households/import",
                        files={"file": ("register.csv", f, "text/csv")},
                        headers=token,
                        timeout=3600,
                    )
                elapsed = time.perf_counter() - started
                summary: dict[str, Any] = response.json()
                if response.status_code != 200 or summary["created"] != households:
                    raise RuntimeError(
                        f"import failed: {response.status_code} {str(summary)[:500]}"
                    )
                async with runtime.sessions() as session:
                    outbox_rows = await session.scalar(text("SELECT count(*) FROM outbox"))
                    ids = list(
                        (await session.execute(
                            text("SELECT id FROM household ORDER BY random() LIMIT 2000"))).scalars()
                    )  # fmt: skip
        results["import_seconds"] = round(elapsed, 2)
        results["import_households_per_s"] = round(households / elapsed)
        results["import_rows_per_s"] = round(rows / elapsed)
        results["outbox_events"] = outbox_rows
        print(
            f"registry import: {households} households ({rows} rows, {results['file_mb']} MB) in "
            f"{elapsed:.1f}s = {households / elapsed:.0f} households/s"
        )

        env = {
            **os.environ,
            "DATABASE_URL": settings.db_url,
            "BACKSTOP_TOPIC_PREFIX": settings.topic_prefix,
            "BACKSTOP_LOG_JSON": "false",
            "BACKSTOP_LOG_LEVEL": "WARNING",
            "BACKSTOP_DB_POOL_SIZE": "16",
        }
        registry_server, registry_base = await _start_server("bench.registry:http_only", env)
        bare_server, bare_base = await _start_server("bench.registry:bare", env)
        try:
            reader = stack.headers("registry:read")
            paths = [f"/v1/households/{i}" for i in ids]
            await _load(bare_base, ["/const"], {}, 500)  # warm-up
            await _load(registry_base, paths, reader, 500)
            base_ms = await _load(bare_base, ["/const"], {}, requests)
            get_ms = await _load(registry_base, paths, reader, requests)
        finally:
            for server in (registry_server, bare_server):
                server.terminate()
                await server.wait()
        results |= {
            "get_requests": requests,
            "get_p50_ms": round(percentile(get_ms, 50), 2),
            "get_p99_ms": round(percentile(get_ms, 99), 2),
            "bare_p50_ms": round(percentile(base_ms, 50), 2),
            "bare_p99_ms": round(percentile(base_ms, 99), 2),
        }
        results["get_vs_bare_p50"] = round(
            float(results["get_p50_ms"]) / max(float(results["bare_p50_ms"]), 1e-6),
            1,  # type: ignore[arg-type]
        )
        print(
            f"GET /v1/households/{{id}} at {CONCURRENCY} concurrent: p50 {results['get_p50_ms']} ms,"
            f" p99 {results['get_p99_ms']} ms; bare route p50 {results['bare_p50_ms']} ms,"
            f" p99 {results['bare_p99_ms']} ms (x{results['get_vs_bare_p50']} at p50)"
        )
    finally:
        await stack.destroy()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.registry")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    print(asyncio.run(run(quick=args.quick)))


if __name__ == "__main__":
    main()
