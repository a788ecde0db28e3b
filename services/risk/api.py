"""HTTP routes of the risk service: thin — parse, authorize, call a handler, shape."""

from __future__ import annotations

import re
import uuid
from types import SimpleNamespace
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Path, Query, Request, Response
from sqlalchemy import and_, or_, select

from backstop.app import SessionDep, SessionsDep, reading
from backstop.auth import Level as Authority
from backstop.auth import Principal, require
from backstop.errors import OrjsonResponse, Problem, invalid
from backstop.pagination import decode_cursor, encode_cursor
from services.risk import features, policies
from services.risk import models as m
from services.risk.domain import LEVEL_LABELS, Level, Policy

router = APIRouter(prefix="/v1", tags=["risk"])

HouseholdId = Annotated[str, Path(description="household id (UUID)")]
REGION = re.compile(r"^\d{2,12}$")


def _household_id(value: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise invalid(["path", "household_id"], "must be a UUID") from None


def _region_filter(principal: Principal, region: str | None) -> list[str] | None:
    """The region prefixes a query may cover: the `region` asked for, within the
    token's regions; None means everywhere."""
    if region is not None and not REGION.match(region):
        raise invalid(["query", "region"], "must be 2 to 12 digits of a region code")
    if principal.all_regions:
        return [region] if region else None
    if region is None:
        return list(principal.regions)
    if principal.can_see(region):
        return [region]
    narrower = [p for p in principal.regions if p.startswith(region)]
    if not narrower:
        raise Problem(403, f"region {region} is outside this client's regions")
    return narrower


def _not_found(household_id: str) -> Problem:
    return Problem(404, f"household {household_id} has no risk assessment")


# The read the provincial platform polls: on a driver connection (one round trip, no
# session) and serialised once by orjson.
_CURRENT_SQL = """
SELECT household_id, region_code, level, score, factors::text AS factors, per_capita_income,
       income_line, policy_version, assessed_at
FROM risk_current WHERE household_id = $1
"""


@router.get("/households/{household_id}/risk", response_model=m.RiskPublic)
async def get_household_risk(
    household_id: HouseholdId,
    request: Request,
    principal: Principal = require("risk:read"),
) -> Response:
    """The household's current assessment: level, score, and every factor with its
    evidence and the records it came from."""
    hid = _household_id(household_id)
    async with reading(request) as pg:
        row = await pg.fetchrow(_CURRENT_SQL, hid)
    if row is None or not principal.can_see(row["region_code"]):
        raise _not_found(hid)  # alike: no region oracle
    current = SimpleNamespace(**{**dict(row), "factors": orjson.loads(row["factors"])})
    return OrjsonResponse(m.RiskPublic.from_row(current).model_dump(mode="json"))


@router.get("/households/{household_id}/assessments", response_model=m.Page[m.AssessmentPublic])
async def list_household_assessments(
    household_id: HouseholdId,
    session: SessionDep,
    principal: Principal = require("risk:read"),
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: str | None = None,
) -> m.Page[m.AssessmentPublic]:
    """Every change of the household's assessment, newest first, with the policy version
    and the event that caused it."""
    hid = _household_id(household_id)
    a = m.assessments.c
    region = await session.scalar(
        select(m.current.c.region_code).where(m.current.c.household_id == hid)
    )
    if region is None:
        raise _not_found(hid)
    principal.require_region(region)
    stmt = select(m.assessments).where(a.household_id == hid).order_by(a.id.desc()).limit(limit + 1)
    after = decode_cursor(cursor, int)
    if after is not None:
        stmt = stmt.where(a.id < after[0])
    rows = list((await session.execute(stmt)).all())
    more = len(rows) > limit
    rows = rows[:limit]
    return m.Page[m.AssessmentPublic](
        items=[m.AssessmentPublic.from_history(r) for r in rows],
        next_cursor=encode_cursor(rows[-1].id) if more and rows else None,
    )


@router.get("/assessments", response_model=m.Page[m.RiskPublic])
async def list_assessments(
    session: SessionDep,
    principal: Principal = require("risk:read"),
    level: Level | None = None,
    region: Annotated[
        str | None, Query(description="region-code prefix (town = 9 digits, village = 12)")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: str | None = None,
) -> m.Page[m.RiskPublic]:
    """Current assessments, highest score first, by level and region prefix, limited to
    the token's regions."""
    c = m.current.c
    stmt = select(m.current).order_by(c.score.desc(), c.household_id).limit(limit + 1)
    if level is not None:
        stmt = stmt.where(c.level == level)
    prefixes = _region_filter(principal, region)
    if prefixes is not None:
        stmt = stmt.where(or_(*(c.region_code.startswith(p) for p in prefixes)))
    after = decode_cursor(cursor, int, str)
    if after is not None:
        score, hid = after
        stmt = stmt.where(or_(c.score < score, and_(c.score == score, c.household_id > hid)))
    rows = list((await session.execute(stmt)).all())
    more = len(rows) > limit
    rows = rows[:limit]
    return m.Page[m.RiskPublic](
        items=[m.RiskPublic.from_row(r) for r in rows],
        next_cursor=encode_cursor(rows[-1].score, rows[-1].household_id) if more and rows else None,
    )


@router.get("/households/{household_id}/features")
async def get_household_features(
    household_id: HouseholdId,
    session: SessionDep,
    principal: Principal = require("risk:read"),
) -> dict[str, Any]:
    """The facts the rules see today, each with the events or records it came from —
    what an inspector checks an assessment against. No names, no ID numbers."""
    hid = _household_id(household_id)
    found = await features.features_for(session, hid)
    principal.require_visible(
        found.region_code if found else None,
        Problem(404, f"household {hid} is not known to risk yet"),
    )
    assert found is not None
    return features.features_public(found)


@router.get("/policy", response_model=m.PolicyPublic)
async def get_policy(
    session: SessionDep,
    principal: Principal = require("risk:read"),
    version: Annotated[int | None, Query(ge=1, description="a past version")] = None,
) -> m.PolicyPublic:
    """The policy in force, or any past version."""
    p = m.policies.c
    stmt = select(m.policies).order_by(p.version.desc()).limit(1)
    if version is not None:
        stmt = select(m.policies).where(p.version == version)
    row = (await session.execute(stmt)).one_or_none()
    if row is None:
        raise Problem(404, f"policy version {version} does not exist")
    return m.PolicyPublic(
        version=row.version,
        author=row.author,
        note=row.note,
        created_at=row.created_at,
        policy=Policy.model_validate(row.policy),
    )


@router.put("/policy", response_model=m.PolicyPublic)
async def put_policy(
    body: m.PolicyPut,
    sessions: SessionsDep,
    principal: Principal = require("risk:admin"),
) -> m.PolicyPublic:
    """Create a new policy version (old versions are never edited) and queue the
    re-score of every household; follow it at GET /v1/policy/rescore. County level."""
    principal.require_level(Authority.COUNTY, "changing the risk policy")
    policy = Policy.model_validate(body.model_dump(exclude={"note"}))
    row, _ = await policies.put_policy(
        sessions, policy=policy, author=principal.sub, note=body.note
    )
    return m.PolicyPublic(
        version=row["version"],
        author=row["author"],
        note=row["note"],
        created_at=row["created_at"],
        policy=policy,
    )


@router.post("/policy/simulate", response_model=m.SimulationPublic)
async def simulate_policy(
    body: Policy,
    session: SessionDep,
    principal: Principal = require("risk:admin"),
    region: Annotated[str | None, Query(description="region-code prefix")] = None,
    sample: Annotated[int, Query(ge=0, le=50, description="households per level")] = 5,
) -> m.SimulationPublic:
    """How many households per level and per town the proposed policy would give, and a
    sample of each, within the token's regions. Writes nothing."""
    result = await policies.simulate(
        session,
        policy=body,
        region_prefixes=_region_filter(principal, region),
        sample_size=sample,
    )
    return m.SimulationPublic.model_validate(result)


@router.get("/policy/rescore", response_model=m.RescorePublic)
async def get_rescore(
    session: SessionDep,
    principal: Principal = require("risk:read"),
) -> m.RescorePublic:
    """Progress of the latest re-score (after the latest policy change)."""
    status = await policies.rescore_status(session)
    if status is None:
        raise Problem(404, "no policy change has been re-scored yet")
    return m.RescorePublic.model_validate(status)


@router.get("/levels")
async def get_levels(principal: Principal = require("risk:read")) -> dict[str, str]:
    """The levels and their wording in the seed policy."""
    return dict(LEVEL_LABELS)
