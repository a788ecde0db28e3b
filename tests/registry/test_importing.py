"""Reading register exports: headers, Chinese values, grouping (no database)."""

from __future__ import annotations

import copy
import io
from datetime import date
from typing import Any

import pytest
from annotated_types import Ge, Le, MaxLen, MinLen
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BeforeValidator, ValidationError

from backstop.requests import PHONE_PATTERN, fold
from services.registry import import_file
from services.registry.import_file import checked_body, iter_households, iter_rows
from services.registry.models import (
    AnnualIncome,
    ContactIn,
    HouseholdCreate,
    MemberCreate,
    seed_title,
)
from services.registry.seed import make_id_number, write_export

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
    assert draft.contacts[0].role == "town_leader"


def test_contact_roles_are_the_seeds_titles_and_a_blank_role_is_refused() -> None:
    # Seed 三(三)2 names who answers for each class; a blank role is not made "cadre".
    header = "户编号,行政区划代码,户类型,证件号码,姓名,与户主关系,联系人类型,联系人,联系人电话\n"
    row = f"H9,441881001001,边缘易致贫户,{HEAD},黄大,户主,{{role}},王队员,13800001111\n"
    for written, role in (("驻村工作队员", "work_team"), ("村包片干部", "village_cadre"),
                          ("帮扶单位", "assisting_unit")):  # fmt: skip
        text = header + row.format(role=written)
        [household] = list(iter_households(iter_rows(io.BytesIO(text.encode()), "csv")))
        assert household.draft is not None and household.draft.contacts[0].role == role
    text = header + row.format(role="")
    [household] = list(iter_households(iter_rows(io.BytesIO(text.encode()), "csv")))
    assert household.draft is None and household.error is not None
    assert "role" in str(household.error)


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


# --- The fast check of a draft's shape agrees with HouseholdCreate ---------------------

_member = st.fixed_dictionaries(
    {
        "id_number": st.sampled_from([HEAD, WIFE, SON]),
        "name": st.sampled_from(["黄大", "x" * 100]),
        "relation": st.sampled_from(["head", "spouse", "child", "parent", "other"]),
        "special_groups": st.lists(st.sampled_from(["disability", "major_illness"]), max_size=2),
        "labor_capacity": st.sampled_from(["full", "partial", "none"]),
        "schooling": st.sampled_from([None, "primary", "out_of_school", "none"]),
        "medical_insurance": st.booleans(),
        "labor_skill": st.sampled_from([None, "skilled", "lost", "none"]),
        "health_status": st.sampled_from([None, "healthy", "disabled"]),
        "work_status": st.sampled_from([None, "in_county", "not_working"]),
        "work_months": st.sampled_from([None, 0, 12]),
        "critical_illness_insurance": st.sampled_from([None, True, False]),
        "supplementary_insurance": st.sampled_from([None, True]),
        "pension_insurance": st.sampled_from([None, False]),
    }
)
_amount = st.sampled_from([None, 0.0, 8000.5, float("inf")])
_income = st.fixed_dictionaries(
    {
        "year": st.sampled_from([2000, 2025, 2100]),
        "total": _amount,
        "wage": _amount,
        "business": _amount,
        "transfer": _amount,
        "property": _amount,
    }
)
_contact = st.fixed_dictionaries(
    {
        "role": st.sampled_from(["leader", "cadre", "work_team"]),
        "name": st.sampled_from(["王书记", "x" * 100]),
        "phone": st.sampled_from(["12345", "13800001111", "x" * 20]),
    }
)


def _set(*path: Any) -> Any:
    """A mutation: the value at `path` (keys and indexes) replaced by the last argument."""
    *keys, last, value = path

    def apply(body: dict[str, Any]) -> None:
        target: Any = body
        for key in keys:
            try:
                target = target[key]
            except (KeyError, IndexError):
                return  # nothing there to change
        if isinstance(target, dict) or last < len(target):
            target[last] = value

    return apply


# One change each that the model refuses (or converts, or takes as it is).
_MUTATIONS = [
    _set("region_code", ""), _set("region_code", "x" * 21), _set("region_code", "x" * 20),
    _set("type", "poor"), _set("policy_enjoying", 1),
    _set("household_number", ""), _set("household_number", "x" * 41),
    _set("household_number", None), _set("members", []),
    _set("members", [{"id_number": HEAD, "name": "A", "relation": "head", "special_groups": [],
                      "labor_capacity": "full", "schooling": None, "medical_insurance": True}] * 31),
    _set("members", 0, "id_number", ""), _set("members", 0, "id_number", "x" * 41),
    _set("members", 0, "name", ""), _set("members", 0, "name", "x" * 101),
    _set("members", 0, "relation", "boss"), _set("members", 0, "special_groups", ["cold"]),
    _set("members", 0, "labor_capacity", "some"), _set("members", 0, "schooling", "phd"),
    _set("members", 0, "medical_insurance", "yes"),
    _set("members", 0, "labor_skill", "full"), _set("members", 0, "health_status", "ill"),
    _set("members", 0, "work_status", "省外务工"), _set("members", 0, "work_months", 13),
    _set("members", 0, "work_months", -1), _set("members", 0, "work_months", 6.0),
    _set("members", 0, "pension_insurance", "是"), _set("exit_year", 2012),
    _set("exit_year", 2101), _set("exit_year", "2019"),
    _set("annual_income", "year", None), _set("annual_income", "year", 1999),
    _set("annual_income", "year", 2101), _set("annual_income", "total", -1.0),
    _set("annual_income", "wage", float("nan")), _set("annual_income", "property", 5),
    _set("contacts", [{"role": "cadre", "name": "A", "phone": "12345"}] * 11),
    _set("contacts", 0, "role", "boss"), _set("contacts", 0, "name", ""),
    _set("contacts", 0, "phone", "1234"), _set("contacts", 0, "phone", "x" * 21),
    _set("contacts", 0, "unit", "乡政府"), _set("guarantees", {"food": "ok"}),
    # The kernel's RequestModel rules (backstop.requests).
    _set("annual_income", "total", float("inf")), _set("annual_income", "wage", 2e9),
    _set("members", 0, "name", "陈\x00大明"), _set("region_code", "４４１８８１００１００１"),
    _set("members", 0, "special_groups", ["disability"] * 6), _set("contacts", 0, "phone", "1\x1b2345"),
]  # fmt: skip


@st.composite
def _bodies(draw: st.DrawFn) -> dict[str, Any]:
    body: dict[str, Any] = {
        "household_number": draw(st.sampled_from(["H1", "x" * 40])),
        "region_code": "441881001001",
        "type": draw(st.sampled_from(["alleviated", "marginal", "sudden_hardship"])),
        "policy_enjoying": draw(st.booleans()),
        "exit_year": draw(st.sampled_from([None, 2016, 2020])),
        "members": draw(st.lists(_member, min_size=1, max_size=4)),
    }
    if draw(st.booleans()):
        body["annual_income"] = draw(_income)
    if draw(st.booleans()):
        body["contacts"] = draw(st.lists(_contact, max_size=3))
    for mutate in draw(st.lists(st.sampled_from(_MUTATIONS), max_size=2)):
        mutate(body)
    return body


@given(_bodies())
@settings(max_examples=400, deadline=None)
def test_fast_shape_check_agrees_with_the_model(body: dict[str, Any]) -> None:
    checked = checked_body(copy.deepcopy(body))
    try:
        expected = HouseholdCreate.model_validate(body).model_dump()
    except ValidationError:
        assert checked is None
    else:
        assert checked is None or checked == expected


def test_fast_shape_check_knows_every_constraint() -> None:
    """checked_body mirrors these fields and these kinds of constraint: a new field or a
    new kind of constraint on them has to be taught to it (or this test changed)."""
    known = (MinLen, MaxLen, Ge, Le, BeforeValidator)
    fields = {
        HouseholdCreate: {"region_code", "type", "policy_enjoying", "household_number",
                          "exit_year", "annual_income", "members", "guarantees", "contacts"},
        MemberCreate: {"id_number", "name", "relation", "special_groups", "labor_capacity",
                       "schooling", "medical_insurance", "labor_skill", "health_status",
                       "work_status", "work_months", "critical_illness_insurance",
                       "supplementary_insurance", "pension_insurance"},
        AnnualIncome: {"year", "total", "wage", "business", "transfer", "property"},
        ContactIn: {"role", "name", "phone", "unit"},
    }  # fmt: skip
    for model, names in fields.items():
        assert set(model.model_fields) == names, model
        for name, info in model.model_fields.items():
            # The only conversions are the kernel's full-width folding (checked_body takes
            # ASCII codes only) and a contact role's earlier word (the import maps those
            # itself); the only pattern is a phone's.
            assert all(isinstance(c, known) or getattr(c, "pattern", None) == PHONE_PATTERN
                       for c in info.metadata), (model, name)  # fmt: skip
            assert all(c.func in (fold, seed_title)
                       for c in info.metadata if isinstance(c, BeforeValidator))  # fmt: skip
        assert model.model_config.get("extra") in (None, "ignore"), model


def test_generated_exports_take_the_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    class NoModel:
        @staticmethod
        def model_validate(body: object) -> None:
            raise AssertionError(f"went through the model: {body}")

    monkeypatch.setattr(import_file, "HouseholdCreate", NoModel)
    out = io.StringIO()
    write_export(out, 300, seed=5)
    households = list(iter_households(iter_rows(io.BytesIO(out.getvalue().encode()), "csv")))
    assert len(households) == 300 and all(h.body is not None for h in households)
