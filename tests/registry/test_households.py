"""Households through the API, against the real PostgreSQL and Kafka."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import text

from backstop.contracts.registry import TOPIC
from services.registry.models import HouseholdPage, HouseholdPublic
from tests.registry.conftest import (
    OTHER_TOWN_VILLAGE,
    VILLAGE,
    VILLAGE_2,
    Registry,
    household_body,
    person_id_number,
)
from tests.support import read_topic

pytestmark = pytest.mark.integration


async def create(registry: Registry, body: dict[str, object]) -> str:
    response = await registry.client.post("/v1/households", json=body, headers=registry.writer)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def test_create_get_and_event_without_id_numbers(registry: Registry) -> None:
    body = household_body()
    household_id = await create(registry, body)

    got = (
        await registry.client.get(f"/v1/households/{household_id}", headers=registry.reader)
    ).json()
    assert got["region_code"] == VILLAGE and got["town_code"] == VILLAGE[:9]
    assert len(got["members"]) == 3
    head = got["members"][0]
    assert head["relation"] == "head"
    raw = body["members"][0]["id_number"]  # type: ignore[index]
    assert head["id_number"] == f"{raw[:6]}********{raw[14:]}"
    assert head["sex"] in ("male", "female") and head["birth_year"] == 1975
    assert head["birth_date"] is None  # it would fill the masked ID's middle
    assert got["annual_income"] == {
        "year": 2025, "total": 30000.0, "per_capita": 10000.0,
        "wage": None, "business": None, "transfer": None, "property": None,
    }  # fmt: skip
    assert got["version"] == 1

    pii = registry.headers("registry:read", "registry:pii")
    unmasked = (await registry.client.get(f"/v1/households/{household_id}", headers=pii)).json()
    assert unmasked["members"][0]["id_number"] == raw
    assert unmasked["members"][0]["birth_date"] == f"{raw[6:10]}-{raw[10:12]}-{raw[12:14]}"

    found = await registry.client.get(f"/v1/persons/{raw}", headers=registry.reader)
    assert found.json()["household_id"] == household_id
    posted = await registry.client.post(
        "/v1/persons/lookup", json={"id_number": raw}, headers=registry.reader
    )
    assert posted.json() == found.json()
    bad = await registry.client.post(
        "/v1/persons/lookup", json={"id_number": raw[:17] + "Y"}, headers=registry.reader
    )
    assert bad.status_code == 422 and bad.json()["errors"][0]["loc"] == ["body", "id_number"]

    events = await read_topic(registry.settings, TOPIC, match=lambda e: e.subject == household_id)
    event = events[0]
    assert event.type == "backstop.registry.household.created.v1"
    assert raw not in event.to_bytes().decode()
    snapshot = event.data["household"]
    assert snapshot["version"] == 1
    assert len(snapshot["members"][0]["id_hash"]) == 64
    assert snapshot["incomes"][0]["per_capita"] == 10000.0


@pytest.mark.parametrize(
    ("mutate", "status", "loc"),
    [
        (lambda b: b["members"][0].update(id_number=b["members"][0]["id_number"][:17] + ("0" if b["members"][0]["id_number"][17] != "0" else "1")),
         422, ["body", "members", 0, "id_number"]),
        (lambda b: b.update(region_code="441881999999"), 422, ["body", "region_code"]),
        (lambda b: b["members"][1].update(relation="head"), 422, ["body", "members"]),
        (lambda b: b.update(annual_income={"year": 2025, "total": -10}), 422,
         ["body", "annual_income", "total"]),
        (lambda b: b["members"][0].update(id_number="44188119800101001"), 422,
         ["body", "members", 0, "id_number"]),
    ],
)  # fmt: skip
async def test_bad_input_names_the_field_and_writes_nothing(
    registry: Registry, mutate: object, status: int, loc: list[object]
) -> None:
    body = household_body()
    mutate(body)  # type: ignore[operator]
    response = await registry.client.post("/v1/households", json=body, headers=registry.writer)
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["errors"][0]["loc"] == loc
    spouse = body["members"][1]["id_number"]  # type: ignore[index]
    missing = await registry.client.get(f"/v1/persons/{spouse}", headers=registry.reader)
    assert missing.status_code == 404


async def test_person_in_another_household_is_a_conflict(registry: Registry) -> None:
    first = household_body()
    await create(registry, first)
    second = household_body()
    second["members"][1]["id_number"] = first["members"][1]["id_number"]  # type: ignore[index]
    response = await registry.client.post("/v1/households", json=second, headers=registry.writer)
    assert response.status_code == 409
    assert response.json()["errors"][0]["loc"] == ["body", "members", 1, "id_number"]
    head = second["members"][0]["id_number"]  # type: ignore[index]
    assert (
        await registry.client.get(f"/v1/persons/{head}", headers=registry.reader)
    ).status_code == 404


async def test_region_scoping(registry: Registry) -> None:
    household_id = await create(registry, household_body(region=OTHER_TOWN_VILLAGE))
    town_token = registry.headers("registry:read", "registry:write", regions=(VILLAGE[:9],))
    response = await registry.client.get(f"/v1/households/{household_id}", headers=town_token)
    assert response.status_code == 404  # as if it did not exist: no region oracle
    response = await registry.client.post(
        "/v1/households", json=household_body(region=OTHER_TOWN_VILLAGE), headers=town_token
    )
    assert response.status_code == 403
    listed = await registry.client.get("/v1/households", params={"limit": 500}, headers=town_token)
    assert all(h["region_code"].startswith(VILLAGE[:9]) for h in listed.json()["items"])
    assert (await registry.client.get("/v1/households", headers={})).status_code == 401


async def test_filters_and_cursor_pagination(registry: Registry) -> None:
    body = household_body(region=VILLAGE_2, type="marginal")
    body["members"][0]["special_groups"] = ["severe_mental_disorder"]  # type: ignore[index]
    special_id = await create(registry, body)
    ids = {special_id}
    for _ in range(4):
        ids.add(await create(registry, household_body(region=VILLAGE_2, type="marginal")))
    seen: list[str] = []
    cursor = None
    while True:
        params = {"region": VILLAGE_2, "type": "marginal", "monitoring": "monitored", "limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = (
            await registry.client.get("/v1/households", params=params, headers=registry.reader)
        ).json()
        seen += [h["id"] for h in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert set(seen) == ids and len(seen) == len(ids)
    special = await registry.client.get(
        "/v1/households",
        params={"region": VILLAGE_2, "special_group": "severe_mental_disorder"},
        headers=registry.reader,
    )
    assert [h["id"] for h in special.json()["items"]] == [
        min(ids, key=lambda i: i not in special.text)
    ]
    bad = await registry.client.get(
        "/v1/households", params={"type": "rich"}, headers=registry.reader
    )
    assert bad.status_code == 422 and bad.json()["errors"][0]["loc"] == ["query", "type"]
    bad = await registry.client.get(
        "/v1/households", params={"cursor": "%%%"}, headers=registry.reader
    )
    assert bad.status_code == 422


async def test_patch_members_move_and_history(registry: Registry) -> None:
    a = await create(registry, household_body())
    b = await create(registry, household_body(size=2))
    writer = registry.writer
    patched = await registry.client.patch(
        f"/v1/households/{a}",
        json={"type": "marginal", "guarantees": {"housing": {"status": "possible_issue", "verified_on": "2026-11-01"}}},
        headers=writer,
    )  # fmt: skip
    assert patched.status_code == 204, patched.text
    new_person = person_id_number(2024)
    added = await registry.client.post(
        f"/v1/households/{a}/members",
        json={"id_number": new_person, "name": "陈小宝", "relation": "child"},
        headers=writer,
    )
    assert added.status_code == 201, added.text
    person_id = added.json()["person_id"]
    moved = await registry.client.post(
        f"/v1/households/{a}/members/{person_id}/move",
        json={"to_household_id": b, "relation": "other"},
        headers=writer,
    )
    assert moved.status_code == 204, moved.text
    located = (
        await registry.client.get(f"/v1/persons/{new_person}", headers=registry.reader)
    ).json()
    assert located == {"household_id": b, "person_id": person_id}
    head_of_b = (await registry.client.get(f"/v1/households/{b}", headers=registry.reader)).json()[
        "members"
    ][0]
    refused = await registry.client.delete(
        f"/v1/households/{b}/members/{head_of_b['person_id']}", headers=writer
    )
    assert refused.status_code == 409
    removed = await registry.client.delete(
        f"/v1/households/{b}/members/{person_id}", params={"reason": "deceased"}, headers=writer
    )
    assert removed.status_code == 204
    again = await registry.client.post(
        f"/v1/households/{a}/members",
        json={"id_number": new_person, "name": "陈小宝", "relation": "child"},
        headers=writer,
    )
    assert again.json()["person_id"] == person_id  # the same person comes back

    got = (await registry.client.get(f"/v1/households/{a}", headers=registry.reader)).json()
    assert got["type"] == "marginal"
    assert got["guarantees"]["housing"] == {"status": "possible_issue", "verified_on": "2026-11-01"}
    assert got["contact_missing"] is True
    history = (
        await registry.client.get(f"/v1/households/{a}/history", headers=registry.reader)
    ).json()
    actions = [h["action"] for h in history["items"]]
    assert actions == [
        "household.created",
        "household.updated",
        "member.added",
        "member.moved_out",
        "member.added",
    ]
    assert [h["version"] for h in history["items"]] == [1, 2, 3, 4, 5]
    assert history["items"][1]["actor"] == "test"
    assert new_person not in str(history)

    events = await read_topic(registry.settings, TOPIC, min_count=2, match=lambda e: e.subject == b and e.type.endswith(("moved.v1", "removed.v1")))  # fmt: skip
    assert [e.type for e in events] == [
        "backstop.registry.member.moved.v1", "backstop.registry.member.removed.v1"
    ]  # fmt: skip
    assert events[0].data["household"]["version"] < events[1].data["household"]["version"]


async def test_incomes_and_contacts(registry: Registry) -> None:
    household_id = await create(registry, household_body(type="unstable"))
    put = await registry.client.put(
        f"/v1/households/{household_id}/incomes/2026",
        json={"year": 2026, "wage": 12000, "business": 3000, "transfer": 2400, "property": 0},
        headers=registry.writer,
    )
    assert put.status_code == 204, put.text
    negative = await registry.client.put(
        f"/v1/households/{household_id}/incomes/2025",
        json={"year": 2025, "wage": -1},
        headers=registry.writer,
    )
    assert negative.status_code == 422
    assert negative.json()["errors"][0]["loc"] == ["body", "wage"]
    bad_phone = await registry.client.put(
        f"/v1/households/{household_id}/contacts",
        json={"contacts": [{"role": "leader", "name": "王书记", "phone": "123"}]},
        headers=registry.writer,
    )
    assert bad_phone.status_code == 422
    assert bad_phone.json()["errors"][0]["loc"] == ["body", "contacts", 0, "phone"]
    ok = await registry.client.put(
        f"/v1/households/{household_id}/contacts",
        json={"contacts": [{"role": "leader", "name": "王书记", "phone": "13800001111", "unit": "英城街道"}]},
        headers=registry.writer,
    )  # fmt: skip
    assert ok.status_code == 204
    got = (
        await registry.client.get(f"/v1/households/{household_id}", headers=registry.reader)
    ).json()
    assert [i["year"] for i in got["incomes"]] == [2026, 2025]
    assert got["annual_income"]["total"] == 17400 and got["annual_income"]["per_capita"] == 5800
    # The register's earlier word "leader" is taken as the seed's 镇党委政府负责人.
    assert got["contacts"][0]["role"] == "town_leader" and got["contact_missing"] is False


async def test_income_is_stored_as_exact_decimals(registry: Registry) -> None:
    household_id = await create(registry, household_body(type="unstable"))
    put = await registry.client.put(
        f"/v1/households/{household_id}/incomes/2025",
        json={"year": 2025, "wage": 0.1, "business": 0.2, "transfer": 10000.7, "property": 0},
        headers=registry.writer,
    )
    assert put.status_code == 204, put.text
    async with registry.runtime.sessions() as session:
        row = (
            await session.execute(
                text(
                    "SELECT total, wage, pg_typeof(total)::text AS kind FROM income "
                    "WHERE household_id = :h AND year = 2025"
                ),
                {"h": household_id},
            )
        ).one()
    # 0.1 + 0.2 + 10000.7 is 10001.000000000002 in floats; the register keeps 10001.00.
    assert (row.total, row.wage, row.kind) == (Decimal("10001.00"), Decimal("0.10"), "numeric")
    got = (
        await registry.client.get(f"/v1/households/{household_id}", headers=registry.reader)
    ).json()
    income = next(i for i in got["incomes"] if i["year"] == 2025)
    assert income["total"] == 10001 and income["wage"] == 0.1


async def test_regions(registry: Registry) -> None:
    towns = (await registry.client.get("/v1/regions", headers=registry.reader)).json()["items"]
    assert len(towns) == 24 and towns[0] == {
        "code": "441881001", "name": "英城街道", "level": "town", "parent_code": "441881"
    }  # fmt: skip
    villages = await registry.client.get(
        "/v1/regions", params={"parent": "441881001"}, headers=registry.reader
    )
    assert VILLAGE in [v["code"] for v in villages.json()["items"]]
    unknown = await registry.client.get(
        "/v1/regions", params={"parent": "441881999"}, headers=registry.reader
    )
    assert unknown.status_code == 404


async def test_scopes(registry: Registry) -> None:
    response = await registry.client.post(
        "/v1/households", json=household_body(), headers=registry.reader
    )
    assert response.status_code == 403


async def test_concurrent_registrations_of_one_person(registry: Registry) -> None:
    import asyncio

    shared = person_id_number(1966)
    bodies = []
    for _ in range(6):
        body = household_body()
        body["members"][1]["id_number"] = shared  # type: ignore[index]
        bodies.append(body)
    responses = await asyncio.gather(
        *(registry.client.post("/v1/households", json=b, headers=registry.writer) for b in bodies)
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201, 409, 409, 409, 409, 409]
    for r in responses:
        if r.status_code == 409:
            assert r.json()["errors"][0]["loc"] == ["body", "members", 1, "id_number"]


async def test_registrations_at_the_same_moment_share_a_statement_not_a_refusal(
    registry: Registry,
) -> None:
    """Registrations that arrive together are written by one statement (group commit:
    their rows share a transaction); one refused by a unique index fails alone, and the
    others are registered, each with its one HouseholdCreated event."""
    import asyncio

    async def burst(bodies: list[dict[str, object]]) -> list[int]:
        responses = await asyncio.gather(
            *(registry.client.post("/v1/households", json=b, headers=registry.writer)
              for b in bodies)
        )  # fmt: skip
        ids.extend(r.json()["id"] for r in responses if r.status_code == 201)
        return [r.status_code for r in responses]

    ids: list[str] = []
    assert await burst([household_body() for _ in range(8)]) == [201] * 8
    async with registry.runtime.sessions() as session:
        transactions = (
            await session.execute(
                text("SELECT count(DISTINCT xmin::text) FROM household WHERE id = ANY(:ids)"),
                {"ids": ids},
            )
        ).scalar_one()
    assert transactions < len(ids)

    taken = household_body()
    await create(registry, taken)
    bodies = [household_body() for _ in range(8)]
    bodies[3]["members"][1]["id_number"] = taken["members"][1]["id_number"]  # type: ignore[index]
    assert await burst(bodies) == [201] * 3 + [409] + [201] * 4
    assert len(ids) == 15
    events = await read_topic(
        registry.settings,
        TOPIC,
        min_count=len(ids),
        match=lambda e: e.subject in ids and e.type.endswith("household.created.v1"),
    )
    assert sorted(e.subject or "" for e in events) == sorted(ids)
    refused = bodies[3]["members"][0]["id_number"]  # type: ignore[index]
    missing = await registry.client.get(f"/v1/persons/{refused}", headers=registry.reader)
    assert missing.status_code == 404


async def test_reads_at_the_same_moment_each_get_their_own_answer(registry: Registry) -> None:
    """GETs arriving together share statements (backstop.grouping): each still gets its
    own household, masked or not by its own scopes, and 404 for one that does not exist
    or lies outside its regions, exactly as when it is read alone."""
    import asyncio
    import uuid

    ids = [await create(registry, household_body()) for _ in range(4)]
    elsewhere = await create(registry, household_body(region=OTHER_TOWN_VILLAGE))
    town = registry.headers("registry:read", regions=(VILLAGE[:9],))
    pii = registry.headers("registry:read", "registry:pii")
    asks = [(i, h) for i in [*ids, elsewhere, str(uuid.uuid4())] for h in (town, pii)] * 3

    alone = [await registry.client.get(f"/v1/households/{i}", headers=h) for i, h in asks]
    together = await asyncio.gather(
        *(registry.client.get(f"/v1/households/{i}", headers=h) for i, h in asks)
    )
    assert [(r.status_code, r.content) for r in together] == [
        (r.status_code, r.content) for r in alone
    ]
    statuses = {(i, h is pii): r.status_code for (i, h), r in zip(asks, together, strict=True)}
    assert statuses[(elsewhere, False)] == 404 and statuses[(elsewhere, True)] == 200
    assert all(statuses[(i, p)] == 200 for i in ids for p in (False, True))
    for (i, h), r in zip(asks, together, strict=True):
        if r.status_code == 200:
            member = r.json()["members"][0]
            assert r.json()["id"] == i
            assert ("*" in member["id_number"]) is (h is town)


async def test_monitoring_correction_and_openapi(registry: Registry) -> None:
    """Seed 四(一): 严格认定程序. The status comes from the procedure; a PATCH may only
    correct it at county level, with a reason, and is recorded as a correction."""
    household_id = await create(registry, household_body(type="marginal"))
    got = (
        await registry.client.get(f"/v1/households/{household_id}", headers=registry.reader)
    ).json()
    assert got["monitoring_status"] == "monitored" and got["monitoring"]["since"] is not None
    url = f"/v1/households/{household_id}"
    eliminate = {"monitoring_status": "eliminated", "elimination_method": "assisted"}
    town = registry.headers("registry:write", regions=(VILLAGE[:9],))
    by_town = await registry.client.patch(
        url, json={**eliminate, "reason": "town says so"}, headers=town
    )
    assert by_town.status_code == 403 and "county-level" in by_town.json()["detail"]
    no_reason = await registry.client.patch(url, json=eliminate, headers=registry.writer)
    assert no_reason.status_code == 422
    assert no_reason.json()["errors"][0]["loc"] == ["body", "reason"]
    missing = await registry.client.patch(
        url, json={"monitoring_status": "eliminated", "reason": "x"}, headers=registry.writer
    )
    assert missing.status_code == 422
    assert missing.json()["errors"][0]["loc"] == ["body", "elimination_method"]
    # Other fields stay open to a town.
    assert (
        await registry.client.patch(url, json={"policy_enjoying": True}, headers=town)
    ).status_code == 204
    fixed = await registry.client.patch(
        url, json={**eliminate, "reason": "province correction"}, headers=registry.writer
    )
    assert fixed.status_code == 204
    events = await read_topic(
        registry.settings, TOPIC,
        match=lambda e: e.subject == household_id and e.type.endswith("monitoring.changed.v1"),
    )  # fmt: skip
    assert events[0].data["previous_status"] == "monitored"
    assert events[0].data["household"]["elimination_method"] == "assisted"
    assert events[0].data["correction"] is True
    assert events[0].data["reason"] == "province correction"
    history = (await registry.client.get(f"{url}/history", headers=registry.reader)).json()
    corrected = [h for h in history["items"] if h["action"] == "household.monitoring_corrected"]
    assert len(corrected) == 1
    assert corrected[0]["changes"]["correction"] == {"reason": "province correction"}
    assert corrected[0]["changes"]["monitoring_status"] == {"from": "monitored", "to": "eliminated"}
    schema = (await registry.client.get("/openapi.json")).json()
    assert "/v1/households/import" in schema["paths"]


async def test_change_of_head(registry: Registry) -> None:
    household_id = await create(registry, household_body())
    members = (
        await registry.client.get(f"/v1/households/{household_id}", headers=registry.reader)
    ).json()["members"]
    head, spouse = members[0], members[1]
    two_heads = await registry.client.patch(
        f"/v1/households/{household_id}/members/{head['person_id']}",
        json={"relation": "spouse"},
        headers=registry.writer,
    )
    assert two_heads.status_code == 422 and two_heads.json()["errors"][0]["loc"] == [
        "body",
        "relation",
    ]
    changed = await registry.client.patch(
        f"/v1/households/{household_id}/members/{spouse['person_id']}",
        json={"relation": "head", "former_head_relation": "spouse"},
        headers=registry.writer,
    )
    assert changed.status_code == 204, changed.text
    got = (
        await registry.client.get(f"/v1/households/{household_id}", headers=registry.reader)
    ).json()
    relations = {m["person_id"]: m["relation"] for m in got["members"]}
    assert relations[spouse["person_id"]] == "head" and relations[head["person_id"]] == "spouse"
    removed = await registry.client.delete(
        f"/v1/households/{household_id}/members/{head['person_id']}",
        params={"reason": "deceased"},
        headers=registry.writer,
    )
    assert removed.status_code == 204


async def test_a_past_years_per_capita_income_divides_by_that_years_members(
    registry: Registry,
) -> None:
    # 人均纯收入 of 2025 was earned by the three members of 2025; a child born since
    # does not lower it (and the 收入骤降 risk reads from it).
    household_id = await create(registry, household_body())  # 3 members, 2025: 30,000
    added = await registry.client.post(
        f"/v1/households/{household_id}/members",
        json={"id_number": person_id_number(2025), "name": "陈小妹", "relation": "child"},
        headers=registry.writer,
    )
    assert added.status_code == 201, added.text
    put = await registry.client.put(
        f"/v1/households/{household_id}/incomes/2026",
        json={"year": 2026, "total": 40000},
        headers=registry.writer,
    )
    assert put.status_code == 204, put.text
    got = (
        await registry.client.get(f"/v1/households/{household_id}", headers=registry.reader)
    ).json()
    per_capita = {i["year"]: i["per_capita"] for i in got["incomes"]}
    assert per_capita == {2026: 10000, 2025: 10000}
    [event] = await read_topic(
        registry.settings,
        TOPIC,
        match=lambda e: e.subject == household_id and len(e.data["household"]["incomes"]) == 2,
    )
    incomes = event.data["household"]["incomes"]
    assert {i["year"]: i["per_capita"] for i in incomes} == {2026: 10000, 2025: 10000}


async def test_the_reads_answer_exactly_what_their_response_models_document(
    registry: Registry,
) -> None:
    """GET /v1/households/{id} and the list are built as plain values and serialised by
    orjson: each answer is its response model's JSON, field for field, masked or not."""
    household_id = await create(registry, household_body(region=VILLAGE_2))
    patched = await registry.client.patch(
        f"/v1/households/{household_id}",
        json={"guarantees": {"housing": {"status": "possible_issue", "verified_on": "2026-11-01"},
                             "drinking_water": "ok"}},
        headers=registry.writer,
    )  # fmt: skip
    assert patched.status_code == 204, patched.text
    contacts = await registry.client.put(
        f"/v1/households/{household_id}/contacts",
        json={"contacts": [{"role": "assistance_officer", "name": "黄干部", "phone": "13800001111"}]},
        headers=registry.writer,
    )  # fmt: skip
    assert contacts.status_code == 204, contacts.text
    for headers in (registry.reader, registry.headers("registry:read", "registry:pii")):
        got = (await registry.client.get(f"/v1/households/{household_id}", headers=headers)).json()
        assert HouseholdPublic.model_validate(got).model_dump(mode="json") == got
        assert got["contacts"][0]["name"] == "黄干部" and got["guarantees"]["drinking_water"]
        page = (
            await registry.client.get(
                "/v1/households", params={"region": VILLAGE_2, "limit": 500}, headers=headers
            )
        ).json()
        assert HouseholdPage.model_validate(page).model_dump(mode="json") == page
        assert got in page["items"]


async def test_a_removed_person_registered_again_keeps_their_person_id(registry: Registry) -> None:
    """A registration of new people is one statement; one of a person the register knows
    (here removed from their household) is refused by the unique index and goes the careful
    way, which takes the person back instead of answering 409."""
    first = household_body()
    household_id = await create(registry, first)
    child = first["members"][2]
    got = await registry.client.get(f"/v1/households/{household_id}", headers=registry.reader)
    person_id = got.json()["members"][2]["person_id"]
    removed = await registry.client.delete(
        f"/v1/households/{household_id}/members/{person_id}",
        params={"reason": "moved_out"},
        headers=registry.writer,
    )
    assert removed.status_code == 204, removed.text
    second = household_body()
    second["members"][2] = child
    new_id = await create(registry, second)
    located = await registry.client.get(
        f"/v1/persons/{child['id_number']}", headers=registry.reader
    )
    assert located.json() == {"household_id": new_id, "person_id": person_id}
    again = await registry.client.post("/v1/households", json=second, headers=registry.writer)
    assert again.status_code == 409, again.text
