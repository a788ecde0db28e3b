"""Funds: double-entry ledger, city/town split, no balance below zero under concurrent
grants, Idempotency-Key on money-moving requests."""

from __future__ import annotations

import asyncio
import uuid
from datetime import date
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from backstop.contracts.registry import MemberSnapshot
from services.assistance.models import LedgerEntry
from tests.assistance.conftest import TOWN, Assistance
from tests.support import read_topic

pytestmark = pytest.mark.integration


async def make_fund(a: Assistance, level: str, kind: str, town: str | None = None) -> str:
    body = {
        "code": f"{kind}-{uuid.uuid4().hex[:8]}",
        "name": f"{kind} fund",
        "level": level,
        "kind": kind,
    }
    if town:
        body["town_code"] = town
    r = await a.client.post("/v1/funds", json=body, headers=a.rw)
    assert r.status_code == 201, r.text
    return r.json()["id"]


async def deposit(a: Assistance, fund_id: str, amount: str) -> None:
    r = await a.client.post(
        f"/v1/funds/{fund_id}/deposits",
        json={"amount": amount, "donor": "慈善协会", "received_on": "2026-01-05"},
        headers={**a.rw, "Idempotency-Key": uuid.uuid4().hex},
    )
    assert r.status_code == 201, r.text


async def test_fifty_concurrent_grants_against_a_fund_that_can_pay_ten(a: Assistance) -> None:
    town = "441881199"
    hid = (
        await a.household(region_code=town + "001", town_code=town, monitoring_status="monitored")
    ).household_id
    city = await make_fund(a, "city", "charity")
    town_fund = await make_fund(a, "town", "town", town)
    await deposit(a, city, "1000.00")  # city pays half of 200: exactly ten grants
    await deposit(a, town_fund, "50000.00")

    async def pay(i: int) -> int:
        r = await a.client.post(
            "/v1/grants",
            json={
                "household_id": hid,
                "amount": "200.00",
                "purpose": f"临时救助 {i}",
                "granted_by": "市扶贫办",
                "city_fund_id": city,
                "town_fund_id": town_fund,
            },
            headers={**a.rw, "Idempotency-Key": f"grant-{uuid.uuid4().hex}"},
        )
        assert r.status_code in (201, 409), r.text
        return r.status_code

    statuses = await asyncio.gather(*(pay(i) for i in range(50)))
    assert statuses.count(201) == 10 and statuses.count(409) == 40
    funds = {f["id"]: f for f in (await a.client.get("/v1/funds", headers=a.rw)).json()["items"]}
    assert Decimal(funds[city]["balance"]) == 0
    assert Decimal(funds[town_fund]["balance"]) == Decimal("49000.00")  # nothing half-done
    statement = (await a.client.get(f"/v1/funds/{city}/statement", headers=a.rw)).json()
    assert Decimal(statement["total_in"]) == 1000 and Decimal(statement["total_out"]) == 1000
    assert Decimal(statement["closing_balance"]) == 0
    assert len(statement["lines"]) == 11
    assert all(Decimal(line["balance_after"]) >= 0 for line in statement["lines"])
    paid = await read_topic(
        a.settings,
        "assistance.decisions",
        min_count=10,
        match=lambda e: e.subject == hid and e.type == "backstop.assistance.grant.paid.v1",
    )
    assert len(paid) == 10 and {e.data["amount"] for e in paid} == {"200.00"}  # one per grant
    async with a.runtime.sessions() as session:  # double entry: every transaction balances
        unbalanced = await session.scalar(
            select(func.count()).select_from(
                select(LedgerEntry.txn_id)
                .group_by(LedgerEntry.txn_id)
                .having(func.sum(LedgerEntry.amount) != 0)
                .subquery()
            )
        )
    assert unbalanced == 0


async def test_idempotency_key_replays_and_refuses_another_body(a: Assistance) -> None:
    hid = (await a.household(monitoring_status="monitored")).household_id
    city = await make_fund(a, "city", "named")
    town_fund = await make_fund(a, "town", "town", TOWN)
    await deposit(a, city, "500.00")
    await deposit(a, town_fund, "500.00")
    body = {
        "household_id": hid,
        "amount": "101.01",
        "purpose": "医疗救助",
        "granted_by": "市扶贫办",
        "city_fund_id": city,
        "town_fund_id": town_fund,
    }
    key = {**a.rw, "Idempotency-Key": "retry-" + uuid.uuid4().hex}
    first, second = await asyncio.gather(
        a.client.post("/v1/grants", json=body, headers=key),
        a.client.post("/v1/grants", json=body, headers=key),
    )
    assert first.status_code == second.status_code == 201
    assert first.json() == second.json()
    assert first.json()["city_part"] == "50.51" and first.json()["town_part"] == "50.50"
    funds = {f["id"]: f for f in (await a.client.get("/v1/funds", headers=a.rw)).json()["items"]}
    assert Decimal(funds[city]["balance"]) == Decimal("449.49")  # paid once
    r = await a.client.post("/v1/grants", json={**body, "amount": "5.00"}, headers=key)
    assert r.status_code == 422
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["errors"][0]["loc"] == ["header", "Idempotency-Key"]
    r = await a.client.post("/v1/grants", json=body, headers=a.rw)  # no key
    assert r.status_code == 422
    r = await a.client.post(
        "/v1/grants", json={**body, "amount": "-1"}, headers={**a.rw, "Idempotency-Key": "k" * 10}
    )
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["body", "amount"]
    big = {**body, "amount": "5000.00"}
    r = await a.client.post("/v1/grants", json=big, headers={**a.rw, "Idempotency-Key": "b" * 10})
    assert r.status_code == 409
    r = await a.client.post(
        "/v1/grants",
        json=body,
        headers={**a.headers("assistance:write"), "Idempotency-Key": "c" * 9},
    )
    assert r.status_code == 403  # funds:write needed


async def test_policy_is_versioned_and_only_the_county_changes_it(a: Assistance) -> None:
    r = await a.client.get("/v1/policy", headers=a.rw)
    assert r.status_code == 200 and r.json()["verification_due_days"] == 7
    change = {"changed_by": "县扶贫办", "policy": {"city_share_by_town": {"441881188": "0.7"}}}
    town = a.headers("assistance:read", "assistance:write", regions=(TOWN,))
    assert (await a.client.put("/v1/policy", json=change, headers=town)).status_code == 403
    r = await a.client.put("/v1/policy", json=change, headers=a.rw)
    assert r.status_code == 200, r.text
    assert r.json()["version"] >= 1 and r.json()["city_share_by_town"] == {"441881188": "0.7"}
    bad = {"changed_by": "x", "policy": {"verification_due_days": 0}}
    r = await a.client.put("/v1/policy", json=bad, headers=a.rw)
    assert r.status_code == 422
    assert r.json()["errors"][0]["loc"] == ["body", "policy", "verification_due_days"]
    r = await a.client.put(
        "/v1/policy", json={"changed_by": "x", "policy": {"nope": 1}}, headers=a.rw
    )
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["body", "policy", "nope"]


async def test_the_city_town_split_pays_only_assistance_recipients(a: Assistance) -> None:
    # Seed 三(二): 对救助对象补助资金，由市镇两级按比例给予分担.
    city = await make_fund(a, "city", "named")
    town_fund = await make_fund(a, "town", "town", TOWN)
    await deposit(a, city, "500.00")
    await deposit(a, town_fund, "500.00")
    ordinary = (await a.household()).household_id  # a 脱贫户, neither monitored nor 特困
    body = {"household_id": ordinary, "amount": "100.00", "purpose": "临时救助",
            "granted_by": "市扶贫办", "city_fund_id": city, "town_fund_id": town_fund}  # fmt: skip
    r = await a.client.post(
        "/v1/grants", json=body, headers={**a.rw, "Idempotency-Key": uuid.uuid4().hex}
    )
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["body", "household_id"]
    assert "救助对象" in r.json()["errors"][0]["msg"]
    # A member of the 4类特困群体 makes the household a 救助对象.
    hardship = await a.household(
        members=[
            MemberSnapshot(person_id=str(uuid.uuid4()), id_hash="1" * 64, relation="head",
                           sex="female", birth_date=date(1950, 1, 1),
                           special_groups=["disabled_without_carer"])
        ]
    )  # fmt: skip
    r = await a.client.post(
        "/v1/grants", json={**body, "household_id": hardship.household_id},
        headers={**a.rw, "Idempotency-Key": uuid.uuid4().hex},
    )  # fmt: skip
    assert r.status_code == 201, r.text
    # The county may override, with its reason kept on the grant.
    reason = "县扶贫办会议决定：因火灾临时救助"
    r = await a.client.post(
        "/v1/grants", json={**body, "override_reason": reason},
        headers={**a.rw, "Idempotency-Key": uuid.uuid4().hex},
    )  # fmt: skip
    assert r.status_code == 201 and r.json()["override_reason"] == reason
