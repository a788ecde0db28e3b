"""The REST path under a real load generator, beside a bare FastAPI route.

Each service runs as it is deployed: uvicorn (uvloop, httptools), one worker process (or
`--workers N`, bare's too, as compose's BACKSTOP_API_PROCESSES), HTTP only, on 127.0.0.1. `wrk` (Debian's; installed with apt when missing) drives every route;
a bare FastAPI route returning a constant, served the same way, is measured right before
each route (back to back), so each ratio compares two runs under the same neighbours'
load; such pairs run `--rounds` times (3) and each figure is the median over the rounds,
ratios the median of each pair's own ratio (the per-round ratios are kept beside it: on a
shared machine the bare route alone moves by a third between minutes). Figures: req/s,
p50, p99 and their ratio to bare; non-2xx answers are counted.

Routes: registry GET /v1/households/{id}, GET /v1/households?region=<town>,
POST /v1/households (one household each, 16 connections); risk GET
/v1/households/{id}/risk; assistance GET /v1/tasks and /v1/cases; datasync POST a
10-record JSON batch.

Each server is also sampled with py-spy during an extra wrk run (`--no-profile` skips
it): each route's figures name its top frames by own time (what limits it, beside
`limited_by`), and bench/results/http-profile.txt has the top frames by own and
inclusive time.

.venv/bin/python -m bench.http [--quick] [--no-profile] [--workers N] [--rounds N]
    [--only registry_get_household ...]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
from fastapi import FastAPI
from sqlalchemy import insert, text
from sqlalchemy.ext.asyncio import create_async_engine

from backstop.auth import issue_token
from backstop.db import make_session_factory, unit_of_work
from backstop.settings import Settings
from bench.common import scratch_stack
from tests.support import ROOT, Stack, free_port

GET_CONNECTIONS = 32
POST_CONNECTIONS = 16
RESULTS = Path(__file__).resolve().parent / "results"

WRK_SCRIPT = """
local reqs = {}
local i = 0
function init(args)
  i = tonumber(args[4])
  local hdrs = {["Authorization"] = args[3], ["Content-Type"] = "application/json"}
  for line in io.lines(args[2]) do
    local path, body = line:match("^([^\\t]*)\\t?(.*)$")
    if body == "" then body = nil end
    reqs[#reqs + 1] = wrk.format(args[1], path, hdrs, body)
  end
end
function request()
  i = i % #reqs + 1
  return reqs[i]
end
"""


# --- uvicorn --factory targets: each service HTTP-only, settings from the environment ----


def bare() -> FastAPI:
    """The baseline: a FastAPI route returning a constant."""
    app = FastAPI()

    @app.get("/const")
    async def const() -> dict[str, str]:
        return {"status": "ok"}

    return app


def registry() -> FastAPI:
    from services.registry.app import create

    return create(background=False)


def risk() -> FastAPI:
    from services.risk.app import create

    return create(background=False)


def assistance() -> FastAPI:
    from services.assistance.app import create

    return create(background=False)


def datasync() -> FastAPI:
    from services.datasync.app import create

    return create(background=False)


# --- the load generator ------------------------------------------------------------------


def wrk_binary() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
    subprocess.run([*sudo, "apt-get", "install", "-y", "-q", "wrk"], check=True)
    found = shutil.which("wrk")
    if not found:
        raise RuntimeError("wrk is not installed and apt-get could not install it")
    return found


def _ms(value: str, unit: str) -> float:
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


@dataclass
class Load:
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    requests: int
    non_2xx: int
    errors: int
    wrk_cores: float  # the load generator's CPU over the run, in cores


def run_wrk(
    url: str,
    method: str,
    lines_file: Path,
    auth: str,
    connections: int,
    seconds: float,
    start: int = 0,
) -> Load:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(WRK_SCRIPT)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    try:
        out = subprocess.run(
            [wrk_binary(), "-t1", f"-c{connections}", f"-d{seconds:.0f}s", "--latency",
             "-s", script.name, url, "--", method, str(lines_file), auth, str(start)],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
    finally:
        os.unlink(script.name)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    wrk_cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    percentiles = {
        m[0]: _ms(m[1], m[2])
        for m in re.findall(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
    }
    total = re.search(r"(\d+) requests in", out)
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return Load(
        requests_per_s=float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1]),  # type: ignore[index]
        p50_ms=percentiles["50"],
        p99_ms=percentiles["99"],
        requests=int(total[1]) if total else 0,
        non_2xx=int(non_2xx[1]) if non_2xx else 0,
        errors=sum(int(g) for g in errors.groups()) if errors else 0,
        wrk_cores=wrk_cpu / (time.perf_counter() - started),
    )


# --- servers -----------------------------------------------------------------------------


class Server:
    """One uvicorn process serving `target`, as deploy/run.py and compose serve a service."""

    def __init__(self, target: str, env: dict[str, str], workers: int = 1) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.workers = workers
        self.process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", f"bench.http:{target}", "--factory",
             "--host", "127.0.0.1", "--port", str(self.port), "--loop", "uvloop",
             "--http", "httptools", "--log-level", "warning", "--no-access-log",
             "--workers", str(workers)],
            cwd=ROOT, env=env,
        )  # fmt: skip
        for _ in range(300):
            try:
                httpx.get(f"{self.base}/openapi.json", timeout=5)
                return
            except httpx.TransportError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{target} did not start")

    def pids(self) -> list[int]:
        """The serving processes: uvicorn's own, or its workers with `--workers` > 1."""
        if self.workers == 1:
            return [self.process.pid]
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        return [int(pid) for pid in children.read_text().split()]

    def cpu_seconds(self) -> float:
        """User + system CPU of the serving processes so far."""
        ticks = 0
        for pid in self.pids():
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])
        return ticks / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


def profile(pid: int, seconds: float, load: Callable[[], Load]) -> tuple[list[str], list[str]]:
    """py-spy samples of `pid` while `load` runs: the top frames by own time and by
    inclusive time, as percentages of the samples; and the top few by own time."""
    with tempfile.NamedTemporaryFile(suffix=".txt", delete=False) as f:
        raw = Path(f.name)
    spy = start_py_spy(pid, raw, "-d", f"{seconds:.0f}")
    time.sleep(0.5)
    load()
    spy.wait(timeout=seconds + 60)
    try:
        return summarize_profile(raw), top_frames(raw)
    finally:
        raw.unlink()


def start_py_spy(pid: int, raw: Path, *options: str) -> subprocess.Popen[bytes]:
    """`py-spy record` of `pid` into `raw` (collapsed stacks) at 200 samples/s; it writes
    when its duration (`-d`) ends, the process exits or it gets SIGINT."""
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    return subprocess.Popen(
        [py_spy, "record", "-p", str(pid), "-r", "200", "--format", "raw", "-o", str(raw),
         *options],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def summarize_profile(raw: Path) -> list[str]:
    """The top frames of a py-spy raw profile by own and by inclusive time."""
    own, inclusive, threads, total = _tally(raw)
    out = [f"  samples: {total}", "  by thread: " + ", ".join(
        f"{name} {100 * n / total:.1f}%" for name, n in threads.most_common())]  # fmt: skip
    out.append("  own time:")
    out += [f"    {100 * n / total:5.1f}%  {f}" for f, n in own.most_common(12)]
    out.append("  inclusive time:")
    out += [f"    {100 * n / total:5.1f}%  {f}" for f, n in inclusive.most_common(30)]
    return out


def top_frames(raw: Path, n: int = 4) -> list[str]:
    """The `n` frames with the most own time, as the report's "limited by" shows them."""
    own, _, _, total = _tally(raw)
    return [f"{100 * k / total:.0f}% {frame}" for frame, k in own.most_common(n)]


def _tally(
    raw: Path,
) -> tuple[collections.Counter[str], collections.Counter[str], collections.Counter[str], int]:
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    threads: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        frames = [_short(f) for f in stack.split(";")]
        total += n
        in_loop = any("asyncio/runners" in f for f in frames)
        threads["event loop" if in_loop else "other threads"] += n
        if frames:
            own[frames[-1]] += n
        for frame in set(frames):
            if not _TRUNK.search(frame):
                inclusive[frame] += n
    return own, inclusive, threads, max(total, 1)


# The frames every sample of the event loop passes through (server start-up, the loop).
_TRUNK = re.compile(r"click/|runpy|uvicorn/(main|server|_compat)\.py|asyncio/(runners|base_events)")


def _short(frame: str) -> str:
    """`handle (/…/site-packages/starlette/routing.py:123)` -> `handle (starlette/routing.py)`."""
    m = re.match(r"(.*) \((.*?):\d+\)$", frame)
    if not m:
        return frame
    path = m[2]
    for marker in ("site-packages/", "/work/", "lib/python3.11/"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"{m[1]} ({path.split('/', 2)[-1] if path.startswith('wt/') else path})"


# --- data --------------------------------------------------------------------------------


def _lines(path: Path, rows: list[tuple[str, bytes | str]]) -> Path:
    with path.open("wb") as f:
        for url, body in rows:
            f.write(url.encode() + b"\t" + (body.encode() if isinstance(body, str) else body))
            f.write(b"\n")
    return path


async def seed_registry(stack: Stack, tmp: Path, households: int) -> tuple[Settings, list[str]]:
    from services.registry.app import create
    from services.registry.seed import write_export
    from tests.support import serve

    settings = await stack.create_database("registry")
    export = tmp / "register.csv"
    with export.open("w", encoding="utf-8", newline="") as f:
        write_export(f, households, seed=7)
    async with serve(create, settings, background=False) as (client, runtime):
        with export.open("rb") as f:
            response = await client.post(
                "/v1/households/import",
                files={"file": ("register.csv", f, "text/csv")},
                headers=stack.headers("registry:read", "registry:write"),
                timeout=3600,
            )
        if response.status_code != 200:
            raise RuntimeError(f"import failed: {response.status_code} {response.text[:300]}")
        async with runtime.sessions() as session:
            ids = [str(i) for i in (await session.execute(text(
                "SELECT id FROM household ORDER BY random() LIMIT 5000"))).scalars()]  # fmt: skip
            towns = [str(t) for t in (await session.execute(text(
                "SELECT DISTINCT left(region_code, 9) FROM household"))).scalars()]  # fmt: skip
    return settings, [*ids, *(f"town:{t}" for t in towns)]


async def seed_risk(stack: Stack, households: int) -> tuple[Settings, list[str]]:
    from bench.risk import HOUSEHOLD_SQL, household_id
    from services.risk import models as m
    from services.risk import policies

    settings = await stack.create_database("risk")
    engine = create_async_engine(settings.db_url, pool_size=2)
    try:
        async with engine.begin() as conn:
            await conn.execute(text(HOUSEHOLD_SQL), {"lo": 0, "hi": households - 1})
            await conn.execute(text("ANALYZE risk_households"))
        sessions = make_session_factory(engine)
        async with unit_of_work(sessions) as session:
            await session.execute(insert(m.rescore_jobs).values(policy_version=1, status="pending"))
        await policies.run_rescore(sessions)
    finally:
        await engine.dispose()
    return settings, [household_id(g) for g in range(0, households, max(1, households // 5000))]


async def seed_assistance(stack: Stack, tasks: int) -> Settings:
    settings = await stack.create_database("assistance")
    engine = create_async_engine(settings.db_url, pool_size=1)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                text("""
                INSERT INTO tasks (id, kind, household_id, region_code, status, assignee_type,
                                   assignee_code, due_on, reason, factors, origin,
                                   needs_precheck, opened_at, guarantees)
                SELECT md5('t' || g)::uuid::text, 'verification', md5('hh' || g)::uuid::text,
                       '441881' || (100 + g % 20)::text || lpad((1 + g % 15)::text, 3, '0'),
                       'open', 'town', '441881' || (100 + g % 20)::text,
                       current_date + 15, 'bench', '["low_income"]', 'alert', false,
                       now() - g * interval '1 second', '{}'
                FROM generate_series(1, CAST(:n AS int)) AS g"""),
                {"n": tasks},
            )
            # A fifth as many cases in progress, each two steps into its procedure.
            await conn.execute(
                text("""
                INSERT INTO cases (id, kind, household_id, region_code, status, risk_factors,
                                   opened_by, opened_at)
                SELECT md5('c' || g)::uuid::text, 'identification', md5('hh' || g)::uuid::text,
                       '441881' || (100 + g % 20)::text || lpad((1 + g % 15)::text, 3, '0'),
                       'in_progress', '["low_income"]', 'bench', now() - g * interval '1 second'
                FROM generate_series(1, CAST(:n AS int) / 5) AS g"""),
                {"n": tasks},
            )
            await conn.execute(
                text("""
                INSERT INTO case_steps (case_id, step, acted_by, acted_on, passed, details,
                                        recorded_at)
                SELECT c.id, s.step, 'bench', current_date, true, '{"attendance": 30}', now()
                FROM cases c, unnest(ARRAY['appraisal', 'notice']) AS s(step)""")
            )
            for table in ("tasks", "cases", "case_steps"):
                await conn.execute(text(f"ANALYZE {table}"))
    finally:
        await engine.dispose()
    return settings


def household_bodies(n: int, registered: int) -> list[bytes]:
    """`n` households of new people: another seed than the imported register's (seed 7,
    `registered` households), leaving out the few whose generated ID numbers the register
    already holds (each would be a 409 in the figures, not a registration)."""
    from services.registry.seed import generate

    taken = {m.id_number for draft, _ in generate(registered, seed=7) for m in draft.members}
    return [
        draft.model_dump_json().encode()
        for draft, _ in generate(n + n // 50, seed=4242)
        if taken.isdisjoint(m.id_number for m in draft.members)
    ][:n]


def datasync_bodies(n: int) -> list[bytes]:
    from bench.datasync import HEADERS, people, rows
    from services.datasync.domain import Period

    period = Period.of(datetime.now(UTC).date()).shift(-1)
    ids = people(10 * n)
    records = rows("r", ids, period)
    return [
        orjson.dumps({
            "batch_id": f"bench-{b:06d}",
            "period": str(period),
            "records": [dict(zip(HEADERS, r, strict=True)) for r in records[10 * b : 10 * b + 10]],
        })
        for b in range(n)
    ]  # fmt: skip


# --- the run -----------------------------------------------------------------------------


@dataclass
class Route:
    name: str
    server: str
    method: str
    connections: int
    lines: Path
    auth: str
    used: int = 0  # lines sent so far: a POST body is sent once (a resend would be a 409)

    def drive(self, server: Server, seconds: float) -> tuple[Load, float, float]:
        """wrk against `server` for `seconds`: the load, the server's CPU µs per request
        and the cores the server kept busy."""
        cpu = server.cpu_seconds()
        started = time.perf_counter()
        load = run_wrk(
            server.base, self.method, self.lines, self.auth, self.connections, seconds, self.used
        )
        used = server.cpu_seconds() - cpu
        self.used += load.requests + self.connections
        return load, used / max(load.requests, 1) * 1e6, used / (time.perf_counter() - started)


Drive = tuple[Load, float, float]  # Route.drive: the load, CPU µs per request, cores busy


def pair_figures(pairs: list[tuple[Drive, Drive]], workers: int) -> dict[str, Any]:
    """A route's figures from its rounds of (bare, route) runs back to back: each the
    median over the rounds; each ratio the median of the rounds' own ratios, with the
    ratios of every round beside it."""
    median = statistics.median
    bares, runs = [b for b, _ in pairs], [r for _, r in pairs]
    metrics: dict[str, Callable[[Drive], float]] = {
        "req_per_s": lambda d: d[0].requests_per_s,
        "p50_ms": lambda d: d[0].p50_ms,
        "p99_ms": lambda d: d[0].p99_ms,
        # Server CPU per request: steadier than rates when neighbours load the cores.
        "server_cpu_us_per_req": lambda d: d[1],
    }
    ratios = {k: [f(r) / f(b) for b, r in pairs] for k, f in metrics.items()}
    middle = sorted(runs, key=metrics["req_per_s"])[len(runs) // 2]
    return {
        "req_per_s": round(median([d[0].requests_per_s for d in runs])),
        "p50_ms": round(median([d[0].p50_ms for d in runs]), 2),
        "p99_ms": round(median([d[0].p99_ms for d in runs]), 2),
        "bare_req_per_s": round(median([d[0].requests_per_s for d in bares])),
        "bare_p50_ms": round(median([d[0].p50_ms for d in bares]), 2),
        "bare_p99_ms": round(median([d[0].p99_ms for d in bares]), 2),
        "req_per_s_vs_bare": round(median(ratios["req_per_s"]), 3),
        "p50_vs_bare": round(median(ratios["p50_ms"]), 1),
        "p99_vs_bare": round(median(ratios["p99_ms"]), 1),
        "req_per_s_vs_bare_rounds": [round(x, 3) for x in ratios["req_per_s"]],
        "p99_vs_bare_rounds": [round(x, 1) for x in ratios["p99_ms"]],
        "server_cpu_us_per_req": round(median([d[1] for d in runs])),
        "bare_cpu_us_per_req": round(median([d[1] for d in bares])),
        "cpu_per_req_vs_bare": round(median(ratios["server_cpu_us_per_req"]), 1),
        "non_2xx": sum(d[0].non_2xx for d in runs),
        "socket_errors": sum(d[0].errors for d in runs),
        # The round whose run is the median by rate says what limits the route.
        "limited_by": limited_by(middle[2], middle[0], workers),
    }


def limited_by(server_cores: float, load: Load, workers: int = 1) -> str:
    """What bounds a run, from where the CPU went: the service's processes (one process
    uses at most one core), the load generator, or neither of them (then PostgreSQL, or
    the cores going to other processes: the load average says which is likelier)."""
    if server_cores >= 0.85 * min(workers, os.cpu_count() or 1):
        return f"CPU of the service process ({server_cores:.2f} cores busy)"
    if load.wrk_cores >= 0.85:
        return f"the load generator (wrk {load.wrk_cores:.2f} cores busy)"
    return (
        f"not the service's CPU ({server_cores:.2f} cores) nor wrk's ({load.wrk_cores:.2f}):"
        f" PostgreSQL, or cores taken by other processes (load average"
        f" {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)"
    )


async def run(
    quick: bool = False,
    profile_routes: bool = True,
    only: list[str] | None = None,
    workers: int = 1,
    rounds: int = 3,
) -> dict[str, object]:
    seconds = 2.0 if quick else 5.0  # one run of a round; the profile's run is twice that
    # Every second a route is driven (warm-up, the rounds, the profile, a margin): a POST
    # body is sent once, so there must be enough of them.
    driven_s = 2 + rounds * seconds + 2 * seconds + 4
    households = 5_000 if quick else 20_000
    stack = scratch_stack()
    results: dict[str, Any] = {
        "load_generator": "wrk 1 thread",
        "seconds_per_run": seconds,
        "rounds": rounds,
        "get_connections": GET_CONNECTIONS,
        "post_connections": POST_CONNECTIONS,
        "cores": os.cpu_count(),
        "workers_per_server": workers,
    }
    servers: dict[str, Server] = {}
    notes: list[str] = []
    tmp = Path(tempfile.mkdtemp(prefix="bench-http-"))
    try:
        base = Settings()
        reg_settings, reg_keys = await seed_registry(stack, tmp, households)
        risk_settings, risk_ids = await seed_risk(stack, households)
        assist_settings = await seed_assistance(stack, households)
        feed_settings = await stack.create_database("datasync")
        post_n = int(driven_s * 2000)

        def token(*scopes: str) -> str:
            return "Bearer " + issue_token(base, sub="bench", scopes=scopes, ttl_s=24 * 3600)

        reg_ids = [k for k in reg_keys if not k.startswith("town:")]
        towns = [k.removeprefix("town:") for k in reg_keys if k.startswith("town:")]
        routes = [
            Route("registry_get_household", "registry", "GET", GET_CONNECTIONS,
                  _lines(tmp / "rg.txt", [(f"/v1/households/{i}", "") for i in reg_ids]),
                  token("registry:read")),
            Route("registry_list_by_region", "registry", "GET", GET_CONNECTIONS,
                  _lines(tmp / "rl.txt", [(f"/v1/households?region={t}", "") for t in towns]),
                  token("registry:read")),
            Route("registry_post_household", "registry", "POST", POST_CONNECTIONS,
                  _lines(tmp / "rp.txt",
                         [("/v1/households", b) for b in household_bodies(post_n, households)]),
                  token("registry:write")),
            Route("risk_get_household_risk", "risk", "GET", GET_CONNECTIONS,
                  _lines(tmp / "kg.txt", [(f"/v1/households/{i}/risk", "") for i in risk_ids]),
                  token("risk:read")),
            Route("assistance_list_tasks", "assistance", "GET", GET_CONNECTIONS,
                  _lines(tmp / "at.txt", [("/v1/tasks?status=open", "")]),
                  token("assistance:read")),
            Route("assistance_list_cases", "assistance", "GET", GET_CONNECTIONS,
                  _lines(tmp / "ac.txt", [("/v1/cases?status=in_progress", "")]),
                  token("assistance:read")),
            Route("datasync_json_batch_10", "datasync", "POST", POST_CONNECTIONS,
                  _lines(tmp / "dp.txt", [("/v1/feeds/medical/batches", b)
                                          for b in datasync_bodies(int(driven_s * 600))]),
                  token("feeds:medical")),
        ]  # fmt: skip
        if only:
            routes = [r for r in routes if r.name in only]
        env = {
            **os.environ,
            "BACKSTOP_TOPIC_PREFIX": stack.prefix,
            "BACKSTOP_LOG_JSON": "false",
            "BACKSTOP_LOG_LEVEL": "WARNING",
        }
        db = {
            "registry": reg_settings,
            "risk": risk_settings,
            "assistance": assist_settings,
            "datasync": feed_settings,
        }
        servers["bare"] = Server("bare", env, workers)
        bare_lines = _lines(tmp / "bare.txt", [("/const", "")])
        bare_get = Route("bare", "bare", "GET", GET_CONNECTIONS, bare_lines, "")
        for route in routes:
            if route.server not in servers:
                servers[route.server] = Server(
                    route.server,
                    {**env, "BACKSTOP_SERVICE": route.server,
                     "DATABASE_URL": db[route.server].db_url},
                    workers,
                )  # fmt: skip
            server = servers[route.server]
            bare_route = Route("bare", "bare", "GET", route.connections, bare_lines, "")
            # Warm both up (connections, caches), then bare and the route back to back.
            bare_route.drive(servers["bare"], 2)
            route.drive(server, 2)
            pairs = [
                (bare_route.drive(servers["bare"], seconds), route.drive(server, seconds))
                for _ in range(rounds)
            ]
            figures = pair_figures(pairs, workers)
            figures["connections"] = route.connections
            figures["load_average"] = round(os.getloadavg()[0], 1)
            if profile_routes:
                lines, figures["top_frames"] = profile(
                    server.pids()[0],
                    2 * seconds,
                    lambda r=route, s=server: r.drive(s, 2 * seconds)[0],
                )
                notes += [f"{route.name} ({route.method}, {route.connections} connections)"]
                notes += lines
            results[route.name] = figures
            print(f"{route.name}: {figures}", flush=True)
        if profile_routes:
            lines, _ = profile(
                servers["bare"].pids()[0],
                2 * seconds,
                lambda: bare_get.drive(servers["bare"], 2 * seconds)[0],
            )
            notes[0:0] = ["bare", *lines]
            RESULTS.mkdir(exist_ok=True)
            (RESULTS / "http-profile.txt").write_text("\n".join(notes) + "\n")
            print(f"wrote {RESULTS / 'http-profile.txt'}")
    finally:
        for server in servers.values():
            server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
        await stack.destroy()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.http")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument(
        "--no-profile", dest="profile", action="store_false", help="skip the py-spy runs"
    )
    parser.add_argument("--only", nargs="*", help="route names to run")
    parser.add_argument(
        "--workers", type=int, default=1, help="uvicorn processes per server, bare's too"
    )
    parser.add_argument(
        "--rounds", type=int, default=3, help="bare-then-route pairs per route (median)"
    )
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    print(asyncio.run(run(args.quick, args.profile, args.only, args.workers, args.rounds)))


if __name__ == "__main__":
    main()
