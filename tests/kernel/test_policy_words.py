"""The seed's words and rules that services must agree on live once in
backstop.contracts.policy; these tests fail when one side changes alone."""

from __future__ import annotations

from datetime import date
from typing import get_args

import pytest

from backstop.contracts.policy import (
    CONTACT_ROLES,
    GUARANTEE_ITEMS,
    SPECIAL_GROUP_LABELS,
    SPECIAL_GROUPS,
    SPECIAL_HARDSHIP_GROUPS,
    contact_missing,
    due_for_monthly_contact,
    income_drop_share,
    required_contact_roles,
    responsible_contacts,
)
from services.assistance import domain as assistance
from services.registry import models as registry
from services.risk import domain as risk


def test_registry_stores_the_groups_risk_scores() -> None:
    assert get_args(registry.SpecialGroup) == SPECIAL_GROUPS
    assert set(risk.DEFAULT_POLICY.attention_groups) == set(SPECIAL_GROUPS)
    assert set(SPECIAL_GROUP_LABELS) == set(SPECIAL_GROUPS)
    # 4类特困群体: 重特大疾病、失能、困境儿童、严重精神障碍
    assert len(SPECIAL_HARDSHIP_GROUPS) == 4 and "disability" not in SPECIAL_HARDSHIP_GROUPS


@pytest.mark.parametrize(
    ("household_type", "status", "sudden", "due"),
    [
        # 二(三): 对脱贫户（含监测户）、边缘户、"双骤户"…每月至少开展一次走访
        ("alleviated", "none", False, True),
        ("alleviated", "eliminated", False, True),  # 脱贫不脱帮扶
        ("unstable", "none", False, True),
        ("marginal", "none", False, True),
        ("marginal", "eliminated", False, False),
        ("sudden_hardship", "none", False, True),
        ("ordinary", "monitored", False, True),
        ("ordinary", "none", True, True),  # 双骤户
        ("ordinary", "none", False, False),
        ("ordinary", "eliminated", False, False),
    ],
)
def test_who_is_contacted_monthly(
    household_type: str, status: str, sudden: bool, due: bool
) -> None:
    assert (
        due_for_monthly_contact(
            household_type=household_type, monitoring_status=status, sudden_change=sudden
        )
        is due
    )


@pytest.mark.parametrize(
    ("now", "before", "dropped"),
    [(7_000, 10_000, True), (7_001, 10_000, False), (12_000, 10_000, False), (5_000, 0, False)],
)
def test_risk_and_the_elimination_guard_measure_income_drop_alike(
    now: float, before: float, dropped: bool
) -> None:
    share = income_drop_share(now, before)
    assert (share is not None and share >= 0.3) is dropped
    # risk: 收入骤降 factor, per capita
    f = risk.build_features(
        household_id="h",
        region_code="441881101001",
        as_of=date(2026, 11, 15),
        members=(risk.Member("p1", "x", date(1970, 1, 1)),),
        incomes=[risk.Income(2025, now, now), risk.Income(2024, before, before)],
        guarantees={},
        records=(),
    )
    flagged = "income_drop" in risk.assess(f, risk.DEFAULT_POLICY).codes
    assert flagged is dropped
    # assistance: the 帮扶消除 guard's stable-income rule, same per-capita figures
    facts = assistance.EliminationFacts(
        monitored_since=date(2025, 1, 1),
        incomes=[assistance.IncomeFact(2025, now), assistance.IncomeFact(2024, before)],
        guarantees={},
        labor_capacities=["full"],
        contact_phones=["13800000000"],
    )
    failed = {
        g.rule
        for g in assistance.elimination_guard(
            facts, on=date(2026, 3, 1), policy=assistance.AssistancePolicy()
        )
    }
    assert ("income_stable" in failed) is dropped


def test_key_contacts_follow_the_households_class() -> None:
    # Seed 三(三)2: 各帮扶单位、各镇党委政府负责人作为监测户重点联系人，镇包村干部、
    # 驻村工作队员、村包片干部作为边缘户的联系人.
    assert required_contact_roles("unstable", "monitored") == ("assisting_unit", "town_leader")
    assert required_contact_roles("marginal", "none") == (
        "town_cadre",
        "work_team",
        "village_cadre",
    )
    assert required_contact_roles("alleviated", "none") == ()
    assert required_contact_roles("marginal", "eliminated") == ()
    assert contact_missing("marginal", "none", [])
    assert contact_missing("ordinary", "monitored", ["village_cadre"])  # wrong level
    assert not contact_missing("marginal", "none", ["village_cadre"])
    assert not contact_missing("ordinary", "monitored", ["leader"])  # the earlier word
    assert get_args(registry.ContactRole) == CONTACT_ROLES


def test_a_missed_household_is_charged_to_the_role_that_requires_it() -> None:
    contacts = [
        ("王队员", "work_team"),
        ("赵书记", "town_leader"),
        ("钱责任人", "assistance_officer"),
    ]
    assert responsible_contacts("alleviated", "monitored", contacts) == ["赵书记"]
    assert responsible_contacts("marginal", "none", contacts) == ["王队员"]
    # Nobody in the required roles: the 帮扶责任人 answers for it.
    assert responsible_contacts("marginal", "none", [("钱责任人", "assistance_officer")]) == [
        "钱责任人"
    ]


def test_every_service_checks_the_same_guarantees() -> None:
    """二(一): 入户核实了解"一达标、两不愁、三保障"情况 (and 饮水安全): registry stores,
    assistance's checklist asks, and the findings carry the same items."""
    from backstop.contracts import registry as registry_events
    from services.assistance import models as assistance_models

    assert get_args(registry.GuaranteeItem) == GUARANTEE_ITEMS
    assert get_args(registry_events.GuaranteeItem) == GUARANTEE_ITEMS
    assert get_args(assistance_models.GuaranteeItem) == GUARANTEE_ITEMS
