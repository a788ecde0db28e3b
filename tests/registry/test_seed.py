"""The demo-county generator: valid people of the county, plausible shares."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from datetime import date
from pathlib import Path

from services.registry import domain
from services.registry.county import read_regions
from services.registry.seed import generate

TODAY = date(2026, 11, 28)


def test_generated_households_are_valid_and_plausible() -> None:
    villages = {r.code for r in read_regions("441881") if r.level == "village"}
    households = list(generate(1500, seed=11, county="441881", today=TODAY))
    types: Counter[str] = Counter()
    sizes: Counter[int] = Counter()
    people: set[str] = set()
    groups: Counter[str] = Counter()
    for draft, monitoring in households:
        assert draft.region_code in villages
        domain.check_relations([m.relation for m in draft.members])
        types[draft.type] += 1
        sizes[len(draft.members)] += 1
        if draft.type in domain.MONITORED_TYPES:
            assert monitoring["monitoring_status"] in ("monitored", "eliminated")
            if monitoring["monitoring_status"] == "monitored":
                assert {c.role for c in draft.contacts} == {"town_leader"}
        for m in draft.members:
            parsed = domain.validate_id_number(m.id_number, today=TODAY)
            assert parsed.area_code in ("441881", "441822")
            people.add(parsed.value)
            groups.update(m.special_groups)
    assert len(people) == sum(len(d.members) for d, _ in households)  # all distinct
    assert 0.6 < types["alleviated"] / len(households) < 0.8
    assert types["marginal"] and types["unstable"] and types["sudden_hardship"]
    assert set(sizes) <= set(range(1, 8)) and sizes.most_common(1)[0][0] in (2, 3, 4)
    assert groups["disability"] > groups["major_illness"] > 0
    # The same seed gives the same county.
    again = next(generate(1, seed=11, county="441881", today=TODAY))[0]
    assert again.members[0].id_number == households[0][0].members[0].id_number


def test_the_seed_command_is_the_registrys_own(tmp_path: Path) -> None:
    """`python -m services.registry.seed` runs without the kernel's CLI (which knows no
    service); --export needs no database."""
    out = tmp_path / "export.csv"
    done = subprocess.run(
        [sys.executable, "-m", "services.registry.seed", "--households", "4", "--export", str(out)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "wrote 4 households" in done.stdout
    header, *rows = out.read_text(encoding="utf-8").splitlines()
    assert header.startswith("户编号,行政区划代码,户类型")
    assert len({row.split(",")[0] for row in rows}) == 4
