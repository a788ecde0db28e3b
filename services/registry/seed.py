"""A demo county: realistic synthetic households in the county's real villages.

`python -m services.registry.seed --households N --seed S` writes them through
registering.py, so every household leaves a HouseholdCreated event through the outbox
(`make run` seeds through deploy/demo.py the same way). With `--export FILE` the same
generator writes a register export (CSV, Chinese headers) for the import benchmark.

What "realistic" means here (rough shares of a Guangdong county's register):
- household sizes 1–7, mostly 3–4; a head, usually a spouse, children, sometimes parents;
- types: ~70 % 脱贫户, ~6 % 脱贫不稳定户, ~8 % 边缘易致贫户, ~2 % 突发严重困难户, the
  rest 一般农户; a fifth of the monitored ones have had their risk removed;
- per-capita net income log-normal around 14k yuan for 脱贫户 and near the 1.5× line
  (~7–8k) for the monitored types, split into wage/business/transfer/property parts;
- special groups: major illness ~2 %, disability ~4 %, disabled without carer, children
  in distress and severe mental disorder below 1 %;
- ID numbers valid (check digit, birth date), issued in the county: 441881 (英德市,
  since 1994) and, for people born before 1994, sometimes 441822 (英德县, 1988–1994).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import random
import time
from collections.abc import Iterator
from datetime import date, timedelta
from typing import IO, Any

from backstop.contracts.policy import CONTACT_ROLE_LABELS, GUARANTEE_ITEMS
from backstop.db import make_engine, make_session_factory, unit_of_work
from backstop.exports import safe_row
from backstop.idnumber import check_digit
from backstop.settings import Settings, get_settings
from services.registry import domain, drafts, registering
from services.registry.county import county_code, load_regions, read_regions
from services.registry.models import (
    AnnualIncome,
    ContactIn,
    HouseholdCreate,
    MemberCreate,
)

SURNAMES = "陈李黄张梁刘林罗何郑谢邓冯朱曾彭吴叶温赖钟邱周潘范卢杨"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰涛明超秀霞平刚桂英华玉兰金凤建国文志海燕红梅春生荣辉"
TYPES = (
    ("alleviated", 0.70),
    ("unstable", 0.06),
    ("marginal", 0.08),
    ("sudden_hardship", 0.02),
    ("ordinary", 0.14),
)
MEDIAN_PER_CAPITA = {
    "alleviated": 14000.0,
    "unstable": 7200.0,
    "marginal": 7800.0,
    "sudden_hardship": 5200.0,
    "ordinary": 18000.0,
}
SIZES = ((1, 0.12), (2, 0.20), (3, 0.22), (4, 0.22), (5, 0.14), (6, 0.07), (7, 0.03))
# Historical code of the same county for people born before 英德市 (1994).
OLDER_AREA_CODES = {"441881": ("441822",)}


def _pick(rng: random.Random, table: tuple[tuple[Any, float], ...]) -> Any:
    roll = rng.random()
    acc = 0.0
    for value, share in table:
        acc += share
        if roll < acc:
            return value
    return table[-1][0]


def make_id_number(area: str, born: date, sequence: int) -> str:
    """A valid 18-character ID number; odd sequence = male, even = female."""
    first17 = f"{area}{born:%Y%m%d}{sequence:03d}"
    return first17 + check_digit(first17)


class Generator:
    """Deterministic for a given seed: the same households, people and numbers."""

    def __init__(self, seed: int, villages: list[str], county: str, today: date) -> None:
        self.rng = random.Random(seed)
        self.seed = seed
        self.villages = villages
        self.county = county
        self.today = today
        self.used: set[str] = set()

    def id_number(self, born: date, sex: str) -> str:
        rng = self.rng
        area = self.county
        if born.year < 1994 and self.county in OLDER_AREA_CODES and rng.random() < 0.25:
            area = rng.choice(OLDER_AREA_CODES[self.county])
        while True:
            seq = rng.randrange(0, 500) * 2 + (1 if sex == "male" else 0)
            value = make_id_number(area, born, seq)
            if value not in self.used:
                self.used.add(value)
                return value

    def born(self, age: int) -> date:
        start = date(self.today.year - age - 1, self.today.month, 1) + timedelta(days=1)
        return start + timedelta(days=self.rng.randrange(0, 360))

    def name(self, surname: str | None = None) -> str:
        rng = self.rng
        given = "".join(rng.choice(GIVEN) for _ in range(rng.choice((1, 2, 2))))
        return (surname or rng.choice(SURNAMES)) + given

    def member(self, relation: str, age: int, sex: str, surname: str | None = None) -> MemberCreate:
        rng = self.rng
        born = self.born(max(0, age))
        groups: list[str] = []
        if rng.random() < 0.02:
            groups.append("major_illness")
        if rng.random() < 0.04:
            groups.append("disability")
            if age >= 60 and rng.random() < 0.15:
                groups.append("disabled_without_carer")
        if age < 18 and rng.random() < 0.01:
            groups.append("child_in_distress")
        if rng.random() < 0.005:
            groups.append("severe_mental_disorder")
        if age < 16 or age > 65:
            labor = "none"
        elif "disability" in groups or "major_illness" in groups:
            labor = rng.choice(("partial", "none"))
        else:
            labor = _pick(rng, (("full", 0.85), ("partial", 0.10), ("none", 0.05)))
        return MemberCreate(
            id_number=self.id_number(born, sex),
            name=self.name(surname),
            relation=relation,
            special_groups=groups,
            labor_capacity=labor,
            schooling=self.schooling(born),
            medical_insurance=rng.random() > 0.015,
        )

    def schooling(self, born: date) -> str | None:
        age = domain.age_on(born, self.today)
        if domain.compulsory_school_age(born, self.today):
            if self.rng.random() < 0.003:
                return "out_of_school"
            return "primary" if age <= 12 else "junior"
        if age < 6:
            return "preschool" if age >= 3 else None
        if age <= 18:
            return self.rng.choice(("senior", "vocational", "none"))
        if age <= 22:
            return self.rng.choice(("college", "none", "none"))
        return None

    def household(self, index: int) -> tuple[HouseholdCreate, dict[str, Any]]:
        """A draft and the monitoring facts (status, since, method) to set on it."""
        rng = self.rng
        size = _pick(rng, SIZES)
        kind = _pick(rng, TYPES)
        head_age = rng.randint(28, 82) if size > 1 else rng.randint(45, 90)
        head_sex = "male" if rng.random() < 0.82 else "female"
        surname = rng.choice(SURNAMES)
        members = [self.member("head", head_age, head_sex, surname)]
        other = "female" if head_sex == "male" else "male"
        if size >= 2 and rng.random() < 0.8:
            members.append(self.member("spouse", head_age + rng.randint(-5, 3), other))
        if head_age < 58 and size - len(members) >= 3 and rng.random() < 0.5:
            members.append(self.member("parent", head_age + rng.randint(22, 32), "male", surname))
        while len(members) < size:
            child_age = head_age - rng.randint(20, 38)
            if child_age < 0:
                members.append(self.member("other", rng.randint(60, 85), "female"))
                continue
            members.append(self.member("child", child_age, rng.choice(("male", "female")), surname))
        median = MEDIAN_PER_CAPITA[kind]
        per_capita = median * rng.lognormvariate(0, 0.35)
        total = round(per_capita * len(members), 0)
        shares = [rng.uniform(0.4, 0.7), rng.uniform(0.05, 0.3), rng.uniform(0.1, 0.3)]
        wage = round(total * shares[0] / (sum(shares) + 0.03), 0)
        business = round(total * shares[1] / (sum(shares) + 0.03), 0)
        transfer = round(total * shares[2] / (sum(shares) + 0.03), 0)
        income = AnnualIncome(
            year=self.today.year - 1,
            wage=wage,
            business=business,
            transfer=transfer,
            property=max(0.0, total - wage - business - transfer),
        )
        village = rng.choice(self.villages)
        guarantees: dict[str, str] = {}
        for item in GUARANTEE_ITEMS:
            roll = rng.random()
            if roll < 0.004 and item in ("housing", "drinking_water"):
                guarantees[item] = "prominent_issue"
            elif roll < 0.03:
                guarantees[item] = "possible_issue"
            else:
                guarantees[item] = "ok"
        monitoring: dict[str, Any] = {"monitoring_status": "none"}
        contacts: list[ContactIn] = []
        if kind in domain.MONITORED_TYPES:
            since = self.today - timedelta(days=rng.randint(30, 900))
            monitoring = {"monitoring_status": "monitored", "monitoring_since": since}
            if rng.random() < 0.2:
                monitoring |= {
                    "monitoring_status": "eliminated",
                    "monitoring_ended_on": since + timedelta(days=rng.randint(90, 365)),
                    "elimination_method": rng.choice(("assisted", "assisted", "natural")),
                    "elimination_reason": "收入稳定超过监测标准",
                }
                if monitoring["monitoring_ended_on"] > self.today:
                    monitoring["monitoring_ended_on"] = self.today
        if monitoring["monitoring_status"] == "monitored":
            contacts.append(ContactIn(role="town_leader", name=self.name(), phone=self.phone()))
        elif kind == "marginal" or (kind == "alleviated" and rng.random() < 0.3):
            contacts.append(ContactIn(role="town_cadre", name=self.name(), phone=self.phone()))
        draft = HouseholdCreate(
            region_code=village,
            type=kind,
            policy_enjoying=kind == "alleviated" and rng.random() < 0.6,
            household_number=f"{village}{self.seed % 1000:03d}{index:07d}",
            annual_income=income,
            members=members,
            guarantees=guarantees,
            contacts=contacts,
        )
        return draft, monitoring

    def phone(self) -> str:
        return f"1{self.rng.choice('3578')}{self.rng.randrange(10**9):09d}"


def generate(
    n: int, seed: int, *, county: str | None = None, today: date | None = None
) -> Iterator[tuple[HouseholdCreate, dict[str, Any]]]:
    county = county or county_code()
    villages = [r.code for r in read_regions(county) if r.level == "village"]
    gen = Generator(seed, villages, county, today or date.today())
    for i in range(n):
        yield gen.household(i)


EXPORT_HEADERS = [
    "户编号", "行政区划代码", "户类型", "是否享受政策", "证件号码", "姓名", "与户主关系",
    "特殊群体", "劳动能力", "在校生状况", "是否参加基本医疗保险", "收入年度",
    "工资性收入", "生产经营性收入", "转移性收入", "财产性收入", "联系人类型", "联系人",
    "联系人电话",
]  # fmt: skip
_TYPE_ZH = {"alleviated": "脱贫户", "unstable": "脱贫不稳定户", "marginal": "边缘易致贫户",
            "sudden_hardship": "突发严重困难户", "ordinary": "一般农户"}  # fmt: skip
_REL_ZH = {"head": "户主", "spouse": "配偶", "child": "之子", "parent": "父亲", "other": "其他"}
_GROUP_ZH = {"major_illness": "重特大疾病", "disability": "残疾", "disabled_without_carer": "失能",
             "child_in_distress": "困境儿童", "severe_mental_disorder": "严重精神障碍"}  # fmt: skip
_LABOR_ZH = {"full": "普通劳动力", "partial": "弱劳动力或半劳动力", "none": "无劳动力"}
_SCHOOL_ZH = {"preschool": "学前教育", "primary": "小学", "junior": "初中", "senior": "高中",
              "vocational": "中职", "college": "大专", "out_of_school": "辍学", "none": "非在校生"}  # fmt: skip


def write_export(out: IO[str], n: int, seed: int) -> int:
    """Write `n` households as a register export (CSV, Chinese headers, one row per
    person); returns the number of rows."""
    writer = csv.writer(out)
    writer.writerow(safe_row(EXPORT_HEADERS))
    rows = 0
    for draft, _ in generate(n, seed):
        income = draft.annual_income
        contact = draft.contacts[0] if draft.contacts else None
        for i, m in enumerate(draft.members):
            head = i == 0
            writer.writerow(safe_row([
                draft.household_number, draft.region_code, _TYPE_ZH[draft.type],
                "是" if draft.policy_enjoying else "否", m.id_number, m.name, _REL_ZH[m.relation],
                "、".join(_GROUP_ZH[g] for g in m.special_groups),
                _LABOR_ZH[m.labor_capacity], _SCHOOL_ZH.get(m.schooling or "", ""),
                "是" if m.medical_insurance else "否",
                income.year if income and head else "",
                income.wage if income and head else "", income.business if income and head else "",
                income.transfer if income and head else "",
                income.property if income and head else "",
                CONTACT_ROLE_LABELS[contact.role] if contact and head else "",
                contact.name if contact and head else "", contact.phone if contact and head else "",
            ]))  # fmt: skip
            rows += 1
    return rows


async def seed_households(
    settings: Settings, n: int, seed: int, *, chunk_size: int = 1000
) -> dict[str, int]:
    """Write `n` generated households through registering.py (outbox events
    included). Idempotent: household numbers depend only on the seed and index."""
    engine = make_engine(settings.db_url, 2)
    sessions = make_session_factory(engine)
    created = existing = 0
    try:
        async with unit_of_work(sessions) as session:
            await load_regions(session)
            villages = await drafts.village_codes(session)
        chunk: list[drafts.PreparedHousehold] = []

        async def flush() -> None:
            nonlocal created, existing
            async with unit_of_work(sessions) as session:
                result = await registering.insert_households(session, chunk, actor="seed")
            created += len(result.created)
            existing += len(result.existing)
            chunk.clear()

        for draft, monitoring in generate(n, seed):
            prepared = drafts.prepare_household(draft, villages=villages, pii_key=settings.pii_key)
            prepared.household.update(monitoring)
            chunk.append(prepared)
            if len(chunk) >= chunk_size:
                await flush()
        if chunk:
            await flush()
    finally:
        await engine.dispose()
    return {"created": created, "existing": existing}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m services.registry.seed",
        description="generate the demo county's households (or a register export)",
    )
    parser.add_argument("--households", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=20261128)
    parser.add_argument("--export", help="write a CSV register export here instead")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    if args.export:
        with open(args.export, "w", encoding="utf-8", newline="") as f:
            rows = write_export(f, args.households, args.seed)
        print(f"wrote {args.households} households ({rows} rows) to {args.export}")
        return
    result = asyncio.run(seed_households(get_settings("registry"), args.households, args.seed))
    print(
        f"seeded county {county_code()}: {result['created']} households created, "
        f"{result['existing']} already there, in {time.perf_counter() - started:.1f}s"
    )


if __name__ == "__main__":
    main()
