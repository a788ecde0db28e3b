"""省平台预警 (二(二) 后台系统数据监测预警): the provincial platform pushes the warnings of its
three systems (脱贫人口分类管理系统, 返贫预警监测系统, 边缘人口监测管理系统) as JSON or as its
XLSX export; each becomes verification work at the door, and the platform reads back
what became of it by its own warning id.

Assistance owns warnings because a warning is a clue from above: it opens the household's
verification task (入户核实) or joins the one already open, and its outcome is that task's
outcome — all assistance's. Matching needs no ID numbers: the household read model
already carries each member's `id_hash` and the household number (户编号), so a member's
ID number is kept here only as its HMAC and masked form (as clues keep it). A warning no
household matches yet is kept and re-matched by a job as registry's snapshots arrive.

Each matched warning leaves as `backstop.assistance.warning.matched.v1`; risk takes a
prominent_issue (存在突出问题有返贫致贫风险) as evidence of the item's factor."""

from __future__ import annotations

import hashlib
import io
from datetime import date, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator
from sqlalchemy import Column, Date, DateTime, Index, String, and_, false, or_, select, text, true
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import Field as SQLField
from sqlmodel import col

from backstop import outbox
from backstop.app import RuntimeDep, SessionDep
from backstop.auth import Level, Principal, require
from backstop.contracts.assistance import PlatformWarningMatched
from backstop.db import SessionFactory, unit_of_work
from backstop.errors import Problem, invalid
from backstop.idnumber import InvalidIdNumber, id_hash, mask_id, parse_id_number
from backstop.pagination import decode_cursor, encode_cursor
from backstop.sheets import (
    Limits,
    SheetProblem,
    file_upload_body,
    form_file,
    open_table,
    upload_format,
)
from services.assistance import common, domain, province, tasks
from services.assistance.models import AssistanceBase, Household, Strict, Task, new_id, utcnow

router = APIRouter(prefix="/v1/province", tags=["province"])
WRITE = require("province:write")
READ = require("province:read")
MAX_WARNINGS = 5000
MAX_FILE_BYTES = 10 * 1024 * 1024


class ProvinceWarning(AssistanceBase, table=True):
    """One platform warning, kept under the platform's own id (idempotent on it)."""

    __tablename__ = "province_warnings"
    __table_args__ = (
        Index(
            "ix_province_warnings_unmatched",
            "received_at",
            postgresql_where=text("household_id IS NULL"),
        ),
    )

    id: str = SQLField(default_factory=new_id, primary_key=True, max_length=36)
    warning_id: str = SQLField(max_length=64, unique=True)
    system: str = SQLField(max_length=20)
    item: str = SQLField(max_length=30)
    level: str = SQLField(max_length=20)
    warned_on: date = SQLField(sa_column=Column(Date, nullable=False))
    detail: str | None = SQLField(default=None, sa_column=Column(String, nullable=True))
    household_number: str | None = SQLField(default=None, max_length=64, index=True)
    person_id_hash: str | None = SQLField(default=None, max_length=64, index=True)
    person_id_masked: str | None = SQLField(default=None, max_length=18)
    fingerprint: str = SQLField(max_length=64)
    filed_by: str = SQLField(max_length=100)
    received_at: datetime = SQLField(
        default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False)
    )
    household_id: str | None = SQLField(default=None, max_length=36, index=True)
    region_code: str | None = SQLField(default=None, max_length=12, index=True)
    task_id: str | None = SQLField(default=None, max_length=36, index=True)
    matched_at: datetime | None = SQLField(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=True)
    )


# ------------------------------------------------------------------------- schemas


def _code(convert: Any) -> Any:
    return BeforeValidator(lambda v: convert(v) if isinstance(v, str) else v)


SystemCode = Annotated[
    Literal["classification", "return_warning", "marginal"], _code(province.system_code)
]
ItemCode = Annotated[
    Literal[
        "income",
        "food_clothing",
        "compulsory_education",
        "basic_medical",
        "housing",
        "drinking_water",
    ],
    _code(province.item_code),
]
LevelCode = Annotated[Literal["possible_issue", "prominent_issue"], _code(province.level_code)]


class WarningIn(Strict):
    """One warning. `system`, `item` and `level` take the code or the platform's Chinese
    words (返贫预警监测系统, 住房安全, 存在突出问题有返贫致贫风险)."""

    warning_id: str = Field(min_length=1, max_length=64, pattern=r"^[0-9A-Za-z_\-:.]+$")
    system: SystemCode
    item: ItemCode
    level: LevelCode
    warned_on: date
    household_number: str | None = Field(default=None, min_length=1, max_length=64)
    id_number: str | None = Field(default=None, min_length=15, max_length=18)
    detail: str | None = Field(default=None, max_length=2000)

    @field_validator("id_number")
    @classmethod
    def _valid_id(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return parse_id_number(value).value
        except InvalidIdNumber as exc:
            raise ValueError(str(exc)) from None

    def names_household(self) -> bool:
        return bool(self.household_number or self.id_number)


_EXAMPLE: dict[str, Any] = {
    "warning_id": "GD-FPYJ-2026-000123",
    "system": "返贫预警监测系统",
    "item": "住房安全",
    "level": "存在突出问题有返贫致贫风险",
    "warned_on": "2026-11-20",
    "household_number": "4418810010010001",
    "detail": "住房安全鉴定为C级",
}


class WarningBatch(Strict):
    warnings: list[WarningIn] = Field(min_length=1, max_length=MAX_WARNINGS)

    model_config = ConfigDict(json_schema_extra={"examples": [{"warnings": [_EXAMPLE]}]})


class WarningResult(BaseModel):
    index: int
    warning_id: str
    status: Literal["opened", "joined", "unmatched", "duplicate", "conflict"]
    household_id: str | None = None
    task_id: str | None = None


class WarningIntake(BaseModel):
    received: int
    opened: int  # a new verification task
    joined: int  # the household's open verification task
    unmatched: int  # kept, re-matched as households arrive
    duplicates: int  # the same warning id with the same content: nothing changed
    conflicts: int  # the same warning id with other content: refused, the first kept
    results: list[WarningResult]

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "received": 1,
                    "opened": 1,
                    "joined": 0,
                    "unmatched": 0,
                    "duplicates": 0,
                    "conflicts": 0,
                    "results": [
                        {
                            "index": 0,
                            "warning_id": "GD-FPYJ-2026-000123",
                            "status": "opened",
                            "household_id": "0b7c…",
                            "task_id": "5f1e…",
                        }
                    ],
                }
            ]
        }
    )


class WarningOutcome(BaseModel):
    """What became of one warning: its task, the outcome, when and by whom."""

    warning_id: str
    system: str
    system_label: str
    item: str
    item_label: str
    level: str
    level_label: str
    warned_on: date
    received_at: datetime
    status: Literal["unmatched", "verifying", "verified", "cancelled"]
    household_id: str | None
    household_number: str | None
    region_code: str | None
    person_id_masked: str | None
    task_id: str | None
    outcome: str | None  # confirmed | not_confirmed (入户核实的结论)
    verified_on: date | None
    verified_by: str | None
    notes: str | None

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "warning_id": "GD-FPYJ-2026-000123",
                    "system": "return_warning",
                    "system_label": "返贫预警监测系统",
                    "item": "housing",
                    "item_label": "住房安全",
                    "level": "prominent_issue",
                    "level_label": "存在突出问题有返贫致贫风险",
                    "warned_on": "2026-11-20",
                    "received_at": "2026-11-20T08:00:00Z",
                    "status": "verified",
                    "household_id": "0b7c…",
                    "household_number": "4418810010010001",
                    "region_code": "441881101001",
                    "person_id_masked": None,
                    "task_id": "5f1e…",
                    "outcome": "confirmed",
                    "verified_on": "2026-11-24",
                    "verified_by": "镇干部王某",
                    "notes": "已纳入监测，启动危房改造",
                }
            ]
        }
    )


class WarningPage(BaseModel):
    items: list[WarningOutcome]
    next_cursor: str | None

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "items": WarningOutcome.model_config["json_schema_extra"]["examples"],  # type: ignore[index]
                    "next_cursor": "MjAyNi0xMS0yMFQwODowMDowMFp8NWYxZQ",
                }
            ]
        }
    )


# ------------------------------------------------------------------------- matching


async def match_households(
    session: AsyncSession, warnings: list[ProvinceWarning]
) -> tuple[dict[str, Household], dict[str, Household]]:
    """The warnings' households by household number and by a member's id_hash, read from
    the household read model (one statement each, whatever the batch's size)."""
    numbers = {w.household_number for w in warnings if w.household_number}
    hashes = {w.person_id_hash for w in warnings if w.person_id_hash}
    by_number: dict[str, Household] = {}
    by_hash: dict[str, Household] = {}
    if numbers:
        number = col(Household.snapshot)["household_number"].astext
        for household in (
            await session.execute(select(Household).where(number.in_(sorted(numbers))))
        ).scalars():
            by_number[household.snapshot["household_number"]] = household
    if hashes:
        rows = await session.execute(
            text(
                "SELECT m->>'id_hash', h.household_id FROM households h,"
                " jsonb_array_elements(h.snapshot->'members') m"
                " WHERE m->>'id_hash' = ANY(:hashes)"
            ),
            {"hashes": sorted(hashes)},
        )
        for person_hash, household_id in rows.all():
            found = await session.get(Household, household_id)
            if found is not None:
                by_hash[person_hash] = found
    return by_number, by_hash


def _household_of(
    warning: ProvinceWarning, by_number: dict[str, Household], by_hash: dict[str, Household]
) -> Household | None:
    # The household number first: it names the household the platform means.
    if warning.household_number and warning.household_number in by_number:
        return by_number[warning.household_number]
    if warning.person_id_hash:
        return by_hash.get(warning.person_id_hash)
    return None


async def _attach(session: AsyncSession, warning: ProvinceWarning, household: Household) -> bool:
    """Open the household's verification task or join the open one; tell risk."""
    task, opened = await tasks.open_verification(
        session,
        household_id=household.household_id,
        region_code=household.region_code,
        factors=[province.ITEMS[warning.item][1]],
        origin="province",
        origin_ref=warning.id,
        opened_on=domain.today(),
        reason=province.task_reason(warning.system, warning.item, warning.level),
    )
    warning.household_id, warning.region_code = household.household_id, household.region_code
    warning.task_id, warning.matched_at = task.id, utcnow()
    await outbox.publish(
        session,
        common.make_assistance_event(
            PlatformWarningMatched(
                warning_id=warning.warning_id,
                household_id=household.household_id,
                region_code=household.region_code,
                system=warning.system,
                system_label=province.SYSTEMS[warning.system],
                item=warning.item,
                item_label=province.ITEMS[warning.item][0],
                factor=province.ITEMS[warning.item][1],
                level=warning.level,
                warned_on=warning.warned_on,
                task_id=task.id,
            ),
            household.household_id,
        ),
    )
    return opened


def _fingerprint(w: WarningIn, person_hash: str | None) -> str:
    parts = (w.system, w.item, w.level, w.warned_on.isoformat(), w.household_number or "")
    return hashlib.sha256("|".join((*parts, person_hash or "")).encode()).hexdigest()


# ------------------------------------------------------------------------- commands


async def take_warnings(
    sessions: SessionFactory, *, warnings: list[WarningIn], principal: Principal, pii_key: str
) -> WarningIntake:
    """Keep each new warning, match it and open or join its household's verification
    task, all in one transaction. A warning id already kept changes nothing."""
    principal.require_level(Level.COUNTY, "pushing the provincial platform's warnings")
    seen: dict[str, int] = {}
    for index, w in enumerate(warnings):
        if not w.names_household():
            raise invalid(
                ["body", "warnings", index, "household_number"],
                "name the household (household_number) or a member (id_number)",
            )
        if w.warning_id in seen:
            raise invalid(
                ["body", "warnings", index, "warning_id"],
                f"the same warning id as warnings[{seen[w.warning_id]}]",
            )
        seen[w.warning_id] = index
    rows: list[ProvinceWarning] = []
    for w in warnings:
        person_hash = id_hash(w.id_number, pii_key) if w.id_number else None
        rows.append(
            ProvinceWarning(
                warning_id=w.warning_id,
                system=w.system,
                item=w.item,
                level=w.level,
                warned_on=w.warned_on,
                detail=w.detail,
                household_number=w.household_number,
                person_id_hash=person_hash,
                person_id_masked=mask_id(w.id_number) if w.id_number else None,
                fingerprint=_fingerprint(w, person_hash),
                filed_by=principal.sub,
            )
        )
    results: list[WarningResult] = []
    async with unit_of_work(sessions) as session:
        by_number, by_hash = await match_households(session, rows)
        for index, row in enumerate(rows):
            household = _household_of(row, by_number, by_hash)
            if household is not None and not principal.can_see(household.region_code):
                raise Problem(
                    403,
                    f"warnings[{index}]: the household is outside this client's regions",
                )
        kept = set(
            (
                await session.execute(
                    select(col(ProvinceWarning.warning_id), col(ProvinceWarning.fingerprint))
                    .where(col(ProvinceWarning.warning_id).in_(list(seen)))
                    .with_for_update()
                )
            ).all()
        )
        known = {warning_id: fingerprint for warning_id, fingerprint in kept}
        for index, row in enumerate(rows):
            if row.warning_id in known:
                same = known[row.warning_id] == row.fingerprint
                results.append(
                    WarningResult(
                        index=index,
                        warning_id=row.warning_id,
                        status="duplicate" if same else "conflict",
                    )
                )
                continue
            inserted = await session.scalar(
                insert(ProvinceWarning)
                .values(**row.model_dump())
                .on_conflict_do_nothing(index_elements=["warning_id"])
                .returning(col(ProvinceWarning.id))
            )
            if inserted is None:  # a concurrent push kept it first
                results.append(
                    WarningResult(index=index, warning_id=row.warning_id, status="duplicate")
                )
                continue
            warning = await session.get(ProvinceWarning, inserted)
            assert warning is not None
            household = _household_of(warning, by_number, by_hash)
            status: Literal["opened", "joined", "unmatched"] = "unmatched"
            if household is not None:
                status = "opened" if await _attach(session, warning, household) else "joined"
            results.append(
                WarningResult(
                    index=index,
                    warning_id=row.warning_id,
                    status=status,
                    household_id=warning.household_id,
                    task_id=warning.task_id,
                )
            )
    count = {s: sum(r.status == s for r in results) for s in ("opened", "joined", "unmatched")}
    return WarningIntake(
        received=len(results),
        opened=count["opened"],
        joined=count["joined"],
        unmatched=count["unmatched"],
        duplicates=sum(r.status == "duplicate" for r in results),
        conflicts=sum(r.status == "conflict" for r in results),
        results=results,
    )


async def rematch_warnings(sessions: SessionFactory, *, limit: int = 1000) -> int:
    """Match warnings kept unmatched to households that arrived since (safe with replicas:
    rows are claimed SKIP LOCKED). Returns how many matched."""
    async with unit_of_work(sessions) as session:
        pending = list(
            (
                await session.execute(
                    select(ProvinceWarning)
                    .where(col(ProvinceWarning.household_id).is_(None))
                    .order_by(col(ProvinceWarning.received_at))
                    .limit(limit)
                    .with_for_update(skip_locked=True)
                )
            ).scalars()
        )
        if not pending:
            return 0
        by_number, by_hash = await match_households(session, pending)
        matched = 0
        for warning in pending:
            household = _household_of(warning, by_number, by_hash)
            if household is not None:
                await _attach(session, warning, household)
                matched += 1
    return matched


# ------------------------------------------------------------------------- reading back


def outcome_of(warning: ProvinceWarning, task: Task | None) -> WarningOutcome:
    return WarningOutcome(
        warning_id=warning.warning_id,
        system=warning.system,
        system_label=province.SYSTEMS[warning.system],
        item=warning.item,
        item_label=province.ITEMS[warning.item][0],
        level=warning.level,
        level_label=province.LEVELS[warning.level],
        warned_on=warning.warned_on,
        received_at=warning.received_at,
        status=province.warning_status(task.status if task else None),
        household_id=warning.household_id,
        household_number=warning.household_number,
        region_code=warning.region_code,
        person_id_masked=warning.person_id_masked,
        task_id=warning.task_id,
        outcome=task.outcome if task else None,
        verified_on=task.completed_at.date() if task and task.completed_at else None,
        verified_by=task.verified_by if task else None,
        notes=task.notes if task else None,
    )


def _visible(principal: Principal) -> Any:
    """Matched warnings in the caller's regions; unmatched ones to county-level callers
    and to whoever pushed them."""
    return or_(
        and_(
            col(ProvinceWarning.region_code).is_not(None),
            principal.region_clause(col(ProvinceWarning.region_code)),
        ),
        col(ProvinceWarning.filed_by) == principal.sub,
        and_(
            col(ProvinceWarning.region_code).is_(None),
            true() if principal.county_level else false(),
        ),
    )


_WITH_TASK = select(ProvinceWarning, Task).outerjoin(
    Task, col(Task.id) == col(ProvinceWarning.task_id)
)

_STATUS_CLAUSES = {
    "unmatched": col(ProvinceWarning.task_id).is_(None),
    "verifying": col(Task.status) == "open",
    "verified": col(Task.status) == "done",
    "cancelled": col(Task.status) == "cancelled",
}


# ------------------------------------------------------------------------- routes


@router.post("/warnings", response_model=WarningIntake)
async def post_warnings(
    body: WarningBatch, runtime: RuntimeDep, principal: Principal = WRITE
) -> WarningIntake:
    """Warnings pushed as JSON (`system`, `item`, `level` as codes or in Chinese)."""
    return await take_warnings(
        runtime.sessions,
        warnings=body.warnings,
        principal=principal,
        pii_key=runtime.settings.pii_key,
    )


def _read_file(data: bytes, fmt: str) -> list[WarningIn]:
    """The platform's export read through the kernel's table finding; any bad row refuses
    the file (422 naming each row and column), so nothing is half-taken."""
    try:
        table = open_table(
            io.BytesIO(data),
            fmt,
            province.match_header,
            province.missing_fields,
            limits=Limits(max_rows=MAX_WARNINGS + 100),
        )
        warnings: list[WarningIn] = []
        errors: list[dict[str, Any]] = []
        for row_number, values in table.rows:
            record, problems = province.read_row(values, table.fields)
            for p in problems:
                errors.append({"loc": ["body", "file", row_number, p.field], "msg": p.message})
            if problems:
                continue
            try:
                warnings.append(WarningIn.model_validate(record))
            except ValidationError as exc:
                for e in exc.errors():
                    errors.append({"loc": ["body", "file", row_number, *e["loc"]], "msg": e["msg"]})
    except SheetProblem as exc:
        raise exc.problem() from None
    if errors:
        raise Problem(
            422, f"{len(errors)} value(s) in the file cannot be read", errors=errors[:200]
        )
    if not warnings:
        raise invalid(["body", "file"], "the file holds no warnings")
    if len(warnings) > MAX_WARNINGS:
        raise Problem(413, f"file: more than {MAX_WARNINGS} warnings; split it")
    return warnings


@router.post(
    "/warnings/file",
    response_model=WarningIntake,
    openapi_extra=file_upload_body(
        "the platform's warnings export (XLSX or CSV): 预警编号, 预警系统, 预警指标, 预警等级,"
        " 预警日期, 户编号 or 证件号码; title rows and merged headers are fine"
    ),
)
async def post_warnings_file(
    request: Request, runtime: RuntimeDep, principal: Principal = WRITE
) -> WarningIntake:
    """The platform's XLSX (or CSV) export of its warnings."""
    upload = await form_file(request, max_bytes=MAX_FILE_BYTES, max_fields=5)
    data = await upload.read()
    fmt = upload_format(upload)
    warnings = await run_in_threadpool(_read_file, data, fmt)
    return await take_warnings(
        runtime.sessions, warnings=warnings, principal=principal, pii_key=runtime.settings.pii_key
    )


@router.get("/warnings/{warning_id}", response_model=WarningOutcome)
async def get_warning(
    warning_id: str, session: SessionDep, principal: Principal = READ
) -> WarningOutcome:
    """What became of one warning, by the platform's own id."""
    row = (
        await session.execute(
            _WITH_TASK.where(
                col(ProvinceWarning.warning_id) == warning_id[:64], _visible(principal)
            )
        )
    ).one_or_none()
    if row is None:
        raise Problem(404, f"warning {warning_id[:64]} not found")
    return outcome_of(row[0], row[1])


@router.get("/warnings", response_model=WarningPage)
async def list_warnings(
    session: SessionDep,
    status: Literal["unmatched", "verifying", "verified", "cancelled"] | None = None,
    received_since: datetime | None = None,
    limit: int = Query(default=100, ge=1, le=1000),
    cursor: str | None = Query(default=None, max_length=200),
    principal: Principal = READ,
) -> WarningPage:
    """The outcomes of the platform's warnings, oldest received first."""
    query = _WITH_TASK.where(_visible(principal))
    if status is not None:
        query = query.where(_STATUS_CLAUSES[status])
    if received_since is not None:
        query = query.where(col(ProvinceWarning.received_at) >= received_since)
    after = decode_cursor(cursor, datetime.fromisoformat, str)
    if after is not None:
        query = query.where(
            or_(
                col(ProvinceWarning.received_at) > after[0],
                and_(
                    col(ProvinceWarning.received_at) == after[0], col(ProvinceWarning.id) > after[1]
                ),
            )
        )
    rows = (
        await session.execute(
            query.order_by(col(ProvinceWarning.received_at), col(ProvinceWarning.id)).limit(
                limit + 1
            )
        )
    ).all()
    page = rows[:limit]
    next_cursor = (
        encode_cursor(page[-1][0].received_at.isoformat(), page[-1][0].id)
        if len(rows) > limit
        else None
    )
    return WarningPage(items=[outcome_of(w, t) for w, t in page], next_cursor=next_cursor)
