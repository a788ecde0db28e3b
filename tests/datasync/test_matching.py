"""Matching through the id_hash index built from `registry.households`, late matching,
and the events on `datasync.records` — real PostgreSQL and Kafka end to end."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from sqlalchemy import text

from backstop.contracts.datasync import TOPIC, RecordsMatched, RecordsUnmatched
from backstop.db import raw_connection, unit_of_work
from backstop.idnumber import id_hash
from backstop.settings import Settings
from services.datasync import ingest, matching, unmatched
from services.datasync.app import create
from tests.datasync.conftest import household_event, make_id_number, produce, unique
from tests.datasync.test_ingest import PERIOD, medical
from tests.support import Stack, read_topic, serve, wait_for

pytestmark = pytest.mark.integration


async def _index(runtime: Any, settings: Settings, id_number: str) -> list[str]:
    async with runtime.sessions() as session:
        rows = await session.execute(
            text("SELECT household_id FROM person_index WHERE id_hash = :h ORDER BY since DESC"),
            {"h": id_hash(id_number, settings.pii_key)},
        )
        return [r[0] for r in rows]


async def test_records_matched_per_household_and_waiting_ones_matched_later(
    datasync_settings: Settings, stack: Stack
) -> None:
    settings = datasync_settings
    h1, h2 = str(uuid.uuid4()), str(uuid.uuid4())
    p1, p2, p3 = make_id_number(), make_id_number(), make_id_number()
    async with serve(create, settings) as (http, runtime):
        await produce(settings, [household_event(settings, h1, [p1, p2])])
        await wait_for(lambda: _index(runtime, settings, p2), message="index has p2")

        batch = unique("match")
        records = [
            medical(id_number=p1),
            medical(id_number=p2),
            medical(id_number=p1),
            medical(id_number=p3),
        ]
        r = await http.post(
            "/v1/feeds/medical/batches",
            json={"batch_id": batch, "period": PERIOD, "records": records},
            headers=stack.headers("feeds:medical"),
        )
        assert r.status_code == 201, r.text
        assert (r.json()["matched"], r.json()["unmatched"]) == (3, 1)

        events = await read_topic(
            settings, TOPIC, min_count=2, match=lambda e: e.data.get("batch_id") == batch
        )
        assert sorted(e.type for e in events) == [
            "backstop.datasync.records.matched.v1",
            "backstop.datasync.records.unmatched.v1",
        ]
        (event,) = [e for e in events if e.type == "backstop.datasync.records.matched.v1"]
        # p3, in no household: the person's records under the id_hash (未建档立卡人员), for
        # risk's warning line; no ID number, no name.
        (waiting,) = [e for e in events if e.type == "backstop.datasync.records.unmatched.v1"]
        unmatched_payload = waiting.payload()
        assert isinstance(unmatched_payload, RecordsUnmatched)
        (p3_records,) = unmatched_payload.people
        assert p3_records.id_hash == id_hash(p3, settings.pii_key)
        assert [rec.record_id for rec in p3_records.records] == [records[3]["record_id"]]
        assert p3 not in waiting.to_bytes().decode() and "张三" not in waiting.to_bytes().decode()
        assert event.subject == h1
        payload = event.payload()
        assert isinstance(payload, RecordsMatched)
        assert [rec.record_id for rec in payload.records] == [
            records[0]["record_id"],
            records[1]["record_id"],
            records[2]["record_id"],
        ]
        assert payload.records[0].id_hash == id_hash(p1, settings.pii_key)
        assert p1 not in event.to_bytes().decode() and "张三" not in event.to_bytes().decode()

        # By the person's id_hash: the shared test database holds more unmatched records
        # than a page by then.
        by_person = {"source": "medical", "period": PERIOD, "id_hash": p3_records.id_hash}
        listed = await http.get(
            "/v1/unmatched", params=by_person, headers=stack.headers("feeds:read")
        )
        assert listed.status_code == 200
        mine = [i for i in listed.json()["items"] if i["batch_id"] == batch]
        assert [i["record_id"] for i in mine] == [records[3]["record_id"]]
        assert mine[0]["id_number"] == f"{p3[:6]}********{p3[14:]}"
        # One person's records by the reference an enrolment check carries.
        person = await http.get(
            "/v1/unmatched",
            params={"id_hash": p3_records.id_hash},
            headers=stack.headers("feeds:read", "registry:pii"),
        )
        assert [
            (i["record_id"], i["id_number"])
            for i in person.json()["items"]
            if i["batch_id"] == batch
        ] == [(records[3]["record_id"], p3)]
        assert {i["id_hash"] for i in person.json()["items"]} == {p3_records.id_hash}
        bad = await http.get(
            "/v1/unmatched", params={"id_hash": "nope"}, headers=stack.headers("feeds:read")
        )
        assert bad.status_code == 422
        assert bad.headers["content-type"].startswith("application/problem+json")

        # The registry adds p3 to another household: the waiting record follows.
        await produce(settings, [household_event(settings, h2, [p3])])
        late = await read_topic(
            settings, TOPIC, match=lambda e: e.subject == h2 and e.data.get("batch_id") == batch
        )
        assert [rec["record_id"] for rec in late[0].data["records"]] == [records[3]["record_id"]]
        listed = await http.get(
            "/v1/unmatched", params=by_person, headers=stack.headers("feeds:read")
        )
        assert listed.status_code == 200
        assert not [i for i in listed.json()["items"] if i["batch_id"] == batch]


async def test_a_member_moving_between_households_in_either_order(
    datasync_settings: Settings,
) -> None:
    async with serve(create, datasync_settings) as (_, runtime):
        await _move(runtime, datasync_settings, receiving_first=True)
        await _move(runtime, datasync_settings, receiving_first=False)


async def _move(runtime: Any, settings: Settings, *, receiving_first: bool) -> None:
    t0 = datetime.now(UTC)
    a, b = str(uuid.uuid4()), str(uuid.uuid4())
    stays, mover, other = make_id_number(), make_id_number(), make_id_number()
    await produce(
        settings,
        [
            household_event(settings, a, [stays, mover], time=t0),
            household_event(settings, b, [other], time=t0),
        ],
    )
    await wait_for(lambda: _index(runtime, settings, other), message="b indexed")
    later = t0 + timedelta(seconds=1)
    removed = household_event(settings, a, [stays], version=2, time=later, kind="removed")
    moved_in = household_event(settings, b, [other, mover], version=2, time=later, kind="moved")
    await produce(settings, [moved_in, removed] if receiving_first else [removed, moved_in])

    async def moved() -> bool:
        return await _index(runtime, settings, mover) == [b]

    await wait_for(moved, message="mover indexed under b only")
    assert await _index(runtime, settings, stays) == [a]

    # A stale snapshot of a (version 1) redelivered changes nothing.
    await produce(settings, [household_event(settings, a, [stays, mover], time=t0)])
    marker = make_id_number()
    await produce(settings, [household_event(settings, a, [stays, marker], version=3)])
    await wait_for(lambda: _index(runtime, settings, marker), message="marker indexed")
    assert await _index(runtime, settings, mover) == [b]


async def test_a_person_indexed_while_a_batch_is_in_flight_is_matched(
    datasync_settings: Settings, stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The registry's snapshot lands while a batch with that person is written but not
    committed: the batch's lookup ran before the snapshot, and the snapshot must not
    match the waiting records before the batch commits, or neither sees the other."""
    settings = datasync_settings
    person, household_id = make_id_number(), str(uuid.uuid4())
    written, resume = asyncio.Event(), asyncio.Event()
    emit = ingest._publish_records

    async def paused_emit(*args: Any, **kwargs: Any) -> list[tuple[Any, ...]]:
        written.set()
        await resume.wait()
        return await emit(*args, **kwargs)

    monkeypatch.setattr(ingest, "_publish_records", paused_emit)
    async with serve(create, settings, background=False) as (http, runtime):
        record = medical(id_number=person)
        posting = asyncio.ensure_future(
            http.post(
                "/v1/feeds/medical/batches",
                json={"batch_id": unique("race"), "period": PERIOD, "records": [record]},
                headers=stack.headers("feeds:medical"),
            )
        )
        await asyncio.wait_for(written.wait(), 30)

        async def apply() -> None:
            async with unit_of_work(runtime.sessions) as session:
                event = household_event(settings, household_id, [person])
                await matching.apply_household_snapshots(session, [event])

        applying = asyncio.ensure_future(apply())
        await asyncio.sleep(0.5)
        assert not applying.done()  # it waits for the batch in flight
        resume.set()
        response = await posting
        await applying
        assert response.status_code == 201 and response.json()["matched"] == 0
        async with runtime.sessions() as session:
            matched_to = await session.scalar(
                text("SELECT household_id FROM feed_records WHERE record_id = :r"),
                {"r": record["record_id"]},
            )
            events = await session.scalar(
                text(
                    "SELECT count(*) FROM outbox WHERE key = :h"
                    " AND event_type = 'backstop.datasync.records.matched.v1'"
                ),
                {"h": household_id},
            )
        assert (matched_to, events) == (household_id, 1)


async def test_a_small_batch_emits_what_its_stored_records_give(
    datasync_settings: Settings, stack: Stack
) -> None:
    """A small batch's events are built from its records as written, not read back: the
    very events the streamed publishers (a large batch's) write from the stored records,
    in the same order: per household and per person, their records in batch order."""
    settings = datasync_settings
    h1, h2 = str(uuid.uuid4()), str(uuid.uuid4())
    p1, p2, p3, p4, p5 = (make_id_number() for _ in range(5))
    records = [medical(id_number=p) for p in (p2, p4, p1, p3, p4, p2, p5, p1)]
    async with serve(create, settings, background=False) as (http, runtime):
        async with runtime.sessions() as session:
            await session.execute(
                text(
                    "INSERT INTO person_index (household_id, id_hash, since)"
                    " SELECT * FROM unnest(CAST(:h AS text[]), CAST(:i AS text[])), now()"
                ),
                {
                    "h": [h1, h2, h1],
                    "i": [id_hash(p, settings.pii_key) for p in (p1, p2, p3)],
                },
            )
            await session.commit()
        batch = unique("small")
        r = await http.post(
            "/v1/feeds/medical/batches",
            json={"batch_id": batch, "period": PERIOD, "records": records},
            headers=stack.headers("feeds:medical"),
        )
        assert r.status_code == 201, r.text
        assert (r.json()["matched"], r.json()["unmatched"]) == (5, 3)

        def shown(rows: Any) -> list[tuple[Any, ...]]:
            out = []
            for topic, key, event_type, value in rows:
                envelope = orjson.loads(value)
                out.append((topic, key, event_type, envelope["subject"], envelope["data"]))
            return out

        select = (
            "SELECT topic, key, event_type, value FROM outbox WHERE id > :after"
            " AND event_type <> 'backstop.datasync.batch.received.v1'"
            " AND convert_from(value, 'UTF8')::json -> 'data' ->> 'batch_id' = :b ORDER BY id"
        )
        async with runtime.sessions() as session:
            emitted = shown(await session.execute(text(select), {"after": 0, "b": batch}))
            after = await session.scalar(text("SELECT max(id) FROM outbox"))
            conn = await raw_connection(session)
            await matching.publish_batch_records(
                session, conn, source="medical", batch_id=batch, period=PERIOD, correlation=batch
            )
            await unmatched.emit_unmatched(
                session, conn, source="medical", batch_id=batch, period=PERIOD, correlation=batch
            )
            streamed = shown(await session.execute(text(select), {"after": after, "b": batch}))
            await session.rollback()
    assert [e[3] for e in emitted] == [*sorted([h1, h2]), f"medical:{batch}:0"]
    assert emitted == streamed
