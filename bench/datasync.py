"""Datasync ingestion throughput: 200k medical records as JSON batches of 10k, as one
CSV file and as one XLSX workbook (title row above the header, as exports have it),
through the HTTP API in-process, from the first byte sent to the last outbox row
committed; and, in the same run, a raw PostgreSQL COPY of the same rows into a bare
table as the baseline. Each phase reports this process's peak RSS, and a last phase
sends an XLSX bomb (790 KB whose shared strings expand to 232 MB): its answer time and
peak RSS.

Beside wall time it reports the CPU each side spent (this process, and the PostgreSQL
backends when PostgreSQL runs on this machine): on a shared, busy machine the wall time
mostly measures the neighbours, the CPU a run costs much less so.

.venv/bin/python -m bench.datasync [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import os
import threading
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import asyncpg
import httpx
import orjson

import backstop.contracts  # noqa: F401 - registers event types
from backstop.idnumber import check_digit, id_hash
from bench.common import scratch_stack
from services.datasync.app import create
from services.datasync.domain import Period
from tests.support import Stack

BATCH = 10_000
HEADERS = [
    "record_id",
    "id_number",
    "name",
    "settled_on",
    "total_cost",
    "insurance_paid",
    "assistance_paid",
    "out_of_pocket",
]


def people(n: int) -> list[str]:
    """n distinct valid ID numbers."""
    out = []
    born = date(1950, 1, 1)
    for i in range(n):
        day = born + timedelta(days=i // 1000)
        first17 = f"441881{day:%Y%m%d}{i % 1000:03d}"
        out.append(first17 + check_digit(first17))
    return out


def rows(prefix: str, ids: list[str], period: Period) -> list[tuple[str, ...]]:
    day = period.first_day.replace(day=12).isoformat()
    out = []
    for i, id_number in enumerate(ids):
        total = 500 + (i % 97) * 31
        insurance = round(total * 0.6, 2)
        assistance = round(total * 0.1, 2)
        pocket = round(total - insurance - assistance, 2)
        out.append(
            (
                f"{prefix}{i:07d}",
                id_number,
                "张三",
                day,
                f"{total:.2f}",
                f"{insurance:.2f}",
                f"{assistance:.2f}",
                f"{pocket:.2f}",
            )
        )
    return out


def xlsx_file(header: list[str], data: list[tuple[str, ...]]) -> bytes:
    """A workbook as a department exports it: a title row, then the table (amounts as
    numbers, the rest as text)."""
    from openpyxl import Workbook

    book = Workbook(write_only=True)
    sheet = book.create_sheet("明细")
    sheet.append(["XX市医疗保障局脱贫人口医疗费用结算明细表"])
    sheet.append(header)
    for r in data:
        sheet.append([*r[:4], *(float(v) for v in r[4:])])
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def xlsx_bomb(expanded: int = 232 << 20) -> bytes:
    """A workbook under 1 MB whose shared strings expand to `expanded` bytes."""
    import zipfile

    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        with archive.open("xl/sharedStrings.xml", "w", force_zip64=True) as part:
            chunk = (b"<si><t>" + b"A" * 1000 + b"</t></si>") * 1000
            for _ in range(expanded // len(chunk)):
                part.write(chunk)
    return out.getvalue()


class PeakRss:
    """This process's peak resident memory over a phase, sampled every 5 ms from
    /proc/self/statm by a thread (the kernel's high-water mark cannot be reset in every
    container)."""

    def __init__(self) -> None:
        self.page = os.sysconf("SC_PAGE_SIZE")
        self.base = self.peak = 0
        self.running = False
        self.thread: threading.Thread | None = None

    def _sample(self) -> None:
        while self.running:
            with open("/proc/self/statm") as f:
                self.peak = max(self.peak, int(f.read().split()[1]) * self.page)
            time.sleep(0.005)

    def start(self) -> None:
        self.stop()
        with open("/proc/self/statm") as f:
            self.base = int(f.read().split()[1]) * self.page
        self.peak, self.running = self.base, True
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.running = False
        if self.thread is not None:
            self.thread.join()
            self.thread = None

    def peak_mb(self) -> float:
        """The peak, in MB."""
        self.stop()
        return round(self.peak / (1 << 20), 1)

    def growth_mb(self) -> float:
        """How far the peak rose above the RSS at the phase's start, in MB."""
        return round((self.peak - self.base) / (1 << 20), 1)


class CpuMeter:
    """CPU seconds of this process and of the PostgreSQL backends connected to one
    database, read from /proc (None for PostgreSQL when it is not on this machine).
    Read before and after a phase, inside it no backend should come or go."""

    def __init__(self, conn: asyncpg.Connection, database: str) -> None:
        self.conn = conn
        self.database = database
        self.tick = os.sysconf("SC_CLK_TCK")

    def _backend(self, pid: int) -> float | None:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / self.tick  # utime + stime

    async def read(self, pids: list[int] | None = None) -> tuple[float, float | None]:
        if pids is None:
            pids = [
                r["pid"]
                for r in await self.conn.fetch(
                    "SELECT pid FROM pg_stat_activity WHERE datname = $1", self.database
                )
            ]
        backends = [self._backend(pid) for pid in pids]
        postgres = None if None in backends else sum(b for b in backends if b is not None)
        return time.process_time(), postgres


def _spent(
    before: tuple[float, float | None], after: tuple[float, float | None]
) -> tuple[float, float | None]:
    python = after[0] - before[0]
    if before[1] is None or after[1] is None:
        return python, None
    return python, after[1] - before[1]


async def _drop(stack: Stack) -> None:
    """Drop the scratch database; autovacuum may still be busy on it after 200k rows."""
    for attempt in range(10):
        try:
            await stack.destroy()
            return
        except asyncpg.InsufficientPrivilegeError:
            if attempt == 9:
                raise
            await asyncio.sleep(2)


async def run(quick: bool = False) -> dict[str, object]:
    n = 20_000 if quick else 200_000
    stack = scratch_stack()
    settings = await stack.create_database("datasync")
    period = Period.of(datetime.now(UTC).date()).shift(-1)
    ids = people(n)
    dsn = settings.db_url.replace("postgresql+asyncpg", "postgresql")
    conn = await asyncpg.connect(dsn)
    try:
        # Half the people are in the register (4 per household), half are not.
        index = [
            (str(uuid.UUID(int=i // 4 + 1)), id_hash(x, settings.pii_key), datetime.now(UTC))
            for i, x in enumerate(ids[: n // 2])
        ]
        await conn.copy_records_to_table(
            "person_index", records=index, columns=["household_id", "id_hash", "since"]
        )
        await conn.execute("ANALYZE person_index")

        json_rows = rows("J", ids, period)
        csv_rows = rows("C", ids, period)
        copy_rows = [
            (r[0], r[1], r[2], date.fromisoformat(r[3]), *(Decimal(v) for v in r[4:]))
            for r in rows("R", ids, period)
        ]
        bodies = [
            orjson.dumps(
                {
                    "batch_id": f"json-{start // BATCH}",
                    "period": str(period),
                    "records": [
                        dict(zip(HEADERS, r, strict=True)) for r in json_rows[start : start + BATCH]
                    ],
                }
            )
            for start in range(0, n, BATCH)
        ]
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(HEADERS)
        writer.writerows(csv_rows)
        csv_bytes = out.getvalue().encode()
        xlsx_bytes = xlsx_file(HEADERS, rows("X", ids, period))
        bomb = xlsx_bomb()
        del json_rows, csv_rows, out
        rss = PeakRss()

        app = create(settings, background=False)
        headers = stack.headers("feeds:medical")
        meter = CpuMeter(conn, stack.db_name("datasync"))
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(
                transport=transport, base_url="http://bench", timeout=600
            ) as client:
                # Open the pool's connections first: the CPU of a backend that starts
                # mid-phase would not be counted.
                await client.get("/readyz")
                cpu_before = await meter.read()
                rss.start()
                started = time.perf_counter()
                for body in bodies:
                    r = await client.post(
                        "/v1/feeds/medical/batches",
                        content=body,
                        headers={**headers, "content-type": "application/json"},
                    )
                    assert r.status_code == 201, r.text
                    assert r.json()["accepted"] == BATCH, r.text
                json_s = time.perf_counter() - started
                cpu_after = await meter.read()
                json_cpu = _spent(cpu_before, cpu_after)
                json_rss = rss.peak_mb()
                json_growth = rss.growth_mb()

                async def send_file(
                    batch_id: str, name: str, content: bytes
                ) -> tuple[httpx.Response, float, tuple[float, float | None], float, float]:
                    """One file through the endpoint: the answer, its wall seconds, the
                    CPU spent, the peak RSS and its growth over the phase."""
                    cpu_before = await meter.read()
                    rss.start()
                    started = time.perf_counter()
                    r = await client.post(
                        "/v1/feeds/medical/batches",
                        data={"batch_id": batch_id, "period": str(period)},
                        files={"file": (name, content, "application/octet-stream")},
                        headers=headers,
                    )
                    wall = time.perf_counter() - started
                    cpu = _spent(cpu_before, await meter.read())
                    return r, wall, cpu, rss.peak_mb(), rss.growth_mb()

                r, csv_s, csv_cpu, csv_rss, csv_growth = await send_file(
                    "csv-all", "medical.csv", csv_bytes
                )
                assert r.status_code == 201, r.text
                summary = r.json()
                assert summary["accepted"] == n and summary["matched"] == n // 2, summary
                r, xlsx_s, xlsx_cpu, xlsx_rss, xlsx_growth = await send_file(
                    "xlsx-all", "medical.xlsx", xlsx_bytes
                )
                assert r.status_code == 201, r.text
                assert r.json()["accepted"] == n and r.json()["header_row"] == 2, r.json()
                r, bomb_s, _, bomb_rss, bomb_growth = await send_file("bomb", "bomb.xlsx", bomb)
                assert r.status_code == 413, r.text

        events = await conn.fetchval("SELECT count(*) FROM outbox")

        # The baseline is short, so it runs three times (fresh table each) and the
        # median counts: one burst of load from elsewhere should not make the ratio.
        copies = []
        for attempt in range(3):
            await conn.execute(
                f"CREATE TABLE bare_copy_{attempt} (record_id text, id_number text, name text,"
                " settled_on date, total_cost numeric, insurance_paid numeric,"
                " assistance_paid numeric, out_of_pocket numeric)"
            )
            cpu_before = await meter.read([conn.get_server_pid()])
            started = time.perf_counter()
            await conn.copy_records_to_table(
                f"bare_copy_{attempt}", records=copy_rows, columns=HEADERS
            )
            wall = time.perf_counter() - started
            copies.append((wall, _spent(cpu_before, await meter.read([conn.get_server_pid()]))))
        copy_s, copy_cpu = sorted(copies, key=lambda c: c[0])[1]
    finally:
        await conn.close()
        await _drop(stack)

    copy_rate = n / copy_s
    result: dict[str, object] = {
        "records": n,
        "json_batches_of_10k_records_per_s": round(n / json_s),
        "csv_one_file_records_per_s": round(n / csv_s),
        "raw_copy_records_per_s": round(copy_rate),
        "xlsx_one_file_records_per_s": round(n / xlsx_s),
        "json_to_copy_ratio": round(n / json_s / copy_rate, 3),
        "csv_to_copy_ratio": round(n / csv_s / copy_rate, 3),
        "xlsx_to_copy_ratio": round(n / xlsx_s / copy_rate, 3),
        "outbox_events": events,
        "json_peak_rss_mb": json_rss,
        "csv_peak_rss_mb": csv_rss,
        "xlsx_peak_rss_mb": xlsx_rss,
        "xlsx_bomb_bytes": len(bomb),
        "xlsx_bomb_refused_in_s": round(bomb_s, 3),
        "xlsx_bomb_peak_rss_mb": bomb_rss,
        "json_rss_growth_mb": json_growth,
        "csv_rss_growth_mb": csv_growth,
        "xlsx_rss_growth_mb": xlsx_growth,
        "xlsx_bomb_rss_growth_mb": bomb_growth,
    }
    cpu = {"json": json_cpu, "csv": csv_cpu, "xlsx": xlsx_cpu, "raw_copy": copy_cpu}
    for name, (python, postgres) in cpu.items():
        result[f"{name}_cpu_python_s"] = round(python, 2)
        if postgres is not None:
            result[f"{name}_cpu_postgres_s"] = round(postgres, 2)
    totals = {k: v[0] + v[1] for k, v in cpu.items() if v[1] is not None}
    if len(totals) == 4:
        # records per CPU second, ingest against COPY: the ratio without the neighbours
        result["json_to_copy_cpu_ratio"] = round(totals["raw_copy"] / totals["json"], 3)
        result["csv_to_copy_cpu_ratio"] = round(totals["raw_copy"] / totals["csv"], 3)
        result["xlsx_to_copy_cpu_ratio"] = round(totals["raw_copy"] / totals["xlsx"], 3)
    print(
        f"datasync: {n} medical records (half matched); JSON batches of 10k"
        f" {result['json_batches_of_10k_records_per_s']}/s, one CSV"
        f" {result['csv_one_file_records_per_s']}/s, one XLSX"
        f" {result['xlsx_one_file_records_per_s']}/s, raw COPY {result['raw_copy_records_per_s']}/s;"
        f" ratio JSON/COPY {result['json_to_copy_ratio']}, CSV/COPY {result['csv_to_copy_ratio']},"
        f" XLSX/COPY {result['xlsx_to_copy_ratio']} (aim JSON, CSV >= 0.30, XLSX >= 0.10);"
        f" {events} outbox events"
    )
    print(
        f"datasync peak RSS MB (growth in the phase): JSON {json_rss} (+{json_growth}),"
        f" CSV {csv_rss} (+{csv_growth}), XLSX {xlsx_rss} (+{xlsx_growth}); an XLSX bomb of"
        f" {len(bomb)} bytes (shared strings 232 MB) refused in {bomb_s:.3f} s, peak RSS"
        f" {bomb_rss} MB (+{bomb_growth})"
    )
    print(
        "datasync CPU s (python + postgres): "
        + ", ".join(
            f"{name} {python:.2f} + {'?' if postgres is None else f'{postgres:.2f}'}"
            for name, (python, postgres) in cpu.items()
        )
        + (
            f"; CPU ratio JSON/COPY {result['json_to_copy_cpu_ratio']},"
            f" CSV/COPY {result['csv_to_copy_cpu_ratio']}, XLSX/COPY {result['xlsx_to_copy_cpu_ratio']}"
            if len(totals) == 4
            else ""
        )
    )
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    asyncio.run(run(quick=parser.parse_args().quick))
