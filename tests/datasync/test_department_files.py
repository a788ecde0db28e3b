"""Department files as their systems really export them, through the real endpoint,
PostgreSQL and Kafka: title and notes rows, layered merged headers, totals and footers,
GBK / GB18030 / UTF-8 with BOM, a workbook with two sheets, an old .xls; derived record
ids and amounts; row errors a data officer can act on; preview; mapping profiles; and
files that are refused (formats, a zip bomb, an oversize CSV cell).

Every fixture is built here, in the layout the department's export has."""

from __future__ import annotations

import io
import time
import uuid
import zipfile
from datetime import datetime
from typing import Any

import httpx
import pytest
import xlwt  # test-only: writes the BIFF (.xls) fixture; the service reads it with xlrd
from openpyxl import Workbook
from sqlalchemy import text

from backstop.db import unit_of_work
from backstop.idnumber import check_digit, id_hash
from backstop.settings import Settings
from services.datasync import matching
from services.datasync.app import create
from services.datasync.domain import DERIVED_ID_PREFIX, derived_record_id
from tests.datasync.conftest import household_event, make_id_number, unique
from tests.datasync.test_ingest import LAST_MONTH, PERIOD, medical
from tests.support import Stack, serve

pytestmark = pytest.mark.integration

Y, M = LAST_MONTH.year, LAST_MONTH.month


def id_with_x() -> str:
    """A valid ID number whose check digit is X (written lowercase in the fixtures)."""
    while True:
        number = make_id_number()
        first17 = number[:17]
        if check_digit(first17) == "X":
            return first17 + "X"


@pytest.fixture
async def client(datasync_settings: Settings) -> Any:
    async with serve(create, datasync_settings, background=False) as (http, runtime):
        yield http, runtime


async def upload(
    http: httpx.AsyncClient,
    stack: Stack,
    source: str,
    name: str,
    content: bytes,
    batch_id: str | None = None,
    **form: str,
) -> httpx.Response:
    return await http.post(
        f"/v1/feeds/{source}/batches",
        data={"batch_id": batch_id or unique("f"), "period": PERIOD, **form},
        files={"file": (name, content, "application/octet-stream")},
        headers=stack.headers(f"feeds:{source}"),
    )


async def stored_ids(runtime: Any, source: str, batch_id: str) -> list[str]:
    async with runtime.sessions() as session:
        rows = await session.execute(
            text("SELECT record_id FROM feed_records WHERE source = :s AND batch_id = :b"),
            {"s": source, "b": batch_id},
        )
        return sorted(r[0] for r in rows)


async def resent_gives_the_same(
    http: httpx.AsyncClient, stack: Stack, source: str, name: str, content: bytes, first: Any
) -> None:
    """The same file under the same batch id: the same summary; under a new batch id:
    every record a duplicate (the derived ids are stable)."""
    again = await upload(http, stack, source, name, content, first["batch_id"])
    assert again.status_code == 201 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first
    other = await upload(http, stack, source, name, content)
    assert other.status_code == 201, other.text
    assert (other.json()["accepted"], other.json()["duplicates"]) == (0, first["accepted"])
    assert other.json()["skipped"] == first["skipped"]


# --- medical: GBK CSV with title, notes, 统筹/大病 split, no record id, totals ------------


def medical_csv(people: list[str], extra: bool = False) -> bytes:
    lines = [
        f"XX市医疗保障局{Y}年{M}月脱贫人口医疗费用结算明细表",
        f"填报单位：XX市医疗保障局,,,,,制表日期：{Y}年{M}月28日,,,",
        "单位：元,,,,,,,,",
        "序号,姓名,公民身份号码,结算日期,医疗总费用（元）,统筹基金支付,大病保险支付,医疗救助支付,个人自付",
        f'1,张三,\'{people[0].lower()},{Y}/{M}/3,"1,234.56",800,100.5,50,284.06',
        f"2,李四, {people[1]} ,{Y}年{M}月5日,￥2000,1500,0,0,500",
        f"3,王五,{people[2]},{Y}{M:02d}06,300,200,,,100",
    ]
    if extra:
        lines.append(f"4,赵六,{people[3]},{Y}-{M:02d}-07,100,50,0,0,50")
    lines += [
        "合计,,,,3534.56,2500,100.5,50,884.06",
        "制表人：赵六    审核人：钱七    负责人：孙八",
    ]
    return ("\r\n".join(lines) + "\r\n").encode("gbk")


async def test_gbk_settlement_csv_with_title_notes_and_totals(client: Any, stack: Stack) -> None:
    http, runtime = client
    people = [id_with_x(), make_id_number(), make_id_number(), make_id_number()]
    content = medical_csv(people)
    r = await upload(http, stack, "medical", "医保结算.csv", content)
    assert r.status_code == 201, r.text
    body = r.json()
    assert (body["received"], body["accepted"], body["rejected"], body["skipped"]) == (3, 3, 0, 2)
    assert (body["encoding"], body["header_row"], body["header_rows"]) == ("gb18030", 4, 1)
    assert body["record_id_rule"].startswith("derived")
    day = LAST_MONTH.first_day.replace(day=3).isoformat()
    first = derived_record_id(
        "medical",
        people[0],
        {
            "settled_on": day,
            "total_cost": 1234.56,
            "insurance_paid": 900.5,  # 统筹 800 + 大病 100.5
            "assistance_paid": 50.0,
            "out_of_pocket": 284.06,
        },
    )
    ids = await stored_ids(runtime, "medical", body["batch_id"])
    assert first in ids and all(i.startswith(DERIVED_ID_PREFIX) for i in ids) and len(ids) == 3
    await resent_gives_the_same(http, stack, "medical", "医保结算.csv", content, body)
    # One new row in the same file is the only new record.
    grown = await upload(http, stack, "medical", "医保结算.csv", medical_csv(people, extra=True))
    assert (grown.json()["accepted"], grown.json()["duplicates"]) == (1, 3)


async def test_disagreeing_amounts_are_rejected_with_both_numbers(
    client: Any, stack: Stack
) -> None:
    http, _ = client
    lines = [
        "结算流水号,姓名,身份证号,出院日期,费用总额,基本医保支付,统筹基金支付,大病保险支付,医疗救助,个人现金支付",
        f"JS1,张三,{make_id_number()},{Y}-{M:02d}-03,1000,900,800,50,0,100",
        f"JS2,李四,{make_id_number()},{Y}-{M:02d}-03,1000,850,800,50,0,150",
    ]
    r = await upload(http, stack, "medical", "a.csv", "\n".join(lines).encode())
    assert r.status_code == 201, r.text
    body = r.json()
    assert (body["accepted"], body["rejected"]) == (1, 1)
    assert body["record_id_rule"] == "column 结算流水号"
    [error] = body["errors"]
    assert (error["row"], error["field"], error["code"]) == (
        2,
        "insurance_paid",
        "amounts_disagree",
    )
    assert (error["column"], error["value"]) == ("基本医保支付", "900")
    assert "900.00" in error["message"] and "850.00" in error["message"]
    assert "900.00" in error["message_zh"] and "850.00" in error["message_zh"]


# --- medical: XLSX, two sheets, merged title, three-layer headers, Excel values -----------


def medical_workbook(people: list[Any]) -> bytes:
    book = Workbook()
    notes = book.active
    assert notes is not None
    notes.title = "填报说明"
    notes.append(["本表由医保结算系统导出，请勿修改表头。"])
    notes.append(["金额单位：元"])
    sheet = book.create_sheet("结算明细")
    sheet.append([f"XX市医疗保障局{Y}年{M}月脱贫人口医疗费用结算明细表"])
    sheet.merge_cells("A1:I1")
    sheet.append(["填报单位：XX市医疗保障局", None, None, None, None, None, "单位：元"])
    sheet.append(["序号", "姓名", "公民身份号码", "结算日期", "医疗费用"])
    sheet.append([None, None, None, None, "医疗总费用", "基金支付", None, None, "个人自付"])
    sheet.append([None, None, None, None, None, "统筹基金支付", "大病保险支付", "医疗救助支付"])
    for column in "ABCD":
        sheet.merge_cells(f"{column}3:{column}5")
    sheet.merge_cells("E3:I3")
    sheet.merge_cells("E4:E5")
    sheet.merge_cells("F4:H4")
    sheet.merge_cells("I4:I5")
    settled = LAST_MONTH.first_day.replace(day=4)
    serial = (settled - datetime(1899, 12, 30).date()).days  # a date cell that lost its format
    sheet.append([1, "张三", people[0], datetime(Y, M, 3, 9, 30), 1000, 600, 100, 0, 300])
    sheet.append([2, "李四", people[1], serial, "1,500.00", 1000, 0, 200, 300])
    sheet.append([3, "王五", people[2], serial, 800, 500, 0, 0, 300])  # ID as a number
    sheet.append(["合计", None, None, None, 3300, 2100, 100, 200, 900])
    sheet.append(["制表人：赵六", None, None, "审核人：钱七"])
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


async def test_xlsx_with_two_sheets_and_three_layer_headers(client: Any, stack: Stack) -> None:
    http, runtime = client
    people: list[Any] = [make_id_number(), make_id_number(), 4.41881198005e17]
    content = medical_workbook(people)
    r = await upload(http, stack, "medical", "结算明细.xlsx", content)
    assert r.status_code == 201, r.text
    body = r.json()
    assert (body["sheet"], body["header_row"], body["header_rows"]) == ("结算明细", 3, 3)
    assert (body["accepted"], body["rejected"], body["skipped"]) == (2, 1, 2)
    [error] = body["errors"]
    assert (error["row"], error["column"], error["code"]) == (
        8,
        "公民身份号码",
        "id_number_lost_digits",
    )
    assert "Text" in error["message"] and "文本" in error["message_zh"]
    ids = await stored_ids(runtime, "medical", body["batch_id"])
    assert (
        derived_record_id(
            "medical",
            people[1],
            {
                "settled_on": LAST_MONTH.first_day.replace(day=4).isoformat(),  # from the serial
                "total_cost": 1500.0,
                "insurance_paid": 1000.0,
                "assistance_paid": 200.0,
                "out_of_pocket": 300.0,
            },
        )
        in ids
    )
    await resent_gives_the_same(http, stack, "medical", "结算明细.xlsx", content, body)
    # The sheet can be named: the notes sheet has no table.
    named = await upload(http, stack, "medical", "x.xlsx", content, sheet="填报说明")
    assert named.status_code == 422 and named.json()["code"] == "header_not_found"


# --- disaster: GB18030 CSV (a name outside GBK), no record id ---------------------------


async def test_gb18030_disaster_csv(client: Any, stack: Stack) -> None:
    http, runtime = client
    person = make_id_number()
    lines = [
        f"XX市应急管理局{Y}年{M}月受灾脱贫人口明细",
        "序号,户主姓名,身份证号码,受灾时间,灾种,直接经济损失（元）,房屋倒损",
        f'1,𠀀明,{person},{Y}.{M}.2,洪涝,"12,000",是',
        f"2,李四,{make_id_number()},{Y}/{M}/2,冰雹,３５００,否",
        "总计,,,,,15500,",
    ]
    content = "\n".join(lines).encode("gb18030")
    with pytest.raises(UnicodeEncodeError):
        "𠀀".encode("gbk")  # the file is GB18030 proper, not GBK
    r = await upload(http, stack, "disaster", "灾情.csv", content)
    assert r.status_code == 201, r.text
    body = r.json()
    assert (body["accepted"], body["rejected"], body["skipped"]) == (2, 0, 1)
    ids = await stored_ids(runtime, "disaster", body["batch_id"])
    expected = derived_record_id(
        "disaster",
        person,
        {
            "occurred_on": LAST_MONTH.first_day.replace(day=2).isoformat(),
            "disaster_type": "flood",
            "loss_amount": 12000.0,
        },
    )
    assert expected in ids
    await resent_gives_the_same(http, stack, "disaster", "灾情.csv", content, body)


# --- civil affairs: UTF-8 with BOM, ¥ amounts, full-width digits, Chinese dates -------------


async def test_utf8_bom_civil_affairs_csv(client: Any, stack: Stack) -> None:
    http, runtime = client
    person = make_id_number()
    lines = [
        "民政局低保特困人员保障明细",
        "填报单位：XX市民政局,,,,,,",
        "序号,姓名,身份证号,救助类别,保障状态,保障金额,起始日期,终止日期",
        f"1,张三,{person},低保,在保,¥1,200,{Y}年{M}月1日,",
        f"2,李四,{make_id_number()},特困,终止,１２００,{Y}年1月1日,{Y}年{M}月3日",
        f"3,王五,{make_id_number()},低保,在保,abc,{Y}年{M}月1日,",
        "小计,,,,,2400,,",
    ]
    # "¥1,200" unquoted would split the cell: as an export writes it, quoted.
    lines[3] = lines[3].replace("¥1,200", '"¥1,200"')
    content = b"\xef\xbb\xbf" + "\n".join(lines).encode()
    r = await upload(http, stack, "civil_affairs", "民政.csv", content)
    assert r.status_code == 201, r.text
    body = r.json()
    assert (body["encoding"], body["header_row"]) == ("utf-8-sig", 3)
    assert (body["accepted"], body["rejected"], body["skipped"]) == (2, 1, 1)
    [error] = body["errors"]
    assert (error["row"], error["column"], error["value"], error["code"]) == (
        6,
        "保障金额",
        "abc",
        "not_a_number",
    )
    assert error["message_zh"] == "保障金额：应为数字"
    ids = await stored_ids(runtime, "civil_affairs", body["batch_id"])
    start = LAST_MONTH.first_day.isoformat()
    fields = {"kind": "dibao", "status": "granted", "start_on": start, "amount": 1200.0}
    assert derived_record_id("civil_affairs", person, fields) in ids
    await resent_gives_the_same(http, stack, "civil_affairs", "民政.csv", content, body)


# --- education: an old .xls (BIFF) --------------------------------------------------------


def education_xls(person: str) -> bytes:
    book = xlwt.Workbook(encoding="utf-8")
    sheet = book.add_sheet("学生资助")
    sheet.write_merge(0, 0, 0, 7, f"{Y}年教育资助脱贫家庭学生明细")
    header = [
        "序号",
        "学生姓名",
        "身份证号",
        "学段",
        "学期",
        "应缴费用",
        "资助金额",
        "个人自付",
        "是否在校",
    ]
    for c, h in enumerate(header):
        sheet.write(1, c, h)
    term = f"{Y - 1}年秋季学期"
    rows = [
        [1, "小明", person.lower(), "初中", term, 2000, 1500, 500, "在校"],
        [2, "小红", make_id_number(), "高中", term, 3000.0, 3000, 0, "是"],
    ]
    for r, values in enumerate(rows, start=2):
        for c, v in enumerate(values):
            sheet.write(r, c, v)
    sheet.write(4, 0, "合计")
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


async def test_old_xls_education_file(client: Any, stack: Stack) -> None:
    http, runtime = client
    person = id_with_x()
    content = education_xls(person)
    assert content[:4] == b"\xd0\xcf\x11\xe0"  # an OLE2 compound file: BIFF8
    r = await upload(http, stack, "education", "资助.xls", content)
    assert r.status_code == 201, r.text
    body = r.json()
    assert (body["format"], body["header_row"]) == ("xls", 2)
    assert (body["accepted"], body["rejected"], body["skipped"]) == (2, 0, 1)
    fields = {
        "term": f"{Y - 1}-autumn",
        "stage": "junior",
        "fees": 2000.0,
        "aid_received": 1500.0,
    }
    ids = await stored_ids(runtime, "education", body["batch_id"])
    assert derived_record_id("education", person, fields) in ids
    await resent_gives_the_same(http, stack, "education", "资助.xls", content, body)


# --- refused files --------------------------------------------------------------------


async def test_files_that_are_refused_say_why(client: Any, stack: Stack) -> None:
    http, _ = client
    for name in ("a.et", "a.ods"):
        r = await upload(http, stack, "medical", name, b"PK\x03\x04 whatever")
        assert r.status_code == 415 and r.json()["code"] == "unsupported_format", r.text
        assert ".xlsx" in r.json()["detail"]
    # Headers nobody knows: the closest candidates and their unmatched headers.
    odd = "\n".join(["参保人,证件,日期,金额", f"张三,{make_id_number()},{PERIOD}-03,100"])
    r = await upload(http, stack, "medical", "odd.csv", odd.encode())
    assert r.status_code == 422 and r.json()["code"] == "header_not_found"
    best = r.json()["candidates"][0]
    assert best["row"] == 1 and "参保人" in best["unmatched_headers"]
    assert "id_number" in best["missing_fields"] and r.json()["detail_zh"]
    # Neither UTF-8 nor GB18030 text.
    r = await upload(http, stack, "medical", "bad.csv", b"\x81\x30\x81\xff\xff" * 10)
    assert r.status_code == 422 and r.json()["code"] == "unknown_encoding"
    # A CSV cell over 128 KB: a 422 naming the line, never a 500.
    header = "记录编号,身份证号,姓名,结算日期,医疗总费用,基本医保支付,医疗救助,个人自付"
    long = f"{header}\nR1,{make_id_number()},{'长' * 140_000},{PERIOD}-03,1,0,0,1\n"
    r = await upload(http, stack, "medical", "long.csv", long.encode())
    assert r.status_code == 422 and r.json()["code"] == "cell_too_large", r.text


def xlsx_bomb(expanded: int) -> bytes:
    """A tiny workbook whose shared strings expand to `expanded` bytes."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        with archive.open("xl/sharedStrings.xml", "w", force_zip64=True) as part:
            block = b"<si><t>" + b"A" * 1000 + b"</t></si>"
            chunk = block * 1000
            for _ in range(expanded // len(chunk)):
                part.write(chunk)
    return out.getvalue()


async def test_an_xlsx_bomb_is_refused_before_it_is_parsed(client: Any, stack: Stack) -> None:
    http, _ = client
    bomb = xlsx_bomb(232 << 20)
    assert len(bomb) < 1 << 20  # under 1 MB on the wire
    started = time.perf_counter()
    r = await upload(http, stack, "medical", "bomb.xlsx", bomb)
    elapsed = time.perf_counter() - started
    assert r.status_code == 413 and r.json()["code"] == "workbook_too_large", r.text
    assert r.json()["entry"] == "xl/sharedStrings.xml"
    # Not a speed threshold: the guard reads the zip directory only, so the answer comes
    # without inflating anything (inflating 232 MB alone takes seconds).
    assert elapsed < 30


# --- preview ----------------------------------------------------------------------------


async def test_preview_stores_nothing(client: Any, stack: Stack) -> None:
    http, runtime = client
    people: list[Any] = [make_id_number(), make_id_number(), 4.41881198005e17]
    content = medical_workbook(people)

    async def counts() -> tuple[int, int, int]:
        async with runtime.sessions() as session:
            row = (
                await session.execute(
                    text(
                        "SELECT (SELECT count(*) FROM feed_batches),"
                        " (SELECT count(*) FROM feed_records),"
                        " (SELECT count(*) FROM rejected_records)"
                    )
                )
            ).one()
            return int(row[0]), int(row[1]), int(row[2])

    before = await counts()
    r = await http.post(
        "/v1/feeds/medical/preview",
        data={"period": PERIOD},
        files={"file": ("结算明细.xlsx", content, "application/octet-stream")},
        headers=stack.headers("feeds:medical"),
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["sheet"], body["header_row"], body["header_rows"]) == ("结算明细", 3, 3)
    assert body["sheets"] == ["填报说明", "结算明细"]
    fields = {c["header"]: c["field"] for c in body["columns"]}
    assert fields["医疗费用/基金支付/统筹基金支付"] == "pooled_fund_paid"
    assert fields["公民身份号码"] == "id_number" and fields["序号"] is None
    assert body["unmapped"] == ["序号"] and body["missing"] == []
    assert set(body["derived"]) == {"record_id", "insurance_paid"}
    assert (body["valid"], body["rejected"], body["skipped"]) == (2, 1, 2)
    assert body["rows"][0]["row"] == 6 and body["rows"][0]["insurance_paid"] == 700.0
    assert "*" in body["rows"][0]["id_number"]  # masked
    assert body["errors"][0]["code"] == "id_number_lost_digits"
    assert await counts() == before
    denied = await http.post(
        "/v1/feeds/medical/preview",
        files={"file": ("a.xlsx", content, "application/octet-stream")},
        headers=stack.headers("feeds:disaster"),
    )
    assert denied.status_code == 403


# --- mapping profiles -------------------------------------------------------------------


async def test_a_mapping_profile_makes_a_new_layout_readable(stack: Stack) -> None:
    # Its own database: a profile changes how every later file of the source is read.
    settings = await stack.create_database("datasync", label="_profiles")
    lines = [
        "乡镇医保经办明细",
        "备用,参保人,参保人证件,就医日期,医疗费合计,报销金额,救助金额,自负金额",
        f"x,张三,{make_id_number()},{PERIOD}-03,1000,600,100,300",
        f"y,李四,{make_id_number()},{PERIOD}-04,500,300,0,200",
    ]
    content = "\n".join(lines).encode("gbk")
    mapping = {
        "参保人": "name",
        "参保人证件": "id_number",
        "就医日期": "settled_on",
        "医疗费合计": "total_cost",
        "报销金额": "insurance_paid",
        "救助金额": "assistance_paid",
        "自负金额": "out_of_pocket",
    }
    async with serve(create, settings, background=False) as (http, _):
        r = await upload(http, stack, "medical", "new.csv", content)
        assert r.status_code == 422 and r.json()["code"] == "header_not_found"
        assert r.json()["candidates"][0]["row"] == 2
        admin = "feeds:admin"
        town = await http.put(
            "/v1/feeds/medical/profile",
            json={"columns": mapping},
            headers=stack.headers(admin, regions=["441881101"]),
        )
        assert town.status_code == 403  # a county act
        wrong = await http.put(
            "/v1/feeds/medical/profile",
            json={"columns": {"参保人": "salary"}},
            headers=stack.headers(admin, regions=["441881"]),
        )
        assert wrong.status_code == 422
        saved = await http.put(
            "/v1/feeds/medical/profile",
            json={"columns": mapping, "header_row": 2, "note": "乡镇经办系统导出"},
            headers=stack.headers(admin, regions=["441881"]),
        )
        assert saved.status_code == 201, saved.text
        assert saved.json()["version"] == 1
        r = await upload(http, stack, "medical", "new.csv", content)
        assert r.status_code == 201, r.text
        assert (r.json()["accepted"], r.json()["profile_version"]) == (2, 1)
        batch = await http.get(
            f"/v1/feeds/medical/batches/{r.json()['batch_id']}",
            headers=stack.headers("feeds:read"),
        )
        assert batch.json()["profile_version"] == 1
        # A second version; the first stays readable.
        again = await http.put(
            "/v1/feeds/medical/profile",
            json={"columns": mapping},
            headers=stack.headers(admin, regions=["441881"]),
        )
        assert again.json()["version"] == 2
        listed = await http.get("/v1/feeds/medical/profiles", headers=stack.headers(admin))
        assert [p["version"] for p in listed.json()["items"]] == [2, 1]
        first = await http.get(
            "/v1/feeds/medical/profile?version=1", headers=stack.headers("feeds:medical")
        )
        assert first.json()["header_row"] == 2


# --- who sees which records ------------------------------------------------------------


async def test_records_are_seen_inside_regions_and_unmatched_by_sender_and_county(
    client: Any, stack: Stack, datasync_settings: Settings
) -> None:
    http, runtime = client
    household, person, stranger = str(uuid.uuid4()), make_id_number(), make_id_number()
    async with unit_of_work(runtime.sessions) as session:
        # The household lives in village 441881101001 (town 441881101).
        await matching.apply_household_snapshots(
            session, [household_event(datasync_settings, household, [person])]
        )
    batch = unique("regions")
    records = [medical(id_number=person), medical(id_number=stranger)]
    r = await http.post(
        "/v1/feeds/medical/batches",
        json={"batch_id": batch, "period": PERIOD, "records": records},
        headers=stack.headers("feeds:medical"),
    )
    assert (r.json()["matched"], r.json()["unmatched"]) == (1, 1)

    async def seen(*scopes: str, regions: list[str]) -> set[str]:
        got = await http.get(
            f"/v1/feeds/medical/batches/{batch}/records",
            headers=stack.headers("feeds:read", "registry:pii", *scopes, regions=regions),
        )
        assert got.status_code == 200, got.text
        return {i["id_number"] for i in got.json()["items"]}

    assert await seen(regions=["441881101"]) == {person}  # the household's town
    assert await seen(regions=["441881102"]) == set()  # another town
    assert await seen(regions=["441881"]) == {person, stranger}  # the county
    assert await seen("feeds:medical", regions=["441881102"]) == {stranger}  # the sender

    async def unmatched(*scopes: str, regions: list[str], source: str = "medical") -> Any:
        # By the stranger's id_hash: the shared test database holds more unmatched
        # records than a page by then.
        return await http.get(
            "/v1/unmatched",
            params={"source": source, "id_hash": id_hash(stranger, datasync_settings.pii_key)},
            headers=stack.headers(*scopes, regions=regions),
        )

    town = await unmatched("feeds:read", regions=["441881101"])
    assert town.status_code == 403
    county = await unmatched("feeds:read", regions=["441881"])
    assert county.status_code == 200 and any(i["batch_id"] == batch for i in county.json()["items"])
    sender = await unmatched("feeds:medical", regions=["441881101"])
    assert sender.status_code == 200 and any(i["batch_id"] == batch for i in sender.json()["items"])
    other = await unmatched("feeds:disaster", regions=["441881"])
    assert other.status_code == 403
