"""Records of people in no household (纳入建档立卡核查) on `datasync.records`: one
`records.unmatched` per person and batch, and the corrections (更正) and voids (作废) of
such records in their own, so risk's sums for the person stay right. Real PostgreSQL and
Kafka; no ID number, no name in any event."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from backstop.contracts.datasync import TOPIC, UNMATCHED_PER_EVENT, RecordsUnmatched
from backstop.idnumber import id_hash
from backstop.settings import Settings
from services.datasync.app import create
from tests.datasync.conftest import make_id_number, unique
from tests.datasync.test_ingest import PERIOD, medical
from tests.support import Stack, read_topic, serve

pytestmark = pytest.mark.integration

UNMATCHED = "backstop.datasync.records.unmatched.v1"


async def test_records_corrections_and_voids_of_a_person_in_no_household(
    datasync_settings: Settings, stack: Stack
) -> None:
    settings, yibao = datasync_settings, stack.headers("feeds:medical")
    person = make_id_number()
    person_hash = id_hash(person, settings.pii_key)
    first, second = medical(id_number=person), medical(id_number=person, out_of_pocket=300.0)
    other = medical()  # another person: an event of their own
    batches: list[str] = []

    async def post(*records: dict[str, Any]) -> None:
        body = {"batch_id": unique("u"), "period": PERIOD, "records": list(records)}
        r = await http.post("/v1/feeds/medical/batches", json=body, headers=yibao)
        assert r.status_code == 201, r.text
        assert r.json()["rejected"] == 0, r.json()["errors"]
        batches.append(body["batch_id"])

    async with serve(create, settings) as (http, _):  # with its outbox relay
        await post(first, second, other)
        await post({**second, "out_of_pocket": 250.0, "correction": True})
        await post({"record_id": first["record_id"], "void": "是"})
        events = await read_topic(
            settings,
            TOPIC,
            min_count=3,
            match=lambda e: e.type == UNMATCHED and e.data.get("batch_id") in batches,
        )
    events.sort(key=lambda e: batches.index(e.data["batch_id"]))  # keyed apart: any order
    payloads = [p for e in events if isinstance(p := e.payload(), RecordsUnmatched)]
    assert [p.batch_id for p in payloads] == batches  # one event a batch: few people
    assert [e.subject for e in events] == [f"medical:{b}:0" for b in batches]
    new, corrected, voided = payloads
    assert {p.id_hash for p in new.people} == {
        person_hash,
        id_hash(other["id_number"], settings.pii_key),
    }
    (mine,) = [p for p in new.people if p.id_hash == person_hash]
    assert [(r.record_id, r.revision) for r in mine.records] == [
        (first["record_id"], 1),
        (second["record_id"], 1),
    ]
    (mine,) = corrected.people
    assert [(r.record_id, r.revision) for r in mine.records] == [(second["record_id"], 2)]
    assert mine.id_hash == person_hash and mine.voided == []
    assert mine.records[0].out_of_pocket == 250.0  # type: ignore[union-attr]
    (mine,) = voided.people
    assert mine.records == []
    assert [(v.record_id, v.revision, v.id_hash) for v in mine.voided] == [
        (first["record_id"], 2, person_hash)
    ]
    for event in events:
        raw = event.to_bytes().decode()
        assert person not in raw and other["id_number"] not in raw and "张三" not in raw


async def test_many_people_share_an_event(datasync_settings: Settings, stack: Stack) -> None:
    """At most UNMATCHED_PER_EVENT people and about 256 KB an event: 1,001 people in no
    household are two events."""
    settings = datasync_settings
    body = {
        "batch_id": unique("many"),
        "period": PERIOD,
        # Birth dates of their own: make_id_number has 1,000 numbers a date.
        "records": [
            medical(id_number=make_id_number(date(1991 + i % 2, 1, 1)))
            for i in range(UNMATCHED_PER_EVENT + 1)
        ],
    }
    async with serve(create, settings) as (http, _):
        r = await http.post(
            "/v1/feeds/medical/batches", json=body, headers=stack.headers("feeds:medical")
        )
        assert r.status_code == 201 and r.json()["unmatched"] == UNMATCHED_PER_EVENT + 1
        events = await read_topic(
            settings,
            TOPIC,
            min_count=2,
            match=lambda e: e.type == UNMATCHED and e.data.get("batch_id") == body["batch_id"],
        )
    sizes = [len(e.data["people"]) for e in events]
    people = {id_hash(r["id_number"], settings.pii_key) for r in body["records"]}
    assert sum(sizes) == len(people) and max(sizes) <= UNMATCHED_PER_EVENT
    assert {p["id_hash"] for e in events for p in e.data["people"]} == people
    assert all(len(e.to_bytes()) < 300 * 1024 for e in events)  # well under 1 MB
