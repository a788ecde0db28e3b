"""The provincial platform's words (pure)."""

from __future__ import annotations

import pytest

from services.assistance import province


def test_codes_from_the_platforms_words() -> None:
    assert province.system_code("返贫预警监测系统") == "return_warning"
    assert province.system_code("marginal") == "marginal"
    assert province.item_code("住房安全") == "housing"
    assert province.item_code("住房安全（C级危房）") == "housing"
    assert province.item_code("一达标") == "income"
    assert province.level_code("存在突出问题有返贫致贫风险") == "prominent_issue"
    assert province.level_code("可能存在问题") == "possible_issue"
    with pytest.raises(ValueError, match="unknown level"):
        province.level_code("严重")


def test_a_row_reads_or_names_its_problems() -> None:
    fields = {0: "warning_id", 1: "system", 2: "item", 3: "level", 4: "warned_on", 5: "id_number"}
    record, problems = province.read_row(
        [
            "W1",
            "返贫预警监测系统",
            "饮水安全",
            "存在突出问题",
            "2026年11月3日",
            "'441881197501014011",
        ],
        fields,
    )
    assert not problems
    assert record["item"] == "drinking_water" and record["warned_on"].isoformat() == "2026-11-03"
    assert record["id_number"] == "441881197501014011"
    _, problems = province.read_row(
        ["W2", "返贫预警监测系统", "饮水", None, 4.41881e17, None], fields
    )
    assert {p.field for p in problems} == {"level", "warned_on", "household_number"}


def test_what_became_of_a_warning() -> None:
    assert province.warning_status(None) == "unmatched"
    assert province.warning_status("open") == "verifying"
    assert province.warning_status("done") == "verified"
    assert province.warning_status("cancelled") == "cancelled"
