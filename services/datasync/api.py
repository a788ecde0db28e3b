"""HTTP routes of the datasync service."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query, Request, Response
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.datastructures import FormData, UploadFile

from backstop.app import SessionDep, SessionsDep
from backstop.auth import Level, Principal, PrincipalDep, require
from backstop.errors import Problem, invalid
from backstop.requests import period_param
from backstop.sheets import SheetProblem, upload_format
from services.datasync import ingest, profiles, queries
from services.datasync.config import DatasyncConfig, get_config
from services.datasync.domain import SOURCES, Context, Period, check_period
from services.datasync.models import (
    BatchCreate,
    BatchList,
    BatchPublic,
    BatchSummary,
    DeliveryList,
    ErrorList,
    Preview,
    ProfileCreate,
    ProfileList,
    ProfilePublic,
    RawRecordList,
    RecordHistory,
    UnmatchedList,
)
from services.datasync.parsing import FileLayout, Row, json_rows, open_file
from services.datasync.preview import preview_file
from services.datasync.profiles import as_mapping

router = APIRouter(prefix="/v1", tags=["feeds"])

Limit = Annotated[int, Query(ge=1, le=1000)]


def config_of(request: Request) -> DatasyncConfig:
    config = getattr(request.app.state, "datasync_config", None)
    return config if isinstance(config, DatasyncConfig) else get_config()


def known_source(source: str) -> str:
    if source not in SOURCES:
        raise Problem(404, f"unknown source {source!r}; sources are {', '.join(SOURCES)}")
    return source


def _may_read(principal: Principal, source: str) -> None:
    if not (principal.has("feeds:read") or principal.has(f"feeds:{source}")):
        raise Problem(403, f"missing scope: feeds:read (or feeds:{source})")


BATCH_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,100}$")


def _batch_id(value: Any, loc: list[str | int]) -> str:
    if not isinstance(value, str) or not value:
        raise invalid(loc, "is required")
    if not BATCH_ID.fullmatch(value):
        raise invalid(loc, "must be 1-100 letters, digits or . _ : -")
    return value


def _period(value: Any, loc: list[str | int], config: DatasyncConfig) -> Period:
    if not isinstance(value, str) or not value:
        raise invalid(loc, "is required")
    try:
        return check_period(value, today=datetime.now(config.tz).date())
    except ValueError as exc:
        raise invalid(loc, str(exc)) from None


def _too_large(limit: int, hint: str = "") -> Problem:
    return Problem(413, f"the upload is larger than the limit of {limit} bytes{hint}")


async def _read_body(request: Request, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


async def _open_upload(
    request: Request,
    session: AsyncSession,
    source: str,
    form: FormData,
    config: DatasyncConfig,
) -> tuple[UploadFile, str, FileLayout, Iterator[Row]]:
    """The form's file, opened with the source's newest mapping profile: its format,
    how it was read and its rows. A file that cannot be read is a 413/415/422 saying why."""
    upload = form.get("file")
    if not isinstance(upload, UploadFile):
        raise invalid(["body", "file"], "is required (a CSV, XLSX or XLS file)")
    if upload.size is not None and upload.size > config.max_upload_bytes:
        raise _too_large(config.max_upload_bytes)
    sheet = form.get("sheet") or request.query_params.get("sheet")
    if sheet is not None and (not isinstance(sheet, str) or len(sheet) > 100):
        raise invalid(["body", "sheet"], "must be a sheet name or number")
    fmt = upload_format(upload)
    profile = as_mapping(await profiles.get_profile(session=session, source=source))
    await session.rollback()  # the read is done: no connection held while the file streams
    try:
        layout, rows = open_file(
            upload.file, fmt, source, profile=profile, sheet=sheet or None, limits=config.limits
        )
    except SheetProblem as exc:
        raise exc.problem() from None
    return upload, fmt, layout, rows


_BATCH_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": BatchCreate.model_json_schema()},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file", "batch_id", "period"],
                    "properties": {
                        "file": {"type": "string", "format": "binary"},
                        "batch_id": {"type": "string"},
                        "period": {"type": "string", "example": "2026-10"},
                        "sheet": {"type": "string", "description": "sheet name or number"},
                    },
                }
            },
        },
    }
}


@router.post(
    "/feeds/{source}/batches",
    status_code=201,
    response_model=BatchSummary,
    openapi_extra=_BATCH_BODY,
)
async def submit_batch(
    source: str,
    request: Request,
    response: Response,
    principal: PrincipalDep,
    sessions: SessionsDep,
    session: SessionDep,
) -> dict[str, Any]:
    """A department's batch as JSON, or as a CSV/XLSX/XLS file (multipart, field `file`,
    optional `sheet`) as the department's system exports it.

    Each record is validated; bad ones are listed in `errors` and the rest is kept.
    The same `batch_id` with the same content returns the original response again (201,
    header `Idempotent-Replayed: true`); with other content, 409."""
    known_source(source)
    if not principal.has(f"feeds:{source}"):
        raise Problem(403, f"missing scope: feeds:{source} (each source pushes only its own feed)")
    config = config_of(request)
    limit = config.max_upload_bytes
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    rows: Iterator[Row | None]
    filename: str | None = None
    layout: FileLayout | None = None
    form = None
    try:
        if ctype == "application/json" or ctype.endswith("+json"):
            json_limit = min(limit, config.max_json_bytes)
            if declared and declared.isdigit() and int(declared) > json_limit:
                raise _too_large(json_limit, "; send large deliveries as a CSV or XLSX file")
            body = await _read_body(request, json_limit)
            try:
                document = orjson.loads(body)
            except orjson.JSONDecodeError as exc:
                raise Problem(
                    400, f"malformed JSON: {exc}", errors=[{"loc": ["body"], "msg": str(exc)}]
                ) from None
            if not isinstance(document, dict):
                raise invalid(["body"], "must be an object with batch_id, period and records")
            batch_id = _batch_id(document.get("batch_id"), ["body", "batch_id"])
            period = _period(document.get("period"), ["body", "period"], config)
            records = document.get("records")
            if not isinstance(records, list):
                raise invalid(["body", "records"], "must be a list of records")
            if not records:
                raise invalid(["body", "records"], "the batch has no records")
            if len(records) > config.max_json_records:
                raise Problem(
                    413,
                    f"a JSON batch holds at most {config.max_json_records} records, this one"
                    f" {len(records)}: split it, or send a CSV or XLSX file",
                )
            rows, fmt = json_rows(records, source), "json"
        elif ctype == "multipart/form-data":
            form = await request.form(max_files=1, max_fields=20)
            batch_id = _batch_id(
                form.get("batch_id") or request.query_params.get("batch_id"),
                ["body", "batch_id"],
            )
            period = _period(
                form.get("period") or request.query_params.get("period"),
                ["body", "period"],
                config,
            )
            upload, fmt, layout, rows = await _open_upload(request, session, source, form, config)
            filename = upload.filename
        else:
            raise Problem(
                415,
                f"unsupported content type {ctype or '(none)'}:"
                " send application/json or multipart/form-data with a CSV/XLSX file",
            )
        summary, created = await ingest.ingest_batch(
            sessions=sessions,
            settings=request.app.state.settings,
            config=config,
            source=source,
            batch_id=batch_id,
            period=period,
            fmt=fmt,
            filename=filename,
            submitted_by=principal.sub,
            rows=rows,
            layout=layout,
            now=datetime.now(UTC),
        )
    finally:
        if form is not None:
            await form.close()
    # A resent batch gets the very response the first one got (201 and its summary),
    # the way idempotent APIs replay (a retry after a lost response must not look like
    # an error to the department's system); the header tells a replay apart.
    response.status_code = 201
    if not created:
        response.headers["Idempotent-Replayed"] = "true"
    response.headers["Location"] = f"/v1/feeds/{source}/batches/{batch_id}"
    return summary


@router.post("/feeds/{source}/preview", response_model=Preview)
async def preview_batch(
    source: str, request: Request, principal: PrincipalDep, session: SessionDep
) -> Preview:
    """The same multipart file as an upload (`file`, optional `period` and `sheet`), read
    and checked as the upload would, nothing stored: the sheet and header row found,
    each column's field, unmapped columns, missing fields, the first rows as parsed and
    the row errors."""
    known_source(source)
    if not (principal.has(f"feeds:{source}") or principal.has("feeds:admin")):
        raise Problem(403, f"missing scope: feeds:{source} (or feeds:admin)")
    config = config_of(request)
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > config.max_upload_bytes:
        raise _too_large(config.max_upload_bytes)
    if request.headers.get("content-type", "").split(";")[0].strip() != "multipart/form-data":
        raise Problem(415, "send the file as multipart/form-data (field file)")
    form = await request.form(max_files=1, max_fields=20)
    try:
        period_text = form.get("period") or request.query_params.get("period")
        today = datetime.now(config.tz).date()
        period = (
            _period(period_text, ["body", "period"], config) if period_text else Period.of(today)
        )
        _, _, layout, rows = await _open_upload(request, session, source, form, config)
        ctx = Context(
            source=source,
            period=period,
            today=today,
            pii_key=request.app.state.settings.pii_key,
            derive=True,
            columns=layout.column_of,
        )
        try:
            return preview_file(
                layout=layout, rows=rows, ctx=ctx, max_errors=config.max_errors_listed
            )
        except SheetProblem as exc:
            raise exc.problem() from None
    finally:
        await form.close()


@router.get("/feeds/{source}/profile", response_model=ProfilePublic)
async def get_profile(
    source: str, principal: PrincipalDep, session: SessionDep, version: int | None = None
) -> ProfilePublic:
    """The source's newest mapping profile (or `version`): how its files' headers map."""
    known_source(source)
    if not principal.has("feeds:admin"):
        _may_read(principal, source)
    profile = await profiles.get_profile(session=session, source=source, version=version)
    if profile is None:
        raise Problem(404, f"{source} has no mapping profile" + (f" {version}" if version else ""))
    return profile


@router.get("/feeds/{source}/profiles", response_model=ProfileList)
async def list_profiles(source: str, principal: PrincipalDep, session: SessionDep) -> ProfileList:
    """Every version of the source's mapping profile, newest first."""
    known_source(source)
    if not principal.has("feeds:admin"):
        _may_read(principal, source)
    return ProfileList(items=await profiles.list_profiles(session=session, source=source))


@router.put("/feeds/{source}/profile", response_model=ProfilePublic, status_code=201)
async def put_profile(
    source: str,
    body: ProfileCreate,
    sessions: SessionsDep,
    principal: Principal = require("feeds:admin"),
) -> ProfilePublic:
    """A new version of the source's mapping profile (a county act: feeds:admin and
    county level). Files sent from now on are read with it."""
    known_source(source)
    principal.require_level(Level.COUNTY, "changing a mapping profile")
    return await profiles.save_profile(
        sessions=sessions, source=source, body=body, created_by=principal.sub
    )


@router.get("/feeds/{source}/batches", response_model=BatchList)
async def list_batches(
    source: str,
    principal: PrincipalDep,
    session: SessionDep,
    period: str | None = None,
    limit: Limit = 50,
    cursor: str | None = None,
) -> BatchList:
    known_source(source)
    _may_read(principal, source)
    if period is not None:
        period = str(period_param(period, ["query", "period"]))
    return await queries.list_batches(
        session=session, source=source, period=period, limit=limit, cursor=cursor
    )


@router.get("/feeds/{source}/batches/{batch_id}", response_model=BatchPublic)
async def get_batch(
    source: str, batch_id: str, principal: PrincipalDep, session: SessionDep
) -> BatchPublic:
    known_source(source)
    _may_read(principal, source)
    batch = await queries.get_batch(session=session, source=source, batch_id=batch_id)
    if batch is None:
        raise Problem(404, f"no batch {batch_id} from {source}")
    return batch


@router.get("/feeds/{source}/batches/{batch_id}/errors", response_model=ErrorList)
async def get_errors(
    source: str,
    batch_id: str,
    principal: PrincipalDep,
    session: SessionDep,
    limit: Limit = 1000,
    cursor: str | None = None,
) -> ErrorList:
    """Every rejected record of the batch with its field and reason (no ID numbers), for
    the department to correct and resend under new record ids."""
    known_source(source)
    _may_read(principal, source)
    if await queries.get_batch(session=session, source=source, batch_id=batch_id) is None:
        raise Problem(404, f"no batch {batch_id} from {source}")
    return await queries.list_errors(
        session=session, source=source, batch_id=batch_id, limit=limit, cursor=cursor
    )


@router.get("/feeds/{source}/batches/{batch_id}/records", response_model=RawRecordList)
async def get_raw_records(
    source: str,
    batch_id: str,
    session: SessionDep,
    principal: Principal = require("feeds:read", "registry:pii"),
    limit: Limit = 100,
    cursor: str | None = None,
) -> RawRecordList:
    """The batch's records as the department sent them (ID numbers included), accepted
    and rejected, for audit. Needs feeds:read and registry:pii. A matched record is
    listed only inside the caller's regions; unmatched and rejected ones only to the
    sending department (feeds:<source>) and county-level principals."""
    known_source(source)
    if await queries.get_batch(session=session, source=source, batch_id=batch_id) is None:
        raise Problem(404, f"no batch {batch_id} from {source}")
    return await queries.list_raw_records(
        session=session,
        principal=principal,
        source=source,
        batch_id=batch_id,
        limit=limit,
        cursor=cursor,
    )


@router.get("/feeds/{source}/records/{record_id}/history", response_model=RecordHistory)
async def get_record_history(
    source: str, record_id: str, principal: PrincipalDep, session: SessionDep
) -> RecordHistory:
    """Every version of a record, oldest first: as first received, each correction
    (更正) and the void (作废), each with the batch it came in. Needs feeds:read (or
    feeds:<source>); a matched record is seen inside the caller's regions, an unmatched
    one by the sending department and county-level principals. ID numbers are masked and
    the raw rows left out unless the client has registry:pii."""
    known_source(source)
    _may_read(principal, source)
    history = await queries.record_history(
        session=session,
        principal=principal,
        source=source,
        record_id=record_id,
        pii=principal.has("registry:pii"),
    )
    if history is None:  # the same answer outside the caller's regions: no region oracle
        raise Problem(404, f"no record {record_id} from {source}")
    return history


@router.get("/unmatched", response_model=UnmatchedList)
async def list_unmatched(
    request: Request,
    session: SessionDep,
    principal: PrincipalDep,
    source: str | None = None,
    period: str | None = None,
    id_hash: Annotated[str | None, Query(pattern=r"^[0-9a-f]{64}$")] = None,
    limit: Limit = 100,
    cursor: str | None = None,
) -> UnmatchedList:
    """Accepted records whose person is not (yet) in the register. They are matched
    automatically when the registry adds that person. An unmatched record has no region:
    it is visible to the department that sent it (feeds:<source>) and to county-level
    principals with feeds:read. ID numbers are masked unless the client has registry:pii."""
    if source is not None:
        known_source(source)
    sources = queries.unmatched_sources(principal)
    if not sources or (source is not None and source not in sources):
        raise Problem(
            403,
            "unmatched records are visible to the department that sent them (feeds:<source>)"
            " and to county-level principals with feeds:read",
        )
    if period is not None:
        _period(period, ["query", "period"], config_of(request))
    return await queries.list_unmatched(
        session=session,
        principal=principal,
        source=source,
        period=period,
        limit=limit,
        cursor=cursor,
        pii=principal.has("registry:pii"),
        id_hash=id_hash,
    )


@router.get("/deliveries", response_model=DeliveryList, tags=["deliveries"])
async def list_deliveries(
    request: Request,
    session: SessionDep,
    period: str,
    principal: Principal = require("feeds:read"),
) -> DeliveryList:
    """Who has delivered for `period`, what is due and what is late (delivery calendar)."""
    config = config_of(request)
    return await queries.deliveries(
        session=session,
        period=period_param(period, ["query", "period"]),
        rules=config.rules,
        today=datetime.now(config.tz).date(),
        tz=config.tz,
    )
