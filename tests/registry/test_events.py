"""HouseholdCreated built without the contract's models is still the contract's JSON; the
import's helpers (ids, garbage collector) keep their promises. No database."""

from __future__ import annotations

import time
import uuid
from datetime import date

import orjson

from backstop import crypto, outbox
from backstop.contracts import registry as contract
from backstop.events import CloudEvent, make_event
from backstop.logs import correlation_id
from backstop.settings import get_settings
from services.registry import drafts, views
from services.registry.county import read_regions
from services.registry.registering import created_envelope, created_event
from services.registry.seed import generate
from services.registry.views import HouseholdView, snapshot_data

TODAY = date(2026, 11, 28)
KEY = "k" * 32


def test_created_events_are_the_contracts_json() -> None:
    villages = {r.code for r in read_regions("441881") if r.level == "village"}
    for draft, monitoring in generate(300, seed=3, county="441881", today=TODAY):
        prepared = drafts.prepare_household(draft, villages=villages, pii_key=KEY, today=TODAY)
        prepared.household.update(monitoring)
        event = created_event(prepared, "importer")
        payload = event.payload()
        assert isinstance(payload, contract.HouseholdCreated)
        assert event.data == payload.model_dump(mode="json")
        assert event.subject == prepared.household["id"] == payload.household.household_id
        assert event.type == "backstop.registry.household.created.v1"
        assert event.source == "/backstop/registry"
        members = payload.household.members
        order = [(m.relation != "head", m.birth_date) for m in members]
        assert order == sorted(order) and members[0].relation == "head"
        assert {m.person_id for m in members} == {m["id"] for m in prepared.members}
        assert draft.members[0].id_number not in event.to_bytes().decode()
    # The envelope is make_event's, but for its own id and time.
    made = make_event("registry", payload, subject=event.subject or "")
    ours, theirs = orjson.loads(event.to_bytes()), orjson.loads(made.to_bytes())
    assert ours.keys() == theirs.keys()
    assert {**ours, "id": "", "time": ""} == {**theirs, "id": "", "time": ""}
    assert CloudEvent.from_bytes(event.to_bytes()) == event


def test_the_api_writes_the_created_event_as_the_kernels_envelope_bytes() -> None:
    """A registration through the API serializes its event's plain values once
    (`outbox.envelope_row`): the bytes `CloudEvent.to_bytes` gives, with and without a
    correlation id, with and without microseconds."""
    villages = {r.code for r in read_regions("441881") if r.level == "village"}
    for n, (draft, _) in enumerate(generate(50, seed=5, county="441881", today=TODAY)):
        prepared = drafts.prepare_household(draft, villages=villages, pii_key=KEY, today=TODAY)
        token = correlation_id.set(f"corr-{n}" if n % 2 else None)
        try:
            envelope = created_envelope(prepared, "clerk")
        finally:
            correlation_id.reset(token)
        if n % 3 == 0:
            envelope["time"] = envelope["time"].replace(microsecond=0)
        event_id, topic, key, event_type, correlation, value = outbox.envelope_row(
            envelope, max_message_bytes=1_000_000
        )
        event = CloudEvent.model_construct(**envelope)
        assert value == event.to_bytes()
        assert CloudEvent.from_bytes(value) == CloudEvent.model_validate(envelope)
        assert (event_id, key, event_type) == (event.id, prepared.household["id"], event.type)
        assert topic == contract.TOPIC and correlation == (f"corr-{n}" if n % 2 else None)


def test_snapshot_of_a_loaded_household_is_the_contracts_json() -> None:
    """As load_views gives it: uuid ids, numbers from JSON (ints), verified guarantees."""
    household_id, person_id = uuid.uuid4(), uuid.uuid4()
    view = HouseholdView(
        household={
            "id": household_id, "household_number": None, "region_code": "441881001001",
            "town_code": "441881001", "type": "marginal", "policy_enjoying": False,
            "monitoring_status": "eliminated", "monitoring_since": date(2025, 1, 2),
            "monitoring_ended_on": date(2026, 3, 4), "elimination_method": "natural",
            "guarantees": {"housing": {"status": "possible_issue", "verified_on": "2026-11-01"},
                           "food": {"status": "ok", "verified_on": None}},
            "version": 7,
        },
        members=[{
            "id": person_id, "id_hash": "a" * 64, "relation": "head", "sex": "female",
            "birth_date": date(1960, 2, 29), "special_groups": ["disability"],
            "labor_capacity": "partial", "schooling": None, "medical_insurance": False,
        }],
        incomes=[{"year": 2025, "total": 9000, "wage": 9000, "business": None,
                  "transfer": None, "property": 0}],
        contacts=[{"role": "cadre", "name": "王", "phone": "13800001111", "unit": None}],
    )  # fmt: skip
    data = snapshot_data(view)
    assert data == contract.HouseholdSnapshot.model_validate(data).model_dump(mode="json")
    assert data["incomes"][0]["total"] == 9000.0 and isinstance(data["incomes"][0]["total"], float)
    assert data["guarantees_verified_on"] == {"housing": "2026-11-01"}
    # The phone leaves masked, with a sealed copy (random IV: differs on each call).
    [contact] = data["contacts"]
    assert contact["phone"] == "138****1111"
    assert crypto.open_secret(get_settings(), contact.pop("phone_sealed")) == "13800001111"
    again = views.snapshot(view).model_dump(mode="json")
    assert again["contacts"][0].pop("phone_sealed") and again == data


def test_new_ids_are_distinct_time_ordered_uuids() -> None:
    before = time.time_ns() // 1_000_000
    ids = drafts._fresh_ids(2000)
    later = drafts._fresh_ids(1)[0]
    assert len(set(ids)) == 2000
    for value in ids:
        parsed = uuid.UUID(value)
        assert str(parsed) == value and parsed.version == 7 and parsed.variant == uuid.RFC_4122
        assert before <= parsed.int >> 80 <= time.time_ns() // 1_000_000
    assert max(ids)[:13] <= later[:13]  # the millisecond prefix never goes back


def test_ids_from_the_pool_are_never_handed_out_twice() -> None:
    ids = [i for n in (1, 5, 700, 3, 511) for i in drafts.new_ids(n)]
    assert len(ids) == len(set(ids)) == 1220
