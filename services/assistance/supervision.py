"""督查: supervision issues, rectification evidence, accountability actions and the
overdue-rectification job."""

from __future__ import annotations

from datetime import date, timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from backstop import outbox
from backstop.auth import Principal
from backstop.contracts.assistance import (
    RectificationClosed,
    RectificationOverdue,
    RectificationRaised,
)
from backstop.db import SessionFactory, unit_of_work
from backstop.errors import Problem, invalid
from services.assistance import domain
from services.assistance.common import (
    claim_once,
    load_policy,
    locked,
    make_assistance_event,
    narrowed,
)
from services.assistance.models import (
    AccountabilityAction,
    AccountabilityCreate,
    EvidenceCreate,
    EvidencePublic,
    IssueClose,
    IssueCreate,
    IssuePublic,
    RectificationEvidence,
    SupervisionIssue,
    utcnow,
)


async def issue_public(session: AsyncSession, issue: SupervisionIssue) -> IssuePublic:
    evidence = list(
        (
            await session.execute(
                select(RectificationEvidence)
                .where(col(RectificationEvidence.issue_id) == issue.id)
                .order_by(col(RectificationEvidence.submitted_at))
            )
        ).scalars()
    )
    status = issue.status
    if status == "open" and domain.today() > issue.deadline:
        status = "overdue"
    return IssuePublic(
        **{
            k: getattr(issue, k)
            for k in IssuePublic.model_fields
            if k not in ("status", "evidence", "days_late")
        },
        status=status,
        days_late=days_late(issue, domain.today()),
        evidence=[EvidencePublic.model_validate(e) for e in evidence],
    )


def days_late(issue: SupervisionIssue, today: date) -> int:
    """Days past the deadline: to today while open, to the day it was closed after."""
    until = issue.rectified_at.astimezone(domain.CHINA).date() if issue.rectified_at else today
    return max(0, (until - issue.deadline).days)


def _facts(issue: SupervisionIssue) -> dict[str, object]:
    return {
        "issue_id": issue.id,
        "region_code": issue.region_code,
        "responsible_unit": issue.responsible_unit,
        "deadline": issue.deadline,
        "summary": issue.summary,
    }


async def create_issue(
    sessions: SessionFactory, *, body: IssueCreate, principal: Principal
) -> IssuePublic:
    principal.require_region(body.region_code)
    if body.deadline < body.found_on:
        raise invalid(["body", "deadline"], "the deadline is before the issue was found")
    async with unit_of_work(sessions) as session:
        issue = SupervisionIssue(**body.model_dump())
        session.add(issue)
        await session.flush()
        raised = RectificationRaised(**_facts(issue), found_on=issue.found_on)
        await outbox.publish(session, make_assistance_event(raised, issue.region_code))
        return await issue_public(session, issue)


async def _open_issue(
    session: AsyncSession, issue_id: str, principal: Principal
) -> SupervisionIssue:
    issue = await locked(session, SupervisionIssue, issue_id, principal, "issue")
    if issue.status != "open":
        raise Problem(409, f"issue {issue.id} is already {issue.status}")
    return issue


async def add_evidence(
    sessions: SessionFactory, *, issue_id: str, body: EvidenceCreate, principal: Principal
) -> IssuePublic:
    async with unit_of_work(sessions) as session:
        issue = await _open_issue(session, issue_id, principal)
        session.add(RectificationEvidence(issue_id=issue.id, **body.model_dump()))
        await session.flush()
        return await issue_public(session, issue)


async def close_issue(
    sessions: SessionFactory, *, issue_id: str, body: IssueClose, principal: Principal
) -> IssuePublic:
    """整改到位: needs evidence; whoever verifies it is recorded."""
    async with unit_of_work(sessions) as session:
        issue = await _open_issue(session, issue_id, principal)
        has_evidence = await session.scalar(
            select(func.count()).where(col(RectificationEvidence.issue_id) == issue.id)
        )
        if not has_evidence:
            raise Problem(409, "an issue is closed only with rectification evidence")
        issue.status, issue.rectified_at, issue.verified_by = (
            "rectified",
            utcnow(),
            body.verified_by,
        )
        await session.flush()
        closed = RectificationClosed(
            **_facts(issue),
            rectified_on=domain.today(),
            days_late=days_late(issue, domain.today()),
        )
        await outbox.publish(session, make_assistance_event(closed, issue.region_code))
        return await issue_public(session, issue)


async def list_issues(
    session: AsyncSession,
    *,
    principal: Principal,
    status: str | None,
    region: str | None,
    limit: int,
) -> list[IssuePublic]:
    query = select(SupervisionIssue).where(
        principal.region_clause(col(SupervisionIssue.region_code))
    )
    query = narrowed(
        query,
        SupervisionIssue,
        region=region,
        status=status,
        overdue=[
            col(SupervisionIssue.status) == "open",
            col(SupervisionIssue.deadline) < domain.today(),
        ],
    )
    rows = (
        await session.execute(query.order_by(col(SupervisionIssue.deadline)).limit(limit))
    ).scalars()
    return [await issue_public(session, i) for i in rows]


async def get_issue(session: AsyncSession, *, issue_id: str, principal: Principal) -> IssuePublic:
    issue = await session.get(SupervisionIssue, issue_id)
    if issue is None or not principal.can_see(issue.region_code):
        raise Problem(404, f"issue {issue_id} not found")
    return await issue_public(session, issue)


async def record_accountability(
    sessions: SessionFactory, *, body: AccountabilityCreate, principal: Principal
) -> AccountabilityAction:
    principal.require_region(body.region_code)
    async with unit_of_work(sessions) as session:
        if body.issue_id is not None and await session.get(SupervisionIssue, body.issue_id) is None:
            raise invalid(["body", "issue_id"], "unknown issue")
        action = AccountabilityAction(**body.model_dump())
        session.add(action)
    return action


async def list_accountability(
    session: AsyncSession, *, principal: Principal, region: str | None, limit: int
) -> list[AccountabilityAction]:
    query = select(AccountabilityAction).where(
        principal.region_clause(col(AccountabilityAction.region_code))
    )
    query = (
        narrowed(query, AccountabilityAction, region=region)
        .order_by(col(AccountabilityAction.decided_on).desc())
        .limit(limit)
    )
    return list((await session.execute(query)).scalars())


async def emit_overdue_rectifications(sessions: SessionFactory, *, on: date | None = None) -> int:
    """rectification.overdue for each open issue past its deadline, and again every
    `rectification_repeat_days` until it is closed (each round once, with two replicas)."""
    on = on or domain.today()
    async with unit_of_work(sessions) as session:
        every = (await load_policy(session)).rectification_repeat_days
        issues = await claim_once(
            session,
            SupervisionIssue,
            "overdue_emitted_at",
            col(SupervisionIssue.status) == "open",
            col(SupervisionIssue.deadline) < on,
            again_after=timedelta(days=every),
        )
        await outbox.publish_many(
            session,
            [
                make_assistance_event(
                    RectificationOverdue(
                        **_facts(i),
                        reminder=(on - i.deadline).days // every + 1,
                    ),
                    i.region_code,
                )
                for i in issues
            ],
        )
    return len(issues)
