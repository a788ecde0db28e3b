"""HTTP routes of the registry service: parse, authorize, call a handler, shape the response."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import AwareDatetime

from backstop.app import SessionDep, SessionsDep, reading
from backstop.auth import Principal, require
from backstop.errors import OrjsonResponse, Problem, invalid
from backstop.idnumber import InvalidIdNumber, parse_id_number
from backstop.settings import Settings
from backstop.sheets import SheetProblem, file_upload_body, form_file, upload_format
from services.registry import bulk_import, commands, domain, queries, views
from services.registry.county import county_code
from services.registry.import_file import (
    HouseholdRows,
    RowError,
    VillageNames,
    iter_households,
    open_export,
)
from services.registry.models import (
    AnnualIncome,
    ContactsIn,
    HistoryPage,
    HouseholdCreate,
    HouseholdCreated,
    HouseholdPage,
    HouseholdPatch,
    HouseholdPublic,
    ImportError_,
    ImportSummary,
    IncomeImport,
    MemberCreate,
    MemberMove,
    MemberPatch,
    MonitoringStatus,
    PersonLocation,
    PersonLookup,
    RegionPage,
    SpecialGroup,
)
from services.registry.models import HouseholdType as HouseholdTypeLit

router = APIRouter(prefix="/v1", tags=["registry"])

READ = "registry:read"
WRITE = "registry:write"
PII = "registry:pii"
MAX_UPLOAD_BYTES = int(os.environ.get("BACKSTOP_REGISTRY_MAX_UPLOAD_MB", "100")) * 1024 * 1024


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


# --- Households --------------------------------------------------------------------------


@router.post("/households", status_code=201, response_model=HouseholdCreated)
async def create_household(
    body: HouseholdCreate, request: Request, principal: Principal = require(WRITE)
) -> Response:
    """Register a household (建档立卡). 422 for a bad ID number, an unknown village or not
    exactly one head; 409 when a member is already in another household."""
    principal.require_region(body.region_code.strip())
    household_id = await commands.create_household(
        request.app.state.runtime.sessions,  # one dependency fewer than SessionsDep
        body,
        actor=principal.sub,
        pii_key=_settings(request).pii_key,
    )
    # The model documents it; the answer is serialised once, not validated again.
    return OrjsonResponse({"id": household_id, "version": 1}, status_code=201)


# The two reads the provincial platform polls: on a read connection (no transaction, no
# ORM session) and answered as plain values serialised once by orjson; the response
# models document them.
@router.get("/households", response_model=HouseholdPage)
async def list_households(
    request: Request,
    principal: Principal = require(READ),
    region: Annotated[str | None, Query(pattern=r"^\d{1,12}$")] = None,
    type: HouseholdTypeLit | None = None,
    monitoring: MonitoringStatus | None = None,
    special_group: SpecialGroup | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    updated_since: AwareDatetime | None = None,
) -> Response:
    """Households by region prefix, type, monitoring status and special group, within the
    token's regions; `next_cursor` fetches the next page. `updated_since` (with a time
    zone) gives the province an incremental sync: the households changed since then, oldest
    change first."""
    async with reading(request) as pg:
        found, next_cursor = await queries.list_households(
            pg,
            principal=principal,
            region=region,
            type=type,
            monitoring=monitoring,
            special_group=special_group,
            limit=limit,
            cursor=cursor,
            updated_since=updated_since,
        )
    pii = principal.has(PII)
    return OrjsonResponse(
        {"items": [queries.to_public(r, pii=pii) for r in found], "next_cursor": next_cursor}
    )


@router.get("/households/{household_id}", response_model=HouseholdPublic)
async def get_household(
    household_id: uuid.UUID, request: Request, principal: Principal = require(READ)
) -> Response:
    row = await queries.household_row(request.app.state.runtime.sessions, household_id)
    if row is None or not principal.can_see(row["region_code"]):
        raise views.household_not_found(household_id)  # alike: no region oracle
    return OrjsonResponse(queries.to_public(row, pii=principal.has(PII)))


@router.patch("/households/{household_id}", status_code=204)
async def patch_household(
    household_id: uuid.UUID,
    body: HouseholdPatch,
    sessions: SessionsDep,
    principal: Principal = require(WRITE),
) -> Response:
    await commands.update_household(
        sessions, household_id, body, actor=principal.sub, principal=principal
    )
    return Response(status_code=204)


@router.get("/households/{household_id}/history", response_model=HistoryPage)
async def household_history(
    household_id: uuid.UUID,
    session: SessionDep,
    principal: Principal = require(READ),
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> HistoryPage:
    """Who changed what, and when (oldest first)."""
    region = await queries.household_region(session, household_id)
    principal.require_visible(region, views.household_not_found(household_id))
    items, next_cursor = await queries.history(session, household_id, limit=limit, cursor=cursor)
    return HistoryPage(items=items, next_cursor=next_cursor)


# --- Members -------------------------------------------------------------------------------


@router.post("/households/{household_id}/members", status_code=201)
async def add_member(
    household_id: uuid.UUID,
    body: MemberCreate,
    request: Request,
    sessions: SessionsDep,
    principal: Principal = require(WRITE),
) -> dict[str, str]:
    person_id = await commands.add_member(
        sessions,
        household_id,
        body,
        actor=principal.sub,
        can_see=principal.can_see,
        pii_key=_settings(request).pii_key,
    )
    return {"person_id": person_id}


@router.patch("/households/{household_id}/members/{person_id}", status_code=204)
async def patch_member(
    household_id: uuid.UUID,
    person_id: uuid.UUID,
    body: MemberPatch,
    sessions: SessionsDep,
    principal: Principal = require(WRITE),
) -> Response:
    await commands.update_member(
        sessions, household_id, person_id, body, actor=principal.sub, can_see=principal.can_see
    )
    return Response(status_code=204)


@router.delete("/households/{household_id}/members/{person_id}", status_code=204)
async def remove_member(
    household_id: uuid.UUID,
    person_id: uuid.UUID,
    sessions: SessionsDep,
    principal: Principal = require(WRITE),
    reason: Annotated[str | None, Query(max_length=200)] = None,
) -> Response:
    """Take a person off the household (death, marriage out ...), with the reason."""
    await commands.remove_member(
        sessions,
        household_id,
        person_id,
        reason=reason,
        actor=principal.sub,
        can_see=principal.can_see,
    )
    return Response(status_code=204)


@router.post("/households/{household_id}/members/{person_id}/move", status_code=204)
async def move_member(
    household_id: uuid.UUID,
    person_id: uuid.UUID,
    body: MemberMove,
    sessions: SessionsDep,
    principal: Principal = require(WRITE),
) -> Response:
    """Move a person to another household; the person keeps their id and history."""
    await commands.move_member(
        sessions,
        household_id,
        person_id,
        to_household_id=body.to_household_id,
        relation=body.relation,
        actor=principal.sub,
        can_see=principal.can_see,
    )
    return Response(status_code=204)


# --- Incomes, contacts ----------------------------------------------------------------------


@router.put("/households/{household_id}/incomes/{year}", status_code=204)
async def put_income(
    household_id: uuid.UUID,
    year: int,
    body: AnnualIncome,
    sessions: SessionsDep,
    principal: Principal = require(WRITE),
) -> Response:
    """Record one year's net income with its wage, business, transfer and property parts."""
    if body.year != year:
        raise invalid(["body", "year"], f"must equal the year in the path ({year})")
    try:
        income = domain.make_income(**body.model_dump())
    except domain.RuleViolation as exc:
        raise invalid(["body", exc.field], exc.message) from None
    await commands.set_income(
        sessions, household_id, income, actor=principal.sub, can_see=principal.can_see
    )
    return Response(status_code=204)


@router.post("/incomes/import")
async def import_incomes(
    body: IncomeImport, sessions: SessionsDep, principal: Principal = require(WRITE)
) -> dict[str, int]:
    """A yearly income import: updates existing households' income of `year`, each change
    in the household's history; all rows or none. Returns how many changed."""
    incomes = []
    for i, row in enumerate(body.incomes):
        parts = row.model_dump(exclude={"household_id"})
        try:
            incomes.append((row.household_id, domain.make_income(year=body.year, **parts)))
        except domain.RuleViolation as exc:
            raise invalid(["body", "incomes", i, exc.field], exc.message) from None
    updated = await commands.import_incomes(
        sessions, incomes, actor=principal.sub, can_see=principal.can_see
    )
    return {"year": body.year, "received": len(incomes), "updated": updated}


@router.put("/households/{household_id}/contacts", status_code=204)
async def put_contacts(
    household_id: uuid.UUID,
    body: ContactsIn,
    sessions: SessionsDep,
    principal: Principal = require(WRITE),
) -> Response:
    """Replace the key contacts (重点联系人): a leader for a monitored household, a cadre
    or work-team member for a marginal one."""
    await commands.set_contacts(
        sessions, household_id, body.contacts, actor=principal.sub, can_see=principal.can_see
    )
    return Response(status_code=204)


# --- Persons, regions -----------------------------------------------------------------------


@router.get("/persons/{id_number}", response_model=PersonLocation)
async def find_person(
    id_number: str, session: SessionDep, principal: Principal = require(READ)
) -> PersonLocation:
    """The household a person belongs to. `POST /v1/persons/lookup` does the same with
    the number in the body, out of URLs that proxies log."""
    return await _locate(session, id_number, principal, ["path", "id_number"])


@router.post("/persons/lookup", response_model=PersonLocation)
async def lookup_person(
    body: PersonLookup, session: SessionDep, principal: Principal = require(READ)
) -> PersonLocation:
    return await _locate(session, body.id_number, principal, ["body", "id_number"])


async def _locate(
    session: Any, id_number: str, principal: Principal, loc: list[str | int]
) -> PersonLocation:
    try:
        value = parse_id_number(id_number).value
    except InvalidIdNumber as exc:
        raise invalid(loc, str(exc)) from None
    found = await queries.find_person(session, value)
    principal.require_visible(
        found[2] if found else None, Problem(404, "no household has this person")
    )
    assert found is not None
    household_id, person_id, _ = found
    return PersonLocation(household_id=str(household_id), person_id=str(person_id))


@router.get("/regions", response_model=RegionPage)
async def list_regions(
    session: SessionDep,
    _: Principal = require(READ),
    parent: Annotated[str | None, Query(pattern=r"^\d{6,9}$")] = None,
) -> RegionPage:
    """Towns of the county (no `parent`, or the county code), or villages of a town."""
    items = await queries.regions(session, parent or county_code())
    if not items and parent and not await queries.region_exists(session, parent):
        if parent != county_code():
            raise invalid(["query", "parent"], f"{parent} is not a region of this county", 404)
    return RegionPage(items=items)


# --- Bulk import ----------------------------------------------------------------------------


@router.post(
    "/households/import",
    response_model=ImportSummary,
    openapi_extra=file_upload_body(
        "the national system's household-member export (XLSX, XLS or CSV) as downloaded:"
        " 户编号, 证件号码, 姓名, 与户主关系, 乡/村 or 行政区划代码, 劳动技能, 健康状况, 务工状况 …;"
        " title rows and merged headers are fine"
    ),
)
async def import_households(
    request: Request, sessions: SessionsDep, principal: Principal = require(WRITE)
) -> ImportSummary:
    """Import a register export (CSV, XLSX or XLS, one row per person): the national
    monitoring system's export as counties download it (title rows and merged headers
    are fine; docs/national-export.md lists the columns read), or Chinese or English
    headers. A household already registered under its household number is brought up to
    date, each changed household in one history entry (`household.imported`); bad rows
    are reported with their row and column, good ones kept. A file that cannot be read,
    or has no header row with the required columns, is a 4xx before anything is written.
    Households outside the token's regions are rejected row by row."""
    upload = await form_file(request, max_bytes=MAX_UPLOAD_BYTES)
    try:
        fmt = upload_format(upload)
        try:
            export = open_export(upload.file, fmt)
        except SheetProblem as exc:
            raise exc.problem() from None
        async with sessions() as session:
            villages = VillageNames(await queries.region_rows(session))

        def scoped() -> Iterator[HouseholdRows]:
            for item in iter_households(export.rows, villages):
                if item.body is not None and not principal.can_see(item.body["region_code"]):
                    item.error = RowError(
                        item.first_row,
                        item.household_number,
                        "region_code",
                        "outside this client's regions",
                    )
                    item.body = None
                yield item

        try:
            report = await bulk_import.import_households(
                sessions,
                scoped(),
                actor=principal.sub,
                pii_key=_settings(request).pii_key,
                columns=frozenset(export.table.fields.values()),
                can_see=principal.can_see,
                create=not export.households_only,
            )
        except SheetProblem as exc:  # the file breaks off further down (earlier chunks stay)
            raise exc.problem() from None
    finally:
        await upload.close()
    return ImportSummary(
        rows=report.rows,
        households=report.households,
        created=report.created,
        existing=report.existing,
        updated=report.updated,
        rejected=report.rejected,
        errors=[
            ImportError_(row=r, household_number=n, field=f, message=m, column=export.column(f))
            for r, n, f, m in report.errors
        ],
        errors_truncated=report.rejected > len(report.errors),
    )
