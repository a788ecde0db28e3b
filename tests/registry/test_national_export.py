"""The national monitoring system's export (全国防返贫监测信息系统, 家庭成员信息) as a county
downloads it: a title row, a notes row, headers over two rows under merged parents, the
place by name (省/市/县/乡/村), a 合计 footer. It imports; a newer export with one change
gives that household exactly one history entry and event, and the others none."""

from __future__ import annotations

import io
import uuid
from typing import Any

import pytest
from openpyxl import Workbook

from backstop.contracts.registry import TOPIC
from tests.registry.conftest import Registry, person_id_number
from tests.support import read_topic

pytestmark = pytest.mark.integration

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"

# (merged parent, leaves) as the national export lays out its member sheet.
GROUPS: list[tuple[str, list[str]]] = [
    ("所在地", ["省", "市", "县(市、区、旗)", "乡(镇)", "行政村"]),
    ("户信息", ["户编号", "户类型", "监测对象类别", "脱贫年度", "人均纯收入（元）"]),
    ("成员信息", ["人编号", "姓名", "证件号码", "与户主关系", "民族", "在校生状况",
                  "健康状况", "劳动技能", "务工状况", "务工时间（月）"]),
    ("参保情况", ["是否参加城乡居民基本医疗保险", "是否参加城镇职工基本医疗保险",
                  "是否参加大病保险", "是否参加商业补充医疗保险", "是否参加城乡居民基本养老保险"]),
]  # fmt: skip
LEAVES = [leaf for _, leaves in GROUPS for leaf in leaves]


def person(**cells: Any) -> dict[str, Any]:
    base = {"省": "广东省", "市": "清远市", "县(市、区、旗)": "英德市", "乡(镇)": "英城街道",
            "行政村": "城中社区", "民族": "汉族", "在校生状况": "非在校生", "健康状况": "健康",
            "劳动技能": "普通劳动力", "务工状况": "", "务工时间（月）": 0,
            "是否参加城乡居民基本医疗保险": "是", "是否参加城镇职工基本医疗保险": "否",
            "是否参加大病保险": "是", "是否参加商业补充医疗保险": "否",
            "是否参加城乡居民基本养老保险": "是", "人均纯收入（元）": 9800}  # fmt: skip
    return base | cells


def export(people: list[dict[str, Any]]) -> bytes:
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    width = 1 + len(LEAVES)
    sheet.append(["英德市防止返贫监测对象家庭成员信息表"])
    sheet.merge_cells(start_row=1, start_column=1, end_row=1, end_column=width)
    sheet.append(["导出单位：英德市乡村振兴局", None, None, None, "导出时间：2026-11-30"])
    parents: list[str | None] = ["序号"]
    for parent, leaves in GROUPS:
        parents += [parent] + [None] * (len(leaves) - 1)
    sheet.append(parents)
    sheet.append([None, *LEAVES])
    sheet.merge_cells(start_row=3, start_column=1, end_row=4, end_column=1)
    column = 2
    for _, leaves in GROUPS:
        sheet.merge_cells(start_row=3, start_column=column, end_row=3,
                          end_column=column + len(leaves) - 1)  # fmt: skip
        column += len(leaves)
    for n, p in enumerate(people, start=1):
        sheet.append([n, *(p.get(leaf) for leaf in LEAVES)])
    sheet.append(["合计", f"{len(people)}人"])
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


async def upload(
    registry: Registry, content: bytes, headers: dict[str, str] | None = None
) -> dict[str, Any]:
    response = await registry.client.post(
        "/v1/households/import",
        files={"file": ("家庭成员信息.xlsx", content, XLSX)},
        headers=headers or registry.writer,
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


async def household_of(registry: Registry, id_number: str) -> dict[str, Any]:
    located = await registry.client.get(f"/v1/persons/{id_number}", headers=registry.reader)
    assert located.status_code == 200, located.text
    found = await registry.client.get(
        f"/v1/households/{located.json()['household_id']}", headers=registry.reader
    )
    return dict(found.json())


async def history(registry: Registry, household_id: str) -> list[dict[str, Any]]:
    page = await registry.client.get(
        f"/v1/households/{household_id}/history", headers=registry.reader
    )
    return list(page.json()["items"])


async def test_a_national_export_imports_and_a_newer_one_records_one_change(
    registry: Registry,
) -> None:
    tag = uuid.uuid4().hex[:8]
    head, wife, son = person_id_number(1968), person_id_number(1970), person_id_number(2012)
    other = person_id_number(1955)
    people = [
        person(户编号=f"{tag}01", 户类型="脱贫户", 监测对象类别="脱贫不稳定户", 脱贫年度=2019,
               姓名="黄大山", 证件号码=head, 与户主关系="户主", 劳动技能="技能劳动力",
               务工状况="省外务工", **{"务工时间（月）": 10}),
        person(户编号=f"{tag}01", 户类型="脱贫户", 监测对象类别="脱贫不稳定户", 脱贫年度=2019,
               姓名="罗秀英", 证件号码=wife, 与户主关系="配偶", 健康状况="长期慢性病",
               劳动技能="弱劳动力或半劳动力", 是否参加城乡居民基本养老保险="否"),
        person(户编号=f"{tag}01", 户类型="脱贫户", 监测对象类别="脱贫不稳定户", 脱贫年度=2019,
               姓名="黄小明", 证件号码=son.lower(), 与户主关系="之子", 在校生状况="小学五年级",
               劳动技能="无劳动力", 是否参加大病保险="否", 是否参加城乡居民基本养老保险="否"),
        person(户编号=f"{tag}02", 户类型="一般农户", 监测对象类别="边缘易致贫户",
               **{"乡(镇)": "沙口镇", "行政村": "园山村"}, 姓名="李四", 证件号码=other,
               与户主关系="户主", 健康状况="残疾", 劳动技能="丧失劳动力"),
    ]  # fmt: skip
    first = await upload(registry, export(people))
    assert (first["rows"], first["households"], first["created"]) == (4, 2, 2), first
    assert first["rejected"] == 0, first["errors"]

    household = await household_of(registry, head)
    assert household["type"] == "unstable" and household["exit_year"] == 2019
    assert household["region_code"] == "441881001001"  # 英城街道 城中居委会
    by_relation = {m["relation"]: m for m in household["members"]}
    assert by_relation["head"].items() >= {
        "labor_skill": "skilled", "labor_capacity": "full", "health_status": "healthy",
        "work_status": "out_of_province", "work_months": 10, "medical_insurance": True,
        "critical_illness_insurance": True, "supplementary_insurance": False,
        "pension_insurance": True,
    }.items()  # fmt: skip
    assert (by_relation["spouse"]["labor_skill"], by_relation["spouse"]["labor_capacity"]) == (
        "weak",
        "partial",
    )
    assert by_relation["spouse"]["health_status"] == "chronic_illness"
    assert by_relation["child"]["schooling"] == "primary"
    assert by_relation["child"]["labor_capacity"] == "none"
    marginal = await household_of(registry, other)
    assert marginal["type"] == "marginal" and marginal["region_code"].startswith("441881101")
    assert marginal["members"][0]["labor_skill"] == "lost"
    assert marginal["members"][0]["health_status"] == "disabled"
    before = await history(registry, household["id"])
    before_other = await history(registry, marginal["id"])

    # The same export again changes nothing and writes nothing.
    again = await upload(registry, export(people))
    assert (again["created"], again["existing"], again["updated"]) == (0, 2, 0), again
    assert await history(registry, household["id"]) == before

    # A newer export: the head now works in the province, not outside it.
    people[0] = people[0] | {"务工状况": "县外省内务工"}
    newer = await upload(registry, export(people))
    assert (newer["created"], newer["existing"], newer["updated"]) == (0, 1, 1), newer
    after = await history(registry, household["id"])
    assert len(after) == len(before) + 1
    [entry] = [e for e in after if e not in before]
    head_id = by_relation["head"]["person_id"]
    assert entry["action"] == "household.imported"
    assert entry["changes"] == {
        f"members.{head_id}.work_status": {"from": "out_of_province", "to": "in_province"}
    }
    assert await history(registry, marginal["id"]) == before_other
    now = await household_of(registry, head)
    assert now["version"] == household["version"] + 1
    events = await read_topic(
        registry.settings,
        TOPIC,
        match=lambda e: e.subject == household["id"] and e.data["household"]["version"] == 2,
    )
    assert events[0].type == "backstop.registry.household.updated.v1"
    assert events[0].data["changed_fields"] == ["members.work_status"]
    heads = [m for m in events[0].data["household"]["members"] if m["relation"] == "head"]
    assert heads[0]["work_status"] == "in_province" and "id_number" not in heads[0]


async def test_a_newer_export_adds_a_member_and_a_bad_one_names_row_and_column(
    registry: Registry,
) -> None:
    tag = uuid.uuid4().hex[:8]
    head, baby = person_id_number(1980), person_id_number(2025)
    people = [
        person(户编号=f"{tag}01", 户类型="脱贫户", 姓名="陈一", 证件号码=head, 与户主关系="户主")
    ]
    assert (await upload(registry, export(people)))["created"] == 1
    people.append(
        person(户编号=f"{tag}01", 户类型="脱贫户", 姓名="陈二", 证件号码=baby, 与户主关系="之女",
               劳动技能="无劳动力", 在校生状况="学前教育")
    )  # fmt: skip
    people.append(
        person(户编号=f"{tag}02", 户类型="脱贫户", 姓名="王五", 证件号码=person_id_number(1977),
               与户主关系="户主", 劳动技能="会开车")
    )  # fmt: skip
    people.append(
        person(户编号=f"{tag}03", 户类型="脱贫户", 姓名="赵六", 证件号码=person_id_number(1979),
               与户主关系="户主", 行政村="不存在村")
    )  # fmt: skip
    summary = await upload(registry, export(people))
    assert (summary["updated"], summary["created"], summary["rejected"]) == (1, 0, 2), summary
    errors = {(e["row"], e["field"], e["column"]) for e in summary["errors"]}
    # Rows 5… are the data (title, notes and two header rows above).
    assert errors == {(7, "labor_skill", "劳动技能"), (8, "village_name", "行政村")}
    household = await household_of(registry, baby)
    assert [m["relation"] for m in household["members"]] == ["head", "child"]
    [entry] = [e for e in await history(registry, household["id"]) if e["version"] == 2]
    assert entry["action"] == "household.imported"
    assert [j["id_number"][:6] for j in entry["changes"]["members.joined"]] == ["441881"]
    assert baby not in str(entry["changes"])


async def test_a_newer_export_cannot_reach_a_household_outside_the_callers_regions(
    registry: Registry,
) -> None:
    tag = uuid.uuid4().hex[:8]
    head = person_id_number(1961)
    people = [
        person(户编号=f"{tag}01", 户类型="脱贫户", 姓名="周一", 证件号码=head, 与户主关系="户主")
    ]
    assert (await upload(registry, export(people)))["created"] == 1
    # A 沙口镇 client's file claims the 英城街道 household is in its town, and changes it.
    moved = [people[0] | {"乡(镇)": "沙口镇", "行政村": "园山村", "健康状况": "残疾"}]
    town = registry.headers("registry:read", "registry:write", regions=("441881101",))
    summary = await upload(registry, export(moved), headers=town)
    assert (summary["updated"], summary["rejected"]) == (0, 1), summary
    assert summary["errors"][0]["field"] == "household_number"
    household = await household_of(registry, head)
    assert household["region_code"] == "441881001001" and household["version"] == 1
    assert household["members"][0]["health_status"] == "healthy"


async def test_the_household_export_updates_registered_households_and_creates_none(
    registry: Registry,
) -> None:
    """户信息: one row a household, named by 户主姓名 and 户主证件号码, with its income."""
    tag = uuid.uuid4().hex[:8]
    head, wife = person_id_number(1972), person_id_number(1974)
    people = [
        person(户编号=f"{tag}01", 户类型="脱贫户", 脱贫年度=2018, 姓名="孙一", 证件号码=head,
               与户主关系="户主"),
        person(户编号=f"{tag}01", 户类型="脱贫户", 脱贫年度=2018, 姓名="钱二", 证件号码=wife,
               与户主关系="配偶"),
    ]  # fmt: skip
    assert (await upload(registry, export(people)))["created"] == 1
    household = await household_of(registry, head)
    before = await history(registry, household["id"])

    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(["英德市防止返贫监测 家庭基本信息"])
    sheet.append(["序号", "县(市、区、旗)", "乡(镇)", "行政村", "户编号", "户主姓名", "户主证件号码",
                  "家庭人口数", "户类型", "脱贫年度", "收入年度", "家庭纯收入（元）",
                  "工资性收入（元）", "人均纯收入（元）"])  # fmt: skip
    sheet.append([1, "英德市", "英城街道", "城中社区", f"{tag}01", "孙一", head, 2, "脱贫户", 2018,
                  2025, 24000, 20000, 12000])  # fmt: skip
    sheet.append([2, "英德市", "英城街道", "城中社区", f"{tag}09", "周九", person_id_number(1960),
                  1, "脱贫户", 2019, 2025, 9000, 0, 9000])  # fmt: skip
    buffer = io.BytesIO()
    book.save(buffer)
    summary = await upload(registry, buffer.getvalue())
    assert (summary["created"], summary["updated"], summary["rejected"]) == (0, 1, 1), summary
    assert [(e["row"], e["field"]) for e in summary["errors"]] == [(4, "household_number")]
    assert "member export" in summary["errors"][0]["message"]

    now = await household_of(registry, head)
    assert len(now["members"]) == 2  # the household export names the head only
    assert (now["annual_income"]["total"], now["annual_income"]["per_capita"]) == (24000, 12000)
    [entry] = [e for e in await history(registry, household["id"]) if e not in before]
    assert entry["action"] == "household.imported"
    assert entry["changes"] == {"income.2025": {"from": None, "to": "24000.00"}}
    again = await upload(registry, buffer.getvalue())
    assert (again["existing"], again["updated"]) == (1, 0), again


async def test_a_file_without_the_required_columns_is_a_4xx_naming_them(
    registry: Registry,
) -> None:
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(["英德市防止返贫监测对象家庭信息表"])
    sheet.append(["户编号", "户类型", "人均纯收入"])
    sheet.append(["X1", "脱贫户", 9000])
    buffer = io.BytesIO()
    book.save(buffer)
    response = await registry.client.post(
        "/v1/households/import",
        files={"file": ("户信息.xlsx", buffer.getvalue(), XLSX)},
        headers=registry.writer,
    )
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["code"] == "header_not_found"
    assert body["missing"] == ["id_number", "name", "relation", "region_code"]
    assert body["errors"][0]["loc"] == ["body", "file", "id_number"]
