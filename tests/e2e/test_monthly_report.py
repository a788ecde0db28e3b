"""月汇报 end to end (seed 四(一): 月走访、月汇报): households registered in registry reach
assistance through Kafka; a cadre logs 40 home visits on one day and the town's report of
last month shows them as a signal, with the due, contacted and not-reached counts; the
town signs it off; another town's missing report is reminded by notify to its office and
escalated to its leader after the policy's days, until it signs."""

from __future__ import annotations

import asyncio
import random
from datetime import datetime, timedelta
from typing import Any

import pytest

from backstop.db import make_engine, make_session_factory
from backstop.requests import Period
from services.assistance import domain, monthly_reports
from tests.e2e.system import System
from tests.e2e.test_quality import id_number
from tests.support import wait_for

pytestmark = pytest.mark.integration

TOWN_A, TOWN_B = "441881101", "441881001"
OFFICER = {"role": "assistance_officer", "name": "李干部", "phone": "13800138001"}


async def register(system: System, village: str, n: int, rng: random.Random) -> list[str]:
    sem = asyncio.Semaphore(8)
    async with system.client("registry", "registry:write") as registry:

        async def one(i: int) -> str | None:
            born = datetime(1960 + rng.randint(0, 30), rng.randint(1, 12), rng.randint(1, 28))
            body = {
                "region_code": village, "type": "alleviated",
                "annual_income": {"year": 2025, "total": 40000},
                "members": [{"id_number": id_number(rng, born.date(), male=True),
                             "name": f"户主{i}", "relation": "head"}],
                "contacts": [OFFICER],
            }  # fmt: skip
            async with sem:
                r = await registry.post("/v1/households", json=body)
            if r.status_code == 409:  # a random ID number taken already
                return None
            assert r.status_code == 201, r.text
            return str(r.json()["id"])

        created = await asyncio.gather(*(one(i) for i in range(n)))
    return [h for h in created if h]


async def test_monthly_report_signals_sign_off_and_missing_report(system: System) -> None:
    rng = random.Random()
    last = Period.of(domain.today()).shift(-1)
    county = system.client("assistance", "assistance:read", "assistance:write")
    town_a = system.client("assistance", "assistance:read", "assistance:write", regions=(TOWN_A,))
    async with county, town_a:
        # Last month's report is due the day the month ends (so it is late now).
        r = await county.put(
            "/v1/policy", json={"changed_by": "县扶贫办", "policy": {"monthly_report_due_days": 0}}
        )
        assert r.status_code == 200, r.text
        households = await register(system, TOWN_A + "001", 42, rng)
        assert len(await register(system, TOWN_B + "001", 1, rng)) == 1
        report_path = f"/v1/reports/monthly/{last}/towns/{TOWN_A}"

        async def all_known() -> Any:
            body = (await town_a.get(report_path)).json()
            return body if body["contact"]["due"] == len(households) else None

        await wait_for(all_known, timeout=60, interval=0.5, message="households in assistance")

        # 李干部 logs 40 home visits on the month's last day; two households are missed.
        day = str(last.last_day)
        for i, household_id in enumerate(households[:40]):
            visit = {"household_id": household_id, "channel": "home", "visitor": "李干部",
                     "visited_on": day, "findings": f"第{i}户：家庭收入稳定，两不愁三保障正常"}  # fmt: skip
            r = await town_a.post("/v1/visits", json=visit)
            assert r.status_code == 201, r.text

        report = (await town_a.get(report_path)).json()
        assert report["status"] == "late"
        contact = report["contact"]
        assert (contact["due"], contact["contacted"], contact["not_reached"]) == (
            len(households), 40, len(households) - 40
        )  # fmt: skip
        assert sorted(contact["not_reached_households"]) == sorted(households[40:])
        assert report["signals"]["busy_days"] == [
            {"visitor": "李干部", "visited_on": day, "visits": 40}
        ]
        [li] = [p for p in report["people"] if p["name"] == "李干部"]
        assert (li["visits"], li["home_visits"], li["signals"]["busy_days"]) == (40, 40, 1)

        # The town signs off its report; the county sees it signed, town B's missing.
        r = await town_a.post(f"{report_path}/sign-off", json={"signed_off_by": "镇长 陈某"})
        assert r.status_code == 201, r.text
        assert r.json()["days_late"] >= 1
        overview = (await county.get(f"/v1/reports/monthly/{last}")).json()
        status = {t["town_code"]: t["status"] for t in overview["towns"]}
        assert status[TOWN_A] == "signed_off" and status[TOWN_B] == "late"

    # Town B's office and leader in notify's directory (on the local channel).
    async with system.client("notify", "notify:admin") as admin:
        for kind, name in (("town", "镇扶贫办"), ("town_leader", "镇长")):
            body = {"name": name, "region_code": TOWN_B, "channel": "local"}
            r = await admin.put(f"/v1/recipients/{kind}/{TOWN_B}", json=body)
            assert r.status_code == 200, r.text

    # The late-report job (run now rather than at its next tick) and notify's reminders.
    # (the service's own job may claim it first at its tick: the reminder is the same)
    engine = make_engine(system.settings("assistance").db_url, pool_size=1)
    try:
        await monthly_reports.emit_late_reports(make_session_factory(engine))
    finally:
        await engine.dispose()
    async with system.client("notify", "notify:read") as notify:

        async def reminded() -> Any:
            r = await notify.get("/v1/reminders", params={"recipient": f"town:{TOWN_B}"})
            found = [x for x in r.json()["items"] if x["kind"] == "monthly_report_overdue"]
            return found or None

        [office] = await wait_for(reminded, timeout=60, interval=0.5, message="the town reminded")
        assert f"乡镇{TOWN_B}的{last.year}年{last.month}月月汇报" in office["body"]
        r = await notify.get("/v1/reminders", params={"recipient": f"town_leader:{TOWN_B}"})
        [leader] = [x for x in r.json()["items"] if x["kind"] == "monthly_report_escalated"]
        assert leader["status"] == "pending" and leader["title"].startswith("督办")
        # escalated after the policy's 3 days, unless the town signs first
        waits = datetime.fromisoformat(leader["next_attempt_at"]) - datetime.fromisoformat(
            office["created_at"]
        )
        assert timedelta(days=2, hours=23) < waits < timedelta(days=3, hours=1)
        r = await notify.get("/v1/reminders", params={"recipient": f"town:{TOWN_A}"})
        assert not [x for x in r.json()["items"] if x["kind"] == "monthly_report_overdue"]

        # Town B signs late: its leader's pending escalation is moot.
        town_b = system.client("assistance", "assistance:write", regions=(TOWN_B,))
        async with town_b:
            r = await town_b.post(
                f"/v1/reports/monthly/{last}/towns/{TOWN_B}/sign-off",
                json={"signed_off_by": "镇长 黄某"},
            )
            assert r.status_code == 201, r.text

        async def cancelled() -> bool:
            r = await notify.get(f"/v1/reminders/{leader['id']}")
            return bool(r.json()["status"] == "cancelled")

        await wait_for(cancelled, timeout=60, interval=0.5, message="the escalation cancelled")
