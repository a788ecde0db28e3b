"""The seed's words and rules that more than one service must agree on, defined once.

registry stores these words, risk scores them, assistance and notify act on them: each
imports them from here, so one side cannot change alone (tests/kernel/test_policy_words.py).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal, get_args

# Special groups a member can be recorded in. The first four are the seed's 4类特困群体
# (三(一)), who get 进一步强化综合性社会保障措施; `disability` is any other 残疾.
SpecialGroup = Literal[
    "major_illness",  # 因重特大疾病自理费用较多人员
    "disabled_without_carer",  # 无法定赡、抚、扶养人且日常生活需要照料的失能人员
    "child_in_distress",  # 无人照料或监护人照料能力弱的困境儿童
    "severe_mental_disorder",  # 严重精神障碍患者
    "disability",  # 残疾
]
SPECIAL_GROUPS: tuple[str, ...] = get_args(SpecialGroup)
SPECIAL_HARDSHIP_GROUPS: frozenset[str] = frozenset(SPECIAL_GROUPS[:4])  # 4类特困群体
SPECIAL_GROUP_LABELS: dict[str, str] = {
    "major_illness": "重特大疾病自理费用较多人员",
    "disabled_without_carer": "无人照料失能人员",
    "child_in_distress": "困境儿童",
    "severe_mental_disorder": "严重精神障碍患者",
    "disability": "残疾人",
}

# 两不愁三保障 and 饮水安全, the items of every home check (seed 二(一) 入户核实了解"一达标、
# 两不愁、三保障"情况): food and clothing (两不愁); compulsory education, basic medical care
# and safe housing (三保障); safe drinking water. 一达标 is the income observed beside them.
GUARANTEE_ITEMS: tuple[str, ...] = (
    "food",
    "clothing",
    "compulsory_education",
    "basic_medical",
    "housing",
    "drinking_water",
)


# Household types (DESIGN.md) whose families the seed 二(三) names for the monthly visit:
# 脱贫户 (alleviated, unstable; 含监测户), 边缘户 (marginal) and 突发严重困难户.
ALLEVIATED_TYPES: frozenset[str] = frozenset({"alleviated", "unstable"})
EDGE_TYPES: frozenset[str] = frozenset({"marginal", "sudden_hardship"})


def due_for_monthly_contact(
    *, household_type: str, monitoring_status: str, sudden_change: bool = False
) -> bool:
    """Whether the household must be visited or contacted at least once this month.

    Seed 二(三): 每月至少开展一次走访，对脱贫户（含监测户）、边缘户、"双骤户"…入户走访.
    A 脱贫户 stays due for good (脱贫不脱帮扶); an 边缘户 until its risk is eliminated;
    any household while monitored or while it is a 双骤户 (`sudden_change`: risk found
    收入骤降 or 支出骤增)."""
    if monitoring_status == "monitored" or sudden_change:
        return True
    if household_type in ALLEVIATED_TYPES:
        return True
    return household_type in EDGE_TYPES and monitoring_status != "eliminated"


def income_drop_share(now_per_capita: float, before_per_capita: float) -> float | None:
    """收入骤降, measured one way by risk and by the 帮扶消除 guard: the fall of per-capita
    net income (each year divided by that year's members) against the year before, as a
    share; None when there is nothing to compare or income did not fall."""
    if before_per_capita <= 0 or now_per_capita >= before_per_capita:
        return None
    return (before_per_capita - now_per_capita) / before_per_capita


# 重点联系人 (seed 三(三)2), by the seed's own titles, plus the 帮扶责任人 of 四(一).
ContactRole = Literal[
    "assisting_unit",  # 帮扶单位 (监测户)
    "town_leader",  # 镇党委政府负责人 (监测户)
    "town_cadre",  # 镇包村干部 (边缘户)
    "work_team",  # 驻村工作队员 (边缘户)
    "village_cadre",  # 村包片干部 (边缘户)
    "assistance_officer",  # 帮扶责任人
]
CONTACT_ROLES: tuple[str, ...] = get_args(ContactRole)
CONTACT_ROLE_LABELS: dict[str, str] = {
    "assisting_unit": "帮扶单位",
    "town_leader": "镇党委政府负责人",
    "town_cadre": "镇包村干部",
    "work_team": "驻村工作队员",
    "village_cadre": "村包片干部",
    "assistance_officer": "帮扶责任人",
}
# Words of the register before the seed's titles: "leader" was 镇领导, "cadre" 镇村干部.
LEGACY_CONTACT_ROLES: dict[str, str] = {"leader": "town_leader", "cadre": "town_cadre"}
MONITORED_CONTACT_ROLES: tuple[str, ...] = ("assisting_unit", "town_leader")
EDGE_CONTACT_ROLES: tuple[str, ...] = ("town_cadre", "work_team", "village_cadre")


def required_contact_roles(household_type: str, monitoring_status: str) -> tuple[str, ...]:
    """The roles of which one must be the household's 重点联系人 (seed 三(三)2): 各帮扶单位、
    各镇党委政府负责人 for a 监测户; 镇包村干部、驻村工作队员、村包片干部 for an 边缘户;
    nobody otherwise."""
    if monitoring_status == "monitored":
        return MONITORED_CONTACT_ROLES
    if household_type in EDGE_TYPES and monitoring_status != "eliminated":
        return EDGE_CONTACT_ROLES
    return ()


def contact_missing(household_type: str, monitoring_status: str, roles: Iterable[str]) -> bool:
    """True when the household lacks the 重点联系人 its class asks for."""
    required = required_contact_roles(household_type, monitoring_status)
    return bool(required) and not set(required) & {LEGACY_CONTACT_ROLES.get(r, r) for r in roles}


def responsible_contacts(
    household_type: str, monitoring_status: str, contacts: Iterable[tuple[str, str]]
) -> list[str]:
    """Of the household's (name, role) contacts, those whose role makes them answer for
    its monthly contact; a missed household is charged to them."""
    required = set(required_contact_roles(household_type, monitoring_status))
    named = [(n, LEGACY_CONTACT_ROLES.get(r, r)) for n, r in contacts]
    return [n for n, r in named if r in required] or [
        n for n, r in named if r == "assistance_officer"
    ]
