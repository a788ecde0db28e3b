"""§2 of the hardening issue, over every request model of every service: each inherits the
kernel's RequestModel, and hypothesis-generated hostile values (non-finite numbers,
control characters, dates out of their window, oversized strings and lists) never pass
validation, wherever in the body they sit. Pure: the models only, no infrastructure."""

from __future__ import annotations

import importlib
import types
import typing
from collections.abc import Iterator
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from backstop.idnumber import check_digit, fold_fullwidth
from backstop.requests import EARLIEST, HORIZON_YEARS, MAX_TEXT, Period, RequestModel
from backstop.settings import SERVICES
from services.assistance.models import VisitCreate
from services.registry.models import HouseholdCreate, PersonLookup


def _routes(container: Any) -> Iterator[APIRoute]:
    for route in container.routes:
        if isinstance(route, APIRoute):
            yield route
        elif hasattr(route, "original_router"):  # FastAPI's included routers
            yield from _routes(route.original_router)


def _models(annotation: Any, found: set[type[BaseModel]]) -> None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        if annotation in found:
            return
        found.add(annotation)
        for field in annotation.model_fields.values():
            _models(field.annotation, found)
    for arg in typing.get_args(annotation):
        _models(arg, found)


def body_models() -> dict[str, type[BaseModel]]:
    """Every model a request body of any service is made of, by service and name."""
    found: dict[str, type[BaseModel]] = {}
    for service in SERVICES:
        app: FastAPI = importlib.import_module(f"services.{service}.app").create(background=False)
        for route in _routes(app.router):
            if route.body_field is not None:
                models: set[type[BaseModel]] = set()
                _models(route.body_field.field_info.annotation, models)
                found.update({f"{service}.{m.__name__}": m for m in models})
    return found


MODELS = body_models()


def test_the_request_models_are_found() -> None:
    assert len(MODELS) >= 35
    assert {"registry.HouseholdCreate", "assistance.VisitCreate", "risk.PolicyPut",
            "notify.SubscriptionCreate", "datasync.BatchCreate"} - MODELS.keys() <= {
        "datasync.BatchCreate"  # the batch route reads JSON itself, record by record
    }  # fmt: skip


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_request_model_inherits_the_kernel_base(name: str) -> None:
    assert issubclass(MODELS[name], RequestModel), f"{name} does not inherit RequestModel"


def test_every_list_and_dict_of_a_request_has_a_bound() -> None:
    """Members per household, schooling entries per visit, measures per plan …: a list
    without a bound would let one request build an event the broker refuses."""
    unbounded = []
    for name, model in sorted(MODELS.items()):
        for field_name, info in model.model_fields.items():
            for option in _unwrap(info.annotation):
                origin = typing.get_origin(option)
                if origin not in (list, dict, set, tuple):
                    continue
                keys = typing.get_args(option)[0] if origin is dict else None
                bounded = any(getattr(c, "max_length", None) for c in info.metadata)
                if not bounded and typing.get_origin(keys) is not typing.Literal:
                    unbounded.append(f"{name}.{field_name}")
    assert not unbounded


# --- hostile values at every leaf of every model -------------------------------------

Path = tuple[str | int, ...]


def _unwrap(annotation: Any) -> list[Any]:
    """The alternatives of an annotation (X | None → [X]), Annotated stripped."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return [a for arg in typing.get_args(annotation) for a in _unwrap(arg)
                if a is not type(None)]  # fmt: skip
    return [annotation]


def leaves(model: type[BaseModel], path: Path = (), depth: int = 0) -> Iterator[tuple[Path, str]]:
    """(path into a body, kind) of every string, number and date a body can hold."""
    for name, field in model.model_fields.items():
        yield from _leaves_of(field.annotation, (*path, name), depth)


def _leaves_of(annotation: Any, path: Path, depth: int) -> Iterator[tuple[Path, str]]:
    if depth > 4:
        return
    for option in _unwrap(annotation):
        origin = typing.get_origin(option)
        if isinstance(option, type) and issubclass(option, BaseModel):
            yield from leaves(option, path, depth + 1)
        elif option is str:
            yield path, "str"
        elif option in (float, Decimal):
            yield path, "number"
        elif option is date:
            yield path, "date"
        elif origin in (list, set, tuple, frozenset):
            yield from _leaves_of(typing.get_args(option)[0], (*path, 0), depth + 1)
        elif origin is dict:
            key, value = typing.get_args(option)
            yield from _leaves_of(value, (*path, "k"), depth + 1)
            if key is str:
                yield (*path, "\x00key"), "dict_key"


LEAVES = [(name, path, kind) for name, model in sorted(MODELS.items())
          for path, kind in leaves(model)]  # fmt: skip


def test_the_models_have_leaves_of_every_kind() -> None:
    kinds = {kind for _, _, kind in LEAVES}
    assert {"str", "number", "date"} <= kinds and len(LEAVES) > 150


def _body(path: Path, value: Any) -> dict[str, Any]:
    """A body holding `value` at `path` (and nothing else)."""
    node: Any = value
    for step in reversed(path):
        if isinstance(step, int):
            node = [node]
        elif step == "\x00key":  # `value` is a key of the dict
            node = {node: "x"}
        else:
            node = {step: node}
    return node


def _errors(model: type[BaseModel], body: dict[str, Any]) -> set[tuple[Any, str]]:
    try:
        model.model_validate(body)
    except ValidationError as exc:
        return {(tuple(e["loc"]), e["msg"]) for e in exc.errors()}
    return set()


BENIGN = {"str": "a", "number": 1.0, "date": "2020-01-01", "dict_key": "x"}


def _refused_at(model: type[BaseModel], path: Path, value: Any, kind: str) -> bool:
    """Whether `value` at `path` gets an error of its own at that place (or around it):
    one that a benign value there does not get (the rest of the body is missing in
    both, so the other errors are the same)."""
    own = _errors(model, _body(path, value)) - _errors(model, _body(path, BENIGN[kind]))
    steps = [s if s != "\x00key" else value for s in path]
    return any(_untagged(loc) == steps[: len(_untagged(loc))] for loc, _ in own)


def _untagged(loc: tuple[Any, ...]) -> list[Any]:
    # A union's errors carry the member tried ("GuaranteeIn", "literal[...]") in their loc.
    return [p for p in loc if not (isinstance(p, str) and (p[:1].isupper() or "[" in p))]


TODAY = date.today()
hostile_numbers = st.sampled_from([float("inf"), float("-inf"), float("nan"), -1.0, 1e15])
hostile_strings = st.one_of(
    st.builds(lambda a, c, b: a + c + b, st.text(max_size=20),
              st.sampled_from(["\x00", "\x01", "\x1b", "\x7f", "\ud800"]),
              st.text(max_size=20)),
    st.just("x" * (MAX_TEXT + 1)),
)  # fmt: skip
hostile_dates = st.one_of(
    st.dates(max_value=EARLIEST - timedelta(days=1)),
    st.dates(min_value=TODAY + timedelta(days=366 * HORIZON_YEARS + 2)),
)


@pytest.mark.parametrize(("name", "path", "kind"), LEAVES, ids=lambda v: str(v))
@given(data=st.data())
@settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))
def test_a_hostile_value_anywhere_in_a_body_is_refused_there(
    name: str, path: Path, kind: str, data: st.DataObject
) -> None:
    model = MODELS[name]
    if kind == "number":
        value: Any = data.draw(hostile_numbers)
        if value in (-1.0, 1e15) and _unbounded_number(model, path):
            return  # a signed or unbounded quantity that is not an amount
    elif kind == "str":
        value = data.draw(hostile_strings)
    elif kind == "date":
        value = data.draw(hostile_dates).isoformat()
    else:
        value = data.draw(hostile_strings.filter(lambda k: len(k) <= MAX_TEXT))
    assert _refused_at(model, path, value, kind), (
        f"{name}.{'.'.join(map(str, path))} = {value!r:.60}"
    )


def _unbounded_number(model: type[BaseModel], path: Path) -> bool:
    # Ratios and shares of a policy are bounded by their own meaning, not as amounts.
    return model.__name__ in ("Policy", "PolicyPut", "Points")


# --- the findings' cases, named ---------------------------------------------------------


def _id(body: str) -> str:
    return body + check_digit(body)


def _household(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "region_code": "441881001001",
        "type": "alleviated",
        "annual_income": {"year": 2025, "total": 30000},
        "members": [{"id_number": _id("44188119750102123"), "name": "陈大明", "relation": "head"}],
    }
    body.update(changes)
    return body


def test_infinite_income_is_refused() -> None:
    with pytest.raises(ValidationError, match="annual_income"):
        HouseholdCreate.model_validate_json(
            '{"region_code": "441881001001", "type": "alleviated", "members": [],'
            ' "annual_income": {"year": 2025, "total": 1e400}}'
        )
    with pytest.raises(ValidationError, match="finite"):
        HouseholdCreate.model_validate(_household(annual_income={"year": 2025, "total": 1e400}))


def test_years_0001_and_9999_are_refused() -> None:
    for day in ("0001-01-01", "9999-12-31"):
        with pytest.raises(ValidationError, match="verified_on"):
            HouseholdCreate.model_validate(
                _household(guarantees={"housing": {"status": "ok", "verified_on": day}})
            )


def test_full_width_digits_are_folded_in_id_numbers_and_codes() -> None:
    number = _id("44188119750102123")
    wide = "".join(chr(ord(c) + 0xFEE0) if c.isdigit() else c for c in number)
    body = HouseholdCreate.model_validate(
        _household(region_code="４４１８８１００１００１",
                   members=[{"id_number": wide, "name": "陈大明", "relation": "head"}])
    )  # fmt: skip
    assert body.region_code == "441881001001" and body.members[0].id_number == number
    assert PersonLookup(id_number=wide).id_number == number
    assert fold_fullwidth("Ｘ１") == "X1" and fold_fullwidth("，注") == "，注"  # text keeps its own
    assert str(Period.parse("２０２６-１１")) == "2026-11"


def test_a_visit_carries_at_most_one_schooling_entry_per_member() -> None:
    visit = {"household_id": "h", "channel": "home", "visitor": "王", "visited_on": "2026-11-02",
             "findings": "ok"}  # fmt: skip
    VisitCreate.model_validate({**visit, "schooling": {f"p{i}": "primary" for i in range(30)}})
    with pytest.raises(ValidationError, match="schooling"):
        VisitCreate.model_validate({**visit, "schooling": {f"p{i}": "x" for i in range(31)}})
    with pytest.raises(ValidationError, match="visited_on"):
        VisitCreate.model_validate({**visit, "visited_on": (TODAY + timedelta(days=3)).isoformat()})


@pytest.mark.parametrize(
    "text", ["0000-01", "1999-12", "2101-01", "2026-13", "2026-1", "", "２０２６"]
)
def test_a_period_outside_its_window_or_shape_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="month"):
        Period.parse(text)


def test_a_hostile_value_is_named_at_the_outermost_field_holding_it() -> None:
    """The checks skip clean text and plain leaves inline; what they find, and where it is
    reported, is what a walk of every value finds: the first bad value in the body's
    order, at the top-level field holding it (a key, a list item, a nested dict)."""
    cases = [
        ({"members": [{"id_number": "1", "name": "a\x00b", "relation": "head"}]},
         "members", "U+0000"),
        ({"guarantees": {"food\x07": "ok"}}, "guarantees", "U+0007"),
        ({"contacts": [{"role": "cadre", "name": "王", "phone": "1380000\x1f"}]},
         "contacts", "U+001F"),
        ({"annual_income": {"year": 2025, "total": float("inf")}}, "annual_income", "finite"),
        ({"members": [[[{"x": [1, 2.5, "\x7f"]}]]]}, "members", "U+007F"),
    ]  # fmt: skip
    for changes, field, message in cases:
        with pytest.raises(ValidationError) as raised:
            HouseholdCreate.model_validate(_household(**changes))
        error = raised.value.errors()[0]
        assert error["loc"] == (field,) and message in error["msg"], error
    nested: object = "x"
    for _ in range(25):
        nested = [nested]
    with pytest.raises(ValidationError, match="nested too deeply"):
        HouseholdCreate.model_validate(_household(members=nested))
