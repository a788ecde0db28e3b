"""Reading register exports: headers, Chinese values, grouping (no database)."""

from __future__ import annotations

import io
from datetime import date

from services.registry.importing import iter_households, iter_rows
from services.registry.seed import make_id_number

HEAD = make_id_number("441881", date(1960, 1, 1), 11)
WIFE = make_id_number("441881", date(1962, 1, 1), 22)
SON = make_id_number("441881", date(2014, 1, 1), 33)


def test_chinese_export_in_gb18030() -> None:
    text = (
        "户编号,行政区划代码,户类型,是否享受政策,证件号码,姓名,与户主关系,特殊群体,劳动能力,在校生状况,"
        "是否参加基本医疗保险,收入年度,家庭纯收入,联系人类型,联系人,联系人电话\n"
        f"H1,441881001001,脱贫不稳定户,是,{HEAD},黄大,户主,残疾、重特大疾病,丧失劳动力,,是,2025,18000,领导,王书记,13800001111\n"
        f"H1,441881001001,脱贫不稳定户,是,{WIFE},李二,妻子,,普通劳动力,,否,,,,,\n"
        f"H1,441881001001,脱贫不稳定户,是,{SON},黄三,孙子,,,辍学,是,,,,,\n"
    )
    [household] = list(iter_households(iter_rows(io.BytesIO(text.encode("gb18030")), "csv")))
    assert household.error is None and household.draft is not None
    draft = household.draft
    assert (draft.type, draft.policy_enjoying, draft.household_number) == ("unstable", True, "H1")
    assert [m.relation for m in draft.members] == ["head", "spouse", "other"]
    assert draft.members[0].special_groups == ["disability", "major_illness"]
    assert draft.members[0].labor_capacity == "none"
    assert draft.members[1].medical_insurance is False
    assert draft.members[2].schooling == "out_of_school"
    assert draft.annual_income is not None and draft.annual_income.total == 18000
    assert draft.contacts[0].role == "leader"


def test_bad_values_name_row_and_field() -> None:
    text = (
        "household_number,region_code,id_number,name,relation,labor_capacity,annual_income,year\n"
        f"H2,441881001001,{HEAD},A,head,full,-5,2025\n"
        f"H3,441881001001,{WIFE},B,head,sometimes,,\n"
        f"H4,441881001001,{SON},C,,full,,\n"
    )
    households = list(iter_households(iter_rows(io.BytesIO(text.encode()), "csv")))
    errors = [(h.household_number, h.error.row, h.error.field) for h in households if h.error]
    assert errors == [
        ("H2", 2, "annual_income.total"),
        ("H3", 3, "labor_capacity"),
        ("H4", 4, "relation"),
    ]


def test_split_household_is_an_error_not_a_merge() -> None:
    text = (
        "户编号,行政区划代码,证件号码,姓名,与户主关系\n"
        f"H5,441881001001,{HEAD},A,户主\nH6,441881001001,{WIFE},B,户主\nH5,441881001001,{SON},C,之子\n"
    )
    households = list(iter_households(iter_rows(io.BytesIO(text.encode()), "csv")))
    assert [h.household_number for h in households] == ["H5", "H6", "H5"]
    assert households[2].error is not None and households[2].error.row == 4
