"""The seed's words and rules that more than one service must agree on, defined once.

registry stores these words, risk scores them, assistance and notify act on them: each
imports them from here, so one side cannot change alone (tests/kernel/test_policy_words.py).
"""

from __future__ import annotations

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
