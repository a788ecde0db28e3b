"""帮扶资金: funds, deposits and grants split between city and town (市镇两级按比例分担),
double-entry ledger, statements, and idempotent replays."""

from __future__ import annotations

import hashlib
from datetime import date
from decimal import Decimal
from typing import Any

import orjson
from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from backstop import outbox
from backstop.auth import Principal
from backstop.contracts.assistance import GrantPaid
from backstop.db import SessionFactory, unit_of_work
from backstop.errors import Problem, invalid
from services.assistance import domain
from services.assistance.common import household_in_region, load_policy, make_assistance_event
from services.assistance.models import (
    DepositCreate,
    Fund,
    FundCreate,
    FundPublic,
    FundStatement,
    Grant,
    GrantCreate,
    GrantPublic,
    IdempotencyKey,
    LedgerEntry,
    StatementLine,
    new_id,
    utcnow,
)


def request_hash(path: str, body: Any) -> str:
    return hashlib.sha256(
        path.encode() + b"\n" + orjson.dumps(body, option=orjson.OPT_SORT_KEYS)
    ).hexdigest()


async def _replay(
    session: AsyncSession, *, key: str, fingerprint: str
) -> tuple[int, dict[str, Any]] | None:
    """Claim an idempotency key in this transaction. A concurrent request with the same key
    waits on the unique index until this one commits, then replays its response."""
    inserted = await session.scalar(
        insert(IdempotencyKey)
        .values(key=key, request_hash=fingerprint, status_code=0, response={}, created_at=utcnow())
        .on_conflict_do_nothing()
        .returning(col(IdempotencyKey.key))
    )
    if inserted is not None:
        return None
    stored = await session.get(IdempotencyKey, key)
    assert stored is not None
    if stored.request_hash != fingerprint:
        raise Problem(
            422,
            "this Idempotency-Key was used with a different request",
            errors=[{"loc": ["header", "Idempotency-Key"], "msg": "reused with another body"}],
        )
    return stored.status_code, stored.response


async def _remember(
    session: AsyncSession, *, key: str, status_code: int, response: dict[str, Any]
) -> None:
    await session.execute(
        update(IdempotencyKey)
        .where(col(IdempotencyKey.key) == key)
        .values(status_code=status_code, response=response)
    )


async def create_fund(sessions: SessionFactory, *, body: FundCreate) -> Fund:
    if body.level == "town" and not body.town_code:
        raise invalid(["body", "town_code"], "a town fund names its town")
    if body.level == "city" and body.kind == "town":
        raise invalid(["body", "kind"], "a town fund is at town level")
    async with unit_of_work(sessions) as session:
        if await session.scalar(select(col(Fund.id)).where(col(Fund.code) == body.code)):
            raise Problem(409, f"fund {body.code} already exists")
        fund = Fund(**body.model_dump(), balance=Decimal("0.00"))
        session.add(fund)
    return fund


async def list_funds(session: AsyncSession, *, principal: Principal) -> list[Fund]:
    query = select(Fund).order_by(col(Fund.level), col(Fund.code))
    funds = list((await session.execute(query)).scalars())
    return [f for f in funds if f.town_code is None or principal.can_see(f.town_code)]


async def _fund(session: AsyncSession, fund_id: str, loc: list[str | int]) -> Fund:
    fund = await session.get(Fund, fund_id)
    if fund is None:
        raise invalid(loc, "unknown fund", status=404 if loc[0] == "path" else 422)
    return fund


async def deposit(
    sessions: SessionFactory,
    *,
    fund_id: str,
    body: DepositCreate,
    idempotency_key: str,
    principal: Principal,
) -> tuple[int, dict[str, Any]]:
    """A donation or allocation into a fund: fund cash debit, donations credit."""
    async with unit_of_work(sessions) as session:
        key = f"{principal.sub}:{idempotency_key}"
        fingerprint = request_hash(f"deposit:{fund_id}", body.model_dump(mode="json"))
        replay = await _replay(session, key=key, fingerprint=fingerprint)
        if replay:
            return replay
        await _fund(session, fund_id, ["path", "fund_id"])
        txn = new_id()
        amount = domain.money(body.amount)
        balance = await session.scalar(
            update(Fund)
            .where(col(Fund.id) == fund_id)
            .values(balance=col(Fund.balance) + amount)
            .returning(col(Fund.balance))
        )
        memo = body.memo or f"捐赠/拨入：{body.donor}"
        session.add_all(
            [
                LedgerEntry(
                    txn_id=txn,
                    fund_id=fund_id,
                    account=f"fund:{fund_id}",
                    amount=amount,
                    kind="deposit",
                    memo=memo,
                    posted_on=body.received_on,
                ),
                LedgerEntry(
                    txn_id=txn,
                    fund_id=fund_id,
                    account=f"donations:{body.donor}",
                    amount=-amount,
                    kind="deposit",
                    memo=memo,
                    posted_on=body.received_on,
                ),
            ]
        )
        response = {
            "txn_id": txn,
            "fund_id": fund_id,
            "amount": str(amount),
            "balance": str(balance),
        }
        await _remember(session, key=key, status_code=201, response=response)
    return 201, response


async def grant(
    sessions: SessionFactory, *, body: GrantCreate, idempotency_key: str, principal: Principal
) -> tuple[int, dict[str, Any]]:
    """A grant to a household, split between a city fund and the town's fund by the
    configured ratio (市镇两级按比例分担). Each fund pays with a conditional UPDATE
    (`balance >= part`), so concurrent grants never take a balance below zero; either both
    parts are paid or neither (one transaction)."""
    async with unit_of_work(sessions) as session:
        key = f"{principal.sub}:{idempotency_key}"
        fingerprint = request_hash("grant", body.model_dump(mode="json"))
        replay = await _replay(session, key=key, fingerprint=fingerprint)
        if replay:
            return replay
        household = await household_in_region(session, body.household_id, principal)
        members = household.snapshot.get("members", [])
        groups = [g for m in members for g in m.get("special_groups", [])]
        # Grants are county acts already (api.py): the override needs only its reason.
        if body.override_reason is None and not domain.assistance_recipient(
            household.monitoring_status, groups
        ):
            raise invalid(
                ["body", "household_id"],
                "not a 救助对象 (neither monitored nor in a special-hardship group): "
                "the 市镇 split pays it only with the county's override_reason",
            )
        city = await _pick_fund(session, body.city_fund_id, level="city", town_code=None)
        town = await _pick_fund(
            session, body.town_fund_id, level="town", town_code=household.town_code
        )
        policy = await load_policy(session)
        amount = domain.money(body.amount)
        city_part, town_part = domain.split_grant(
            amount, policy.city_share_for(household.town_code)
        )
        granted_on = body.granted_on or domain.today()
        grant_row = Grant(
            household_id=household.household_id,
            region_code=household.region_code,
            amount=amount,
            city_fund_id=city.id,
            town_fund_id=town.id,
            city_part=city_part,
            town_part=town_part,
            purpose=body.purpose,
            granted_on=granted_on,
            granted_by=body.granted_by,
            override_reason=body.override_reason,
        )
        # Always lock funds in id order so two grants never deadlock.
        for fund, part in sorted(((city, city_part), (town, town_part)), key=lambda p: p[0].id):
            if part <= 0:
                continue
            paid = await session.scalar(
                update(Fund)
                .where(col(Fund.id) == fund.id, col(Fund.balance) >= part)
                .values(balance=col(Fund.balance) - part)
                .returning(col(Fund.id))
            )
            if paid is None:
                raise Problem(
                    409,
                    f"fund {fund.code} cannot pay {part}: the balance is too low",
                    title="Insufficient balance",
                    errors=[
                        {"loc": ["body", "amount"], "msg": f"exceeds the balance of {fund.code}"}
                    ],
                    fund_id=fund.id,
                )
            memo = f"救助补助：{body.purpose}"
            session.add_all(
                [
                    LedgerEntry(
                        txn_id=grant_row.id,
                        fund_id=fund.id,
                        account=f"fund:{fund.id}",
                        amount=-part,
                        kind="grant",
                        memo=memo,
                        posted_on=granted_on,
                    ),
                    LedgerEntry(
                        txn_id=grant_row.id,
                        fund_id=fund.id,
                        account=f"grants:{household.household_id}",
                        amount=part,
                        kind="grant",
                        memo=memo,
                        posted_on=granted_on,
                    ),
                ]
            )
        session.add(grant_row)
        paid = GrantPaid(
            grant_id=grant_row.id,
            household_id=household.household_id,
            region_code=household.region_code,
            amount=amount,
            granted_on=granted_on,
        )
        await outbox.publish(session, make_assistance_event(paid, household.household_id))
        response = GrantPublic.model_validate(grant_row).model_dump(mode="json")
        await _remember(session, key=key, status_code=201, response=response)
    return 201, response


async def _pick_fund(
    session: AsyncSession, fund_id: str | None, *, level: str, town_code: str | None
) -> Fund:
    loc: list[str | int] = ["body", f"{level}_fund_id"]
    if fund_id:
        fund = await _fund(session, fund_id, loc)
        if fund.level != level:
            raise invalid(loc, f"not a {level} fund")
        if level == "town" and fund.town_code != town_code:
            raise invalid(loc, "the town fund belongs to another town")
        return fund
    query = select(Fund).where(col(Fund.level) == level)
    if level == "town":
        query = query.where(col(Fund.town_code) == town_code)
    else:  # the charity association's fund first (慈善协会扶贫基金)
        query = query.order_by((col(Fund.kind) != "charity"), col(Fund.created_at))
    found = (await session.execute(query.limit(1))).scalar_one_or_none()
    if found is None:
        raise invalid(
            loc, f"no {level} fund set up" + (f" for town {town_code}" if town_code else "")
        )
    return found


async def statement(
    session: AsyncSession, *, fund_id: str, date_from: date | None, date_to: date | None
) -> FundStatement:
    fund = await _fund(session, fund_id, ["path", "fund_id"])
    cash = f"fund:{fund.id}"
    opening = Decimal("0.00")
    if date_from is not None:
        opening = domain.money(
            await session.scalar(
                select(func.coalesce(func.sum(LedgerEntry.amount), 0)).where(
                    col(LedgerEntry.account) == cash, col(LedgerEntry.posted_on) < date_from
                )
            )
            or 0
        )
    query = select(LedgerEntry).where(col(LedgerEntry.fund_id) == fund.id)
    if date_from is not None:
        query = query.where(col(LedgerEntry.posted_on) >= date_from)
    if date_to is not None:
        query = query.where(col(LedgerEntry.posted_on) <= date_to)
    entries = list(
        (
            await session.execute(query.order_by(col(LedgerEntry.posted_on), col(LedgerEntry.id)))
        ).scalars()
    )
    counterparts = {e.txn_id: e.account for e in entries if e.account != cash}
    balance, total_in, total_out = opening, Decimal("0.00"), Decimal("0.00")
    lines = []
    for e in entries:
        if e.account != cash:
            continue
        balance += e.amount
        if e.amount > 0:
            total_in += e.amount
        else:
            total_out -= e.amount
        lines.append(
            StatementLine(
                txn_id=e.txn_id,
                posted_on=e.posted_on,
                kind=e.kind,
                counterparty=counterparts.get(e.txn_id, ""),
                memo=e.memo,
                amount=e.amount,
                balance_after=balance,
            )
        )
    return FundStatement(
        fund=FundPublic.model_validate(fund),
        date_from=date_from,
        date_to=date_to,
        opening_balance=opening,
        total_in=total_in,
        total_out=total_out,
        closing_balance=balance,
        lines=lines,
    )
