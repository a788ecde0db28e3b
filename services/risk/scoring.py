"""Scoring: assess locked households under a policy and write what changed, set-based (a
history row and the current assessment in one statement), with `risk.assessments` when the
level or score moved and `risk.alerts` on a move into or out of `at_risk`, or on new
evidence while it stays there. The consumer's
batches and the re-score jobs both end here."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import orjson
from pydantic import BaseModel
from sqlalchemy import text, update
from sqlalchemy.ext.asyncio import AsyncSession

from backstop import outbox
from backstop.contracts.risk import (
    AlertCleared,
    AlertRaised,
    AlertRenewed,
    AssessmentChanged,
)
from backstop.events import CloudEvent, make_event
from services.risk import models as m
from services.risk.domain import Assessment, Policy, new_evidence, transition
from services.risk.features import HouseholdRow, assess_rows, is_one_of, json_param

SERVICE = "risk"


@dataclass
class Trigger:
    """Why a household is being re-scored: the last event about it in the batch."""

    label: str
    correlation_id: str | None


# Bulk writes as one statement over rows sent as JSON (json_to_recordset): one round
# trip and no per-row statement work, whatever the batch size.
# The history row and the current assessment in one statement.
_WRITE_ASSESSMENTS = text(
    """
    WITH saved AS (
        INSERT INTO risk_assessments (household_id, region_code, level, previous_level, score,
            previous_score, factors, per_capita_income, income_line, policy_version,
            assessed_at, trigger, correlation_id)
        SELECT household_id, region_code, level, previous_level, score, previous_score,
               factors, per_capita_income, income_line, :version, :now, trigger,
               correlation_id
        FROM json_to_recordset(CAST(:assessments AS json)) AS t(
            household_id varchar, region_code varchar, level varchar, previous_level varchar,
            score int, previous_score int, factors jsonb, per_capita_income float8,
            income_line float8, trigger varchar, correlation_id varchar)
        RETURNING id, household_id, region_code, level, score, factors, per_capita_income,
                  income_line
    )
    INSERT INTO risk_current (household_id, region_code, level, score, factors,
        per_capita_income, income_line, policy_version, assessed_at, assessment_id)
    SELECT household_id, region_code, level, score, factors, per_capita_income, income_line,
           :version, :now, id
    FROM saved
    ON CONFLICT (household_id) DO UPDATE SET
        region_code = excluded.region_code, level = excluded.level, score = excluded.score,
        factors = excluded.factors, per_capita_income = excluded.per_capita_income,
        income_line = excluded.income_line, policy_version = excluded.policy_version,
        assessed_at = excluded.assessed_at, assessment_id = excluded.assessment_id
    """
)


def _factor_json(a: Assessment) -> list[dict[str, Any]]:
    return [
        {"code": f.code, "points": f.points, "evidence": f.evidence, "sources": list(f.sources)}
        for f in a.factors
    ]


async def score(
    session: AsyncSession,
    rows: Sequence[HouseholdRow],
    *,
    policy: Policy,
    version: int,
    triggers: dict[str, Trigger] | None = None,
    default_trigger: Trigger | None = None,
    as_of: date,
) -> int:
    """Assess the households in `rows` (already locked by the caller) and write what
    changed: a history row, the current assessment, `risk.assessments` when the level
    or score moved, and `risk.alerts` on a transition into or out of `at_risk` or on new
    evidence while it stays there.
    Returns how many households changed level or score."""
    if not rows:
        return 0
    assessed = assess_rows(rows, policy, as_of)
    now = datetime.now(UTC)
    history: list[dict[str, Any]] = []
    version_only: list[str] = []
    events: list[CloudEvent] = []
    changed = 0
    for row, a in assessed:
        hid = row.household_id
        trigger = (triggers or {}).get(hid) or default_trigger or Trigger("unknown", None)
        prev = row.previous
        factors = _factor_json(a)
        if (
            prev is not None
            and prev.level == a.level
            and prev.score == a.score
            and orjson.loads(prev.factors) == factors
        ):
            if row.prev_version != version:
                version_only.append(hid)
            continue
        history.append(
            {
                "household_id": hid,
                "region_code": row.region_code,
                "level": a.level,
                "previous_level": prev.level if prev else None,
                "score": a.score,
                "previous_score": prev.score if prev else None,
                "factors": factors,
                "per_capita_income": a.per_capita_income,
                "income_line": a.income_line,
                "trigger": trigger.label[:200],
                "correlation_id": trigger.correlation_id,
            }
        )
        move = transition((prev.level, prev.score) if prev else ("none", 0), a)
        renewed = (
            new_evidence(orjson.loads(prev.factors), a)
            if prev is not None and prev.level == a.level == "at_risk"
            else []
        )
        payloads: list[BaseModel] = []
        alert_data = {
            "household_id": hid,
            "region_code": row.region_code,
            "level": a.level,
            "previous_level": prev.level if prev else None,
            "score": a.score,
            "factors": a.codes,
            "assessed_at": now,
            "policy_version": version,
        }
        if renewed:
            payloads.append(AlertRenewed(**alert_data, new_evidence=renewed))
        if move.changed:
            changed += 1
            payloads.append(
                AssessmentChanged(
                    household_id=hid,
                    region_code=row.region_code,
                    level=a.level,
                    previous_level=prev.level if prev else None,
                    score=a.score,
                    previous_score=prev.score if prev else None,
                    factors=factors,  # validated into FactorData by pydantic itself
                    per_capita_income=a.per_capita_income,
                    income_line=a.income_line,
                    policy_version=version,
                    assessed_at=now,
                )
            )
        if move.alert is not None:
            payloads.append((AlertRaised if move.alert == "raised" else AlertCleared)(**alert_data))
        events += [
            make_event(
                SERVICE, payload, subject=hid, correlation_id=trigger.correlation_id, time=now
            )
            for payload in payloads
        ]
    if history:
        await session.execute(
            _WRITE_ASSESSMENTS,
            {"assessments": json_param(history), "version": version, "now": now},
        )
    if version_only:
        # Same decision under a new policy version: record the version it now rests on.
        await session.execute(
            update(m.current)
            .where(is_one_of("risk_current.household_id", version_only))
            .values(policy_version=version)
        )
    await outbox.publish_many(session, events)
    return changed
