"""Policy words that cross services, end to end: what registry stores is what risk scores."""

from __future__ import annotations

import uuid

import pytest

from tests.e2e.system import System
from tests.e2e.test_headline import ALL, household, poll_json

pytestmark = pytest.mark.integration


async def test_special_hardship_groups_registered_are_scored(system: System) -> None:
    # Seed 三(一): 4类特困群体…无法定赡、抚、扶养人且日常生活需要照料的失能人员，
    # 无人照料或监护人照料能力弱的困境儿童…进一步强化综合性社会保障措施.
    seq = uuid.uuid4().int % 300 * 3 + 1
    body = household("alleviated", 200000, ("刘强", "吴芳", "刘小宝"), seq)
    body["members"][1]["special_groups"] = ["disabled_without_carer"]
    body["members"][2]["special_groups"] = ["child_in_distress"]
    async with (
        system.client("registry", *ALL) as registry,
        system.client("risk", *ALL) as risk,
    ):
        r = await registry.post("/v1/households", json=body)
        assert r.status_code == 201, r.text
        hid = r.json()["id"]
        assessment = await poll_json(
            risk, f"/v1/households/{hid}/risk", lambda b: b["level"] != "none"
        )
    factors = {f["code"]: f["evidence"] for f in assessment["factors"]}
    assert "无人照料失能人员 1 人" in factors["disability"]
    assert "困境儿童 1 人" in factors["other"]
    assert assessment["level"] == "at_risk"  # two groups of the four: 30 + 30 points
