"""回头看 campaigns: the county office reviews a selection of households (a region prefix
plus household types and monitoring statuses) by a deadline. One review task per
household, assigned to its village; launching the same campaign again never doubles a
task (a unique index on campaign and household); progress by town and by assignee.
Review tasks are completed like verifications (`POST /v1/tasks/{id}/complete`): what they
observe flows back to registry as a finding, and overdue ones are emitted for notify."""

from __future__ import annotations

import hashlib
from datetime import date, datetime
from typing import Annotated, Any

import orjson
from fastapi import APIRouter
from pydantic import BaseModel, BeforeValidator, Field
from sqlalchemy import Date, String, case, cast, func, literal, select, text
from sqlalchemy.dialects.postgresql import JSONB, insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from backstop import outbox
from backstop.app import RuntimeDep, SessionDep
from backstop.auth import Level, Principal, require
from backstop.contracts.assistance import TaskOpened
from backstop.db import SessionFactory, unit_of_work
from backstop.errors import Problem, invalid
from backstop.requests import fold
from services.assistance import common, domain
from services.assistance.models import Campaign, Household, Strict, Task, new_id, utcnow
from services.assistance.tasks import task_data

router = APIRouter(prefix="/v1", tags=["campaigns"])
READ = require("assistance:read")
WRITE = require("assistance:write")


class CampaignCreate(Strict):
    name: str = Field(min_length=1, max_length=200)
    code: str | None = Field(default=None, max_length=80, pattern=r"^[A-Za-z0-9_.:-]+$")
    region_prefix: Annotated[str, BeforeValidator(fold), Field(pattern=r"^[0-9]{2,12}$")]
    household_types: list[str] = Field(default_factory=list, max_length=10)
    monitoring_statuses: list[str] = Field(default_factory=list, max_length=10)
    deadline: date
    launched_by: str = Field(min_length=1, max_length=100)


class CampaignPublic(BaseModel):
    id: str
    code: str
    name: str
    region_prefix: str
    household_types: list[str]
    monitoring_statuses: list[str]
    deadline: date
    launched_by: str
    launched_at: datetime
    tasks: int
    generated: int = 0  # by this launch
    selected: int = 0  # households in the selection when launched
    status: str = "ready"  # "generating" while its tasks are still being made, chunk by chunk


def campaign_code(body: CampaignCreate) -> str:
    """The same campaign launched twice has the same code even when the client gives none."""
    if body.code:
        return body.code
    selection = orjson.dumps(
        [
            body.name,
            body.region_prefix,
            sorted(body.household_types),
            sorted(body.monitoring_statuses),
            body.deadline.isoformat(),
        ]
    )
    return "rc-" + hashlib.sha256(selection).hexdigest()[:24]


def _same_selection(campaign: Campaign, body: CampaignCreate) -> bool:
    return (
        campaign.region_prefix == body.region_prefix
        and sorted(campaign.household_types) == sorted(body.household_types)
        and sorted(campaign.monitoring_statuses) == sorted(body.monitoring_statuses)
        and campaign.deadline == body.deadline
    )


def _selection(campaign: Campaign, principal: Principal) -> Any:
    query = select(Household).where(
        col(Household.region_code).startswith(campaign.region_prefix),
        principal.region_clause(col(Household.region_code)),
    )
    if campaign.household_types:
        query = query.where(col(Household.type).in_(campaign.household_types))
    if campaign.monitoring_statuses:
        query = query.where(col(Household.monitoring_status).in_(campaign.monitoring_statuses))
    return query


def _validate(body: CampaignCreate, principal: Principal) -> None:
    for i, t in enumerate(body.household_types):
        if t not in domain.CAMPAIGN_HOUSEHOLD_TYPES:
            raise invalid(["body", "household_types", i], "unknown household type")
    for i, s in enumerate(body.monitoring_statuses):
        if s not in domain.CAMPAIGN_MONITORING:
            raise invalid(["body", "monitoring_statuses", i], "unknown monitoring status")
    if body.deadline <= domain.today():
        raise invalid(["body", "deadline"], "the deadline must be in the future")
    if len(body.region_prefix) < 9:  # wider than one town's 9-digit code
        principal.require_level(Level.COUNTY, "a campaign over more than one town")
    principal.require_region(body.region_prefix)


# Review tasks generated in one transaction: a county-wide campaign of 23k households is
# a dozen chunks, each with its task.opened events, never one 23k-row request.
CHUNK = 2000


async def launch(
    sessions: SessionFactory, *, body: CampaignCreate, principal: Principal
) -> CampaignPublic:
    """Create the campaign (or find it again) and generate the first chunk of the review
    tasks it lacks (INSERT … SELECT, with their task.opened events); the `campaign-chunks`
    job makes the rest, and the campaign shows `status` and `tasks` of `selected`."""
    _validate(body, principal)
    code = campaign_code(body)
    async with unit_of_work(sessions) as session:
        # A concurrent launch of the same campaign waits here for the first to commit.
        created = await session.scalar(
            insert(Campaign)
            .values(
                id=new_id(),
                code=code,
                name=body.name,
                region_prefix=body.region_prefix,
                household_types=sorted(body.household_types),
                monitoring_statuses=sorted(body.monitoring_statuses),
                deadline=body.deadline,
                launched_by=body.launched_by,
                launched_at=utcnow(),
            )
            .on_conflict_do_nothing(index_elements=["code"])
            .returning(col(Campaign.id))
        )
        campaign = (
            await session.execute(
                select(Campaign).where(col(Campaign.code) == code).with_for_update()
            )
        ).scalar_one()
        if created is None and not _same_selection(campaign, body):
            raise Problem(409, f"campaign {code} exists with another selection")
        selected = await session.scalar(
            select(func.count()).select_from(_selection(campaign, principal).subquery())
        )
        if created is not None and not selected:
            raise invalid(["body", "region_prefix"], "the selection has no household")
        campaign.scope_regions = list(principal.regions)
        campaign.selected = int(selected or 0)
        generated = await _generate_chunk(session, campaign)
        total = await _task_count(session, campaign.id)
        campaign.status = "ready" if generated < CHUNK else "generating"
    return _public(campaign, total, generated)


async def continue_campaigns(sessions: SessionFactory) -> int:
    """Generate the next chunk of every campaign still `generating`, each chunk in its own
    transaction (safe with several workers: SKIP LOCKED). Returns the tasks made."""
    made = 0
    while True:
        async with unit_of_work(sessions) as session:
            campaign = (
                await session.execute(
                    select(Campaign)
                    .where(col(Campaign.status) == "generating")
                    .order_by(col(Campaign.launched_at))
                    .limit(1)
                    .with_for_update(skip_locked=True)
                )
            ).scalar_one_or_none()
            if campaign is None:
                return made
            generated = await _generate_chunk(session, campaign)
            if generated < CHUNK:
                campaign.status = "ready"
            made += generated


async def _generate_chunk(session: AsyncSession, campaign: Campaign) -> int:
    """Up to CHUNK review tasks for selected households that have none yet, with events."""
    launcher = Principal(sub=campaign.launched_by, scopes=frozenset(),
                         regions=tuple(campaign.scope_regions))  # fmt: skip
    tasks = await _generate(session, campaign, launcher)
    await outbox.publish_many(
        session,
        [common.make_assistance_event(TaskOpened(**task_data(t)), t.household_id) for t in tasks],
    )
    return len(tasks)


async def _generate(session: AsyncSession, campaign: Campaign, principal: Principal) -> list[Task]:
    has_task = select(col(Task.id)).where(
        col(Task.campaign_id) == campaign.id, col(Task.household_id) == col(Household.household_id)
    )
    households = (
        _selection(campaign, principal)
        .where(~has_task.exists())
        .order_by(col(Household.household_id))
        .limit(CHUNK)
        .subquery()
    )
    now = utcnow()
    source = select(
        cast(func.gen_random_uuid(), String),
        literal("review"),
        households.c.household_id,
        households.c.region_code,
        literal("open"),
        literal("village"),
        households.c.region_code,
        cast(literal(campaign.deadline), Date),
        literal(domain.review_reason(campaign.name)),
        cast(literal("[]"), JSONB),
        literal("campaign"),
        literal(campaign.id),
        literal(False),
        literal(now),
        cast(literal("{}"), JSONB),
        literal(campaign.id),
    )
    columns = [
        "id",
        "kind",
        "household_id",
        "region_code",
        "status",
        "assignee_type",
        "assignee_code",
        "due_on",
        "reason",
        "factors",
        "origin",
        "origin_ref",
        "needs_precheck",
        "opened_at",
        "guarantees",
        "campaign_id",
    ]
    stmt = (
        insert(Task)
        .from_select(columns, source)
        .on_conflict_do_nothing(
            index_elements=["campaign_id", "household_id"],
            index_where=text("campaign_id IS NOT NULL"),
        )
        .returning(Task)
    )
    return list((await session.execute(stmt)).scalars())


async def _task_count(session: AsyncSession, campaign_id: str) -> int:
    return int(
        await session.scalar(select(func.count()).where(col(Task.campaign_id) == campaign_id)) or 0
    )


def _public(campaign: Campaign, total: int, generated: int = 0) -> CampaignPublic:
    return CampaignPublic(
        id=campaign.id,
        code=campaign.code,
        name=campaign.name,
        region_prefix=campaign.region_prefix,
        household_types=campaign.household_types,
        monitoring_statuses=campaign.monitoring_statuses,
        deadline=campaign.deadline,
        launched_by=campaign.launched_by,
        launched_at=campaign.launched_at,
        tasks=total,
        generated=generated,
        selected=campaign.selected,
        status=campaign.status,
    )


async def progress(
    session: AsyncSession, *, campaign_id: str, principal: Principal
) -> dict[str, Any]:
    """Tasks by town and by assignee: total, done, open and overdue."""
    campaign = await session.get(Campaign, campaign_id)
    if campaign is None or not (
        principal.can_see(campaign.region_prefix)
        or any(p.startswith(campaign.region_prefix) for p in principal.regions)
    ):
        raise Problem(404, f"campaign {campaign_id} not found")
    on = domain.today()
    overdue = case(((col(Task.status) == "open") & (col(Task.due_on) < on), 1), else_=0)

    async def grouped(key: Any) -> list[dict[str, Any]]:
        rows = await session.execute(
            select(
                key.label("key"),
                func.count(),
                func.count().filter(col(Task.status) == "done"),
                func.count().filter(col(Task.status) == "open"),
                func.sum(overdue),
            )
            .where(
                col(Task.campaign_id) == campaign.id,
                principal.region_clause(col(Task.region_code)),
            )
            .group_by(key)
            .order_by(key)
        )
        return [
            {"key": k, "total": t, "done": d, "open": o, "overdue": int(od or 0)}
            for k, t, d, o, od in rows.all()
        ]

    by_town = [
        {"town_code": r.pop("key"), **r}
        for r in await grouped(func.substr(col(Task.region_code), 1, 9))
    ]
    by_assignee = [
        {"assignee": r.pop("key"), **r}
        for r in await grouped(func.coalesce(col(Task.claimed_by), col(Task.assignee_code)))
    ]
    totals = {k: sum(int(r[k]) for r in by_town) for k in ("total", "done", "open", "overdue")}
    return {
        "campaign": _public(campaign, totals["total"]),
        **totals,
        "by_town": by_town,
        "by_assignee": by_assignee,
    }


# ------------------------------------------------------------------------- routes


@router.post("/campaigns", status_code=201)
async def post_campaign(
    body: CampaignCreate, runtime: RuntimeDep, principal: Principal = WRITE
) -> CampaignPublic:
    """Launch a 回头看 campaign. Launching it again generates only what is missing."""
    return await launch(runtime.sessions, body=body, principal=principal)


@router.get("/campaigns")
async def list_campaigns(session: SessionDep, principal: Principal = READ) -> dict[str, Any]:
    rows = (
        await session.execute(select(Campaign).order_by(col(Campaign.launched_at).desc()))
    ).scalars()
    items = [
        _public(c, await _task_count(session, c.id))
        for c in rows
        if principal.can_see(c.region_prefix)
        or any(p.startswith(c.region_prefix) for p in principal.regions)
    ]
    return {"items": items, "next_cursor": None}


@router.get("/campaigns/{campaign_id}/progress")
async def get_progress(
    campaign_id: str, session: SessionDep, principal: Principal = READ
) -> dict[str, Any]:
    return await progress(session, campaign_id=campaign_id, principal=principal)
