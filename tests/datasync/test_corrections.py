"""Corrections (更正) and voids (作废) over HTTP against the real PostgreSQL and Kafka: the
record's revision, its history, the events, and the changes refused with their reason."""

from __future__ import annotations

import csv
import io
import uuid
from typing import Any

import pytest
from sqlalchemy import text

from backstop.contracts.datasync import TOPIC, RecordsMatched, RecordsVoided
from backstop.idnumber import id_hash
from backstop.settings import Settings
from services.datasync.app import create
from tests.datasync.conftest import household_event, make_id_number, produce, unique
from tests.datasync.test_ingest import PERIOD, medical
from tests.support import Stack, read_topic, serve, wait_for

pytestmark = pytest.mark.integration

VILLAGE = "441881101001"  # conftest's household_event


def batch(*records: dict[str, Any]) -> dict[str, Any]:
    return {"batch_id": unique("b"), "period": PERIOD, "records": list(records)}


async def test_a_record_corrected_then_voided_keeps_every_version(
    datasync_settings: Settings, stack: Stack
) -> None:
    settings = datasync_settings
    household, person = str(uuid.uuid4()), make_id_number()
    yibao = stack.headers("feeds:medical")
    async with serve(create, settings) as (http, runtime):
        await produce(settings, [household_event(settings, household, [person])])

        async def indexed() -> bool:
            async with runtime.sessions() as session:
                found = await session.execute(
                    text("SELECT 1 FROM household_versions WHERE household_id = :h"),
                    {"h": household},
                )
                return found.first() is not None

        await wait_for(indexed, message="household indexed")
        original = medical(id_number=person, out_of_pocket=400.0)
        rid = original["record_id"]
        first = await http.post("/v1/feeds/medical/batches", json=batch(original), headers=yibao)
        assert first.json()["matched"] == 1

        corrected = {**original, "out_of_pocket": 150.0, "correction": True}
        body = batch(corrected)
        r = await http.post("/v1/feeds/medical/batches", json=body, headers=yibao)
        assert r.status_code == 201, r.text
        summary = r.json()
        assert (summary["accepted"], summary["corrected"], summary["voided"]) == (1, 1, 0)
        assert (summary["matched"], summary["duplicates"], summary["rejected"]) == (1, 0, 0)
        correction_batch = body["batch_id"]
        # The same correction again (another batch) changes nothing.
        again = await http.post("/v1/feeds/medical/batches", json=batch(corrected), headers=yibao)
        assert (again.json()["duplicates"], again.json()["corrected"]) == (1, 0)
        # The original file sent again, unflagged: nothing changes, the correction stands.
        resent = await http.post("/v1/feeds/medical/batches", json=batch(original), headers=yibao)
        assert (resent.json()["duplicates"], resent.json()["rejected"]) == (1, 0)

        void = {"record_id": rid, "void": "是"}
        voiding = batch(void)
        v = await http.post("/v1/feeds/medical/batches", json=voiding, headers=yibao)
        assert (v.json()["accepted"], v.json()["voided"], v.json()["rejected"]) == (1, 1, 0)

        changes = await read_topic(
            settings,
            TOPIC,
            min_count=2,
            match=lambda e: e.data.get("batch_id") in (correction_batch, voiding["batch_id"]),
        )
        by_type = {e.type: e.payload() for e in changes}
        matched = by_type["backstop.datasync.records.matched.v1"]
        assert isinstance(matched, RecordsMatched) and matched.household_id == household
        assert matched.period == PERIOD  # the period of the record it corrects
        [record] = matched.records
        assert (record.record_id, record.revision) == (rid, 2)
        assert record.out_of_pocket == 150.0  # type: ignore[union-attr]
        voided = by_type["backstop.datasync.records.voided.v1"]
        assert isinstance(voided, RecordsVoided) and voided.household_id == household
        assert [(x.record_id, x.revision) for x in voided.records] == [(rid, 3)]
        assert voided.records[0].id_hash == id_hash(person, settings.pii_key)
        assert all(person not in e.to_bytes().decode() for e in changes)

        url = f"/v1/feeds/medical/records/{rid}/history"
        h = await http.get(url, headers=stack.headers("feeds:read", regions=[VILLAGE[:9]]))
        assert h.status_code == 200, h.text
        history = h.json()
        assert (history["revision"], history["voided"]) == (3, True)
        assert history["household_id"] == household and history["id_number"] != person
        assert [(i["revision"], i["action"]) for i in history["items"]] == [
            (1, "original"),
            (2, "correction"),
            (3, "void"),
        ]
        assert [i["batch_id"] for i in history["items"]] == [
            first.json()["batch_id"],
            correction_batch,
            voiding["batch_id"],
        ]
        amounts = [(i["data"] or {}).get("out_of_pocket") for i in history["items"]]
        assert amounts == [400.0, 150.0, None]
        assert all(i["raw"] is None for i in history["items"])  # no registry:pii
        pii = await http.get(url, headers=stack.headers("feeds:read", "registry:pii"))
        assert pii.json()["id_number"] == person
        assert pii.json()["items"][1]["raw"]["correction"] is True
        # Outside the household's regions: as if there were no such record.
        elsewhere = await http.get(url, headers=stack.headers("feeds:read", regions=["441882"]))
        assert elsewhere.status_code == 404
        assert elsewhere.headers["content-type"].startswith("application/problem+json")
        missing = await http.get(
            "/v1/feeds/medical/records/nope/history", headers=stack.headers("feeds:read")
        )
        assert missing.status_code == 404

        # The correction batch lists the correction with its raw row.
        listed = await http.get(
            f"/v1/feeds/medical/batches/{correction_batch}/records",
            headers=stack.headers("feeds:read", "registry:pii"),
        )
        assert [(i["outcome"], i["record_id"]) for i in listed.json()["items"]] == [
            ("corrected", rid)
        ]

        # A voided record sent again, plain or corrected, is refused: it stays voided.
        late = await http.post(
            "/v1/feeds/medical/batches", json=batch(original, corrected), headers=yibao
        )
        assert [e["code"] for e in late.json()["errors"]] == ["voided_record", "voided_record"]


async def test_changes_that_cannot_apply_are_rejected_with_the_reason(
    datasync_settings: Settings, stack: Stack
) -> None:
    yibao = stack.headers("feeds:medical")
    async with serve(create, datasync_settings, background=False) as (http, _):
        kept = medical()
        await http.post("/v1/feeds/medical/batches", json=batch(kept), headers=yibao)
        unknown = medical(correction=True)
        records = [
            unknown,  # never received
            {"record_id": unique("m"), "void": True},  # never received
            {**kept, "id_number": make_id_number(), "correction": True},  # another person
            {**kept, "total_cost": 5000.0},  # changed without the flag
            {**kept, "correction": "是", "void": "是"},
            {"void": True},  # no record id
            {**kept, "out_of_pocket": 9999.0, "correction": True},  # invalid content
        ]
        r = await http.post("/v1/feeds/medical/batches", json=batch(*records), headers=yibao)
        assert r.status_code == 201, r.text
        body = r.json()
        assert (body["accepted"], body["rejected"], body["corrected"]) == (0, 7, 0)
        assert [(e["index"], e["field"], e["code"]) for e in body["errors"]] == [
            (0, "record_id", "unknown_record"),
            (1, "record_id", "unknown_record"),
            (2, "id_number", "changed_person"),
            (3, "record_id", "changed_record"),
            (4, "void", "correction_and_void"),
            (5, "record_id", "required"),
            (6, "out_of_pocket", "amounts_exceed_total"),
        ]
        first = body["errors"][0]
        assert first["record_id"] == unknown["record_id"]
        assert "never received" in first["message"] and first["message_zh"].startswith("记录编号")
        assert "correction: true" in body["errors"][3]["message"]


async def test_a_correction_and_a_void_in_a_file_and_an_unmatched_void(
    datasync_settings: Settings, stack: Stack
) -> None:
    """更正/作废 columns of a department file; a voided unmatched record leaves the
    unmatched list."""
    yibao = stack.headers("feeds:medical")
    async with serve(create, datasync_settings, background=False) as (http, _):
        a, b = medical(), medical()
        await http.post("/v1/feeds/medical/batches", json=batch(a, b), headers=yibao)
        header = ["结算单号", "身份证号", "姓名", "结算日期", "医疗总费用", "基本医保支付"]
        header += ["医疗救助", "个人自付", "更正标志", "作废标志"]
        fixed = ["1200", "700", "100", "250", "是", ""]  # 个人自付 400 → 250, 更正
        rows = [
            [a["record_id"], a["id_number"], "张三", a["settled_on"], *fixed],
            [b["record_id"], "", "", "", "", "", "", "", "", "是"],  # 作废: the id is enough
        ]
        sheet = io.StringIO()
        csv.writer(sheet).writerows([header, *rows])
        r = await http.post(
            "/v1/feeds/medical/batches",
            data={"batch_id": unique("csv"), "period": PERIOD},
            files={"file": ("更正.csv", sheet.getvalue().encode(), "text/csv")},
            headers=yibao,
        )
        assert r.status_code == 201, r.text
        body = r.json()
        assert (body["corrected"], body["voided"], body["rejected"]) == (1, 1, 0), body
        assert body["unmatched"] == 2  # neither person is registered
        county = stack.headers("feeds:read", regions=["441881"])
        listed = await http.get(f"/v1/unmatched?period={PERIOD}&limit=1000", headers=county)
        ids = {i["record_id"] for i in listed.json()["items"]}
        assert a["record_id"] in ids and b["record_id"] not in ids
        history = await http.get(
            f"/v1/feeds/medical/records/{a['record_id']}/history", headers=county
        )
        assert [i["data"]["out_of_pocket"] for i in history.json()["items"]] == [400.0, 250.0]
