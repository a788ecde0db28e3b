"""Every rule of the catalogue, firing and not firing: each case changes a clean household
the one way that triggers the rule, and the near miss that must not."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import date
from decimal import Decimal

import pytest

from services.quality import domain as d

TODAY = date(2026, 12, 4)
D = Decimal

HEAD = d.Member("p-head", "h-head", "head", "male", date(1975, 3, 1), labor_capacity="full",
                schooling="none")  # fmt: skip
SPOUSE = d.Member("p-spouse", "h-spouse", "spouse", "female", date(1977, 5, 1),
                  labor_capacity="full", schooling="none")  # fmt: skip
CHILD = d.Member("p-child", "h-child", "child", "male", date(2012, 6, 1), labor_capacity="none",
                 schooling="junior")  # fmt: skip
PARENT = d.Member("p-parent", "h-parent", "parent", "female", date(1950, 1, 1),
                  labor_capacity="none", schooling="none", special_groups=frozenset({"disability"}))  # fmt: skip
INCOME_2025 = d.Income(2025, D("60000"), D("15000"), D("40000"), D("10000"), D("8000"), D("2000"))
INCOME_2024 = d.Income(2024, D("55000"), D("13750"))
ALL_OK = {item: "ok" for item in d.GUARANTEE_ITEMS}
BASE = d.Household(
    household_id="hh-1",
    region_code="441881101001",
    type="alleviated",
    members=(HEAD, SPOUSE, CHILD, PARENT),
    incomes=(INCOME_2025, INCOME_2024),
    guarantees=ALL_OK,
    risk=d.Risk("none", frozenset(), date(2026, 11, 1)),
    visits=(date(2026, 11, 15),),
)
MON = replace(
    BASE,
    type="unstable",
    monitoring_status="monitored",
    monitoring_since=date(2026, 3, 1),
    contact_roles=frozenset({"town_leader"}),
    decisions=(d.Decision("monitoring_started", date(2026, 3, 1), None, frozenset({"illness"})),),
    guarantees_verified_on={item: date(2026, 6, 1) for item in d.GUARANTEE_ITEMS},
    risk=d.Risk("watch", frozenset({"illness"}), date(2026, 11, 1)),
    measures=(d.AidMeasure("health", date(2026, 3, 15), date(2026, 12, 31), D("3000")),),
)
ELIMINATED = replace(
    MON,
    monitoring_status="eliminated",
    monitoring_ended_on=date(2026, 10, 1),
    elimination_method="assisted",
    decisions=(*MON.decisions, d.Decision("risk_eliminated", date(2026, 10, 1), "assisted")),
    risk=d.Risk("none", frozenset(), date(2026, 11, 1)),
)

Change = Callable[[d.Household], d.Household]


def member(h: d.Household, person_id: str, **changes: object) -> d.Household:
    return replace(
        h,
        members=tuple(replace(m, **changes) if m.person_id == person_id else m for m in h.members),  # type: ignore[arg-type]
    )


def add(h: d.Household, *extra: d.Member) -> d.Household:
    return replace(h, members=(*h.members, *extra))


def income(h: d.Household, **changes: object) -> d.Household:
    return replace(h, incomes=(replace(h.incomes[0], **changes), *h.incomes[1:]))  # type: ignore[arg-type]


def guarantees(h: d.Household, **changes: str) -> d.Household:
    return replace(h, guarantees={**h.guarantees, **changes})


def factors(h: d.Household, *codes: str, level: str = "watch") -> d.Household:
    return replace(h, risk=d.Risk(level, frozenset(codes), date(2026, 11, 1)))


def record(source: str, id_hash: str, amount: str = "0", on: date = date(2026, 10, 1),
           **kw: object) -> d.FeedRecord:  # fmt: skip
    return d.FeedRecord(source, f"{source}-{id_hash}-{on}", id_hash, on, D(amount), **kw)  # type: ignore[arg-type]


def records(h: d.Household, *recs: d.FeedRecord) -> d.Household:
    return replace(h, records=recs)


GONE = d.Departed("h-gone", date(2026, 5, 1), "死亡")
NO_PARTS = {"wage": None, "business": None, "transfer": None, "property_income": None}
# A 16-year-old out of school: not under 16, not of compulsory-school age.
YOUTH = d.Member("p-youth", "h-youth", "child", "male", date(2010, 1, 1), labor_capacity="full",
                 schooling="none")  # fmt: skip
COLLEGE = d.Member("p-college", "h-college", "child", "female", date(2008, 1, 1),
                   labor_capacity="full", schooling="college")  # fmt: skip

INDUSTRY = d.AidMeasure("industry", date(2026, 1, 1), date(2026, 12, 31), D("5000"))
JOB = d.AidMeasure("public_welfare_job", date(2026, 1, 1), date(2026, 12, 31), D("6000"))
SCHOOL_AID = d.AidMeasure("education", date(2026, 9, 1), date(2027, 6, 30), D("1500"))

CASES: list[tuple[str, Change, Change]] = [
    # identity and family structure
    ("ID001", lambda h: member(h, "p-head", relation="other"), lambda h: h),
    ("ID002", lambda h: member(h, "p-spouse", relation="head"), lambda h: h),
    ("ID003", lambda h: member(h, "p-spouse", sex="male"), lambda h: h),
    ("ID004", lambda h: add(h, replace(SPOUSE, person_id="p-s2", id_hash="h-s2")), lambda h: h),
    ("ID005", lambda h: member(h, "p-spouse", birth_date=date(2008, 1, 1)),
     lambda h: member(h, "p-spouse", birth_date=date(2006, 1, 1))),
    ("ID006", lambda h: member(h, "p-head", birth_date=date(2006, 1, 1)),
     lambda h: member(h, "p-head", birth_date=date(2004, 1, 1))),
    ("ID007", lambda h: member(h, "p-child", birth_date=date(1970, 1, 1)),
     lambda h: member(h, "p-child", birth_date=date(1995, 1, 1))),
    ("ID008", lambda h: member(h, "p-child", birth_date=date(1985, 1, 1)),
     lambda h: member(h, "p-child", birth_date=date(1990, 3, 1))),
    ("ID009", lambda h: member(h, "p-parent", birth_date=date(1980, 1, 1)), lambda h: h),
    ("ID010", lambda h: member(h, "p-parent", birth_date=date(1965, 1, 1)),
     lambda h: member(h, "p-parent", birth_date=date(1960, 3, 1))),
    ("ID011", lambda h: replace(h, shared_id_hashes={"h-child": ("hh-2",)}), lambda h: h),
    ("ID012", lambda h: add(h, replace(CHILD, person_id="p-copy")),
     lambda h: add(h, replace(CHILD, person_id="p-twin", id_hash="h-twin"))),
    ("ID013", lambda h: member(h, "p-child", birth_date=date(2027, 1, 1)), lambda h: h),
    ("ID014", lambda h: member(h, "p-parent", birth_date=date(1910, 1, 1)),
     lambda h: member(h, "p-parent", birth_date=date(1920, 1, 1))),
    ("ID015", lambda h: replace(h, members=()), lambda h: h),
    ("ID016", lambda h: member(h, "p-head", birth_date=date(2012, 1, 1)),
     lambda h: member(h, "p-head", birth_date=date(2010, 1, 1))),
    ("ID017", lambda h: add(h, *(replace(PARENT, person_id=f"p-{i}", id_hash=f"h-{i}",
                                         birth_date=date(1950, 1, 1)) for i in (1, 2))),
     lambda h: add(h, replace(PARENT, person_id="p-1", id_hash="h-1"))),
    ("ID018",
     lambda h: records(replace(h, departed=(GONE,)), record("civil_affairs", "h-gone", "300",
                       date(2026, 6, 1), kind="dibao", status="granted")),
     lambda h: records(replace(h, departed=(GONE,)), record("civil_affairs", "h-gone", "300",
                       date(2026, 4, 1), kind="dibao", status="granted"))),
    ("ID019",
     lambda h: records(replace(h, departed=(GONE,)), record("medical", "h-gone", "100",
                       date(2026, 6, 1))),
     lambda h: records(replace(h, departed=(GONE,)), record("medical", "h-gone", "100",
                       date(2026, 4, 1)))),
    # labour and schooling
    ("LS001", lambda h: member(h, "p-child", labor_capacity="full"), lambda h: add(h, YOUTH)),
    ("LS002", lambda h: member(h, "p-child", labor_capacity="partial"), lambda h: add(h, YOUTH)),
    ("LS003", lambda h: add(h, COLLEGE), lambda h: add(h, replace(COLLEGE, labor_capacity="none"))),
    ("LS004", lambda h: member(h, "p-parent", labor_capacity="full", special_groups=frozenset()),
     lambda h: member(h, "p-parent", labor_capacity="full", special_groups=frozenset(),
                      birth_date=date(1962, 1, 1))),
    ("LS005", lambda h: member(h, "p-child", schooling=None), lambda h: h),
    ("LS006", lambda h: records(h, record("education", "h-child", enrolled=False)),
     lambda h: records(h, record("education", "h-child", enrolled=True))),
    ("LS007",
     lambda h: records(member(h, "p-child", schooling="out_of_school"),
                       record("education", "h-child", enrolled=True)),
     lambda h: records(h, record("education", "h-child", enrolled=True))),
    ("LS008", lambda h: member(h, "p-child", schooling="out_of_school"),
     lambda h: guarantees(member(h, "p-child", schooling="out_of_school"),
                          compulsory_education="prominent_issue")),
    ("LS009", lambda h: member(h, "p-head", special_groups=frozenset({"disability"})),
     lambda h: member(h, "p-head", special_groups=frozenset({"disability"}),
                      labor_capacity="partial")),
    ("LS010", lambda h: member(h, "p-head", schooling="primary"), lambda h: h),
    ("LS011", lambda h: member(h, "p-spouse", labor_capacity="none", health_status="healthy"),
     lambda h: member(h, "p-spouse", labor_capacity="none", health_status="chronic_illness")),
    ("LS012", lambda h: member(h, "p-head", health_status="healthy", labor_skill="lost"),
     lambda h: member(h, "p-head", health_status="serious_illness", labor_skill="lost")),
    ("LS013", lambda h: member(h, "p-parent", work_status="out_of_province"),
     lambda h: member(h, "p-parent", work_status="not_working")),
    ("LS014", lambda h: member(h, "p-head", work_status="in_county", work_months=0),
     lambda h: member(h, "p-head", work_status="in_county", work_months=8)),
    # insurance and guarantees
    ("GU001", lambda h: member(h, "p-child", medical_insurance=False), lambda h: h),
    ("GU002",
     lambda h: records(member(h, "p-child", medical_insurance=False),
                       record("medical", "h-child", "100", insurance_paid=D("500"))),
     lambda h: records(member(h, "p-child", medical_insurance=False),
                       record("medical", "h-child", "100", insurance_paid=D("0")))),
    ("GU003", lambda h: member(h, "p-child", medical_insurance=False),
     lambda h: guarantees(member(h, "p-child", medical_insurance=False),
                          basic_medical="prominent_issue")),
    ("GU004", lambda h: guarantees(h, basic_medical="prominent_issue"),
     lambda h: guarantees(member(h, "p-child", medical_insurance=False),
                          basic_medical="prominent_issue")),
    ("GU005", lambda h: guarantees(h, housing="prominent_issue"),
     lambda h: factors(guarantees(h, housing="prominent_issue"), "housing")),
    ("GU006", lambda h: factors(h, "housing"),
     lambda h: factors(guarantees(h, housing="possible_issue"), "housing")),
    ("GU007", lambda h: guarantees(h, drinking_water="possible_issue"),
     lambda h: factors(guarantees(h, drinking_water="possible_issue"), "drinking_water")),
    ("GU008", lambda h: factors(h, "drinking_water"),
     lambda h: factors(guarantees(h, drinking_water="prominent_issue"), "drinking_water")),
    ("GU009", lambda h: guarantees(h, compulsory_education="prominent_issue"),
     lambda h: factors(guarantees(h, compulsory_education="prominent_issue"),
                       "compulsory_education")),
    ("GU010", lambda h: guarantees(h, basic_medical="possible_issue"),
     lambda h: factors(guarantees(h, basic_medical="possible_issue"), "basic_medical")),
    ("GU011", lambda h: records(h, record("disaster", "h-head", "500", housing_damaged=True)),
     lambda h: records(h, record("disaster", "h-head", "500", housing_damaged=False))),
    ("GU012",
     lambda h: replace(MON, guarantees={k: v for k, v in ALL_OK.items() if k != "housing"}),
     lambda h: MON),
    ("GU013",
     lambda h: replace(MON, guarantees_verified_on={**MON.guarantees_verified_on,
                                                   "housing": date(2025, 1, 1)}),
     lambda h: MON),
    ("GU014", lambda h: factors(guarantees(h, food="prominent_issue"), "other"),
     lambda h: factors(guarantees(h, food="prominent_issue"), "other", level="at_risk")),
    ("GU015", lambda h: member(h, "p-spouse", pension_insurance=False),
     lambda h: member(h, "p-child", pension_insurance=False)),
    ("GU016", lambda h: member(h, "p-head", critical_illness_insurance=False),
     lambda h: member(h, "p-head", critical_illness_insurance=False, medical_insurance=False)),
    # income
    ("IN001", lambda h: replace(h, incomes=(INCOME_2024,)), lambda h: h),
    ("IN002", lambda h: income(h, wage=D("30000")), lambda h: income(h, wage=D("40000.50"))),
    ("IN003", lambda h: income(h, per_capita=D("12000")),
     lambda h: income(h, per_capita=D("15000.40"))),
    ("IN004", lambda h: income(h, total=D("-100"), per_capita=D("-25"), **NO_PARTS),
     lambda h: income(h, total=D("0"), per_capita=D("0"), **NO_PARTS)),
    ("IN005", lambda h: income(h, transfer=D("-10"), business=D("10010")),
     lambda h: income(h, business=D("-10"), wage=D("50010"))),
    ("IN006", lambda h: income(h, total=D("1000000"), per_capita=D("250000"), **NO_PARTS),
     lambda h: income(h, total=D("800000"), per_capita=D("200000"), **NO_PARTS)),
    ("IN007", lambda h: income(h, total=D("20000"), per_capita=D("5000"), **NO_PARTS),
     lambda h: factors(income(h, total=D("20000"), per_capita=D("5000"), **NO_PARTS),
                       "low_income")),
    ("IN008", lambda h: income(h, total=D("120000"), per_capita=D("30000"), **NO_PARTS),
     lambda h: income(h, total=D("100000"), per_capita=D("25000"), **NO_PARTS)),
    ("IN009", lambda h: income(h, total=D("20000"), per_capita=D("5000"), **NO_PARTS),
     lambda h: factors(income(h, total=D("20000"), per_capita=D("5000"), **NO_PARTS),
                       "income_drop")),
    ("IN010", lambda h: income(h, total=D("0"), per_capita=D("0"), **NO_PARTS),
     lambda h: member(member(income(h, total=D("0"), per_capita=D("0"), **NO_PARTS), "p-head",
                             labor_capacity="none"), "p-spouse", labor_capacity="partial")),
    ("IN011", lambda h: replace(h, incomes=(replace(INCOME_2025, year=2027), *h.incomes)),
     lambda h: h),
    ("IN012", lambda h: replace(h, incomes=(INCOME_2025, INCOME_2025, INCOME_2024)), lambda h: h),
    ("IN013", lambda h: income(MON, **NO_PARTS), lambda h: MON),
    # monitoring and procedure
    ("PR001", lambda h: replace(MON, decisions=()), lambda h: MON),
    ("PR002", lambda h: replace(ELIMINATED, monitoring_ended_on=date(2026, 6, 1)),
     lambda h: ELIMINATED),
    ("PR003", lambda h: income(ELIMINATED, total=D("20000"), per_capita=D("5000"), **NO_PARTS),
     lambda h: ELIMINATED),
    ("PR004",
     lambda h: income(replace(ELIMINATED, members=tuple(replace(m, labor_capacity="none")
                                                        for m in BASE.members)), transfer=None),
     lambda h: replace(ELIMINATED, members=tuple(replace(m, labor_capacity="none")
                                                 for m in BASE.members))),
    ("PR005",
     lambda h: replace(h, risk=d.Risk("at_risk", frozenset({"illness"}), date(2026, 11, 1),
                                      date(2026, 10, 1))),
     lambda h: replace(h, risk=d.Risk("at_risk", frozenset({"illness"}), date(2026, 11, 1),
                                      date(2026, 10, 1)),
                       tasks=(d.Task("verification", "done", date(2026, 10, 2),
                                     date(2026, 10, 9)),))),
    ("PR006", lambda h: replace(h, tasks=(d.Task("verification", "open", date(2026, 10, 20),
                                                 date(2026, 11, 1)),)),
     lambda h: replace(h, tasks=(d.Task("verification", "done", date(2026, 10, 20),
                                        date(2026, 11, 1)),))),
    ("PR007", lambda h: replace(MON, type="alleviated"), lambda h: MON),
    ("PR008", lambda h: replace(MON, monitoring_since=None), lambda h: MON),
    ("PR009", lambda h: replace(MON, contact_roles=frozenset()), lambda h: MON),
    ("PR010", lambda h: replace(h, type="marginal"),
     lambda h: replace(h, type="marginal", contact_roles=frozenset({"town_cadre"}))),
    ("PR011", lambda h: replace(ELIMINATED, elimination_method=None), lambda h: ELIMINATED),
    ("PR012",
     lambda h: replace(ELIMINATED, risk=d.Risk("at_risk", frozenset({"illness"}),
                                               date(2026, 11, 1), date(2026, 9, 1))),
     lambda h: replace(ELIMINATED, risk=d.Risk("at_risk", frozenset({"illness"}),
                                               date(2026, 11, 10), date(2026, 11, 10)))),
    ("PR013", lambda h: replace(ELIMINATED, monitoring_ended_on=date(2026, 2, 1)),
     lambda h: ELIMINATED),
    ("PR014",
     lambda h: replace(MON, decisions=(d.Decision("monitoring_started", date(2026, 3, 1)),)),
     lambda h: MON),
    ("PR015", lambda h: factors(MON, level="none"),
     lambda h: replace(factors(MON, level="none"), monitoring_since=date(2026, 9, 1),
                       decisions=(d.Decision("monitoring_started", date(2026, 9, 1), None,
                                             frozenset({"illness"})),))),
    ("PR016",
     lambda h: replace(MON, decisions=(*MON.decisions,
                                       d.Decision("risk_eliminated", date(2026, 11, 1)))),
     lambda h: replace(MON, decisions=(*MON.decisions, d.Decision("risk_eliminated", TODAY)))),
    ("PR017",
     lambda h: replace(h, decisions=(d.Decision("monitoring_started", date(2026, 11, 1), None,
                                                frozenset({"illness"})),)),
     lambda h: MON),
    ("PR018", lambda h: replace(h, visits=()), lambda h: replace(h, type="ordinary", visits=())),
    # measures and funds
    ("MF001", lambda h: replace(h, type="ordinary", measures=(INDUSTRY,)),
     lambda h: replace(h, measures=(INDUSTRY,))),
    ("MF002",
     lambda h: replace(h, measures=(JOB,), members=tuple(replace(m, labor_capacity="none")
                                                         for m in h.members)),
     lambda h: replace(h, measures=(JOB,))),
    ("MF003", lambda h: replace(h, measures=(SCHOOL_AID,), members=(HEAD, SPOUSE, PARENT)),
     lambda h: replace(h, measures=(SCHOOL_AID,))),
    ("MF004", lambda h: replace(h, type="ordinary", grants=(d.Grant(D("500"), date(2026, 10, 1)),)),
     lambda h: replace(h, grants=(d.Grant(D("500"), date(2026, 10, 1)),))),
    ("MF005",
     lambda h: replace(h, grants=(d.Grant(D("20000"), date(2026, 10, 10)),
                                  d.Grant(D("15000"), date(2026, 11, 10)))),
     lambda h: replace(h, grants=(d.Grant(D("20000"), date(2026, 10, 10)),
                                  d.Grant(D("15000"), date(2026, 7, 10))))),
    ("MF006", lambda h: replace(MON, measures=()), lambda h: MON),
    # department data against the register
    ("DE001",
     lambda h: records(income(h, transfer=D("0"), wage=D("48000")),
                       record("civil_affairs", "h-head", "500", kind="dibao", status="granted")),
     lambda h: records(h, record("civil_affairs", "h-head", "500", kind="dibao",
                                 status="granted"))),
    ("DE002", lambda h: records(h, record("medical", "h-parent", "40000")),
     lambda h: records(h, record("medical", "h-parent", "20000"))),
    ("DE003", lambda h: records(h, record("disaster", "h-head", "35000")),
     lambda h: records(h, record("disaster", "h-head", "1000"))),
    ("DE004", lambda h: records(h, record("education", "h-child", "31000", enrolled=True)),
     lambda h: records(h, record("education", "h-child", "1000", enrolled=True))),
    ("DE005",
     lambda h: records(h, record("civil_affairs", "h-head", "100", kind="disability_subsidy",
                                 status="granted")),
     lambda h: records(h, record("civil_affairs", "h-parent", "100", kind="disability_subsidy",
                                 status="granted"))),
    ("DE006",
     lambda h: records(h, record("civil_affairs", "h-head", "600", kind="tekun",
                                 status="granted")),
     lambda h: records(h, record("civil_affairs", "h-parent", "600", kind="tekun",
                                 status="granted"))),
    ("DE007",
     lambda h: records(h, record("medical", "h-head", "100", total_cost=D("1000"),
                                 insurance_paid=D("500"), assistance_paid=D("0"))),
     lambda h: records(h, record("medical", "h-head", "500", total_cost=D("1000"),
                                 insurance_paid=D("500"), assistance_paid=D("0")))),
    ("DE008",
     lambda h: records(member(h, "p-child", medical_insurance=False),
                       record("medical", "h-child", "200")),
     lambda h: factors(records(member(h, "p-child", medical_insurance=False),
                               record("medical", "h-child", "200")), "basic_medical")),
]  # fmt: skip


def codes(h: d.Household) -> set[str]:
    return {f.rule.code for f in d.check(h, TODAY)}


def test_the_clean_households_fire_nothing() -> None:
    assert codes(BASE) == set()
    assert codes(MON) == set()
    assert codes(ELIMINATED) == set()


def test_every_rule_has_a_case_and_the_catalogue_is_large_enough() -> None:
    assert sorted(c for c, _, _ in CASES) == sorted(d.RULES_BY_CODE)
    assert len(d.RULES) >= 60
    assert {r.category for r in d.RULES} == set(d.CATEGORY_LABELS)


@pytest.mark.parametrize(("code", "fire", "miss"), CASES, ids=[c for c, _, _ in CASES])
def test_rule_fires_and_does_not(code: str, fire: Change, miss: Change) -> None:
    assert code in codes(fire(BASE)), f"{code} should fire"
    assert code not in codes(miss(BASE)), f"{code} should not fire"


@pytest.mark.parametrize("code", [c for c, _, _ in CASES])
def test_every_message_fills_from_its_evidence(code: str) -> None:
    fire = next(f for c, f, _ in CASES if c == code)
    finding = next(f for f in d.check(fire(BASE), TODAY) if f.rule.code == code)
    assert "{" not in finding.message and finding.rule.fix
    assert "h-" not in str(finding.evidence.get("persons", ""))  # people by relation and age


def test_a_generation_on_the_wrong_side_is_not_also_too_close() -> None:
    """ID007–ID010 share one helper: a child older than the head (or a parent younger) is
    that error alone, not also the too-close warning."""
    older_child = codes(member(BASE, "p-child", birth_date=date(1970, 1, 1)))
    assert "ID007" in older_child and "ID008" not in older_child
    younger_parent = codes(member(BASE, "p-parent", birth_date=date(1980, 1, 1)))
    assert "ID009" in younger_parent and "ID010" not in younger_parent


def test_amounts_are_exact_decimals() -> None:
    # 0.1 + 0.2 parts against a 0.3 total add up exactly (no float drift).
    h = income(BASE, total=D("0.3"), per_capita=D("0.07"), wage=D("0.1"), business=D("0.2"),
               transfer=None, property_income=None)  # fmt: skip
    assert "IN002" not in codes(h)


def test_thresholds_are_configurable() -> None:
    jump = income(BASE, total=D("100000"), per_capita=D("25000"), **NO_PARTS)  # type: ignore[arg-type]
    assert "IN008" not in codes(jump)
    lower = d.Thresholds(income_rise_ratio=D("0.5"))
    assert "IN008" in {f.rule.code for f in d.check(jump, TODAY, lower)}


def test_skipping_rules_by_what_they_need_changes_nothing() -> None:
    """`check` runs only the rules whose `needs` the household has: on every case, running
    every rule finds the same."""
    for _, fire, miss in CASES:
        for h in (fire(BASE), miss(BASE)):
            facts = d.Facts(h, TODAY, d.Thresholds())
            everything = {r.code for r in d.RULES if r.check(facts) is not None}
            assert everything == codes(h)
