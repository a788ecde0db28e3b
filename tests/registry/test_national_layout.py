"""The national monitoring system's export: which header is which field, what its values
mean in the register, and villages found by name (no database)."""

from __future__ import annotations

import io
from datetime import date

import pytest
from openpyxl import Workbook

from backstop.sheets import SheetProblem
from services.registry import import_file
from services.registry.import_file import VillageNames, iter_households, iter_rows
from services.registry.seed import make_id_number

HEAD = make_id_number("441881", date(1966, 3, 1), 11)
CHILD = make_id_number("441881", date(2013, 5, 1), 22)


def test_headers_of_the_national_export() -> None:
    expected = {
        "户编号": "household_number",
        "证件号码": "id_number",
        "与户主关系": "relation",
        "劳动技能": "labor_skill",  # not labor_capacity: its own field
        "劳动能力": "labor_capacity",
        "务工状况": "work_status",
        "务工时间（月）": "work_months",
        "在校生状况": "schooling",
        "健康状况": "health_status",
        "是否参加城乡居民基本医疗保险": "resident_medical",
        "是否参加城镇职工基本医疗保险": "employee_medical",
        "是否参加大病保险": "critical_illness_insurance",
        "是否参加商业补充医疗保险": "supplementary_insurance",
        "是否参加城乡居民基本养老保险": "resident_pension",
        "脱贫年度": "exit_year",
        "监测对象类别": "monitoring_type",
        "监测对象类型": "monitoring_type",
        "乡(镇)": "town_name",
        " 行政村 ": "village_name",
        "县(市、区、旗)": None,  # the county itself: not read
        "人编号": None,
        "民族": None,
    }
    assert {h: import_file._match(h) for h in expected} == expected


def _member(**cells: str) -> dict[str, object]:
    return import_file._member({"id_number": HEAD, "name": "甲", "relation": "户主", **cells})


@pytest.mark.parametrize(
    ("skill", "capacity"),
    [("技能劳动力", "full"), ("普通劳动力", "full"), ("弱劳动力或半劳动力", "partial"),
     ("丧失劳动力", "none"), ("无劳动力", "none")],
)  # fmt: skip
def test_labour_skill_is_kept_and_implies_the_capacity(skill: str, capacity: str) -> None:
    m = _member(labor_skill=skill)
    assert m["labor_skill"] == import_file.LABOR_SKILLS[skill]
    assert m["labor_capacity"] == capacity


def test_a_labour_capacity_column_wins_and_a_member_with_neither_is_able() -> None:
    m = _member(labor_capacity="无劳动能力", labor_skill="普通劳动力")
    assert (m["labor_capacity"], m["labor_skill"]) == ("none", "ordinary")
    m = _member(labor_capacity="弱劳动力")  # an older export: 劳动能力 in 劳动技能's words
    assert (m["labor_capacity"], m["labor_skill"]) == ("partial", "weak")
    assert (_member()["labor_capacity"], _member()["labor_skill"]) == ("full", None)


@pytest.mark.parametrize(
    ("written", "status"),
    [("乡（镇）内务工", "in_town"), ("乡镇外县内务工", "in_county"), ("县外省内务工", "in_province"),
     ("省外务工", "out_of_province"), ("县外省内", "in_province"), ("境外务工", "abroad"),
     ("", None), ("其他", "other"), ("in_county", "in_county"), ("出海", "出海")],
)  # fmt: skip
def test_work_status(written: str, status: str | None) -> None:
    assert _member(work_status=written)["work_status"] == status


@pytest.mark.parametrize(
    ("written", "stage"),
    [("小学三年级", "primary"), ("七年级", "junior"), ("初中二年级", "junior"),
     ("高中一年级", "senior"), ("中职二年级", "vocational"), ("本科及以上", "college"),
     ("学前教育", "preschool"), ("非在校生", "none"), ("", None), ("辍学", "out_of_school")],
)  # fmt: skip
def test_schooling_from_the_grade(written: str, stage: str | None) -> None:
    assert _member(schooling=written)["schooling"] == stage


def test_dropout_health_months_and_insurance() -> None:
    m = _member(schooling="非在校生", dropout="是", health_status="患有大病", work_months="6个月")
    assert (m["schooling"], m["health_status"], m["work_months"]) == (
        "out_of_school",
        "serious_illness",
        6,
    )
    # Basic medical: either scheme; pension: either scheme; unknown when no column says.
    m = _member(resident_medical="否", employee_medical="是", resident_pension="否")
    assert (m["medical_insurance"], m["pension_insurance"]) == (True, False)
    assert _member(resident_medical="否")["medical_insurance"] is False
    assert _member()["critical_illness_insurance"] is None
    assert _member()["medical_insurance"] is True  # the register's default, as before
    with pytest.raises(ValueError, match="work_months"):
        _member(work_months="半年")
    with pytest.raises(ValueError, match="critical_illness_insurance"):
        _member(critical_illness_insurance="也许")


REGIONS = [
    ("441881001", "英城街道", "town", "441881"),
    ("441881101", "沙口镇", "town", "441881"),
    ("441881001001", "城中居委会", "village", "441881001"),
    ("441881101201", "园山村委会", "village", "441881101"),
    ("441881101202", "城中村委会", "village", "441881101"),
]


def test_villages_by_name() -> None:
    names = VillageNames(REGIONS)
    assert names.code("英城街道", "城中社区") == "441881001001"
    assert names.code("英城街道办事处", "城中居民委员会") == "441881001001"
    assert names.code("沙口镇", "城中村") == "441881101202"
    assert names.code("", "园山村") == "441881101201"
    with pytest.raises(ValueError, match=r"village_name: .*several towns"):
        names.code("", "城中")
    with pytest.raises(ValueError, match="village_name: no village"):
        names.code("沙口镇", "园山外村")
    with pytest.raises(ValueError, match="town_name: no town"):
        names.code("青塘镇", "园山村")


def test_a_csv_with_a_title_row_and_place_names() -> None:
    text = (
        "英德市防止返贫监测对象家庭成员信息,,,,,,,\n"
        "乡(镇),行政村,户编号,监测对象类别,户类型,姓名,证件号码,与户主关系,劳动技能\n"
        f"沙口镇,园山村,H1,,脱贫户,甲,{HEAD},户主,普通劳动力\n"
        f"沙口镇,园山村,H1,,脱贫户,乙,{CHILD},之子,无劳动力\n"
        "合计,,,,,,,,\n"
    )
    rows = iter_rows(io.BytesIO(text.encode("gb18030")), "csv")
    [household] = list(iter_households(rows, VillageNames(REGIONS)))
    assert household.error is None and household.body is not None
    assert household.body["region_code"] == "441881101201"
    assert household.body["type"] == "alleviated" and household.rows == 2


def test_a_short_csv_row_has_empty_cells_and_errors_name_their_column() -> None:
    text = (
        "户编号,行政区划代码,姓名,证件号码,与户主关系,家庭纯收入,健康状况\n"
        f"H1,441881001001,甲,{HEAD},户主\n"
        f"H2,441881001001,乙,{CHILD},户主,-5\n"
    )
    export = import_file.open_export(io.BytesIO(text.encode()), "csv")
    first, second = iter_households(export.rows)
    assert first.body is not None and first.body["members"][0]["health_status"] is None
    assert second.error is not None and second.error.field == "annual_income.year"
    assert export.column(second.error.field) == "家庭纯收入"
    assert export.column("labor_capacity") is None


def test_an_id_number_excel_made_a_number_names_its_row() -> None:
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(["户编号", "行政区划代码", "姓名", "证件号码", "与户主关系"])
    sheet.append(["H1", "441881001001", "甲", float(HEAD[:17] + "0"), "户主"])
    buffer = io.BytesIO()
    book.save(buffer)
    buffer.seek(0)
    [household] = list(iter_households(iter_rows(buffer, "xlsx")))
    assert household.error is not None
    assert (household.error.row, household.error.field) == (2, "id_number")
    assert household.error.message == import_file.LOST_DIGITS_MESSAGE
    assert HEAD[:6] not in household.error.message  # what is left of the number stays out


def test_no_village_by_code_or_name_refuses_the_file() -> None:
    text = "户编号,姓名,证件号码,与户主关系\nH1,甲,1,户主\n"
    with pytest.raises(SheetProblem) as caught:
        iter_rows(io.BytesIO(text.encode()), "csv")
    assert caught.value.details["missing"] == ["region_code"]
