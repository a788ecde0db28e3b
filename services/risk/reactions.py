"""What risk does on registry and datasync events: the consumer's batch handler keeps the
newest household snapshots and every department record, then re-scores the households
they touch (scoring.py), inside the consumer's transaction (nothing here commits)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from sqlalchemy import func, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from backstop.contracts import assistance as assistance_contract
from backstop.contracts import datasync as datasync_contract
from backstop.contracts import registry as registry_contract
from backstop.events import CloudEvent, registered_types
from services.risk import models as m
from services.risk.domain import Policy
from services.risk.features import county_today, household_rows, json_param
from services.risk.policies import current_policy, parse_policy_text
from services.risk.scoring import Trigger, score

RECORDS_MATCHED = "backstop.datasync.records.matched.v1"
RECORDS_VOIDED = "backstop.datasync.records.voided.v1"  # 作废
REGISTRY_TYPES = frozenset(
    name for name, spec in registered_types().items() if spec.topic == registry_contract.TOPIC
)
WARNING_MATCHED = "backstop.assistance.warning.matched.v1"  # 省平台预警, kept as a record
CONSUMED_TYPES = REGISTRY_TYPES | {RECORDS_MATCHED, RECORDS_VOIDED, WARNING_MATCHED}


@dataclass
class _Batch:
    snapshots: dict[str, tuple[CloudEvent, registry_contract.HouseholdSnapshot]] = field(
        default_factory=dict
    )
    records: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    triggers: dict[str, Trigger] = field(default_factory=dict)


def _record_row(
    event: CloudEvent, data: datasync_contract.RecordsMatched, rec: Any
) -> dict[str, Any]:
    row: dict[str, Any] = {
        "source": rec.source,
        "record_id": rec.record_id,
        "household_id": data.household_id,
        "id_hash": rec.id_hash,
        "housing_damaged": False,
        "kind": None,
        "status": None,
        "enrolled": None,
        "batch_id": data.batch_id,
        "event_id": event.id,
        "revision": rec.revision,
        "voided": False,
    }
    if isinstance(rec, datasync_contract.MedicalRecordData):
        row.update(occurred_on=rec.settled_on, amount=rec.out_of_pocket)
    elif isinstance(rec, datasync_contract.DisasterRecordData):
        row.update(
            occurred_on=rec.occurred_on,
            amount=rec.loss_amount,
            housing_damaged=rec.housing_damaged,
        )
    elif isinstance(rec, datasync_contract.CivilAffairsRecordData):
        on = (rec.end_on if rec.status == "terminated" else rec.start_on) or _period_start(
            data.period
        )
        row.update(occurred_on=on, amount=rec.amount, kind=rec.kind, status=rec.status)
    else:  # education records carry no date: the feed's period dates them
        row.update(
            occurred_on=_period_start(data.period), amount=rec.out_of_pocket, enrolled=rec.enrolled
        )
    return row


def _period_start(period: str) -> date:
    try:
        year, month = period.split("-")[:2]
        return date(int(year), int(month), 1)
    except ValueError:
        return county_today()


def _tombstone(
    event: CloudEvent, data: datasync_contract.RecordsVoided, gone: datasync_contract.VoidedRecord
) -> dict[str, Any]:
    """A voided record's row: only its key, household and revision matter (no rule
    reads a voided row); it stays so that no older version brings the record back."""
    return {
        "source": gone.source,
        "record_id": gone.record_id,
        "household_id": data.household_id,
        "id_hash": gone.id_hash,
        "occurred_on": _period_start(data.period),
        "amount": 0.0,
        "housing_damaged": False,
        "kind": None,
        "status": None,
        "enrolled": None,
        "batch_id": data.batch_id,
        "event_id": event.id,
        "revision": gone.revision,
        "voided": True,
    }


def _collect(events: Sequence[CloudEvent]) -> _Batch:
    batch = _Batch()
    for event in events:
        if event.type == RECORDS_MATCHED:
            data = event.payload()
            assert isinstance(data, datasync_contract.RecordsMatched)
            for rec in data.records:
                datasync_contract.keep_newest(batch.records, _record_row(event, data, rec))
            household_id = data.household_id
        elif event.type == RECORDS_VOIDED:
            voided = event.payload()
            assert isinstance(voided, datasync_contract.RecordsVoided)
            for gone in voided.records:
                datasync_contract.keep_newest(batch.records, _tombstone(event, voided, gone))
            household_id = voided.household_id
        elif event.type == WARNING_MATCHED:
            warning = event.payload()
            assert isinstance(warning, assistance_contract.PlatformWarningMatched)
            household_id = warning.household_id
            batch.records.setdefault(
                ("province", warning.warning_id),
                {
                    "source": "province",
                    "record_id": warning.warning_id,
                    "household_id": household_id,
                    "id_hash": "",
                    "occurred_on": warning.warned_on,
                    "amount": 0.0,
                    "housing_damaged": False,
                    "kind": warning.item,
                    "status": warning.level,
                    "enrolled": None,
                    "batch_id": warning.task_id,
                    "event_id": event.id,
                    "revision": 1,
                    "voided": False,
                },
            )
        elif event.type in REGISTRY_TYPES:
            payload = event.payload()
            assert isinstance(payload, registry_contract.HouseholdEvent)
            snapshot = payload.household
            household_id = snapshot.household_id
            seen = batch.snapshots.get(household_id)
            if seen is None or seen[1].version < snapshot.version:
                batch.snapshots[household_id] = (event, snapshot)
        else:
            continue
        batch.triggers[household_id] = Trigger(f"{event.type}:{event.id}", event.correlationid)
    return batch


def _snapshot_row(event: CloudEvent, s: registry_contract.HouseholdSnapshot) -> dict[str, Any]:
    return {
        "household_id": s.household_id,
        "region_code": s.region_code,
        "town_code": s.town_code or s.region_code[:9],
        "type": s.type,
        "snapshot_version": s.version,
        "source_event_id": event.id,
        "members": [
            {
                "person_id": p.person_id,
                "id_hash": p.id_hash,
                "birth_date": p.birth_date.isoformat(),
                "special_groups": p.special_groups,
                "labor_capacity": p.labor_capacity,
                "schooling": p.schooling,
                "medical_insurance": p.medical_insurance,
            }
            for p in s.members
        ],
        "incomes": [i.model_dump() for i in s.incomes],
        "guarantees": dict(s.guarantees),
    }


async def apply_events(session: AsyncSession, events: Sequence[CloudEvent]) -> None:
    """The consumer's batch handler: keep the newest household snapshots and every
    department record (once per (source, record_id), at its newest revision: corrections
    replace, voids remove), then re-score the households they touch. A record for a
    household not yet known is kept and counts as soon as its snapshot arrives."""
    batch = _collect(events)
    if not batch.triggers:
        return
    ids = sorted(batch.triggers)
    await session.execute(_ONE_BATCH_PER_HOUSEHOLD, {"ids": json_param(ids)})
    # One statement: keep the records and lock the known households in id order, as
    # the re-score does, so the two never deadlock and never interleave on one
    # household. Records need no lock: a re-score running now cannot see them before
    # this commits, and this batch re-scores their households after it.
    locked, version, policy = await _keep_records_and_lock(
        session, ids=ids, records=list(batch.records.values())
    )
    if batch.snapshots:
        table = m.households
        stmt = pg_insert(table)
        stmt = stmt.on_conflict_do_update(
            index_elements=[table.c.household_id],
            set_={
                c: stmt.excluded[c]
                for c in (
                    "region_code",
                    "town_code",
                    "type",
                    "snapshot_version",
                    "source_event_id",
                    "members",
                    "incomes",
                    "guarantees",
                )
            }
            | {"updated_at": func.now()},
            # A stale or replayed snapshot changes nothing (the row is locked all the
            # same; a new household's row is this transaction's own until it commits).
            where=table.c.snapshot_version < stmt.excluded.snapshot_version,
        )
        await session.execute(
            stmt, [_snapshot_row(e, s) for _, (e, s) in sorted(batch.snapshots.items())]
        )
        locked = sorted({*locked, *batch.snapshots})
    if not locked:
        return
    # Read only now, in a statement that starts once every lock is held, so it sees the
    # assessment a concurrent re-score or batch committed while this one waited: the
    # previous level an alert is decided from is never stale.
    as_of = county_today()
    rows = await household_rows(session, ids=locked, as_of=as_of)
    if rows and rows[0].policy_now != version:  # a new policy came while this one waited
        version, policy = await current_policy(session)
    await score(
        session,
        rows,
        policy=policy,
        version=version,
        triggers=batch.triggers,
        as_of=as_of,
    )


# One batch at a time per household, known or not yet: two batches at once (two
# partitions, two workers), one creating a household and one with a record for it, would
# each miss the other's uncommitted row, and the record would count only at the
# household's next event. In id order (no deadlock), in a statement of its own: those
# after it see what the batch waited for as committed.
_ONE_BATCH_PER_HOUSEHOLD = text(
    "SELECT pg_advisory_xact_lock(hashtextextended(h, 0))"
    " FROM json_array_elements_text(CAST(:ids AS json)) AS h ORDER BY h"
)

# Keeps the batch's records (a newer revision replaces the stored one), locks the known
# households among `ids` in id order and reads the current policy, in one round trip.
_KEEP_RECORDS_AND_LOCK = text(
    """
    WITH kept AS (
        INSERT INTO risk_records (source, record_id, household_id, id_hash, occurred_on,
                                  amount, housing_damaged, kind, status, enrolled, batch_id,
                                  event_id, revision, voided)
        SELECT * FROM json_to_recordset(CAST(:records AS json)) AS r(
            source varchar, record_id varchar, household_id varchar, id_hash varchar,
            occurred_on date, amount float8, housing_damaged bool, kind varchar,
            status varchar, enrolled bool, batch_id varchar, event_id varchar,
            revision int, voided bool)
        ON CONFLICT (source, record_id) DO UPDATE SET
            household_id = EXCLUDED.household_id, id_hash = EXCLUDED.id_hash,
            occurred_on = EXCLUDED.occurred_on, amount = EXCLUDED.amount,
            housing_damaged = EXCLUDED.housing_damaged, kind = EXCLUDED.kind,
            status = EXCLUDED.status, enrolled = EXCLUDED.enrolled,
            batch_id = EXCLUDED.batch_id, event_id = EXCLUDED.event_id,
            revision = EXCLUDED.revision, voided = EXCLUDED.voided, received_at = now()
        -- Only a newer version (a correction, a void) replaces a record: a replayed or
        -- late older one changes nothing, so no record is ever counted twice or rolled back.
        WHERE risk_records.revision < EXCLUDED.revision
    ), locked AS MATERIALIZED (
        SELECT household_id FROM risk_households
        WHERE household_id = ANY(ARRAY(SELECT json_array_elements_text(CAST(:ids AS json))))
        ORDER BY household_id
        FOR UPDATE
    )
    SELECT ARRAY(SELECT household_id FROM locked ORDER BY household_id) AS locked,
           p.version, CAST(p.policy AS text) AS policy
    FROM (SELECT version, policy FROM risk_policies ORDER BY version DESC LIMIT 1) AS p
    """
)


async def _keep_records_and_lock(
    session: AsyncSession, *, ids: Sequence[str], records: Sequence[dict[str, Any]]
) -> tuple[list[str], int, Policy]:
    """Insert `records` (a record already kept is replaced only by a newer revision),
    lock the households among `ids` that exist, in id order; return their ids and the
    current policy."""
    row = (
        await session.execute(
            _KEEP_RECORDS_AND_LOCK, {"records": json_param(records), "ids": json_param(list(ids))}
        )
    ).one()
    return list(row.locked), row.version, parse_policy_text(row.version, row.policy)
