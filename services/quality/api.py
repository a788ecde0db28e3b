"""HTTP routes of the quality service: thin — parse, authorize, call a handler, shape."""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query
from fastapi.responses import Response
from sqlalchemy import select

from backstop.app import SessionDep, SessionsDep
from backstop.auth import Principal, require
from backstop.errors import Problem, invalid
from backstop.exports import XLSX, xlsx_response
from backstop.pagination import decode_cursor, encode_cursor
from services.quality import domain, exceptions, reports, sweeps
from services.quality import models as m

router = APIRouter(prefix="/v1/quality", tags=["quality"])
READ = require("quality:read")
WRITE = require("quality:write")
REGION = re.compile(r"^\d{2,12}$")


def _region(region: str | None) -> str | None:
    if region is not None and not REGION.match(region):
        raise invalid(["query", "region"], "must be 2 to 12 digits of a region code")
    return region


def finding_public(row: Mapping[Any, Any]) -> m.FindingPublic:
    """A stored finding with its rule's title and fix (a retired rule keeps its code)."""
    rule = domain.RULES_BY_CODE.get(row["rule_code"])
    return m.FindingPublic.model_validate(
        {
            **row,
            "title": rule.title if rule else row["rule_code"],
            "fix": rule.fix if rule else "",
        }
    )


@router.get("/rules", response_model=m.CatalogPublic)
async def list_rules(principal: Principal = READ) -> m.CatalogPublic:
    """The rule catalogue: each rule's code, category, severity, Chinese message template,
    English title and the fix it asks for."""
    return m.CatalogPublic(
        ruleset_version=domain.RULESET_VERSION,
        categories=domain.CATEGORY_LABELS,
        items=[
            m.RulePublic(
                code=r.code,
                category=r.category,
                category_label=domain.CATEGORY_LABELS[r.category],
                severity=r.severity,
                severity_label=domain.SEVERITY_LABELS[r.severity],
                title=r.title,
                message=r.message,
                fix=r.fix,
            )
            for r in domain.RULES
        ],
    )


@router.get("/findings", response_model=m.Page[m.FindingPublic])
async def list_findings(
    session: SessionDep,
    principal: Principal = READ,
    region: Annotated[
        str | None, Query(description="region-code prefix (town = 9 digits, village = 12)")
    ] = None,
    rule: Annotated[str | None, Query(pattern=r"^[A-Z]{2}\d{3}$")] = None,
    category: domain.Category | None = None,
    severity: Literal["error", "warning", "hint"] | None = None,
    status: Literal["open", "closed", "accepted"] | None = "open",
    household_id: uuid.UUID | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: str | None = None,
) -> m.Page[m.FindingPublic]:
    """Findings, newest first, within the token's regions (open ones unless `status`)."""
    f = m.findings.c
    stmt = (
        select(m.findings)
        .where(principal.region_clause(f.region_code))
        .order_by(f.id.desc())
        .limit(limit + 1)
    )
    if (prefix := _region(region)) is not None:
        stmt = stmt.where(f.region_code.startswith(prefix, autoescape=True))
    for column, value in (
        (f.rule_code, rule),
        (f.category, category),
        (f.severity, severity),
        (f.status, status),
        (f.household_id, str(household_id) if household_id else None),
    ):
        if value is not None:
            stmt = stmt.where(column == value)
    after = decode_cursor(cursor, int)
    if after is not None:
        stmt = stmt.where(f.id < after[0])
    rows = list((await session.execute(stmt)).all())
    more = len(rows) > limit
    rows = rows[:limit]
    return m.Page[m.FindingPublic](
        items=[finding_public(r._mapping) for r in rows],
        next_cursor=encode_cursor(rows[-1].id) if more and rows else None,
    )


@router.get("/findings/{finding_id}", response_model=m.FindingPublic)
async def get_finding(
    finding_id: Annotated[int, Path(ge=1, le=2**62)],
    session: SessionDep,
    principal: Principal = READ,
) -> m.FindingPublic:
    row = (
        await session.execute(select(m.findings).where(m.findings.c.id == finding_id))
    ).one_or_none()
    if row is None or not principal.can_see(row.region_code):
        raise Problem(404, f"no finding {finding_id}")
    return finding_public(row._mapping)


@router.post("/findings/{finding_id}/accept", response_model=m.FindingPublic)
async def accept_finding(
    finding_id: Annotated[int, Path(ge=1, le=2**62)],
    body: m.AcceptException,
    sessions: SessionsDep,
    principal: Principal = WRITE,
) -> m.FindingPublic:
    """Accept an open finding as an exception (county level): the data is right as it is.
    It stays accepted through later checks and sweeps, with who accepted it and why."""
    row = await exceptions.accept_exception(
        sessions,
        finding_id=finding_id,
        accepted_by=body.accepted_by,
        reason=body.reason,
        principal=principal,
    )
    return finding_public(row)


@router.post("/sweeps", response_model=m.SweepPublic, status_code=202)
async def request_sweep(
    body: m.SweepCreate, sessions: SessionsDep, principal: Principal = WRITE
) -> m.SweepPublic:
    """Check every household (or a region's) now (county level). The sweep runs in the
    background; follow it at `GET /v1/quality/sweeps/{id}`."""
    row = await sweeps.request_sweep(
        sessions, region_prefix=body.region_prefix, principal=principal
    )
    return m.SweepPublic.model_validate(row)


@router.get("/sweeps", response_model=m.Page[m.SweepPublic])
async def list_sweeps(
    session: SessionDep,
    principal: Principal = READ,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: str | None = None,
) -> m.Page[m.SweepPublic]:
    s = m.sweeps.c
    stmt = select(m.sweeps).order_by(s.id.desc()).limit(limit + 1)
    after = decode_cursor(cursor, int)
    if after is not None:
        stmt = stmt.where(s.id < after[0])
    rows = list((await session.execute(stmt)).all())
    more = len(rows) > limit
    rows = rows[:limit]
    return m.Page[m.SweepPublic](
        items=[m.SweepPublic.model_validate(r._mapping) for r in rows],
        next_cursor=encode_cursor(rows[-1].id) if more and rows else None,
    )


@router.get("/sweeps/{sweep_id}", response_model=m.SweepPublic)
async def get_sweep(
    sweep_id: Annotated[int, Path(ge=1, le=2**62)], session: SessionDep, principal: Principal = READ
) -> m.SweepPublic:
    row = (await session.execute(select(m.sweeps).where(m.sweeps.c.id == sweep_id))).one_or_none()
    if row is None:
        raise Problem(404, f"no sweep {sweep_id}")
    return m.SweepPublic.model_validate(row._mapping)


@router.get("/summary", response_model=m.SummaryPublic)
async def summary(
    session: SessionDep,
    principal: Principal = READ,
    region: Annotated[str | None, Query(description="region-code prefix")] = None,
) -> m.SummaryPublic:
    """Open findings by town × category within the token's regions, and each town's
    change since the end of the last full sweep."""
    return await reports.summary(session, principal=principal, region=_region(region))


@router.get(
    "/rectification/{town_code}",
    responses={200: {"content": {XLSX: {}}, "description": "整改清单 (XLSX)"}},
    response_class=Response,
)
async def rectification_list(
    town_code: Annotated[str, Path(pattern=r"^\d{9}(\.xlsx)?$")],
    session: SessionDep,
    principal: Principal = READ,
) -> Response:
    """The town's 整改清单 as XLSX: one row per open finding with the fix to make."""
    town = town_code.removesuffix(".xlsx")
    principal.require_region(town)
    body = await reports.rectification_xlsx(session, town_code=town)
    return xlsx_response(body, name=f"整改清单_{town}", ascii_name=f"rectification-{town}")
