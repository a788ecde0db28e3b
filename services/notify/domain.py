"""Pure rules of the notify service: who is reminded of what, in which words, and when.

No FastAPI, SQL or Kafka here. Everything is plain data in, decisions out, so the rules
can be read next to the seed (重点联系机制, 数据交换机制, 压实责任) and tested with asserts.
"""

from __future__ import annotations

import calendar
import hashlib
import hmac
import ipaddress
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from backstop.contracts.policy import contact_missing, due_for_monthly_contact
from backstop.idnumber import mask_phone, normalize_phone

TZ = ZoneInfo("Asia/Shanghai")

# The departments that push feeds (数据交换机制) and the county office (扶贫办).
DEPARTMENTS: dict[str, str] = {
    "medical": "医保局",
    "disaster": "应急管理局",
    "civil_affairs": "民政局",
    "education": "教育局",
}
FEED_LABELS: dict[str, str] = {
    "medical": "因病支出达到监测预警线的农户情况（医疗费用数据）",
    "disaster": "因灾支出达到监测预警线的农户情况（灾情数据）",
    "civil_affairs": "民政救助数据（低保、特困、临时救助、残疾人补贴）",
    "education": "因学支出达到监测预警线的农户情况（教育费用数据）",
}
COUNTY_OFFICE = "扶贫办"
COUNTY_OFFICE_CODE = "county"

HOUSEHOLD_TYPES: dict[str, str] = {
    "alleviated": "脱贫户",
    "unstable": "脱贫不稳定户",
    "marginal": "边缘易致贫户",
    "sudden_hardship": "突发严重困难户",
    "ordinary": "一般农户",
}

# Who may be in the recipient directory. Codes: town/town_leader = 9-digit town code,
# village = 12-digit village code, insurer = the code tasks use, department = the feed
# source ("medical", ...), county_office = "county", contact = the contact's phone.
RECIPIENT_KINDS = (
    "town",
    "town_leader",
    "village",
    "insurer",
    "department",
    "county_office",
    "contact",
)
CHANNELS = ("local", "sms", "wecom", "email", "webhook")

# Statuses of a reminder; all but "pending" are final.
PENDING, SENT, FAILED, CANCELLED = "pending", "sent", "failed", "cancelled"
REMINDER_STATUSES = (PENDING, SENT, FAILED, CANCELLED)

# An 18-character resident ID anywhere in free text (reasons and notes come from people).
_ID_NUMBER = re.compile(r"(?<![0-9])([1-9][0-9]{5})[0-9]{8}([0-9]{3}[0-9Xx])(?![0-9A-Za-z])")


# ---------------------------------------------------------------- recipients


@dataclass(frozen=True)
class RecipientKey:
    kind: str
    code: str

    def __str__(self) -> str:
        return f"{self.kind}:{self.code}"

    @classmethod
    def parse(cls, text: str) -> RecipientKey:
        kind, sep, code = text.partition(":")
        if not sep or kind not in RECIPIENT_KINDS or not code:
            raise ValueError(f"a recipient is <kind>:<code> with kind one of {RECIPIENT_KINDS}")
        return cls(kind, code)


def town_code_of(region_code: str) -> str:
    """The 9-digit town (乡镇) code of a village or town code."""
    return region_code[:9]


def assignee_key(assignee_type: str, code: str) -> RecipientKey:
    """A task's assignee ({type: town|village|insurer, code}) as a directory key."""
    if assignee_type == "town":
        return RecipientKey("town", town_code_of(code))
    return RecipientKey(assignee_type, code)


def town_leader_key(region_code: str) -> RecipientKey:
    """The town's responsible leader (镇级负主体责任), who hears of escalations."""
    return RecipientKey("town_leader", town_code_of(region_code))


def town_office_key(region_code: str) -> RecipientKey:
    return RecipientKey("town", town_code_of(region_code))


def department_key(source: str) -> RecipientKey:
    return RecipientKey("department", source)


def village_key(region_code: str) -> RecipientKey:
    return RecipientKey("village", region_code[:12])


def county_office_key() -> RecipientKey:
    return RecipientKey("county_office", COUNTY_OFFICE_CODE)


def contact_key(phone: str) -> RecipientKey:
    return RecipientKey("contact", normalize_phone(phone))


def public_dedup_key(key: str) -> str:
    """A reminder's dedup key fit for events and logs: a key contact's phone (its last
    part, for reminders to contacts) is masked."""
    head, sep, last = key.rpartition(":")
    # Mobile 1xxxxxxxxxx or landline 0…: region codes (town, village) never start so.
    phone = last.isdigit() and ((last[:1] == "1" and len(last) == 11) or last[:1] == "0")
    return f"{head}{sep}{mask_phone(last)}" if sep and phone else key


def public_recipient(recipient: str) -> str:
    """A recipient key fit for events and logs: a key contact's phone is masked."""
    kind, _, code = recipient.partition(":")
    return f"contact:{mask_phone(code)}" if kind == "contact" and code.isdigit() else recipient


# ---------------------------------------------------------------- messages


@dataclass(frozen=True)
class Message:
    title: str
    body: str


def redact(text: str) -> str:
    """Mask any resident ID number in free text: messages never carry a full one."""
    return _ID_NUMBER.sub(lambda m: f"{m.group(1)}********{m.group(2)}", text)


def household_label(household_id: str, household_number: str | None = None) -> str:
    if household_number:
        return f"户编号{household_number}"
    return f"农户{household_id[:8]}"


def _msg(title: str, body: str) -> Message:
    return Message(title=redact(title), body=redact(f"【防返贫监测】{body}"))


def task_opened(
    *, kind: str, household: str, region_code: str, reason: str, due_on: date
) -> Message:
    what = "入户核实" if kind == "verification" else "回头看" if kind == "review" else kind
    return _msg(
        f"新的{what}任务",
        f"{household}（{region_code}）需{what}，原因：{reason}。请于{due_on:%Y年%m月%d日}前完成并录入结果。",
    )


def task_handed_over(*, household: str, region_code: str, reason: str, due_on: date) -> Message:
    """集中交由人保公司: the county's first check (初核) is done; the insurer verifies now."""
    return _msg(
        "县扶贫办交由入户核实",
        f"县扶贫办已初核并集中交由贵公司入户核实：{household}（{region_code}），原因：{reason}。"
        f"请于{due_on:%Y年%m月%d日}前完成并录入结果。",
    )


def task_overdue(
    *, kind: str, household: str, region_code: str, due_on: date, days_overdue: int
) -> Message:
    what = "入户核实" if kind == "verification" else kind
    return _msg(
        f"{what}任务已逾期",
        f"{household}（{region_code}）的{what}任务已逾期{days_overdue}天（期限{due_on:%Y年%m月%d日}），请立即处理。",
    )


def task_escalated(
    *, kind: str, household: str, region_code: str, assignee: str, due_on: date
) -> Message:
    what = "入户核实" if kind == "verification" else kind
    return _msg(
        f"督办：{what}任务逾期未办",
        f"{household}（{region_code}）的{what}任务（责任方{assignee}，期限{due_on:%Y年%m月%d日}）逾期仍未完成，请督促落实。",
    )


def rectification_overdue(
    *, region_code: str, responsible_unit: str, deadline: date, summary: str, escalated: bool
) -> Message:
    head = "督办：整改逾期未完成" if escalated else "整改任务已逾期"
    return _msg(
        head,
        f"{region_code}的督导整改事项「{summary}」（责任单位{responsible_unit}）已超过整改期限{deadline:%Y年%m月%d日}，请限时整改到位。",
    )


def rectification_raised(
    *, region_code: str, responsible_unit: str, deadline: date, summary: str
) -> Message:
    return _msg(
        "督导发现问题，请限时整改",
        f"{region_code}发现问题「{summary}」（责任单位{responsible_unit}），请于{deadline:%Y年%m月%d日}前整改到位并上传整改材料。",
    )


def clue_overdue(
    *, region_code: str, household: str | None, source: str, received_at: datetime, escalated: bool
) -> Message:
    head = "督办：线索逾期未受理" if escalated else "线索逾期未受理"
    who = f"涉及{household}，" if household else ""
    return _msg(
        head,
        f"{region_code}于{received_at.astimezone(TZ):%Y年%m月%d日}收到的{source}线索{who}尚未受理，请及时受理并入户核实。",
    )


def enrolment_check_opened(*, region_code: str, reason: str, due_on: date, county: bool) -> Message:
    """纳入建档立卡核查: the county hands the case down to a town (下发各镇); the town checks at
    home and, where the person qualifies, registers the household."""
    todo = (
        "请下发所在乡镇入户核实"
        if county
        else "请入户核实“一达标、两不愁、三保障”情况，符合条件的及时纳入建档立卡范围"
    )
    return _msg(
        "新的纳入建档立卡核查任务",
        f"未建档立卡人员（{region_code}）：{reason}。{todo}，请于{due_on:%Y年%m月%d日}前完成并录入结果。",
    )


def enrolment_check_overdue(*, region_code: str, due_on: date, days_overdue: int) -> Message:
    return _msg(
        "纳入建档立卡核查已逾期",
        f"{region_code}的纳入建档立卡核查任务已逾期{days_overdue}天（期限{due_on:%Y年%m月%d日}），"
        "请立即入户核实并录入结果。",
    )


def monthly_report_overdue(
    *, town_code: str, period: str, due_on: date, days_late: int, escalated: bool
) -> Message:
    head = "督办：月汇报逾期未报" if escalated else "月汇报逾期未报"
    month = f"{period[:4]}年{int(period[5:])}月"
    return _msg(
        head,
        f"乡镇{town_code}的{month}月汇报（月走访、月汇报）应于{due_on:%Y年%m月%d日}前签字上报，已逾期{days_late}天，请尽快审核签报。",
    )


def monitoring_started(
    *, household: str, region_code: str, monitoring_type: str, risk_factors: Sequence[str]
) -> Message:
    label = HOUSEHOLD_TYPES.get(monitoring_type, monitoring_type)
    factors = "、".join(risk_factors) or "未注明"
    return _msg(
        "农户已纳入监测",
        f"{household}（{region_code}）已纳入监测，类型：{label}，风险因素：{factors}。"
        "您是该户联系人，请每月至少入户走访或电话、短信、微信联系一次，帮助落实帮扶措施。",
    )


def risk_eliminated(*, household: str, region_code: str, method: str) -> Message:
    how = "帮扶消除" if method == "assisted" else "自然消除"
    return _msg(
        "农户风险已消除",
        f"{household}（{region_code}）风险已{how}，按规定继续跟踪，如有返贫致贫风险请及时反馈。",
    )


def delivery_late(*, source: str, period: str, due_on: date, to_county: bool) -> Message:
    dept = DEPARTMENTS.get(source, source)
    what = FEED_LABELS.get(source, source)
    if to_county:
        return _msg(
            f"{dept}数据逾期未报送",
            f"{dept}{period}期{what}应于{due_on:%Y年%m月%d日}前报送，至今未收到，请督促。",
        )
    return _msg(
        "数据报送已逾期",
        f"贵单位{period}期{what}应于{due_on:%Y年%m月%d日}前报送{COUNTY_OFFICE}，至今未收到，请尽快报送。",
    )


def quality_errors_opened(*, town_code: str, opened: int, rules: Mapping[str, int]) -> Message:
    codes = "、".join(f"{code}×{n}" for code, n in sorted(rules.items()))
    return _msg(
        "数据质量核查发现错误",
        f"{town_code}新发现{opened}条错误级数据问题（{codes}）。请查看整改清单"
        f"（/v1/quality/rectification/{town_code}.xlsx），及时整改。",
    )


def quality_errors_overdue(*, town_code: str, count: int, days: int, oldest: date) -> Message:
    return _msg(
        "督办：数据质量问题逾期未整改",
        f"{town_code}有{count}条错误级数据问题超过{days}天未整改（最早发现于{oldest:%Y年%m月%d日}），"
        "请督促限时整改到位。",
    )


def feed_due(*, source: str, due_on: date) -> Message:
    what = FEED_LABELS.get(source, source)
    return _msg(
        "数据报送提醒",
        f"请于{due_on:%Y年%m月%d日}前向{COUNTY_OFFICE}报送{what}。",
    )


# ---------------------------------------------------------------- monthly contact lists


@dataclass(frozen=True)
class ContactView:
    role: str
    name: str
    phone: str


@dataclass(frozen=True)
class HouseholdView:
    household_id: str
    region_code: str
    type: str
    monitoring_status: str
    household_number: str | None = None
    contacts: tuple[ContactView, ...] = ()


@dataclass
class ContactList:
    phone: str
    name: str
    households: list[HouseholdView] = field(default_factory=list)


def monthly_contact_lists(households: Iterable[HouseholdView]) -> list[ContactList]:
    """Group the households to contact this month by their key contact (by phone)."""
    lists: dict[str, ContactList] = {}
    for household in households:
        if not due_for_monthly_contact(
            household_type=household.type, monitoring_status=household.monitoring_status
        ):
            continue
        for contact in household.contacts:
            phone = normalize_phone(contact.phone)
            if not phone:
                continue
            entry = lists.setdefault(phone, ContactList(phone=phone, name=contact.name))
            if all(h.household_id != household.household_id for h in entry.households):
                entry.households.append(household)
    for entry in lists.values():
        entry.households.sort(key=lambda h: (h.region_code, h.household_id))
    return sorted(lists.values(), key=lambda c: c.phone)


@dataclass
class Unreachable:
    """A town's households due a monthly contact that no list can carry: no 重点联系人 of
    the role the seed asks for, or no contact with a valid phone."""

    town_code: str
    no_key_contact: list[HouseholdView] = field(default_factory=list)
    no_phone: list[HouseholdView] = field(default_factory=list)


def unreachable_households(households: Iterable[HouseholdView]) -> list[Unreachable]:
    """Per town, the households the monthly lists would silently skip: reported instead."""
    towns: dict[str, Unreachable] = {}
    for h in households:
        if not due_for_monthly_contact(
            household_type=h.type, monitoring_status=h.monitoring_status
        ):
            continue
        missing = contact_missing(h.type, h.monitoring_status, [c.role for c in h.contacts])
        no_phone = not any(normalize_phone(c.phone) for c in h.contacts)
        if not (missing or no_phone):
            continue
        town = towns.setdefault(
            town_code_of(h.region_code), Unreachable(town_code_of(h.region_code))
        )
        (town.no_key_contact if missing else town.no_phone).append(h)
    return [towns[t] for t in sorted(towns)]


def unreachable_message(town: Unreachable, month: str, *, escalated: bool) -> Message:
    def listed(households: list[HouseholdView]) -> str:
        return "、".join(household_label(h.household_id, h.household_number) for h in households)

    parts = []
    if town.no_key_contact:
        parts.append(
            f"未落实重点联系人{len(town.no_key_contact)}户（{listed(town.no_key_contact)}）"
        )
    if town.no_phone:
        parts.append(f"联系人无有效电话{len(town.no_phone)}户（{listed(town.no_phone)}）")
    head = "督办：" if escalated else ""
    return _msg(
        f"{head}{month}无法发送联系名单的农户",
        f"{town.town_code}{month}应走访联系的农户中，"
        + "；".join(parts)
        + "。请明确重点联系人并登记有效电话，确保每月至少联系一次。",
    )


def monthly_contacts_message(contact: ContactList, month: str) -> Message:
    lines = [
        f"{i}. {household_label(h.household_id, h.household_number)}（{h.region_code}，"
        f"{HOUSEHOLD_TYPES.get(h.type, h.type)}）"
        for i, h in enumerate(contact.households, 1)
    ]
    return _msg(
        f"{month}月度联系名单",
        f"{contact.name}您好，{month}请对以下{len(lines)}户至少入户走访或联系一次，"
        "了解生产生活现状、致贫风险和发展需求：\n" + "\n".join(lines),
    )


def common_prefix(codes: Iterable[str]) -> str:
    codes = list(codes)
    if not codes:
        return ""
    first, last = min(codes), max(codes)
    n = 0
    while n < min(len(first), len(last)) and first[n] == last[n]:
        n += 1
    return first[:n]


# ---------------------------------------------------------------- schedules


@dataclass(frozen=True)
class ScheduleRule:
    """A schedule as stored: monthly contact lists, or a reminder before a feed's due day.

    `months` are the months with a due date (all twelve, or 3 and 10 for education);
    `due_day` 0 means the month's last day; the reminder goes out `lead_days` before the
    due day at `send_hour` local time, or on the 1st for the monthly contact lists.
    """

    kind: str  # "monthly_contacts" | "feed_due"
    source: str | None = None
    months: tuple[int, ...] = tuple(range(1, 13))
    due_day: int = 0
    lead_days: int = 0
    send_hour: int = 8


@dataclass(frozen=True)
class Occurrence:
    key: str  # unique: claiming it is what makes a schedule fire exactly once
    fire_at: datetime
    window_end: datetime  # after this it is too late to be useful: not caught up
    due_on: date
    period: str  # "2026-12"


def _local(d: date, hour: int = 0) -> datetime:
    return datetime.combine(d, time(hour=hour), tzinfo=TZ)


def _due_day(year: int, month: int, due_day: int) -> date:
    last = calendar.monthrange(year, month)[1]
    return date(year, month, last if due_day <= 0 else min(due_day, last))


def current_occurrence(name: str, rule: ScheduleRule, now: datetime) -> Occurrence | None:
    """The occurrence of schedule `name` whose window contains `now`, if any.

    A window opens at the fire time and closes when the reminder stops being useful (the
    month's end for contact lists, the end of the due day for feeds). A scheduler that was
    down when a window opened still finds it open when it comes back — and sends it once,
    because the occurrence key is claimed in the database.
    """
    local = now.astimezone(TZ)
    if rule.kind == "monthly_contacts":
        first = date(local.year, local.month, 1)
        fire_at = _local(first, rule.send_hour)
        last = _due_day(local.year, local.month, 0)
        end = _local(last + timedelta(days=1))
        if not fire_at <= local < end:
            return None
        period = f"{local.year:04d}-{local.month:02d}"
        return Occurrence(f"{name}:{period}", fire_at, end, last, period)
    if rule.kind == "feed_due":
        # The due day of this month or the next that has one (a lead may cross months).
        for offset in range(0, 13):
            y, m = divmod(local.month - 1 + offset, 12)
            year, month = local.year + y, m + 1
            if month not in rule.months:
                continue
            due = _due_day(year, month, rule.due_day)
            end = _local(due + timedelta(days=1))
            if end <= local:
                continue
            fire_at = _local(due - timedelta(days=rule.lead_days), rule.send_hour)
            if local < fire_at:
                return None
            period = f"{year:04d}-{month:02d}"
            return Occurrence(f"{name}:{period}", fire_at, end, due, period)
        return None
    raise ValueError(f"unknown schedule kind {rule.kind!r}")


# ---------------------------------------------------------------- retries and signatures


def retry_delay(attempt: int, *, base_s: float, max_s: float) -> float:
    """Exponential backoff after the `attempt`-th failure (1-based): base, 2·base, 4·base…"""
    return float(min(max_s, base_s * (2 ** max(attempt - 1, 0))))


def sign(secret: str, body: bytes) -> str:
    """The `X-Backstop-Signature` value: HMAC-SHA256 of the raw body under the secret.
    Kept for one version beside V2 (it carries no timestamp, so it can be replayed)."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def signature_matches(secret: str, body: bytes, header: str) -> bool:
    return hmac.compare_digest(sign(secret, body), header)


def sign_v2(secret: str, timestamp: int, body: bytes) -> str:
    """The `X-Backstop-Signature-V2` value: HMAC-SHA256 of `"<timestamp>.<body>"`."""
    message = str(timestamp).encode() + b"." + body
    return "sha256=" + hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def signature_headers(secret: str, body: bytes, now: float) -> dict[str, str]:
    """The signature headers of one delivery sent at `now` (unix seconds)."""
    timestamp = int(now)
    return {
        "X-Backstop-Timestamp": str(timestamp),
        "X-Backstop-Signature-V2": sign_v2(secret, timestamp, body),
        "X-Backstop-Signature": sign(secret, body),
    }


def verify_v2(
    secret: str, body: bytes, *, timestamp: str, signature: str, now: float, tolerance_s: int = 300
) -> bool:
    """What a receiver checks: the V2 signature matches and the timestamp is within
    `tolerance_s` of its clock (a captured delivery replayed later is refused)."""
    if not timestamp.isdigit() or abs(now - int(timestamp)) > tolerance_s:
        return False
    return hmac.compare_digest(sign_v2(secret, int(timestamp), body), signature)


def subscription_matches(
    *, event_types: Sequence[str], region_prefix: str, event_type: str, region_code: str
) -> bool:
    return event_type in event_types and region_code.startswith(region_prefix)


# IPv6 ranges whose addresses carry an IPv4 address in their last 32 bits: NAT64 (well
# known and local-use), IPv4-translated (SIIT) and IPv4-compatible (::a.b.c.d, deprecated
# but still routed by some stacks). 6to4, Teredo and IPv4-mapped have accessors.
_IPV4_IN_LAST_32 = tuple(
    ipaddress.IPv6Network(n) for n in ("64:ff9b::/96", "64:ff9b:1::/48", "::ffff:0:0:0/96", "::/96")
)


def _ipv4_inside(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for, if it embeds one."""
    if ip.ipv4_mapped:
        return ip.ipv4_mapped
    if ip.sixtofour:
        return ip.sixtofour
    if ip.teredo:
        return ip.teredo[1]
    if any(ip in net for net in _IPV4_IN_LAST_32):
        return ipaddress.IPv4Address(ip.packed[-4:])
    return None


def _internal(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return not ip.is_global or ip.is_multicast


def internal_address(host: str, addresses: Iterable[str]) -> str | None:
    """The first of `host`'s addresses that is not a public internet address (loopback,
    private, link-local, reserved …, also when embedded in an IPv6 address by NAT64,
    6to4, Teredo, IPv4-mapped or IPv4-compatible forms), if any: a webhook there would
    reach inside."""
    if host.lower().rstrip(".") in ("localhost", "localhost.localdomain"):
        return host
    for address in addresses:
        ip = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone id
        inside = _ipv4_inside(ip) if isinstance(ip, ipaddress.IPv6Address) else None
        if _internal(ip) or (inside is not None and _internal(inside)):
            return address
    return None
