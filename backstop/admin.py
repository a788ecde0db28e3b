"""Operator endpoints every service serves under its admin scope (auth.ADMIN_SCOPES):
the outbox rows Kafka refused for good, to list, re-send or drop.

GET /v1/admin/outbox/parked, POST /v1/admin/outbox/parked/{id}/resend,
DELETE /v1/admin/outbox/parked/{id}. The same acts from a shell: python -m backstop.cli
outbox parked|resend|drop --service <name>."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from pydantic import BaseModel

from backstop import outbox
from backstop.auth import Principal, require
from backstop.db import SessionFactory, unit_of_work
from backstop.errors import Problem
from backstop.pagination import decode_cursor, encode_cursor


class ParkedRow(BaseModel):
    """A parked outbox row, without its value (it may hold personal data)."""

    id: int
    event_id: str
    topic: str
    key: str  # the household id for household events
    event_type: str
    correlation_id: str | None
    size: int  # bytes of the CloudEvent value
    created_at: datetime
    parked_at: datetime
    error: str | None


class ParkedPage(BaseModel):
    items: list[ParkedRow]
    next_cursor: str | None


class Resent(BaseModel):
    id: int
    status: str = "queued"  # the relay sends it next; refused again, it is parked again


RowId = Annotated[int, Path(ge=1, le=2**63 - 1)]


async def _sessions(request: Request) -> SessionFactory:
    # backstop.app mounts this router, so it cannot be imported from here.
    sessions: SessionFactory = request.app.state.runtime.sessions
    return sessions


SessionsDep = Annotated[SessionFactory, Depends(_sessions)]


def outbox_admin_router(scope: str) -> APIRouter:
    router = APIRouter(prefix="/v1/admin/outbox", tags=["admin"])

    @router.get("/parked", response_model=ParkedPage)
    async def list_parked(
        sessions: SessionsDep,
        principal: Principal = require(scope),
        limit: Annotated[int, Query(ge=1, le=500)] = 100,
        cursor: str | None = None,
    ) -> ParkedPage:
        """Outbox rows Kafka refused for good (too large, not serializable), oldest first.
        The relay goes on without them; re-send or drop each."""
        after = decode_cursor(cursor, int)
        async with sessions() as session:
            rows = await outbox.parked(
                session, limit=limit + 1, after_id=after[0] if after else None
            )
        more = len(rows) > limit
        rows = rows[:limit]
        return ParkedPage(
            items=[ParkedRow.model_validate(r, from_attributes=True) for r in rows],
            next_cursor=encode_cursor(rows[-1].id) if more else None,
        )

    @router.post("/parked/{row_id}/resend", response_model=Resent, status_code=202)
    async def resend(
        row_id: RowId, sessions: SessionsDep, principal: Principal = require(scope)
    ) -> Resent:
        """Put a parked row back in the stream (after the broker's limit was raised, say)."""
        async with unit_of_work(sessions) as session:
            if not await outbox.resend_parked(session, [row_id]):
                raise _no_such(row_id)
        return Resent(id=row_id)

    @router.delete("/parked/{row_id}", status_code=204)
    async def drop(
        row_id: RowId, sessions: SessionsDep, principal: Principal = require(scope)
    ) -> Response:
        """Delete a parked row: its event is never sent."""
        async with unit_of_work(sessions) as session:
            if not await outbox.drop_parked(session, [row_id]):
                raise _no_such(row_id)
        return Response(status_code=204)

    return router


def _no_such(row_id: int) -> Problem:
    return Problem(404, f"no parked outbox row {row_id}")
