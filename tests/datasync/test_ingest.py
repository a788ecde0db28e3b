"""Ingestion over HTTP against the real PostgreSQL: validation, idempotency, formats,
bad input."""

from __future__ import annotations

import asyncio
import csv
import io
import uuid
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from openpyxl import Workbook
from sqlalchemy import text

from backstop.events import CloudEvent
from backstop.idnumber import id_hash
from backstop.settings import Settings
from services.datasync.app import create
from services.datasync.config import DatasyncConfig
from services.datasync.domain import Period
from tests.datasync.conftest import make_id_number, unique
from tests.support import Stack, serve

pytestmark = pytest.mark.integration

LAST_MONTH = Period.of(datetime.now(ZoneInfo("Asia/Shanghai")).date()).shift(-1)
PERIOD = str(LAST_MONTH)
DAY = LAST_MONTH.first_day.replace(day=10).isoformat()


def medical(record_id: str | None = None, **overrides: Any) -> dict[str, Any]:
    record = {
        "record_id": record_id or unique("m"),
        "id_number": make_id_number(),
        "name": "张三",
        "settled_on": DAY,
        "total_cost": 1200.0,
        "insurance_paid": 700.0,
        "assistance_paid": 100.0,
        "out_of_pocket": 400.0,
    }
    record.update(overrides)
    return record


@pytest.fixture
async def client(datasync_settings: Settings) -> Any:
    async with serve(create, datasync_settings, background=False) as (client, runtime):
        yield client, runtime


def yibao(stack: Stack) -> dict[str, str]:
    return stack.headers("feeds:medical")


async def post(
    client: httpx.AsyncClient, headers: dict[str, str], body: Any, source: str = "medical"
) -> httpx.Response:
    return await client.post(f"/v1/feeds/{source}/batches", json=body, headers=headers)


async def test_good_and_bad_records_in_one_batch(client: Any, stack: Stack) -> None:
    http, _ = client
    batch = unique("b")
    records = [
        medical(),
        medical(id_number="44188119800517001X"),  # wrong check digit
        medical(out_of_pocket=900.0),  # more than total - paid parts
        medical(settled_on=LAST_MONTH.shift(1).last_day.isoformat()),  # after the period
        medical(total_cost=-1),
        medical(),
    ]
    r = await post(http, yibao(stack), {"batch_id": batch, "period": PERIOD, "records": records})
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["batch_id"] == batch and body["source"] == "medical" and body["period"] == PERIOD
    assert (body["received"], body["accepted"], body["rejected"], body["duplicates"]) == (
        6,
        2,
        4,
        0,
    )
    assert body["matched"] == 0 and body["unmatched"] == 2
    assert [(e["index"], e["field"]) for e in body["errors"]] == [
        (1, "id_number"),
        (2, "out_of_pocket"),
        (3, "settled_on"),
        (4, "total_cost"),
    ]
    assert body["errors"][0]["record_id"] == records[1]["record_id"]
    assert "check digit" in body["errors"][0]["message"]
    assert records[1]["id_number"] not in r.text

    got = await http.get(f"/v1/feeds/medical/batches/{batch}", headers=stack.headers("feeds:read"))
    assert got.status_code == 200 and got.json()["accepted"] == 2


async def test_same_batch_again_returns_the_same_summary_and_other_content_409(
    client: Any, stack: Stack
) -> None:
    http, runtime = client
    batch = unique("b")
    body = {"batch_id": batch, "period": PERIOD, "records": [medical(), medical(total_cost="x")]}
    first = await post(http, yibao(stack), body)
    assert first.status_code == 201
    again = await post(http, yibao(stack), body)
    assert again.status_code == 201 and again.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert again.json() == first.json()
    async with runtime.sessions() as session:
        n = await session.scalar(
            text("SELECT count(*) FROM feed_records WHERE batch_id = :b"), {"b": batch}
        )
    assert n == 1
    changed = {**body, "records": [medical(), medical()]}
    conflict = await post(http, yibao(stack), changed)
    assert conflict.status_code == 409
    assert conflict.headers["content-type"] == "application/problem+json"
    assert conflict.json()["errors"][0]["loc"] == ["body", "batch_id"]


async def test_record_ids_already_applied_are_duplicates_and_conflicts_rejected(
    client: Any, stack: Stack
) -> None:
    http, runtime = client
    a, b = medical(), medical()
    first = await post(
        http, yibao(stack), {"batch_id": unique("b"), "period": PERIOD, "records": [a, b]}
    )
    assert first.json()["accepted"] == 2
    changed_b = {**b, "total_cost": 5000.0}
    c = medical()
    second = await post(
        http,
        yibao(stack),
        {"batch_id": unique("b"), "period": PERIOD, "records": [a, changed_b, c, c]},
    )
    body = second.json()
    assert (body["accepted"], body["duplicates"], body["rejected"]) == (1, 2, 1)
    assert body["errors"][0]["index"] == 1 and body["errors"][0]["field"] == "record_id"
    async with runtime.sessions() as session:
        total = await session.scalar(
            text("SELECT (data->>'total_cost')::float FROM feed_records WHERE record_id = :r"),
            {"r": b["record_id"]},
        )
    assert total == 1200.0  # never silently overwritten


async def test_concurrent_identical_submissions_count_once(client: Any, stack: Stack) -> None:
    http, runtime = client
    batch = unique("b")
    body = {"batch_id": batch, "period": PERIOD, "records": [medical() for _ in range(50)]}
    responses = await asyncio.gather(*[post(http, yibao(stack), body) for _ in range(4)])
    assert [r.status_code for r in responses] == [201] * 4
    assert sum(1 for r in responses if "Idempotent-Replayed" in r.headers) == 3
    assert len({r.text for r in responses}) == 1
    async with runtime.sessions() as session:
        n = await session.scalar(
            text("SELECT count(*) FROM feed_records WHERE batch_id = :b"), {"b": batch}
        )
        events = await session.scalar(
            text(
                "SELECT count(*) FROM outbox WHERE event_type LIKE '%batch.received%' AND key = 'medical' AND convert_from(value, 'UTF8') LIKE :b"
            ),
            {"b": f"%{batch}%"},
        )
    assert n == 50
    assert events == 1


def _csv(rows: list[list[Any]], encoding: str) -> bytes:
    out = io.StringIO()
    csv.writer(out).writerows(rows)
    return out.getvalue().encode(encoding)


async def test_gbk_csv_with_chinese_headers(client: Any, stack: Stack) -> None:
    http, _ = client
    header = [
        "结算单号",
        "身份证号",
        "姓名",
        "结算日期",
        "医疗总费用(元)",
        "基本医保支付",
        "医疗救助",
        "个人自付",
        "备注",
    ]
    good = [
        unique("c"),
        make_id_number(),
        "李四",
        DAY.replace("-", "/"),
        "1,500.00",
        "900",
        "0",
        "600",
        "住院",
    ]
    bad = [unique("c"), make_id_number(), "王五", DAY, "100", "80", "0", "50", ""]
    content = _csv([header, good, bad], "gbk")
    batch = unique("csv")
    r = await http.post(
        "/v1/feeds/medical/batches",
        data={"batch_id": batch, "period": PERIOD},
        files={"file": ("医保.csv", content, "text/csv")},
        headers=yibao(stack),
    )
    assert r.status_code == 201, r.text
    body = r.json()
    assert (body["received"], body["accepted"], body["rejected"]) == (2, 1, 1)
    assert body["errors"][0] == {
        "index": 1,
        "record_id": bad[0],
        "field": "out_of_pocket",
        "message": "out_of_pocket exceeds total_cost - insurance_paid - assistance_paid",
        "code": "amounts_exceed_total",
        "message_zh": "个人自付：各项支付之和超过总额",
        "row": 3,
        "column": "个人自付",
        "value": "50",
    }
    raw = await http.get(
        f"/v1/feeds/medical/batches/{batch}/records",
        headers=stack.headers("feeds:read", "registry:pii"),
    )
    assert raw.status_code == 200
    items = raw.json()["items"]
    assert items[0]["raw"]["姓名"] == "李四" and items[0]["id_number"] == good[1]
    assert items[1]["outcome"] == "rejected" and items[1]["raw"]["备注"] == ""
    denied = await http.get(
        f"/v1/feeds/medical/batches/{batch}/records", headers=stack.headers("feeds:read")
    )
    assert denied.status_code == 403


async def test_xlsx_upload(client: Any, stack: Stack) -> None:
    http, _ = client
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(["记录编号", "证件号码", "发生日期", "灾害类型", "直接经济损失", "房屋受损"])
    sheet.append([unique("d"), make_id_number(), LAST_MONTH.first_day, "洪涝", 3200.5, "是"])
    sheet.append([unique("d"), make_id_number(), LAST_MONTH.first_day, "陨石", 10, "否"])
    out = io.BytesIO()
    book.save(out)
    r = await http.post(
        "/v1/feeds/disaster/batches",
        data={"batch_id": unique("x"), "period": PERIOD},
        files={"file": ("灾情.xlsx", out.getvalue(), "application/octet-stream")},
        headers=stack.headers("feeds:disaster"),
    )
    assert r.status_code == 201, r.text
    body = r.json()
    assert (body["accepted"], body["rejected"]) == (1, 1)
    assert body["errors"][0]["field"] == "disaster_type"


async def test_bad_input_gets_problem_json(client: Any, stack: Stack) -> None:
    http, _ = client
    h = yibao(stack)
    ok = {"batch_id": unique("b"), "period": PERIOD, "records": [medical()]}

    async def check(r: httpx.Response, status: int, loc: list[str] | None = None) -> None:
        assert r.status_code == status, r.text
        assert r.headers["content-type"] == "application/problem+json"
        if loc is not None:
            assert r.json()["errors"][0]["loc"] == loc

    await check(
        await http.post(
            "/v1/feeds/medical/batches",
            content=b"{not json",
            headers={**h, "content-type": "application/json"},
        ),
        400,
    )
    await check(
        await http.post(
            "/v1/feeds/medical/batches",
            content=b"a,b",
            headers={**h, "content-type": "application/xml"},
        ),
        415,
    )
    await check(await post(http, h, ok, source="pension"), 404)
    future = str(LAST_MONTH.shift(3))
    await check(await post(http, h, {**ok, "period": future}), 422, ["body", "period"])
    await check(await post(http, h, {**ok, "period": "2026-13"}), 422, ["body", "period"])
    await check(await post(http, h, {**ok, "records": []}), 422, ["body", "records"])
    await check(await post(http, h, {**ok, "batch_id": "no spaces"}), 422, ["body", "batch_id"])
    await check(await post(http, stack.headers("feeds:disaster"), ok), 403)
    await check(await http.post("/v1/feeds/medical/batches", json=ok), 401)
    # A header-only CSV is an empty batch.
    header_only = _csv(
        [
            [
                "record_id",
                "id_number",
                "name",
                "settled_on",
                "total_cost",
                "insurance_paid",
                "assistance_paid",
                "out_of_pocket",
            ]
        ],
        "utf-8",
    )
    await check(
        await http.post(
            "/v1/feeds/medical/batches",
            data={"batch_id": unique("e"), "period": PERIOD},
            files={"file": ("a.csv", header_only, "text/csv")},
            headers=h,
        ),
        422,
    )
    # A CSV without the ID number column names the missing column.
    r = await http.post(
        "/v1/feeds/medical/batches",
        data={"batch_id": unique("e"), "period": PERIOD},
        files={"file": ("a.csv", _csv([["record_id", "name"], ["1", "x"]], "utf-8"), "text/csv")},
        headers=h,
    )
    await check(r, 422, ["body", "file", "id_number"])
    # Nothing was kept from the rejected requests: the good batch still goes in.
    assert (await post(http, h, ok)).status_code == 201


async def test_upload_over_the_limit_is_413(datasync_settings: Settings, stack: Stack) -> None:
    small = DatasyncConfig(max_upload_bytes=2000)

    def factory(settings: Settings, *, background: bool = True) -> Any:
        return create(settings, background=background, config=small)

    async with serve(factory, datasync_settings, background=False) as (http, _):
        body = {
            "batch_id": unique("big"),
            "period": PERIOD,
            "records": [medical() for _ in range(20)],
        }
        r = await post(http, yibao(stack), body)
        assert r.status_code == 413
        assert r.headers["content-type"] == "application/problem+json"
        content = b"record_id,id_number\n" + b"x" * 5000
        r = await http.post(
            "/v1/feeds/medical/batches",
            data={"batch_id": unique("big"), "period": PERIOD},
            files={"file": ("a.csv", content, "text/csv")},
            headers=yibao(stack),
        )
        assert r.status_code == 413


async def test_awkward_text_survives_storage(client: Any, stack: Stack) -> None:
    """Tabs, newlines, backslashes and quotes in what a department sends are kept as sent."""
    http, _ = client
    batch = unique("odd")
    record = medical(name='王\t"五"\\', note='line one\nline two \\ "quoted"')
    record["record_id"] = unique("r\\x")
    r = await post(http, yibao(stack), {"batch_id": batch, "period": PERIOD, "records": [record]})
    assert r.status_code == 201 and r.json()["accepted"] == 1, r.text
    raw = await http.get(
        f"/v1/feeds/medical/batches/{batch}/records",
        headers=stack.headers("feeds:read", "registry:pii"),
    )
    [item] = raw.json()["items"]
    assert item["record_id"] == record["record_id"]
    assert item["raw"] == record


async def test_all_errors_are_listed_beyond_the_summary(
    datasync_settings: Settings, stack: Stack
) -> None:
    few = DatasyncConfig(max_errors_listed=2)

    def factory(settings: Settings, *, background: bool = True) -> Any:
        return create(settings, background=background, config=few)

    async with serve(factory, datasync_settings, background=False) as (http, _):
        batch = unique("errs")
        records = [medical(total_cost=-i - 1) for i in range(5)] + [medical()]
        r = await post(
            http, yibao(stack), {"batch_id": batch, "period": PERIOD, "records": records}
        )
        body = r.json()
        assert (body["rejected"], body["errors_total"], len(body["errors"])) == (5, 5, 2)
        own = stack.headers("feeds:medical")
        page = await http.get(f"/v1/feeds/medical/batches/{batch}/errors?limit=3", headers=own)
        assert page.status_code == 200
        rest = await http.get(
            f"/v1/feeds/medical/batches/{batch}/errors?limit=3&cursor={page.json()['next_cursor']}",
            headers=own,
        )
        indexes = [e["index"] for e in page.json()["items"] + rest.json()["items"]]
        assert indexes == [0, 1, 2, 3, 4] and rest.json()["next_cursor"] is None
        other = await http.get(
            f"/v1/feeds/medical/batches/{batch}/errors", headers=stack.headers("feeds:education")
        )
        assert other.status_code == 403


async def test_education_and_civil_affairs_json_with_chinese_keys(
    client: Any, stack: Stack
) -> None:
    http, _ = client
    year = LAST_MONTH.year if LAST_MONTH.month >= 9 else LAST_MONTH.year - 1
    student = {
        "记录编号": unique("e"),
        "身份证号": make_id_number(born=LAST_MONTH.first_day.replace(year=year - 12, day=1)),
        "学段": "初中",
        "学期": f"{year}年秋季学期",
        "学杂费": 1800,
        "资助金额": 1000,
        "个人自付": 800,
        "在读": "在读",
    }
    r = await post(
        http,
        stack.headers("feeds:education"),
        {"batch_id": unique("edu"), "period": PERIOD, "records": [student]},
        source="education",
    )
    assert r.status_code == 201 and r.json()["accepted"] == 1, r.text
    grant = {
        "record_id": unique("c"),
        "id_number": make_id_number(),
        "kind": "临时救助",
        "status": "granted",
        "amount": 2000,
        "start_on": DAY,
    }
    r = await post(
        http,
        stack.headers("feeds:civil_affairs"),
        {"batch_id": unique("mz"), "period": PERIOD, "records": [grant, {**grant, "kind": "x"}]},
        source="civil_affairs",
    )
    assert (r.json()["accepted"], r.json()["errors"][0]["field"]) == (1, "kind"), r.text


async def test_a_batch_in_many_chunks(datasync_settings: Settings, stack: Stack) -> None:
    """A CSV read in chunks (a first one of 100, then 400): record ids repeated in one
    chunk, across chunks and from an earlier batch, a bad record, two people matched in
    different chunks; resent, the same summary. The unmatched list pages through it."""
    config = DatasyncConfig(chunk_size=400)

    def factory(settings: Settings, *, background: bool = True) -> Any:
        return create(settings, background=background, config=config)

    async with serve(factory, datasync_settings, background=False) as (http, runtime):
        earlier = [medical() for _ in range(2)]
        r = await post(
            http, yibao(stack), {"batch_id": unique("b"), "period": PERIOD, "records": earlier}
        )
        assert r.json()["accepted"] == 2
        records = [medical() for _ in range(450)]
        records[10] = dict(records[3])  # again in the same chunk: a duplicate
        records[250] = dict(records[5])  # again two chunks later: a duplicate
        records[260] = {**records[6], "total_cost": 5000.0}  # other content: rejected
        records[300] = dict(earlier[0])  # from the earlier batch: a duplicate
        records[301] = {**earlier[1], "out_of_pocket": 1.0}  # other content: rejected
        records[400] = medical(total_cost=-1)
        household = str(uuid.uuid4())
        person = records[20]["id_number"]
        records[350]["id_number"] = person
        async with runtime.sessions() as session:
            await session.execute(
                text(
                    "INSERT INTO person_index (household_id, id_hash, since) VALUES (:h, :i, now())"
                ),
                {"h": household, "i": id_hash(person, datasync_settings.pii_key)},
            )
            await session.commit()
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=list(records[0]))
        writer.writeheader()
        writer.writerows(records)
        batch = unique("chunks")

        async def send() -> httpx.Response:
            return await http.post(
                "/v1/feeds/medical/batches",
                data={"batch_id": batch, "period": PERIOD},
                files={"file": ("m.csv", out.getvalue().encode(), "text/csv")},
                headers=yibao(stack),
            )

        first = await send()
        assert first.status_code == 201, first.text
        body = first.json()
        counts = ("received", "accepted", "duplicates", "rejected", "matched", "unmatched")
        assert tuple(body[k] for k in counts) == (450, 444, 3, 3, 2, 442)
        assert [(e["index"], e["field"]) for e in body["errors"]] == [
            (260, "record_id"),
            (301, "record_id"),
            (400, "total_cost"),
        ]
        assert "in this batch" in body["errors"][0]["message"]
        again = await send()
        assert again.headers["Idempotent-Replayed"] == "true" and again.json() == body

        async with runtime.sessions() as session:
            stored = await session.scalar(
                text("SELECT count(*) FROM feed_records WHERE batch_id = :b"), {"b": batch}
            )
            values = (
                await session.scalars(
                    text(
                        "SELECT value FROM outbox WHERE key = :h"
                        " AND event_type = 'backstop.datasync.records.matched.v1'"
                    ),
                    {"h": household},
                )
            ).all()
        assert stored == 444
        [event] = [CloudEvent.from_bytes(v) for v in values]
        assert event.subject == household and event.correlationid
        assert [rec.record_id for rec in event.payload().records] == [  # type: ignore[attr-defined]
            records[20]["record_id"],
            records[350]["record_id"],
        ]

        pages, cursor = [], None
        for _ in range(3):
            query = f"/v1/unmatched?source=medical&period={PERIOD}&limit=2"
            page = await http.get(
                query + (f"&cursor={cursor}" if cursor else ""), headers=stack.headers("feeds:read")
            )
            assert page.status_code == 200, page.text
            pages += [(i["source"], i["record_id"]) for i in page.json()["items"]]
            cursor = page.json()["next_cursor"]
        assert len(set(pages)) == 6  # the pages follow on, none repeated
