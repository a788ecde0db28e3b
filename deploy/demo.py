"""The demo behind `make run`: seeds the demo county, replays one month of generated feeds
from all four departments through the real datasync API, waits for the system to settle
and prints what happened. Talks to the running services over HTTP only (the seed writes
through the registry's own handlers, so its events leave through the outbox)."""

from __future__ import annotations

import asyncio
import csv
import io
import random
import time
from collections import Counter
from collections.abc import AsyncIterator
from datetime import date
from typing import Any

import httpx

from backstop.auth import SCOPES, issue_token
from backstop.idnumber import check_digit
from backstop.settings import PORTS, Settings, get_settings

PERIOD = "2026-10"
DEPARTMENTS = {"medical": "医保局", "disaster": "应急管理局", "civil_affairs": "民政局",
               "education": "教育局"}  # fmt: skip


def urls(ports: dict[str, int]) -> dict[str, str]:
    return {s: f"http://127.0.0.1:{p}" for s, p in ports.items()}


async def pages(
    client: httpx.AsyncClient, path: str, **params: Any
) -> AsyncIterator[dict[str, Any]]:
    cursor: str | None = None
    while True:
        query = {**params, "limit": 500, **({"cursor": cursor} if cursor else {})}
        r = await client.get(path, params=query)
        r.raise_for_status()
        body = r.json()
        for item in body["items"]:
            yield item
        cursor = body.get("next_cursor")
        if not cursor:
            return


async def collect(client: httpx.AsyncClient, path: str, **params: Any) -> list[dict[str, Any]]:
    return [item async for item in pages(client, path, **params)]


def fake_id_number(rng: random.Random) -> str:
    """A valid ID number of someone outside the register (for unmatched records)."""
    born = date(rng.randint(1950, 2010), rng.randint(1, 12), rng.randint(1, 28))
    first17 = f"441881{born:%Y%m%d}{rng.randint(0, 999):03d}"
    return first17 + check_digit(first17)


def generate_feeds(
    persons: list[dict[str, Any]], rng: random.Random
) -> dict[str, list[dict[str, Any]]]:
    """One month of department records: a share of the register's people plus a few
    people the register does not know."""
    feeds: dict[str, list[dict[str, Any]]] = {s: [] for s in DEPARTMENTS}
    for i, person in enumerate(persons):
        roll = rng.random()
        id_number, name = person["id_number"], person["name"]
        if roll < 0.08:
            total = round(rng.lognormvariate(8.6, 1.1), 2)
            insurance = round(total * rng.uniform(0.45, 0.7), 2)
            assistance = round(total * rng.uniform(0, 0.1), 2)
            feeds["medical"].append({
                "record_id": f"YB{PERIOD}-{i:06d}", "id_number": id_number, "name": name,
                "settled_on": f"{PERIOD}-{rng.randint(1, 28):02d}", "total_cost": total,
                "insurance_paid": insurance, "assistance_paid": assistance,
                "out_of_pocket": round(total - insurance - assistance, 2),
            })  # fmt: skip
        elif roll < 0.09:
            feeds["disaster"].append({
                "record_id": f"YJ{PERIOD}-{i:06d}", "id_number": id_number, "name": name,
                "occurred_on": f"{PERIOD}-{rng.randint(1, 28):02d}",
                "disaster_type": rng.choice(["flood", "typhoon", "landslide", "fire"]),
                "loss_amount": round(rng.lognormvariate(9.5, 1.0), 2),
                "housing_damaged": rng.random() < 0.3,
            })  # fmt: skip
        elif roll < 0.12:
            feeds["civil_affairs"].append({
                "record_id": f"MZ{PERIOD}-{i:06d}", "id_number": id_number, "name": name,
                "kind": rng.choice(["dibao", "dibao", "tekun", "temporary_assistance",
                                    "disability_subsidy"]),
                "status": "granted" if rng.random() < 0.85 else "terminated",
                "amount": round(rng.uniform(300, 1200), 2), "start_on": f"{PERIOD}-01",
            })  # fmt: skip
        elif roll < 0.15 and person["relation"] == "child":
            fees = round(rng.uniform(1500, 12000), 2)
            aid = round(fees * rng.uniform(0, 0.6), 2)
            feeds["education"].append({
                "record_id": f"JY{PERIOD}-{i:06d}", "id_number": id_number, "name": name,
                "stage": rng.choice(["primary", "junior", "senior", "vocational", "college"]),
                "term": "2026-autumn", "fees": fees, "aid_received": aid,
                "out_of_pocket": round(fees - aid, 2), "enrolled": rng.random() > 0.03,
            })  # fmt: skip
    for n in range(5):  # people the register does not know (yet)
        feeds["medical"].append({
            "record_id": f"YB{PERIOD}-X{n}", "id_number": fake_id_number(rng), "name": "王某",
            "settled_on": f"{PERIOD}-15", "total_cost": 30000.0, "insurance_paid": 18000.0,
            "assistance_paid": 0.0, "out_of_pocket": 12000.0,
        })  # fmt: skip
    return feeds


def to_csv(records: list[dict[str, Any]]) -> bytes:
    """The medical feed as a department would export it: Chinese headers, GB18030."""
    headers = {"record_id": "结算单号", "id_number": "身份证号", "name": "姓名",
               "settled_on": "结算日期", "total_cost": "医疗总费用", "insurance_paid": "基本医保支付",
               "assistance_paid": "医疗救助", "out_of_pocket": "个人自付"}  # fmt: skip
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(headers))
    writer.writerow(headers)
    writer.writerows(records)
    return out.getvalue().encode("gb18030")


async def settle(probe: Any, *, quiet_s: float = 4.0, timeout: float = 300.0) -> Any:
    """Poll `probe()` until its value stops changing for `quiet_s` seconds."""
    last, since, started = None, time.monotonic(), time.monotonic()
    while time.monotonic() - started < timeout:
        value = await probe()
        if value != last:
            last, since = value, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            return value
        await asyncio.sleep(1.0)
    return last


async def run(
    households: int = 2000,
    ports: dict[str, int] | None = None,
    seed: int = 20261128,
    registry_settings: Settings | None = None,
) -> dict[str, Any]:
    """Seed the county and send the demo month, or, when an earlier run did so, report
    the county as it stands. Never fails on its own earlier data."""
    from services.registry.seed import seed_households

    base = urls(ports or PORTS)
    settings = get_settings("registry")
    token = issue_token(settings, sub="demo", scopes=SCOPES, regions=["*"], ttl_s=3600)
    headers = {"Authorization": f"Bearer {token}"}
    started = time.monotonic()
    async with httpx.AsyncClient(headers=headers, timeout=120) as http:
        # Idempotent: a second run (or one after an interrupted seed) adds only what is missing.
        result = await seed_households(registry_settings or settings, households, seed)
        print(f"demo county: {result['created']} households seeded, "
              f"{result['existing']} already there")  # fmt: skip
        persons = [
            {**m, "household_id": h["id"]}
            for h in await collect(http, f"{base['registry']}/v1/households")
            for m in h["members"]
        ]
        # Wait until risk has a first assessment of every household (registry events consumed).
        n_households = len({p["household_id"] for p in persons})
        await settle(lambda: _count(http, f"{base['risk']}/v1/assessments"), quiet_s=3)

        feeds = generate_feeds(persons, random.Random(seed))
        summaries = []
        for source, records in feeds.items():
            if not records:
                continue
            token_source = issue_token(settings, sub=f"demo-{source}", scopes=[f"feeds:{source}"])
            auth = {"Authorization": f"Bearer {token_source}"}
            batch_id = f"{source}-{PERIOD}-demo"
            batch_url = f"{base['datasync']}/v1/feeds/{source}/batches"
            # A run before this one sent the month already: report it as it stands. Feeds
            # generated now may differ (the register changed since), which datasync would
            # rightly refuse as other content under the same batch id (409).
            r = await http.get(f"{batch_url}/{batch_id}", headers=auth)
            if r.status_code == 404:
                if source == "medical":  # the medical bureau sends its export file
                    r = await http.post(
                        batch_url, headers=auth, data={"batch_id": batch_id, "period": PERIOD},
                        files={"file": (f"{batch_id}.csv", to_csv(records), "text/csv")},
                    )  # fmt: skip
                else:
                    r = await http.post(
                        batch_url, headers=auth,
                        json={"batch_id": batch_id, "period": PERIOD, "records": records},
                    )  # fmt: skip
                if r.status_code == 409:  # sent meanwhile by another run
                    r = await http.get(f"{batch_url}/{batch_id}", headers=auth)
            else:
                print(f"  {source} batch {batch_id} already received: reporting it as stored")
            if r.status_code >= 400:
                raise RuntimeError(f"{source} batch refused: {r.status_code} {r.text[:500]}")
            summaries.append(r.json())

        async def pipeline_state() -> tuple[int, int, int]:
            return (
                await _count(http, f"{base['risk']}/v1/assessments", level="at_risk"),
                await _count(http, f"{base['assistance']}/v1/tasks"),
                await _count(http, f"{base['notify']}/v1/reminders"),
            )

        await settle(pipeline_state, quiet_s=6)
        assessments = await collect(http, f"{base['risk']}/v1/assessments")
        tasks = await collect(http, f"{base['assistance']}/v1/tasks")
        reminders = await collect(http, f"{base['notify']}/v1/reminders")

    levels = Counter(a["level"] for a in assessments)
    by_town: dict[str, Counter[str]] = {}
    for a in assessments:
        by_town.setdefault(a["region_code"][:9], Counter())[a["level"]] += 1
    report = {
        "households": n_households,
        "records_in": sum(s["received"] for s in summaries),
        "accepted": sum(s["accepted"] for s in summaries),
        "rejected": sum(s["rejected"] for s in summaries),
        "matched": sum(s["matched"] for s in summaries),
        "unmatched": sum(s["unmatched"] for s in summaries),
        "levels": dict(levels),
        "tasks_opened": len(tasks),
        "reminders": len(reminders),
        "seconds": round(time.monotonic() - started, 1),
    }
    print(f"\n== demo month {PERIOD} ==")
    for s in summaries:
        print(f"  {DEPARTMENTS[s['source']]:<6} {s['source']:<14} received {s['received']:>5}  "
              f"accepted {s['accepted']:>5}  matched {s['matched']:>5}  unmatched {s['unmatched']:>3}  "
              f"rejected {s['rejected']:>3}")  # fmt: skip
    print(f"  households per level: none {levels['none']}, watch {levels['watch']}, "
          f"at_risk {levels['at_risk']}")  # fmt: skip
    print("  per town (none / watch / at_risk):")
    for town, counts in sorted(by_town.items()):
        print(f"    {town}  {counts['none']:>5} / {counts['watch']:>4} / {counts['at_risk']:>4}")
    print(f"  verification tasks opened: {len(tasks)}; reminders recorded: {len(reminders)}")
    return report


async def _count(http: httpx.AsyncClient, url: str, **params: Any) -> int:
    return len(await collect(http, url, **params))


if __name__ == "__main__":
    asyncio.run(run())
