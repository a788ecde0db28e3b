"""Records of people in no household (纳入建档立卡核查) on `datasync.records`: one
`records.unmatched` per person and batch, and the corrections (更正) and voids (作废) of
such records in their own, so risk's sums for the person stay right. Real PostgreSQL and
Kafka; no ID number, no name in any event."""

from __future__ import annotations

from typing import Any

import pytest

from backstop.contracts.datasync import TOPIC, RecordsUnmatched
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
            min_count=4,
            match=lambda e: e.type == UNMATCHED and e.data.get("batch_id") in batches,
        )
    assert len(events) == 4
    mine = [e for e in events if e.subject == person_hash]
    payloads = [p for e in mine if isinstance(p := e.payload(), RecordsUnmatched)]
    assert [p.batch_id for p in payloads] == batches
    new, corrected, voided = payloads
    assert [(r.record_id, r.revision) for r in new.records] == [
        (first["record_id"], 1),
        (second["record_id"], 1),
    ]
    assert [(r.record_id, r.revision) for r in corrected.records] == [(second["record_id"], 2)]
    assert corrected.records[0].out_of_pocket == 250.0 and corrected.voided == []
    assert voided.records == []
    assert [(v.record_id, v.revision, v.id_hash) for v in voided.voided] == [
        (first["record_id"], 2, person_hash)
    ]
    for event in events:
        raw = event.to_bytes().decode()
        assert person not in raw and other["id_number"] not in raw and "张三" not in raw
