"""HTTP routes of the notify service: reminders and their delivery log, the recipient
directory, schedules, and webhook subscriptions — all region-scoped by the token."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request, Response
from sqlalchemy import Select, select

from backstop.app import SessionDep, SessionsDep
from backstop.auth import Level, Principal, require
from backstop.errors import Problem, invalid
from backstop.idnumber import mask_phone
from backstop.pagination import decode_cursor, encode_cursor
from services.notify import domain, reminders, scheduler, subscriptions
from services.notify.config import NotifySettings
from services.notify.egress import check_url
from services.notify.models import (
    RECIPIENTS,
    REMINDER_ATTEMPTS,
    REMINDERS,
    SCHEDULES,
    SUBSCRIPTIONS,
    WEBHOOK_ATTEMPTS,
    WEBHOOK_DELIVERIES,
    Page,
    RecipientKind,
    RecipientPublic,
    RecipientPut,
    Redelivery,
    RedeliveryRequest,
    ReminderAttemptPublic,
    ReminderPublic,
    SchedulePatch,
    SchedulePublic,
    SubscriptionCreate,
    SubscriptionCreated,
    SubscriptionPublic,
    WebhookAttemptPublic,
    WebhookDeliveryPublic,
)

router = APIRouter(prefix="/v1", tags=["notify"])

Limit = Annotated[int, Query(ge=1, le=500)]
Cursor = Annotated[str | None, Query(max_length=64, description="next_cursor of the previous page")]
ReminderStatus = Literal["pending", "sent", "failed", "cancelled"]
DeliveryStatus = Literal["pending", "delivered", "failed", "cancelled"]


def _scoped(stmt: Select[Any], column: Any, principal: Principal) -> Select[Any]:
    return stmt if principal.all_regions else stmt.where(principal.region_clause(column))


# ---------------------------------------------------------------- reminders


@router.get("/reminders", response_model=Page[ReminderPublic])
async def list_reminders(
    session: SessionDep,
    principal: Principal = require("notify:read"),
    recipient: Annotated[
        str | None, Query(max_length=100, description="<kind>:<code>, e.g. town:441881101")
    ] = None,
    status: ReminderStatus | None = None,
    kind: Annotated[str | None, Query(max_length=40)] = None,
    subject_id: Annotated[str | None, Query(max_length=64)] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> dict[str, Any]:
    """Newest first."""
    stmt = select(REMINDERS)
    if recipient is not None:
        try:
            key = domain.RecipientKey.parse(recipient)
        except ValueError as exc:
            raise invalid(["query", "recipient"], str(exc)) from None
        if key.kind == "contact":
            key = domain.contact_key(key.code)
        stmt = stmt.where(REMINDERS.c.recipient == str(key))
    if status is not None:
        stmt = stmt.where(REMINDERS.c.status == status)
    if kind is not None:
        stmt = stmt.where(REMINDERS.c.kind == kind)
    if subject_id is not None:
        stmt = stmt.where(REMINDERS.c.subject_id == subject_id)
    after = decode_cursor(cursor, int)
    if after is not None:
        stmt = stmt.where(REMINDERS.c.seq < after[0])
    stmt = _scoped(stmt, REMINDERS.c.region_code, principal)
    rows = (await session.execute(stmt.order_by(REMINDERS.c.seq.desc()).limit(limit + 1))).all()
    page = rows[:limit]
    return {
        "items": [_public(r, principal) for r in page],
        "next_cursor": encode_cursor(page[-1].seq) if len(rows) > limit else None,
    }


def _public(row: Any, principal: Principal) -> dict[str, Any]:
    """A reminder as shown: a key contact's phone (in its recipient and dedup key) is
    for the administrators of the directory only."""
    reminder = dict(row._mapping)
    if not principal.has("notify:admin"):
        reminder["recipient"] = domain.public_recipient(reminder["recipient"])
        reminder["dedup_key"] = domain.public_dedup_key(reminder["dedup_key"])
    return reminder


async def _reminder(session: SessionDep, reminder_id: uuid.UUID, principal: Principal) -> Any:
    row = (await session.execute(select(REMINDERS).where(REMINDERS.c.id == reminder_id))).first()
    if row is None or not principal.can_see(row.region_code):
        raise Problem(404, f"no reminder {reminder_id}")
    return row


@router.get("/reminders/{reminder_id}", response_model=ReminderPublic)
async def get_reminder(
    reminder_id: uuid.UUID, session: SessionDep, principal: Principal = require("notify:read")
) -> dict[str, Any]:
    return _public(await _reminder(session, reminder_id, principal), principal)


@router.get("/reminders/{reminder_id}/deliveries", response_model=list[ReminderAttemptPublic])
async def reminder_deliveries(
    reminder_id: uuid.UUID, session: SessionDep, principal: Principal = require("notify:read")
) -> list[dict[str, Any]]:
    """The delivery log of one reminder: every attempt, its channel and outcome."""
    await _reminder(session, reminder_id, principal)
    attempts = REMINDER_ATTEMPTS
    rows = await session.execute(
        select(attempts).where(attempts.c.reminder_id == reminder_id).order_by(attempts.c.id)
    )
    return [dict(r._mapping) for r in rows]


@router.post("/reminders/{reminder_id}/retry", response_model=ReminderPublic)
async def retry_reminder(
    reminder_id: uuid.UUID,
    session: SessionDep,
    sessions: SessionsDep,
    principal: Principal = require("notify:admin"),
) -> dict[str, Any]:
    """Queue a failed reminder again, e.g. after its recipient was registered."""
    await _reminder(session, reminder_id, principal)
    return await reminders.retry_reminder(sessions, reminder_id=reminder_id)


# ---------------------------------------------------------------- recipient directory


@router.get("/recipients", response_model=list[RecipientPublic])
async def list_recipients(
    session: SessionDep,
    principal: Principal = require("notify:read"),
    kind: RecipientKind | None = None,
) -> list[dict[str, Any]]:
    stmt = select(RECIPIENTS).order_by(RECIPIENTS.c.kind, RECIPIENTS.c.code)
    if kind is not None:
        stmt = stmt.where(RECIPIENTS.c.kind == kind)
    stmt = _scoped(stmt, RECIPIENTS.c.region_code, principal)
    rows = [dict(r._mapping) for r in await session.execute(stmt)]
    if not principal.has("notify:admin"):
        # Phones and addresses are for the administrators of the directory.
        for row in rows:
            row["address"] = _mask_address(row["address"])
    return rows


def _mask_address(address: str) -> str:
    if address.isdigit():
        return mask_phone(address)
    if "@" in address:
        name, _, host = address.partition("@")
        return f"{name[:1]}***@{host}"
    return "***" if address else ""


def _internal_allowed(request: Request) -> bool:
    notify: NotifySettings = request.app.state.notify_settings
    return notify.internal_callbacks_allowed(request.app.state.settings.environment)


_CODE_SHAPES: dict[str, tuple[int, ...]] = {"town": (9,), "town_leader": (9,), "village": (12,)}


@router.put("/recipients/{kind}/{code}", response_model=RecipientPublic)
async def put_recipient(
    kind: RecipientKind,
    code: Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$")],
    body: RecipientPut,
    sessions: SessionsDep,
    request: Request,
    principal: Principal = require("notify:admin"),
) -> dict[str, Any]:
    """Register or change who receives a kind of reminder, and how. A bot or webhook
    address must be public (checked now and on every call).

    Codes: town and town_leader the 9-digit town code, village the 12-digit village
    code, department the feed source (medical, disaster, civil_affairs, education),
    county_office "county", insurer the code verification tasks are assigned to.
    """
    shapes = _CODE_SHAPES.get(kind)
    if shapes and (not code.isdigit() or len(code) not in shapes):
        raise invalid(["path", "code"], f"a {kind} code is {shapes[0]} digits")
    if kind == "department" and code not in domain.DEPARTMENTS:
        raise invalid(["path", "code"], f"a department code is one of {sorted(domain.DEPARTMENTS)}")
    if kind == "county_office" and code != domain.COUNTY_OFFICE_CODE:
        raise invalid(["path", "code"], f"the county office code is {domain.COUNTY_OFFICE_CODE!r}")
    if kind in _CODE_SHAPES:
        body = body.model_copy(update={"region_code": code})  # a town or village is its region
    if body.channel != "local" and not body.address:
        raise invalid(["body", "address"], f"the {body.channel} channel needs an address")
    if body.channel in ("wecom", "webhook") and not body.address.startswith(
        ("https://", "http://")
    ):
        raise invalid(["body", "address"], "must be an http(s) URL for this channel")
    if body.channel == "email" and "@" not in body.address:
        raise invalid(["body", "address"], "not an e-mail address")
    principal.require_region(body.region_code)
    if body.channel in ("wecom", "webhook") and not _internal_allowed(request):
        await check_url(body.address, ["body", "address"])
    return await reminders.put_recipient(sessions, kind=kind, code=code, body=body)


# ---------------------------------------------------------------- schedules


@router.get("/schedules", response_model=list[SchedulePublic])
async def list_schedules(
    session: SessionDep, _: Principal = require("notify:read")
) -> list[dict[str, Any]]:
    rows = await session.execute(select(SCHEDULES).order_by(SCHEDULES.c.name))
    return [dict(r._mapping) for r in rows]


@router.patch("/schedules/{name}", response_model=SchedulePublic)
async def patch_schedule(
    name: Annotated[str, Path(max_length=64)],
    body: SchedulePatch,
    sessions: SessionsDep,
    principal: Principal = require("notify:admin"),
) -> dict[str, Any]:
    principal.require_level(Level.COUNTY, "changing a county-wide schedule")
    return await scheduler.patch_schedule(sessions, name=name, body=body)


# ---------------------------------------------------------------- webhook subscriptions


@router.post("/subscriptions", status_code=201, response_model=SubscriptionCreated)
async def create_subscription(
    body: SubscriptionCreate,
    sessions: SessionsDep,
    request: Request,
    principal: Principal = require("notify:admin"),
) -> dict[str, Any]:
    """Subscribe a county system to risk alerts. The response carries the signing
    secret, once: every delivery has `X-Backstop-Timestamp: <unix seconds>` and
    `X-Backstop-Signature-V2: sha256=<hex HMAC-SHA256 of "<timestamp>.<raw body>">` under
    the secret (and, for one more version, `X-Backstop-Signature` over the body alone)."""
    if not principal.can_see(body.region_prefix):
        raise Problem(
            403,
            f"region_prefix {body.region_prefix!r} reaches beyond this client's regions",
            errors=[{"loc": ["body", "region_prefix"], "msg": "outside the token's regions"}],
        )
    return await subscriptions.create_subscription(
        sessions,
        body=body,
        created_by=principal.sub,
        allow_internal=_internal_allowed(request),
        service=request.app.state.settings,
    )


async def _subscription(
    session: SessionDep, subscription_id: uuid.UUID, principal: Principal
) -> Any:
    row = (
        await session.execute(select(SUBSCRIPTIONS).where(SUBSCRIPTIONS.c.id == subscription_id))
    ).first()
    if row is None or not principal.can_see(row.region_prefix):
        raise Problem(404, f"no subscription {subscription_id}")
    return row


@router.get("/subscriptions", response_model=list[SubscriptionPublic])
async def list_subscriptions(
    session: SessionDep, principal: Principal = require("notify:read")
) -> list[dict[str, Any]]:
    rows = await session.execute(select(SUBSCRIPTIONS).order_by(SUBSCRIPTIONS.c.created_at))
    return [dict(r._mapping) for r in rows if principal.can_see(r.region_prefix)]


@router.get("/subscriptions/{subscription_id}", response_model=SubscriptionPublic)
async def get_subscription(
    subscription_id: uuid.UUID, session: SessionDep, principal: Principal = require("notify:read")
) -> dict[str, Any]:
    return dict((await _subscription(session, subscription_id, principal))._mapping)


@router.delete("/subscriptions/{subscription_id}", status_code=204)
async def delete_subscription(
    subscription_id: uuid.UUID,
    session: SessionDep,
    sessions: SessionsDep,
    principal: Principal = require("notify:admin"),
) -> Response:
    """Deactivate: nothing more is sent; the delivery log stays."""
    await _subscription(session, subscription_id, principal)
    await subscriptions.deactivate_subscription(sessions, subscription_id=subscription_id)
    return Response(status_code=204)


@router.post(
    "/subscriptions/{subscription_id}/redeliveries", status_code=202, response_model=Redelivery
)
async def redeliver(
    subscription_id: uuid.UUID,
    body: RedeliveryRequest,
    session: SessionDep,
    sessions: SessionsDep,
    principal: Principal = require("notify:admin"),
) -> dict[str, Any]:
    """Send again every alert queued for this subscriber in a time range (`since`
    inclusive, `until` exclusive, at most 92 days): a county system that was down catches
    up without a call to the county office. The deliveries go out as new ones, signed
    afresh, in their original order; receivers dedupe by `X-Backstop-Event-Id`."""
    row = await _subscription(session, subscription_id, principal)
    if not row.active:
        raise Problem(409, f"subscription {subscription_id} is deactivated; subscribe again")
    requeued = await subscriptions.redeliver(
        sessions, subscription_id=subscription_id, since=body.since, until=body.until
    )
    return {"subscription_id": subscription_id, "since": body.since, "until": body.until,
            "requeued": requeued}  # fmt: skip


@router.get(
    "/subscriptions/{subscription_id}/deliveries", response_model=Page[WebhookDeliveryPublic]
)
async def subscription_deliveries(
    subscription_id: uuid.UUID,
    session: SessionDep,
    principal: Principal = require("notify:read"),
    status: DeliveryStatus | None = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> dict[str, Any]:
    """Every delivery to this subscriber, newest first, with each attempt."""
    await _subscription(session, subscription_id, principal)
    d = WEBHOOK_DELIVERIES
    stmt = select(d).where(d.c.subscription_id == subscription_id)
    if status is not None:
        stmt = stmt.where(d.c.status == status)
    after = decode_cursor(cursor, int)
    if after is not None:
        stmt = stmt.where(d.c.seq < after[0])
    rows = (await session.execute(stmt.order_by(d.c.seq.desc()).limit(limit + 1))).all()
    page = rows[:limit]
    attempts = WEBHOOK_ATTEMPTS
    log: dict[Any, list[WebhookAttemptPublic]] = {}
    if page:
        for a in await session.execute(
            select(attempts)
            .where(attempts.c.delivery_id.in_([r.id for r in page]))
            .order_by(attempts.c.id)
        ):
            log.setdefault(a.delivery_id, []).append(
                WebhookAttemptPublic.model_validate(dict(a._mapping))
            )
    return {
        "items": [{**dict(r._mapping), "log": log.get(r.id, [])} for r in page],
        "next_cursor": encode_cursor(page[-1].seq) if len(rows) > limit else None,
    }
