"""Records of people not in the register (未建档立卡人员) on `datasync.records`, so risk
can find those over the warning line (seed 二(一)): a batch's new records of people in no
household, and its corrections (更正) and voids (作废) of such records, by person, many
people an event. Who a person is stays here: events carry the `id_hash`, never the ID
number or the name."""

from __future__ import annotations

from typing import Any

import asyncpg
import orjson
from sqlalchemy.ext.asyncio import AsyncSession

from backstop import outbox
from backstop.contracts.datasync import UNMATCHED_PER_EVENT, RecordsUnmatched
from services.datasync.domain import CORRECTION, VOID
from services.datasync.matching import batch_template

RECORDS_UNMATCHED: str = RecordsUnmatched.__event_type__  # type: ignore[attr-defined]
# Text of the people in one event: far below the broker's message limit (1 MB default).
MAX_EVENT_TEXT = 256 * 1024

# One person's new records of the batch, as the contract's `UnmatchedPerson` JSON (the
# id_hash is hex: nothing to escape).
_NEW = (
    'SELECT \'{"id_hash":"\' || id_hash || \'","records":[\''
    " || string_agg(data::text, ',' ORDER BY idx) || ']}'"
    " FROM feed_records WHERE source = $1 AND batch_id = $2 AND household_id IS NULL"
    " AND voided_at IS NULL GROUP BY id_hash ORDER BY id_hash"
)
# The batch's corrections and voids of records still in no household, each record as
# last changed.
_CHANGED = (
    "SELECT DISTINCT ON (v.record_id) f.id_hash, f.period, v.record_id, v.revision,"
    " v.action, v.data::text AS data"
    " FROM feed_record_versions v JOIN feed_records f"
    " ON f.source = v.source AND f.record_id = v.record_id"
    " WHERE v.source = $1 AND v.batch_id = $2 AND v.action = ANY($3::text[])"
    " AND f.household_id IS NULL ORDER BY v.record_id, v.revision DESC"
)


def person_json(id_hash: str, records: list[bytes]) -> str:
    """One person's new records (their `data`, in batch order) as `_NEW` writes them."""
    return '{"id_hash":"' + id_hash + '","records":[' + b",".join(records).decode() + "]}"


def _full(people: list[str], size: int, person: str) -> bool:
    """Whether `person` starts a new event after `people` (`size` characters)."""
    return bool(people) and (
        len(people) >= UNMATCHED_PER_EVENT or size + len(person) > MAX_EVENT_TEXT
    )


def _item(
    source: str, batch_id: str, period: str, people: list[str], n: int
) -> tuple[str, dict[str, Any]]:
    """The subject and data of the batch's `n`-th `records.unmatched`."""
    data: dict[str, Any] = {"source": source, "batch_id": batch_id, "period": period}
    data["people"] = [orjson.Fragment(p) for p in people]
    return f"{source}:{batch_id}:{n}", data


def new_people_items(
    source: str, batch_id: str, period: str, people: list[str]
) -> list[tuple[str, dict[str, Any]]]:
    """`records.unmatched` of a batch's new records, from each person's JSON (in id_hash
    order) held in memory: the events `emit_unmatched` writes from `_NEW`."""
    items: list[tuple[str, dict[str, Any]]] = []
    chunk: list[str] = []
    size = 0
    for person in people:
        if _full(chunk, size, person):
            items.append(_item(source, batch_id, period, chunk, len(items)))
            chunk, size = [], 0
        chunk.append(person)
        size += len(person)
    if chunk:
        items.append(_item(source, batch_id, period, chunk, len(items)))
    return items


async def emit_unmatched(
    session: AsyncSession,
    conn: asyncpg.Connection,
    *,
    source: str,
    batch_id: str,
    period: str,
    correlation: str,
    changes: bool = True,
) -> int:
    """`records.unmatched` for this batch: its new records of people in no household,
    then its changes to such records (per period of the records changed; only looked
    for when the batch applied `changes`). Streamed: a chunk of people leaves as soon as
    it is full."""
    template = batch_template(RECORDS_UNMATCHED, correlation)
    emitted = 0

    async def publish(chunk_period: str, people: list[str]) -> None:
        nonlocal emitted
        item = _item(source, batch_id, chunk_period, people, emitted)
        emitted += await outbox.publish_bulk(session, template, [item])

    people: list[str] = []
    size = 0
    async for (person,) in conn.cursor(_NEW, source, batch_id, prefetch=UNMATCHED_PER_EVENT):
        if _full(people, size, person):
            await publish(period, people)
            people, size = [], 0
        people.append(person)
        size += len(person)
    if people:
        await publish(period, people)
    if not changes:
        return emitted
    changed = await conn.fetch(_CHANGED, source, batch_id, [CORRECTION, VOID])
    for changed_period, changed_people in sorted(_changes(changed, source).items()):
        for start in range(0, len(changed_people), UNMATCHED_PER_EVENT):
            await publish(changed_period, changed_people[start : start + UNMATCHED_PER_EVENT])
    return emitted


def _changes(rows: list[asyncpg.Record], source: str) -> dict[str, list[str]]:
    """Corrections (更正, in `records` at their new revision) and voids (作废, in `voided`)
    per period and person, so the person's sums never count a corrected record twice nor
    a voided one at all."""
    by_person: dict[tuple[str, str], dict[str, Any]] = {}
    for r in rows:
        person = by_person.setdefault(
            (r["period"], r["id_hash"]), {"id_hash": r["id_hash"], "records": [], "voided": []}
        )
        if r["action"] == VOID:
            person["voided"].append(
                {"source": source, "record_id": r["record_id"], "id_hash": r["id_hash"],
                 "revision": r["revision"]}
            )  # fmt: skip
        else:
            person["records"].append(orjson.Fragment(r["data"]))
    out: dict[str, list[str]] = {}
    for (changed_period, _), person in sorted(by_person.items()):
        out.setdefault(changed_period, []).append(orjson.dumps(person).decode())
    return out
