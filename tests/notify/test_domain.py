"""The pure rules of notify: schedules, contact lists, messages, backoff, signatures."""

from __future__ import annotations

from datetime import date, datetime

from services.notify import domain
from services.notify.domain import TZ, ScheduleRule


def at(y: int, m: int, d: int, h: int = 12) -> datetime:
    return datetime(y, m, d, h, tzinfo=TZ)


MONTHLY = ScheduleRule(kind="monthly_contacts", send_hour=8)
MEDICAL = ScheduleRule(kind="feed_due", source="medical", due_day=5, lead_days=3, send_hour=9)
EDUCATION = ScheduleRule(kind="feed_due", source="education", months=(3, 10), lead_days=7)


def test_monthly_contacts_fire_from_the_first_at_send_hour_until_month_end() -> None:
    assert domain.current_occurrence("m", MONTHLY, at(2026, 12, 1, 7)) is None
    occ = domain.current_occurrence("m", MONTHLY, at(2026, 12, 1, 8))
    assert occ is not None and occ.key == "m:2026-12"
    # Caught up later in the month after downtime: the same occurrence (claimed once).
    late = domain.current_occurrence("m", MONTHLY, at(2026, 12, 31, 23))
    assert late is not None and late.key == "m:2026-12"


def test_shanghai_time_decides_the_month() -> None:
    # 2026-11-30 17:00 UTC is already 1 December 01:00 in Shanghai, before send hour.
    assert (
        domain.current_occurrence("m", MONTHLY, datetime.fromisoformat("2026-11-30T17:00:00+00:00"))
        is None
    )
    occ = domain.current_occurrence(
        "m", MONTHLY, datetime.fromisoformat("2026-12-01T00:30:00+00:00")
    )
    assert occ is not None and occ.period == "2026-12"


def test_feed_due_fires_lead_days_before_the_5th_until_the_due_day_ends() -> None:
    assert domain.current_occurrence("f", MEDICAL, at(2026, 12, 1)) is None
    occ = domain.current_occurrence("f", MEDICAL, at(2026, 12, 2, 9))
    assert occ is not None and occ.due_on == date(2026, 12, 5) and occ.key == "f:2026-12"
    assert domain.current_occurrence("f", MEDICAL, at(2026, 12, 5, 23)) is not None
    assert domain.current_occurrence("f", MEDICAL, at(2026, 12, 6, 0)) is None


def test_education_is_due_at_the_end_of_march_and_october() -> None:
    assert domain.current_occurrence("e", EDUCATION, at(2027, 3, 23)) is None
    occ = domain.current_occurrence("e", EDUCATION, at(2027, 3, 24, 9))
    assert occ is not None and occ.due_on == date(2027, 3, 31)
    occ = domain.current_occurrence("e", EDUCATION, at(2026, 10, 30))
    assert occ is not None and occ.due_on == date(2026, 10, 31) and occ.period == "2026-10"
    assert domain.current_occurrence("e", EDUCATION, at(2026, 11, 15)) is None


def test_a_lead_time_may_cross_into_the_previous_month() -> None:
    rule = ScheduleRule(kind="feed_due", source="medical", due_day=5, lead_days=10, send_hour=0)
    occ = domain.current_occurrence("f", rule, at(2026, 11, 26))
    assert occ is not None and occ.due_on == date(2026, 12, 5)


def household(hid: str, type_: str, status: str, *phones: str) -> domain.HouseholdView:
    return domain.HouseholdView(
        household_id=hid,
        region_code="441881101001",
        type=type_,
        monitoring_status=status,
        contacts=tuple(
            domain.ContactView(role="cadre", name=f"联系人{p}", phone=p) for p in phones
        ),
    )


def test_monthly_lists_follow_the_seeds_households_by_contact() -> None:
    # Seed 二(三): 每月至少开展一次走访…对脱贫户（含监测户）、边缘户、"双骤户"…入户走访
    lists = domain.monthly_contact_lists(
        [
            household("a", "marginal", "none", "138 0000 0001"),
            household("b", "alleviated", "monitored", "13800000001", "13800000002"),
            household("c", "alleviated", "none", "13800000001"),  # 脱贫户: listed
            household("d", "marginal", "eliminated", "13800000002"),  # risk cleared
            household("e", "sudden_hardship", "none"),  # no contact: no list
            household("f", "ordinary", "none", "13800000002"),  # not named by the seed
        ]
    )
    assert [(c.phone, [h.household_id for h in c.households]) for c in lists] == [
        ("13800000001", ["a", "b", "c"]),
        ("13800000002", ["b"]),
    ]
    message = domain.monthly_contacts_message(lists[0], "2026年12月")
    assert "3户" in message.body and "边缘易致贫户" in message.body


def test_messages_never_carry_a_full_id_number() -> None:
    message = domain.task_opened(
        kind="verification",
        household="农户12345678",
        region_code="441881101001",
        reason="户主 44188119800101123X 大病支出",
        due_on=date(2026, 12, 10),
    )
    assert "44188119800101123X" not in message.body
    assert "441881********123X" in message.body
    assert message.body.startswith("【防返贫监测】")


def test_recipient_keys() -> None:
    assert str(domain.assignee_key("town", "441881101")) == "town:441881101"
    assert str(domain.town_leader_key("441881101001")) == "town_leader:441881101"
    assert str(domain.contact_key("138-0000 0001")) == "contact:13800000001"
    assert domain.RecipientKey.parse("department:medical") == domain.department_key("medical")


def test_backoff_doubles_up_to_a_cap() -> None:
    delays = [domain.retry_delay(n, base_s=10, max_s=60) for n in range(1, 6)]
    assert delays == [10, 20, 40, 60, 60]


def test_signature_is_hmac_sha256_of_the_raw_body() -> None:
    import hashlib
    import hmac

    body = b'{"id":"1"}'
    expected = hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert domain.sign("s3cret", body) == f"sha256={expected}"
    assert domain.signature_matches("s3cret", body, f"sha256={expected}")
    assert not domain.signature_matches("other", body, f"sha256={expected}")


def test_subscription_matching_by_type_and_region_prefix() -> None:
    types = ["backstop.risk.alert.raised.v1"]
    assert domain.subscription_matches(
        event_types=types, region_prefix="441881", event_type=types[0], region_code="441881101001"
    )
    assert not domain.subscription_matches(
        event_types=types, region_prefix="441882", event_type=types[0], region_code="441881101001"
    )
    assert not domain.subscription_matches(
        event_types=types,
        region_prefix="",
        event_type="backstop.risk.alert.cleared.v1",
        region_code="4",
    )


def test_common_prefix() -> None:
    assert domain.common_prefix(["441881101001", "441881101002", "441881102001"]) == "44188110"
    assert domain.common_prefix([]) == ""


def test_key_contact_phones_are_masked_in_events() -> None:
    assert domain.public_recipient("contact:13800000001") == "contact:138****0001"
    assert domain.public_recipient("town:441881101") == "town:441881101"
    assert domain.public_dedup_key("monitoring_started:c1:13800000001") == (
        "monitoring_started:c1:138****0001"
    )
    assert (
        domain.public_dedup_key("task.opened:t1:town:441881101") == "task.opened:t1:town:441881101"
    )


def test_internal_callback_addresses() -> None:
    assert domain.internal_address("county.example", ["93.184.216.34"]) is None
    assert domain.internal_address("x", ["127.0.0.1"]) == "127.0.0.1"
    assert domain.internal_address("x", ["93.184.216.34", "10.0.0.7"]) == "10.0.0.7"
    assert domain.internal_address("x", ["169.254.169.254"]) == "169.254.169.254"
    assert domain.internal_address("x", ["::ffff:192.168.1.1"]) == "::ffff:192.168.1.1"
    assert domain.internal_address("x", ["fe80::1%eth0"]) == "fe80::1%eth0"
    assert domain.internal_address("LOCALHOST.", []) == "LOCALHOST."


def test_households_no_list_can_carry_are_reported_per_town() -> None:
    # Seed 三(三)2: 联系人…每月要开展入户走访，或通过电话、短信、微信等方式…加强联系 —
    # a household with no 重点联系人, or no phone to reach one, is reported, not skipped.
    def view(hid: str, type_: str, status: str, *contacts: tuple[str, str]) -> domain.HouseholdView:
        return domain.HouseholdView(
            household_id=hid, region_code="441881101001", type=type_, monitoring_status=status,
            contacts=tuple(domain.ContactView(role=r, name="联系人", phone=p) for r, p in contacts),
        )  # fmt: skip

    towns = domain.unreachable_households(
        [
            view("a", "marginal", "none", ("work_team", "13800000001")),  # reachable
            view("b", "marginal", "none"),  # no contact at all
            view("c", "ordinary", "monitored", ("village_cadre", "13800000002")),  # wrong role
            view("d", "marginal", "none", ("village_cadre", "")),  # no phone to text
            view("e", "ordinary", "none"),  # not due
        ]
    )
    assert len(towns) == 1 and towns[0].town_code == "441881101"
    assert [h.household_id for h in towns[0].no_key_contact] == ["b", "c"]
    assert [h.household_id for h in towns[0].no_phone] == ["d"]
    message = domain.unreachable_message(towns[0], "2026年12月", escalated=True)
    assert message.title.startswith("督办") and "未落实重点联系人2户" in message.body
