"""HTTP routes of the assistance service: parse, authorize, call a handler, shape the
response. Region-scoped by the token; scopes assistance:read, assistance:write and
funds:write (money)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import JSONResponse, Response

from backstop.app import SessionDep, SessionsDep, reading
from backstop.auth import Level, Principal, require
from backstop.errors import OrjsonResponse, Problem, invalid
from backstop.pagination import decode_cursor, encode_cursor
from backstop.requests import period_param
from services.assistance import common, domain, funds, plans, procedure, supervision, tasks, visits
from services.assistance.models import (
    AccountabilityCreate,
    AccountabilityPublic,
    AppraisalCreate,
    CasePage,
    CasePublic,
    DepositCreate,
    EliminationCreate,
    EvidenceCreate,
    FundCreate,
    FundPublic,
    FundStatement,
    GrantCreate,
    IssueClose,
    IssueCreate,
    IssuePublic,
    NoticeCreate,
    PlanCreate,
    PlanPublic,
    PolicyUpdate,
    ReviewCreate,
    Task,
    TaskClaim,
    TaskComplete,
    TaskHandover,
    TaskPage,
    TaskPrecheck,
    TaskPublic,
    VisitCreate,
    VisitPublic,
)

router = APIRouter(prefix="/v1")

READ = require("assistance:read")
WRITE = require("assistance:write")
FUNDS = require("funds:write")
Limit = Annotated[int, Query(ge=1, le=500)]
IdempotencyKey = Annotated[
    str,
    Header(
        alias="Idempotency-Key",
        min_length=8,
        max_length=100,
        description="Required on every money-moving request; a retry with the same key "
        "replays the first response, the same key with another body is a 422.",
    ),
]


def task_public(
    task: Task | Mapping[str, Any], case_id: str | None = None, *, on: date | None = None
) -> dict[str, Any]:
    """The task as the API shows it (the JSON of `TaskPublic`), as plain values from a
    `Task` or a row of `tasks.TASK_COLUMNS`, for `OrjsonResponse` to serialise once; its
    status "overdue" while open past its due date `on` (default today)."""
    row = task.model_dump() if isinstance(task, Task) else task
    status = row["status"]
    return {
        "id": row["id"],
        "kind": row["kind"],
        "household_id": row["household_id"],
        "region_code": row["region_code"],
        "status": "overdue"
        if domain.is_overdue(status=status, due=row["due_on"], on=on or domain.today())
        else status,
        "due_on": row["due_on"],
        "assignee": {"type": row["assignee_type"], "code": row["assignee_code"]},
        "reason": row["reason"],
        "factors": row["factors"],
        "origin": row["origin"],
        "needs_precheck": row["needs_precheck"],
        "prechecked_by": row["prechecked_by"],
        "handed_over_at": row["handed_over_at"],
        "opened_at": row["opened_at"],
        "claimed_by": row["claimed_by"],
        "completed_at": row["completed_at"],
        "outcome": row["outcome"],
        "verified_by": row["verified_by"],
        "notes": row["notes"],
        "guarantees": row["guarantees"],
        "case_id": case_id,
    }


# --------------------------------------------------------------------------- policy


@router.get("/policy", tags=["policy"])
async def get_policy(session: SessionDep, principal: Principal = READ) -> dict[str, Any]:
    return (await common.load_policy(session)).model_dump(mode="json")


@router.put("/policy", tags=["policy"])
async def put_policy(
    body: PolicyUpdate, sessions: SessionsDep, principal: Principal = WRITE
) -> dict[str, Any]:
    """County level only."""
    principal.require_level(Level.COUNTY, "changing the assistance policy")
    version, policy = await common.update_policy(
        sessions, changes=body.policy, changed_by=body.changed_by
    )
    return {"version": version, **policy.model_dump(mode="json")}


# ---------------------------------------------------------------------------- tasks


# The list the town and insurer clients poll: one statement on a read connection (no
# ORM session or objects), its JSON built from the rows and serialised once; the response
# models document the routes.
@router.get("/tasks", tags=["tasks"], response_model=TaskPage)
async def list_tasks(
    request: Request,
    household_id: str | None = None,
    kind: str | None = None,
    status: Literal["open", "done", "cancelled", "overdue"] | None = None,
    assignee: str | None = Query(default=None, description="assignee code (town, insurer)"),
    limit: Limit = 50,
    cursor: str | None = None,
    principal: Principal = READ,
) -> Response:
    after = decode_cursor(cursor, datetime.fromisoformat, str)  # before taking a connection
    async with reading(request) as pg:
        rows, next_cursor = await tasks.list_tasks(
            pg,
            principal=principal,
            household_id=household_id,
            kind=kind,
            status=status,
            assignee_code=assignee,
            limit=limit,
            after=after,
        )
    on = domain.today()
    return OrjsonResponse(
        {"items": [task_public(r, on=on) for r in rows], "next_cursor": next_cursor}
    )


@router.get("/tasks/{task_id}", tags=["tasks"], response_model=TaskPublic)
async def get_task(task_id: str, session: SessionDep, principal: Principal = READ) -> Response:
    task = await session.get(Task, task_id)
    if task is None or not principal.can_see(task.region_code):
        raise Problem(404, f"task {task_id} not found")
    return OrjsonResponse(task_public(task, await tasks.case_of_task(session, task.id)))


@router.post("/tasks/{task_id}/claim", tags=["tasks"], response_model=TaskPublic)
async def claim_task(
    task_id: str, body: TaskClaim, sessions: SessionsDep, principal: Principal = WRITE
) -> Response:
    task = await tasks.claim_task(sessions, task_id=task_id, body=body, principal=principal)
    return OrjsonResponse(task_public(task))


@router.post("/tasks/{task_id}/precheck", tags=["tasks"], response_model=TaskPublic)
async def precheck_task(
    task_id: str, body: TaskPrecheck, sessions: SessionsDep, principal: Principal = WRITE
) -> Response:
    """县级初核 of a department-flagged case before the insurer (人保公司) verifies it."""
    task = await tasks.precheck_task(sessions, task_id=task_id, body=body, principal=principal)
    return OrjsonResponse(task_public(task))


@router.post("/tasks/handover", tags=["tasks"], response_model=dict[str, list[TaskPublic]])
async def hand_over_tasks(
    body: TaskHandover, sessions: SessionsDep, principal: Principal = WRITE
) -> Response:
    """集中交由人保公司 (seed 三(三)3): the county hands a batch of pre-checked cases to the
    insurer at once; each insurer due date counts from now. All or none."""
    handed = await tasks.hand_over(sessions, body=body, principal=principal)
    on = domain.today()
    return OrjsonResponse({"items": [task_public(t, on=on) for t in handed]})


@router.post("/tasks/{task_id}/complete", tags=["tasks"], response_model=TaskPublic)
async def complete_task(
    task_id: str, body: TaskComplete, sessions: SessionsDep, principal: Principal = WRITE
) -> Response:
    """Completing twice is a 409. A confirmed verification opens the identification
    procedure (its id is in `case_id`)."""
    task, case_id = await tasks.complete_task(
        sessions, task_id=task_id, body=body, principal=principal
    )
    return OrjsonResponse(task_public(task, case_id))


# ---------------------------------------------------------------------------- cases


# As the tasks list: one statement on a read connection, plain values serialised once.
@router.get("/cases", tags=["procedure"], response_model=CasePage)
async def list_cases(
    request: Request,
    household_id: str | None = None,
    kind: Literal["identification", "elimination"] | None = None,
    status: Literal["in_progress", "approved", "rejected"] | None = None,
    limit: Limit = 50,
    cursor: str | None = None,
    principal: Principal = READ,
) -> Response:
    after = decode_cursor(cursor, datetime.fromisoformat, str)  # before taking a connection
    async with reading(request) as pg:
        items, next_cursor = await procedure.list_cases(
            pg,
            principal=principal,
            household_id=household_id,
            kind=kind,
            status=status,
            limit=limit,
            after=after,
        )
    return OrjsonResponse({"items": items, "next_cursor": next_cursor})


@router.get("/cases/{case_id}", tags=["procedure"])
async def get_case(case_id: str, session: SessionDep, principal: Principal = READ) -> CasePublic:
    return await procedure.get_case(session, case_id=case_id, principal=principal)


@router.post("/cases/{case_id}/appraisal", tags=["procedure"])
async def appraisal(
    case_id: str, body: AppraisalCreate, sessions: SessionsDep, principal: Principal = WRITE
) -> CasePublic:
    """Step 1, 民主评议 (village democratic appraisal)."""
    return await procedure.record_appraisal(
        sessions, case_id=case_id, body=body, principal=principal
    )


@router.post("/cases/{case_id}/notice", tags=["procedure"])
async def notice(
    case_id: str, body: NoticeCreate, sessions: SessionsDep, principal: Principal = WRITE
) -> CasePublic:
    """Step 2, 公示 (public notice, at least 5 days; every objection resolved)."""
    return await procedure.record_notice(sessions, case_id=case_id, body=body, principal=principal)


@router.post("/cases/{case_id}/town-review", tags=["procedure"])
async def town_review(
    case_id: str, body: ReviewCreate, sessions: SessionsDep, principal: Principal = WRITE
) -> CasePublic:
    """Step 3, 乡镇审核."""
    return await procedure.record_review(
        sessions, case_id=case_id, step="town_review", body=body, principal=principal
    )


@router.post("/cases/{case_id}/county-approval", tags=["procedure"])
async def county_approval(
    case_id: str, body: ReviewCreate, sessions: SessionsDep, principal: Principal = WRITE
) -> CasePublic:
    """Step 4, 县级确认: emits monitoring.started or risk.eliminated. County level."""
    principal.require_level(Level.COUNTY, "县级确认 (county confirmation)")
    return await procedure.record_review(
        sessions, case_id=case_id, step="county_approval", body=body, principal=principal
    )


@router.post("/eliminations", tags=["procedure"], status_code=201)
async def open_elimination(
    body: EliminationCreate, sessions: SessionsDep, principal: Principal = WRITE
) -> CasePublic:
    """Open a 风险消除 case (帮扶消除 checks the guard; 自然消除 records its reason)."""
    return await procedure.open_elimination(sessions, body=body, principal=principal)


# --------------------------------------------------------------------------- visits


@router.post("/visits", tags=["visits"], status_code=201)
async def record_visit(
    body: VisitCreate, sessions: SessionsDep, principal: Principal = WRITE
) -> VisitPublic:
    return VisitPublic.model_validate(
        await visits.record_visit(sessions, body=body, principal=principal)
    )


@router.get("/visits", tags=["visits"])
async def list_visits(
    session: SessionDep,
    household_id: str | None = None,
    limit: Limit = 100,
    principal: Principal = READ,
) -> dict[str, Any]:
    rows = await visits.list_visits(
        session, principal=principal, household_id=household_id, limit=limit
    )
    return {"items": [VisitPublic.model_validate(v) for v in rows], "next_cursor": None}


@router.get("/visits/compliance", tags=["visits"])
async def compliance(
    session: SessionDep,
    period: str | None = Query(default=None, description="month, e.g. 2026-11 (default: now)"),
    region: str | None = Query(default=None, pattern=r"^\d{1,12}$"),
    limit: Limit = 100,
    cursor: str | None = None,
    principal: Principal = READ,
) -> dict[str, Any]:
    """Households due a monthly contact (脱贫户 含监测户, 边缘户, 双骤户: seed 二(三)) not
    contacted in the month by one of their 重点联系人 or 帮扶责任人, by town and charged
    to the contact whose role requires it (每月至少走访或联系一次). Counts are whole; the
    households not contacted come a page at a time (`limit`, `cursor` → `households`,
    `next_cursor`)."""
    if period:
        period = str(period_param(period, ["query", "period"]))
    else:
        period = domain.today().strftime("%Y-%m")
    if region:
        principal.require_region(region)
    after = decode_cursor(cursor, str, str)
    report = await visits.contact_compliance(
        session, principal=principal, period=period, region=region
    )
    missing = [
        h for h in report.missing if after is None or (h.region_code, h.household_id) > after
    ]
    page = missing[:limit]
    last = page[-1] if len(missing) > limit else None
    return {
        "period": report.period,
        "region": region,
        "due": report.due,
        "contacted": report.contacted,
        "not_contacted": len(report.missing),
        "visits_not_counted": report.not_counted,
        "by_town": [{"town_code": code, **counts} for code, counts in report.by_town.items()],
        "by_contact": [
            {"contact": name, "role": entry["role"], "missing": entry["missing"]}
            for name, entry in report.by_contact.items()
        ],
        "next_cursor": encode_cursor(last.region_code, last.household_id) if last else None,
        "households": [
            {
                "household_id": h.household_id,
                "region_code": h.region_code,
                "town_code": h.town_code,
                "contacts": [{"name": n, "role": r} for n, r in h.contacts],
            }
            for h in page
        ],
    }


# ---------------------------------------------------------------------------- plans


@router.get("/measures", tags=["plans"])
async def measure_catalogue(principal: Principal = READ) -> dict[str, Any]:
    return {
        "measures": [{"code": c, "label": label} for c, label in domain.MEASURES.items()],
        "tiers": [
            {"code": t, "label": label, "measures": sorted(domain.TIER_MEASURES[t])}
            for t, label in domain.TIERS.items()
        ],
    }


@router.post("/plans", tags=["plans"], status_code=201)
async def create_plan(
    body: PlanCreate, sessions: SessionsDep, principal: Principal = WRITE
) -> PlanPublic:
    return await plans.create_plan(sessions, body=body, principal=principal)


@router.get("/plans", tags=["plans"])
async def list_plans(
    session: SessionDep,
    household_id: str | None = None,
    limit: Limit = 100,
    principal: Principal = READ,
) -> dict[str, Any]:
    rows = await plans.list_plans(
        session, principal=principal, household_id=household_id, limit=limit
    )
    return {"items": rows, "next_cursor": None}


@router.get("/plans/gaps", tags=["plans"])
async def plan_gaps(
    session: SessionDep,
    region: str | None = Query(default=None, pattern=r"^\d{1,12}$"),
    principal: Principal = READ,
) -> dict[str, Any]:
    """Monitored households with no measure a month after identification."""
    return {"items": await plans.measure_gaps(session, principal=principal, region=region)}


# ---------------------------------------------------------------------------- funds


@router.post("/funds", tags=["funds"], status_code=201)
async def create_fund(
    body: FundCreate, sessions: SessionsDep, principal: Principal = FUNDS
) -> FundPublic:
    principal.require_level(Level.COUNTY, "setting up a fund")
    if body.town_code:
        principal.require_region(body.town_code)
    return FundPublic.model_validate(await funds.create_fund(sessions, body=body))


@router.get("/funds", tags=["funds"])
async def list_funds(session: SessionDep, principal: Principal = READ) -> dict[str, Any]:
    rows = await funds.list_funds(session, principal=principal)
    return {"items": [FundPublic.model_validate(f) for f in rows], "next_cursor": None}


@router.post("/funds/{fund_id}/deposits", tags=["funds"], status_code=201)
async def deposit(
    fund_id: str,
    body: DepositCreate,
    sessions: SessionsDep,
    idempotency_key: IdempotencyKey,
    principal: Principal = FUNDS,
) -> JSONResponse:
    principal.require_level(Level.COUNTY, "a deposit into a fund")
    status, response = await funds.deposit(
        sessions, fund_id=fund_id, body=body, idempotency_key=idempotency_key, principal=principal
    )
    return JSONResponse(response, status_code=status)


@router.post("/grants", tags=["funds"], status_code=201)
async def grant(
    body: GrantCreate,
    sessions: SessionsDep,
    idempotency_key: IdempotencyKey,
    principal: Principal = FUNDS,
) -> JSONResponse:
    """Pay a household, split city/town by the configured ratio. 409 beyond a balance.
    County level: a grant draws on the city fund."""
    principal.require_level(Level.COUNTY, "a grant from the funds")
    status, response = await funds.grant(
        sessions, body=body, idempotency_key=idempotency_key, principal=principal
    )
    return JSONResponse(response, status_code=status)


@router.get("/funds/{fund_id}/statement", tags=["funds"])
async def fund_statement(
    fund_id: str,
    session: SessionDep,
    date_from: Annotated[date | None, Query(alias="from")] = None,
    date_to: Annotated[date | None, Query(alias="to")] = None,
    principal: Principal = READ,
) -> FundStatement:
    if date_from and date_to and date_to < date_from:
        raise invalid(["query", "to"], "ends before it starts")
    result = await funds.statement(session, fund_id=fund_id, date_from=date_from, date_to=date_to)
    if result.fund.town_code:
        principal.require_region(result.fund.town_code)
    return result


# ---------------------------------------------------------------------- supervision


@router.post("/supervision/issues", tags=["supervision"], status_code=201)
async def create_issue(
    body: IssueCreate, sessions: SessionsDep, principal: Principal = WRITE
) -> IssuePublic:
    return await supervision.create_issue(sessions, body=body, principal=principal)


@router.get("/supervision/issues", tags=["supervision"])
async def list_issues(
    session: SessionDep,
    status: Literal["open", "rectified", "overdue"] | None = None,
    region: str | None = Query(default=None, pattern=r"^\d{1,12}$"),
    limit: Limit = 100,
    principal: Principal = READ,
) -> dict[str, Any]:
    items = await supervision.list_issues(
        session, principal=principal, status=status, region=region, limit=limit
    )
    return {"items": items, "next_cursor": None}


@router.get("/supervision/issues/{issue_id}", tags=["supervision"])
async def get_issue(issue_id: str, session: SessionDep, principal: Principal = READ) -> IssuePublic:
    return await supervision.get_issue(session, issue_id=issue_id, principal=principal)


@router.post("/supervision/issues/{issue_id}/evidence", tags=["supervision"], status_code=201)
async def add_evidence(
    issue_id: str, body: EvidenceCreate, sessions: SessionsDep, principal: Principal = WRITE
) -> IssuePublic:
    return await supervision.add_evidence(
        sessions, issue_id=issue_id, body=body, principal=principal
    )


@router.post("/supervision/issues/{issue_id}/close", tags=["supervision"])
async def close_issue(
    issue_id: str, body: IssueClose, sessions: SessionsDep, principal: Principal = WRITE
) -> IssuePublic:
    return await supervision.close_issue(
        sessions, issue_id=issue_id, body=body, principal=principal
    )


@router.post("/supervision/accountability", tags=["supervision"], status_code=201)
async def record_accountability(
    body: AccountabilityCreate, sessions: SessionsDep, principal: Principal = WRITE
) -> AccountabilityPublic:
    """约谈 / 问责."""
    return AccountabilityPublic.model_validate(
        await supervision.record_accountability(sessions, body=body, principal=principal)
    )


@router.get("/supervision/accountability", tags=["supervision"])
async def list_accountability(
    session: SessionDep,
    region: str | None = Query(default=None, pattern=r"^\d{1,12}$"),
    limit: Limit = 100,
    principal: Principal = READ,
) -> dict[str, Any]:
    items = await supervision.list_accountability(
        session, principal=principal, region=region, limit=limit
    )
    return {"items": [AccountabilityPublic.model_validate(a) for a in items], "next_cursor": None}
