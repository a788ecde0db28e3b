"""Registry benchmark.

Bulk import: a generated register export (CSV, Chinese headers, one row per person) of
100k households posted to `POST /v1/households/import` (in-process ASGI); every
household is validated, inserted with members, income, contacts, history and a
HouseholdCreated outbox row. Figure: households/s. Then the same file again, as a newer
export that changes nothing: every household loaded and compared, nothing written
(reimport.py). Figure: its time as a ratio of the first import's.

The REST path (GET and POST of single households beside a bare route, with wrk) is
measured by bench/http.py.

`.venv/bin/python -m bench.registry [--quick]`
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy import text

from bench.common import scratch_stack
from services.registry.app import create
from services.registry.seed import write_export
from tests.support import serve


async def run(quick: bool = False) -> dict[str, object]:
    households = 5_000 if quick else 100_000
    stack = scratch_stack()
    results: dict[str, object] = {"households": households}
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

                async def post() -> tuple[float, dict[str, Any]]:
                    started = time.perf_counter()
                    with export.open("rb") as f:
                        response = await client.post(
                            "/v1/households/import",
                            files={"file": ("register.csv", f, "text/csv")},
                            headers=token,
                            timeout=3600,
                        )
                    if response.status_code != 200:
                        raise RuntimeError(f"import failed: {response.text[:500]}")
                    return time.perf_counter() - started, response.json()

                elapsed, summary = await post()
                if summary["created"] != households:
                    raise RuntimeError(f"import failed: {str(summary)[:500]}")
                again, summary = await post()
                if summary["existing"] != households:
                    raise RuntimeError(f"re-import changed something: {str(summary)[:500]}")
                async with runtime.sessions() as session:
                    outbox_rows = await session.scalar(text("SELECT count(*) FROM outbox"))
        results["import_seconds"] = round(elapsed, 2)
        results["import_households_per_s"] = round(households / elapsed)
        results["import_rows_per_s"] = round(rows / elapsed)
        results["outbox_events"] = outbox_rows
        results["reimport_unchanged_seconds"] = round(again, 2)
        results["reimport_vs_import"] = round(again / elapsed, 2)
        print(
            f"registry import: {households} households ({rows} rows, {results['file_mb']} MB) in "
            f"{elapsed:.1f}s = {households / elapsed:.0f} households/s; the same file again "
            f"(all compared, none changed) in {again:.1f}s = {again / elapsed:.2f}x"
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
