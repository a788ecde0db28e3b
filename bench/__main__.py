"""`make bench`: every benchmark in one go; writes bench/results/latest.{md,json}.

Each module exposes `async def run(quick: bool = False) -> dict[str, object]`, prints its
figures and measures its baseline in the same run (compare ratios: machines are shared).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import platform
import subprocess
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

MODULES = (
    "outbox", "registry", "datasync", "risk", "notify", "quality", "monthly", "e2e", "http",
    "scaling",
)  # fmt: skip
RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict[str, object]:
    mem_kb = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem_kb = int(line.split()[1])
    except OSError:
        pass
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kb / 1024 / 1024, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "commit": commit,
    }


async def main(names: list[str], quick: bool) -> None:
    report: dict[str, object] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": quick,
        "machine": machine(),
        "results": {},
    }
    results: dict[str, object] = {}
    previous = RESULTS / "latest.json"
    if set(names) != set(MODULES) and previous.exists():
        # A partial run updates its modules in the last full report and keeps the others.
        results.update(json.loads(previous.read_text()).get("results", {}))
    for name in names:
        try:
            module = importlib.import_module(f"bench.{name}")
        except ModuleNotFoundError:
            results[name] = {"skipped": "no benchmark module"}
            continue
        started = time.perf_counter()
        try:
            figures = await module.run(quick=quick)
            figures["wall_s"] = round(time.perf_counter() - started, 1)
            results[name] = figures
        except Exception as exc:
            traceback.print_exc()
            results[name] = {"error": f"{type(exc).__name__}: {exc}"}
    report["results"] = results
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "latest.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    lines = [
        "# Backstop benchmark report",
        "",
        f"- date: {report['date']}{' (quick sizes)' if quick else ''}",
        *(f"- {k}: {v}" for k, v in report["machine"].items()),  # type: ignore[attr-defined]
        "",
        "Machines here are shared and noisy: read the ratios to the same-run baselines.",
        "What limits each figure (CPU in which frame, the database, the load generator),"
        " with py-spy profiles: the notes beside this file (http.md, scaling-*.md).",
        "",
    ]
    for name, figures in results.items():
        lines += section(name, figures)  # type: ignore[arg-type]
    (RESULTS / "latest.md").write_text("\n".join(lines))
    print(f"wrote {RESULTS / 'latest.md'}")


def section(name: str, figures: dict[str, Any]) -> list[str]:
    """A module's figures as a table; routes (bench.http) as a table of their own, a row
    each, with what limits them."""
    routes = {k: v for k, v in figures.items() if isinstance(v, dict) and "req_per_s" in v}
    lines = [f"## {name}", "", "| figure | value |", "| --- | --- |"]
    lines += [f"| {k} | {v} |" for k, v in figures.items() if k not in routes]
    if routes:
        lines += [
            "",
            "| route | req/s (× bare) | p50 ms (× bare) | p99 ms (× bare) | CPU µs/req (× bare)"
            " | × bare by round: req/s; p99 | non-2xx | limited by | top frames by own time |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        lines += [
            f"| {route} | {f['req_per_s']:,} ({f['req_per_s_vs_bare']}) | {f['p50_ms']}"
            f" ({f['p50_vs_bare']}) | {f['p99_ms']} ({f['p99_vs_bare']}) |"
            f" {f['server_cpu_us_per_req']:,} ({f['cpu_per_req_vs_bare']}) |"
            f" {_rounds(f, 'req_per_s_vs_bare')}; {_rounds(f, 'p99_vs_bare')} | {f['non_2xx']} |"
            f" {f['limited_by']} | {'; '.join(f.get('top_frames', []))} |"
            for route, f in routes.items()
        ]
    return [*lines, ""]


def _rounds(figures: dict[str, Any], key: str) -> str:
    """A ratio's value in each round (figures from before rounds: the one value)."""
    return " ".join(str(v) for v in figures.get(f"{key}_rounds", [figures[key]]))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("names", nargs="*", default=list(MODULES))
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    args = parser.parse_args()
    asyncio.run(main(args.names, args.quick))
