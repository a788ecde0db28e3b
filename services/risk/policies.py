"""Policy administration: versions of the scoring policy (old ones are never edited), the
re-score job that brings every household onto a new version one committed chunk at a time,
and the what-if that assesses the county under a draft policy without writing anything."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import orjson
from sqlalchemy import func, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from backstop.db import SessionFactory, unit_of_work
from services.risk import models as m
from services.risk.domain import Policy
from services.risk.features import (
    assess_rows,
    county_today,
    household_rows,
    lock_households,
)
from services.risk.scoring import Trigger, score

log = logging.getLogger("backstop.risk")

RESCORE_CHUNK = 5000


# Parsed policies by their stored JSON (not by version number alone: tests and benches
# run several databases in one process).
_policy_cache: dict[bytes, Policy] = {}


async def current_policy(session: AsyncSession) -> tuple[int, Policy]:
    row = (
        await session.execute(
            select(m.policies.c.version, m.policies.c.policy)
            .order_by(m.policies.c.version.desc())
            .limit(1)
        )
    ).one()
    return row.version, _parse_policy(row.version, row.policy)


async def policy_version(session: AsyncSession, version: int) -> Policy | None:
    raw = await session.scalar(select(m.policies.c.policy).where(m.policies.c.version == version))
    return None if raw is None else _parse_policy(version, raw)


def _parse_policy(version: int, raw: dict[str, Any]) -> Policy:
    return parse_policy_text(version, orjson.dumps(raw, option=orjson.OPT_SORT_KEYS).decode())


def parse_policy_text(version: int, raw: str) -> Policy:
    """`raw` is the stored JSON as PostgreSQL prints jsonb (keys in a fixed order)."""
    key = version.to_bytes(4, "big") + raw.encode()
    policy = _policy_cache.get(key)
    if policy is None:
        if len(_policy_cache) > 64:
            _policy_cache.clear()
        policy = _policy_cache[key] = Policy.model_validate_json(raw)
    return policy


async def put_policy(
    sessions: SessionFactory, *, policy: Policy, author: str, note: str | None
) -> tuple[dict[str, Any], int]:
    """A new policy version (old ones are never edited) and the re-score job that brings
    every household onto it. Returns the version row and the job id."""
    async with unit_of_work(sessions) as session:
        # One writer at a time picks the next version number.
        await session.execute(text("LOCK TABLE risk_policies IN SHARE ROW EXCLUSIVE MODE"))
        latest = await session.scalar(select(func.max(m.policies.c.version)))
        version = int(latest or 0) + 1
        row = (
            await session.execute(
                insert(m.policies)
                .values(
                    version=version,
                    policy=policy.model_dump(mode="json"),
                    author=author,
                    note=note,
                )
                .returning(*m.policies.c)
            )
        ).one()
        await session.execute(
            update(m.rescore_jobs)
            .where(m.rescore_jobs.c.status.in_(("pending", "running")))
            .values(status="superseded", finished_at=func.now(), updated_at=func.now())
        )
        job_id = await session.scalar(
            insert(m.rescore_jobs)
            .values(policy_version=version, status="pending")
            .returning(m.rescore_jobs.c.id)
        )
        log.info("policy version %d by %s; re-score job %s queued", version, author, job_id)
        return dict(row._mapping), int(job_id or 0)


async def rescore_step(session: AsyncSession, *, chunk: int = RESCORE_CHUNK) -> bool:
    """Advance the oldest open re-score job by one chunk of households, in the caller's
    transaction: the job row, its cursor and the chunk's assessments commit together,
    so a crash resumes at the cursor. Returns False when there is nothing left to do."""
    j = m.rescore_jobs.c
    job = (
        await session.execute(
            select(m.rescore_jobs)
            .where(j.status.in_(("pending", "running")))
            .order_by(j.id)
            .limit(1)
            .with_for_update(skip_locked=True)
        )
    ).one_or_none()
    if job is None:
        return False
    now = func.now()
    latest, _ = await current_policy(session)
    if job.policy_version < latest:
        await session.execute(
            update(m.rescore_jobs)
            .where(j.id == job.id)
            .values(status="superseded", finished_at=now, updated_at=now)
        )
        return True
    policy = await policy_version(session, job.policy_version)
    assert policy is not None
    values: dict[str, Any] = {"updated_at": now}
    if job.status == "pending":
        total = await session.scalar(select(func.count()).select_from(m.households))
        values.update(status="running", started_at=now, total=int(total or 0))
    trigger = Trigger(f"rescore:{job.id}", f"policy-v{job.policy_version}")
    as_of = county_today()
    scan = job.phase == "scan"
    if scan:
        ids = await lock_households(session, after=job.cursor, limit=chunk)
    else:
        # Households a concurrent consumer batch re-scored under the old version while
        # the scan passed them.
        h, c = m.households.c, m.current.c
        stale = (
            select(h.household_id)
            .join(m.current, c.household_id == h.household_id)
            .where(c.policy_version < job.policy_version)
            .order_by(h.household_id)
            .limit(chunk)
        )
        ids = list((await session.execute(stale)).scalars())
        ids = await lock_households(session, ids=ids) if ids else []
    rows = await household_rows(session, ids=ids, as_of=as_of) if ids else []
    changed = await score(
        session,
        rows,
        policy=policy,
        version=job.policy_version,
        default_trigger=trigger,
        as_of=as_of,
    )
    if rows:
        values["changed"] = job.changed + changed
        if scan:
            values.update(cursor=rows[-1].household_id, processed=job.processed + len(rows))
    elif scan:
        values.update(phase="stragglers", cursor="")
    else:
        values.update(status="done", finished_at=now)
    await session.execute(update(m.rescore_jobs).where(j.id == job.id).values(**values))
    return True


async def run_rescore(sessions: SessionFactory, *, chunk: int = RESCORE_CHUNK) -> None:
    """Run open re-score jobs to the end, one committed chunk at a time."""
    while True:
        async with unit_of_work(sessions) as session:
            more = await rescore_step(session, chunk=chunk)
        if not more:
            return


async def rescore_status(session: AsyncSession) -> dict[str, Any] | None:
    row = (
        await session.execute(select(m.rescore_jobs).order_by(m.rescore_jobs.c.id.desc()).limit(1))
    ).one_or_none()
    if row is None:
        return None
    progress = 1.0 if row.status == "done" else (row.processed / row.total if row.total else 0.0)
    return {
        "job_id": row.id,
        "policy_version": row.policy_version,
        "status": row.status,
        "phase": row.phase,
        "total": row.total,
        "processed": row.processed,
        "changed": row.changed,
        "progress": round(min(progress, 1.0), 4),
        "created_at": row.created_at,
        "started_at": row.started_at,
        "finished_at": row.finished_at,
    }


async def simulate(
    session: AsyncSession,
    *,
    policy: Policy,
    region_prefixes: Sequence[str] | None,
    sample_size: int,
    chunk: int = 5000,
) -> dict[str, Any]:
    """Assess every household (in the client's regions) under `policy` without writing
    anything: counts per level and per town (first 9 digits of the region code), the
    moves from the current level, and a sample of each level."""
    version, _ = await current_policy(session)
    as_of = county_today()
    by_level = {"none": 0, "watch": 0, "at_risk": 0}
    by_town: dict[str, dict[str, int]] = {}
    changes: dict[str, int] = {}
    samples: dict[str, list[dict[str, Any]]] = {k: [] for k in by_level}
    total = 0
    after = ""
    while True:
        rows = await household_rows(
            session, after=after, limit=chunk, region_prefixes=region_prefixes, as_of=as_of
        )
        if not rows:
            break
        after = rows[-1].household_id
        for row, a in assess_rows(rows, policy, as_of):
            total += 1
            by_level[a.level] += 1
            town = by_town.setdefault(row.town_code, {"none": 0, "watch": 0, "at_risk": 0})
            town[a.level] += 1
            now_level = row.prev_level
            move = f"{now_level or 'unassessed'}→{a.level}"
            changes[move] = changes.get(move, 0) + 1
            if len(samples[a.level]) < sample_size:
                samples[a.level].append(
                    {
                        "household_id": row.household_id,
                        "region_code": row.region_code,
                        "level": a.level,
                        "score": a.score,
                        "factors": a.codes,
                        "current_level": now_level,
                    }
                )
    return {
        "households": total,
        "policy_version_current": version,
        "by_level": by_level,
        "by_town": dict(sorted(by_town.items())),
        "changes": dict(sorted(changes.items())),
        "samples": samples,
    }
