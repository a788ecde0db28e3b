"""纳入建档立卡核查 in the assistance service, risk and registry played on the broker: one
active check per person, new evidence joining it, a household arriving while the check is
open, a registered person never checked, and a clue's checks refused where they do not
belong. The full path through all six services is tests/e2e/test_enrolment.py."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

from backstop.contracts.assistance import FINDINGS_TOPIC, TASKS_TOPIC, FindingObserved
from backstop.contracts.registry import MemberSnapshot
from backstop.contracts.risk import FactorData, UnregisteredFlagged
from backstop.events import CloudEvent, make_event
from services.assistance import enrolment
from tests.assistance.conftest import TOWN, VILLAGE, Assistance
from tests.support import checklist, read_topic, wait_for

COUNTY = "441881"
OVERDUE = "backstop.assistance.enrolment_check.overdue.v1"


def flagged(person: str, *sources: str, subject: str | None = None) -> CloudEvent:
    factor = FactorData(
        code="illness", points=60, evidence="近12个月医疗自付 12,000 元", sources=list(sources)
    )
    payload = UnregisteredFlagged(
        id_hash=person, factors=[factor], new_evidence=["illness"],
        assessed_at=datetime.now(UTC), policy_version=1,
    )  # fmt: skip
    return make_event("risk", payload, subject=subject or person)


async def checks_of(a: Assistance, person: str) -> list[dict[str, Any]]:
    r = await a.client.get("/v1/enrolment-checks", params={"id_hash": person}, headers=a.rw)
    assert r.status_code == 200, r.text
    return list(r.json()["items"])


def member(person: str) -> MemberSnapshot:
    return MemberSnapshot(
        person_id=str(uuid.uuid4()), id_hash=person, relation="head", sex="female",
        birth_date=date(1966, 5, 4),
    )  # fmt: skip


async def test_one_check_per_person_joined_by_new_evidence_and_linked_while_open(
    a: Assistance,
) -> None:
    person = uuid.uuid4().hex * 2
    await a.send(flagged(person, "medical:e1"))
    (check,) = await wait_for(lambda: checks_of(a, person), message="check opened")
    assert (check["region_code"], check["assignee"]) == (COUNTY, {"type": "county", "code": COUNTY})
    assert check["status"] == "open" and check["evidence"] == ["medical:e1"]
    assert check["opened_by"] == "risk" and check["origin"] == "department"

    # The same evidence again changes nothing; a new record joins as a new reason.
    await a.send(flagged(person, "medical:e1"))
    await a.send(flagged(person, "medical:e1", "medical:e2"))

    async def joined() -> list[dict[str, Any]]:
        found = await checks_of(a, person)
        return found if found and len(found[0]["evidence"]) == 2 else []

    (check,) = await wait_for(joined, message="new evidence joined")
    assert check["reason"].count("新证据") == 1

    # The registry adds the person before the check is done: the check follows the
    # household; completing it confirmed opens the identification case at once.
    snapshot = await a.household(type="ordinary", members=[member(person)])

    async def linked() -> list[dict[str, Any]]:
        found = await checks_of(a, person)
        return found if found and found[0]["household_id"] else []

    (check,) = await wait_for(linked, message="check linked")
    assert check["household_id"] == snapshot.household_id and check["region_code"] == VILLAGE
    assert check["assignee"] == {"type": "town", "code": TOWN} and check["status"] == "open"
    town = a.headers("assistance:read", "assistance:write", regions=(TOWN,))
    done = {"outcome": "confirmed", "verified_by": "镇干部", **checklist(6000)}
    r = await a.client.post(f"/v1/enrolment-checks/{check['id']}/complete", json=done, headers=town)
    assert r.status_code == 200, r.text
    case_id = r.json()["case_id"]
    assert case_id and r.json()["next_step"] is None
    case = (await a.client.get(f"/v1/cases/{case_id}", headers=town)).json()
    assert case["kind"] == "identification" and case["monitoring_type"] == "sudden_hardship"
    # What the home check saw goes to registry as the household's finding.
    (finding,) = await read_topic(
        a.settings, FINDINGS_TOPIC, match=lambda e: e.subject == snapshot.household_id
    )
    observed = finding.payload()
    assert isinstance(observed, FindingObserved) and observed.origin == "verification"
    assert observed.income is not None and observed.income.total == 6000
    r = await a.client.post(f"/v1/enrolment-checks/{check['id']}/complete", json=done, headers=town)
    assert r.status_code == 409, r.text

    # Flagged again once registered: the household's business, no new check.
    other = uuid.uuid4().hex * 2
    await a.send(flagged(person, "medical:e3"))
    await a.send(flagged(other, "medical:x1", subject=person))  # after it, same partition
    await wait_for(lambda: checks_of(a, other), message="the marker's check")
    assert len(await checks_of(a, person)) == 1


async def test_a_clue_becomes_a_check_only_for_an_unregistered_person(a: Assistance) -> None:
    await a.household()  # the village is known
    town = a.headers("assistance:read", "assistance:write", regions=(TOWN,))

    async def clue(**body: Any) -> dict[str, Any]:
        r = await a.client.post(
            "/v1/clues",
            json={
                "source": "public_report",
                "summary": "因病致贫",
                "village_code": VILLAGE,
                **body,
            },
            headers=a.rw,
        )
        assert r.status_code == 201, r.text
        r = await a.client.post(
            f"/v1/clues/{r.json()['id']}/accept", json={"accepted_by": "镇"}, headers=a.rw
        )
        return dict(r.json())

    nameless = await clue(person={"name": "王某"})
    url = f"/v1/clues/{nameless['id']}/enrolment-check"
    r = await a.client.post(url, json={"opened_by": "镇"}, headers=town)
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["path", "clue_id"]
    r = await a.client.post(url, json={"opened_by": ""}, headers=town)
    assert r.status_code == 422
    r = await a.client.post(
        "/v1/clues/nope/enrolment-check", json={"opened_by": "镇"}, headers=town
    )
    assert r.status_code == 404

    named = await clue(person={"name": "王某", "id_number": "110101199003074477"})
    r = await a.client.post(
        f"/v1/clues/{named['id']}/enrolment-check", json={"opened_by": "镇"}, headers=town
    )
    assert r.status_code == 201, r.text
    assert r.json()["opened_by"] == "镇" and r.json()["origin"] == "clue"
    # Its outcome now comes from the check, not by hand.
    r = await a.client.post(
        f"/v1/clues/{named['id']}/outcome",
        json={"outcome": "confirmed", "recorded_by": "镇"},
        headers=town,
    )
    assert r.status_code == 409, r.text


async def test_not_confirmed_does_not_silence_the_person(a: Assistance) -> None:
    person = uuid.uuid4().hex * 2
    await a.send(flagged(person, "medical:n1"))
    (check,) = await wait_for(lambda: checks_of(a, person), message="check opened")
    no = {"outcome": "not_confirmed", "verified_by": "县扶贫办", **checklist(40000)}
    town = a.headers("assistance:read", "assistance:write", regions=(TOWN,))
    url = f"/v1/enrolment-checks/{check['id']}/complete"
    r = await a.client.post(url, json={**no, "notes": "有稳定收入"}, headers=town)
    assert r.status_code == 404  # still the county's: the town does not see it
    r = await a.client.post(url, json=no, headers=a.rw)
    assert r.status_code == 422 and "reason" in r.text
    r = await a.client.post(url, json={**no, "notes": "有稳定收入"}, headers=a.rw)
    assert r.status_code == 200 and r.json()["status"] == "done", r.text

    # New evidence after "not confirmed": a new check, the old one kept as it was.
    await a.send(flagged(person, "medical:n1", "disaster:n2"))

    async def two() -> list[dict[str, Any]]:
        found = await checks_of(a, person)
        return found if len(found) == 2 else []

    done, again = await wait_for(two, message="a new check")
    assert (done["outcome"], done["notes"]) == ("not_confirmed", "有稳定收入")
    assert again["status"] == "open" and again["evidence"] == ["medical:n1", "disaster:n2"]


async def test_an_overdue_check_is_reported_once_per_due_date(a: Assistance) -> None:
    person = uuid.uuid4().hex * 2
    await a.send(flagged(person, "medical:o1"))
    (check,) = await wait_for(lambda: checks_of(a, person), message="check opened")
    later = date.fromisoformat(check["due_on"]) + timedelta(days=3)
    assert await enrolment.emit_overdue_checks(a.runtime.sessions, on=later) >= 1
    await enrolment.emit_overdue_checks(a.runtime.sessions, on=later)  # nothing new

    # 下发各镇: the town's time counts from the handover, and a new due date may be
    # reported again.
    r = await a.client.post(
        f"/v1/enrolment-checks/{check['id']}/assign",
        json={"town_code": TOWN, "assigned_by": "扶贫办"},
        headers=a.rw,
    )
    assert r.status_code == 200, r.text
    assert r.json()["due_on"] == check["due_on"]  # handed down the day it opened
    await enrolment.emit_overdue_checks(a.runtime.sessions, on=later)
    overdue = await read_topic(
        a.settings,
        TASKS_TOPIC,
        min_count=3,
        timeout=5,
        match=lambda e: e.type == OVERDUE and e.data["check_id"] == check["id"],
    )
    assert [e.data["region_code"] for e in overdue] == [COUNTY, TOWN]
    assert all(e.data["days_overdue"] == 3 for e in overdue)
