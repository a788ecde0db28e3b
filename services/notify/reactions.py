"""What notify does on the other services' events: the reminders each event calls for
(with escalation to the town leader), cancelling those a later event makes moot, and
the read model of registry's households (labels and key contacts)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from backstop import crypto
from backstop.contracts import assistance, datasync, quality, registry
from backstop.events import CloudEvent, registered_types
from backstop.settings import get_settings
from services.notify import domain
from services.notify.config import NotifySettings
from services.notify.domain import Message, RecipientKey
from services.notify.models import HOUSEHOLDS, utcnow
from services.notify.reminders import Draft, cancel_pending, create_reminders

log = logging.getLogger("backstop.notify.reactions")

Known = dict[str, Any]  # household id -> its read-model row


def _household_of(event: CloudEvent) -> str | None:
    value = event.data.get("household_id")
    return value if isinstance(value, str) else None


class EventHandlers:
    """Turns the other services' facts into reminders. Events that yield reminders are
    applied a consumer batch at a time (one household lookup, one directory lookup and
    one de-duplicating INSERT per batch); the others one by one."""

    def __init__(self, settings: NotifySettings) -> None:
        self.settings = settings

    def _escalate_at(self, now: datetime) -> datetime:
        return now + timedelta(seconds=self.settings.escalation_delay_s)

    @staticmethod
    def _label(known: Known, household_id: str) -> str:
        row = known.get(household_id)
        return domain.household_label(household_id, row.household_number if row else None)

    def _draft_task_opened(self, event: CloudEvent, known: Known) -> list[Draft]:
        data = event.payload()
        assert isinstance(data, assistance.TaskOpened)
        who = domain.assignee_key(data.assignee.type, data.assignee.code)
        message = domain.task_opened(
            kind=data.kind,
            household=self._label(known, data.household_id),
            region_code=data.region_code,
            reason=data.reason,
            due_on=data.due_on,
        )
        return [
            Draft(
                dedup_key=f"task.opened:{data.task_id}:{who}",
                kind="task_opened",
                recipient=who,
                region_code=data.region_code,
                message=message,
                subject_id=data.household_id,
                ref=data.task_id,
            )
        ]

    def _draft_task_handed_over(self, event: CloudEvent, known: Known) -> list[Draft]:
        """集中交由: the insurer now has the case, due from the handover. Its reminder at
        opening (if any) named the earlier due date, so this is a reminder of its own."""
        data = event.payload()
        assert isinstance(data, assistance.TaskHandedOver)
        who = domain.assignee_key(data.assignee.type, data.assignee.code)
        return [
            Draft(
                dedup_key=f"task.handed_over:{data.task_id}:{who}",
                kind="task_handed_over",
                recipient=who,
                region_code=data.region_code,
                message=domain.task_handed_over(
                    household=self._label(known, data.household_id),
                    region_code=data.region_code,
                    reason=data.reason,
                    due_on=data.due_on,
                ),
                subject_id=data.household_id,
                ref=data.task_id,
            )
        ]

    def _draft_task_overdue(self, event: CloudEvent, known: Known) -> list[Draft]:
        """First the assignee; the town leader after the escalation delay, unless the
        task is completed first. Once per task and due date, however often it is seen."""
        data = event.payload()
        assert isinstance(data, assistance.TaskOverdue)
        now = utcnow()
        who = domain.assignee_key(data.assignee.type, data.assignee.code)
        household = self._label(known, data.household_id)
        episode = f"{data.task_id}:{data.due_on.isoformat()}"
        return [
            Draft(
                dedup_key=f"task.overdue:{episode}:{who}",
                kind="task_overdue",
                recipient=who,
                region_code=data.region_code,
                message=domain.task_overdue(
                    kind=data.kind,
                    household=household,
                    region_code=data.region_code,
                    due_on=data.due_on,
                    days_overdue=data.days_overdue,
                ),
                subject_id=data.household_id,
                ref=data.task_id,
            ),
            Draft(
                dedup_key=f"task.escalated:{episode}",
                kind="task_escalated",
                recipient=domain.town_leader_key(data.region_code),
                region_code=data.region_code,
                message=domain.task_escalated(
                    kind=data.kind,
                    household=household,
                    region_code=data.region_code,
                    assignee=str(who),
                    due_on=data.due_on,
                ),
                subject_id=data.household_id,
                ref=data.task_id,
                not_before=self._escalate_at(now),
            ),
        ]

    async def task_completed(self, session: AsyncSession, event: CloudEvent) -> None:
        """A completed task makes its pending escalation moot: cancel it (recorded)."""
        data = event.payload()
        assert isinstance(data, assistance.TaskCompleted)
        await cancel_pending(session, ref=data.task_id, kinds=("task_escalated",))

    def _draft_rectification_overdue(self, event: CloudEvent, known: Known) -> list[Draft]:
        data = event.payload()
        assert isinstance(data, assistance.RectificationOverdue)
        return self._office_then_leader(
            "rectification",
            # every reminder round is its own episode: 限时整改 is reminded until closed
            episode=f"{data.issue_id}:{data.deadline.isoformat()}"
            + (f":{data.reminder}" if data.reminder > 1 else ""),
            region_code=data.region_code,
            ref=data.issue_id,
            subject_id=None,
            message=lambda escalated: domain.rectification_overdue(
                region_code=data.region_code,
                responsible_unit=data.responsible_unit,
                deadline=data.deadline,
                summary=data.summary,
                escalated=escalated,
            ),
        )

    def _draft_rectification_raised(self, event: CloudEvent, known: Known) -> list[Draft]:
        """发现问题及时反馈镇村: the town office and, for a village's issue, the village."""
        data = event.payload()
        assert isinstance(data, assistance.RectificationRaised)
        message = domain.rectification_raised(
            region_code=data.region_code,
            responsible_unit=data.responsible_unit,
            deadline=data.deadline,
            summary=data.summary,
        )
        recipients = [domain.town_office_key(data.region_code)]
        if len(data.region_code) == 12:
            recipients.append(domain.village_key(data.region_code))
        return [
            Draft(
                dedup_key=f"rectification.raised:{data.issue_id}:{who}",
                kind="rectification_raised",
                recipient=who,
                region_code=data.region_code,
                message=message,
                subject_id=None,
                ref=data.issue_id,
            )
            for who in recipients
        ]

    async def rectification_closed(self, session: AsyncSession, event: CloudEvent) -> None:
        """整改到位 makes its pending escalation moot: cancel it (recorded)."""
        data = event.payload()
        assert isinstance(data, assistance.RectificationClosed)
        await cancel_pending(session, ref=data.issue_id, kinds=("rectification_escalated",))

    def _office_then_leader(
        self,
        what: str,
        *,
        episode: str,
        region_code: str,
        ref: str,
        subject_id: str | None,
        message: Callable[[bool], Message],
        escalate_after: timedelta | None = None,
    ) -> list[Draft]:
        """Overdue work of an office: the office now (the town's, or the county's for
        county-level work) and, for a town, its leader after the escalation delay (or
        `escalate_after`, when the event names its own)."""
        town = len(region_code) >= 9
        drafts = [
            Draft(
                dedup_key=f"{what}.overdue:{episode}",
                kind=f"{what}_overdue",
                recipient=domain.town_office_key(region_code)
                if town
                else domain.county_office_key(),
                region_code=region_code,
                message=message(False),
                subject_id=subject_id,
                ref=ref,
            )
        ]
        if town:
            drafts.append(
                Draft(
                    dedup_key=f"{what}.escalated:{episode}",
                    kind=f"{what}_escalated",
                    recipient=domain.town_leader_key(region_code),
                    region_code=region_code,
                    message=message(True),
                    subject_id=subject_id,
                    ref=ref,
                    not_before=utcnow() + escalate_after
                    if escalate_after is not None
                    else self._escalate_at(utcnow()),
                )
            )
        return drafts

    def _draft_enrolment_check_opened(self, event: CloudEvent, known: Known) -> list[Draft]:
        """纳入建档立卡核查: the county office, then the town it is handed down to."""
        data = event.payload()
        assert isinstance(data, assistance.EnrolmentCheckOpened)
        county = data.assignee_type == "county"
        who = domain.county_office_key() if county else domain.town_office_key(data.assignee_code)
        message = domain.enrolment_check_opened(
            region_code=data.region_code, reason=data.reason, due_on=data.due_on, county=county
        )
        return [
            Draft(
                dedup_key=f"enrolment_check.opened:{data.check_id}:{who}",
                kind="enrolment_check_opened",
                recipient=who,
                region_code=data.region_code,
                message=message,
                subject_id=None,
                ref=data.check_id,
            )
        ]

    def _draft_enrolment_check_overdue(self, event: CloudEvent, known: Known) -> list[Draft]:
        """Its office (the county's until handed down, then the town's), once per due date.
        No escalation: no event would cancel it when the check is done."""
        data = event.payload()
        assert isinstance(data, assistance.EnrolmentCheckOverdue)
        town = len(data.region_code) >= 9
        who = domain.town_office_key(data.region_code) if town else domain.county_office_key()
        return [
            Draft(
                dedup_key=f"enrolment_check.overdue:{data.check_id}:{data.due_on}",
                kind="enrolment_check_overdue",
                recipient=who,
                region_code=data.region_code,
                message=domain.enrolment_check_overdue(
                    region_code=data.region_code,
                    due_on=data.due_on,
                    days_overdue=data.days_overdue,
                ),
                subject_id=None,
                ref=data.check_id,
            )
        ]

    def _draft_monthly_report_overdue(self, event: CloudEvent, known: Known) -> list[Draft]:
        """月汇报 not signed: the town office, then its leader after the policy's days."""
        data = event.payload()
        assert isinstance(data, assistance.MonthlyReportOverdue)
        return self._office_then_leader(
            "monthly_report",
            episode=f"{data.town_code}:{data.period}:{data.reminder}",
            region_code=data.town_code,
            ref=data.report_id,
            subject_id=None,
            message=lambda escalated: domain.monthly_report_overdue(
                town_code=data.town_code,
                period=data.period,
                due_on=data.due_on,
                days_late=data.days_late,
                escalated=escalated,
            ),
            escalate_after=timedelta(days=data.escalate_after_days),
        )

    async def monthly_report_signed(self, session: AsyncSession, event: CloudEvent) -> None:
        """A signed 月汇报 makes its pending escalation moot: cancel it (recorded)."""
        data = event.payload()
        assert isinstance(data, assistance.MonthlyReportSigned)
        await cancel_pending(session, ref=data.report_id, kinds=("monthly_report_escalated",))

    def _draft_clue_overdue(self, event: CloudEvent, known: Known) -> list[Draft]:
        data = event.payload()
        assert isinstance(data, assistance.ClueOverdue)
        household = self._label(known, data.household_id) if data.household_id else None
        return self._office_then_leader(
            "clue",
            episode=data.clue_id,
            region_code=data.region_code,
            ref=data.clue_id,
            subject_id=data.household_id,
            message=lambda escalated: domain.clue_overdue(
                region_code=data.region_code,
                household=household,
                source=data.source,
                received_at=data.received_at,
                escalated=escalated,
            ),
        )

    def _to_key_contacts(
        self,
        known: Known,
        *,
        household_id: str,
        region_code: str,
        kind: str,
        case_id: str,
        build: Any,
    ) -> list[Draft]:
        row = known.get(household_id)
        label = domain.household_label(household_id, row.household_number if row else None)
        message: Message = build(label)
        contacts = list(row.contacts) if row else []
        drafts: list[Draft] = []
        for c in contacts:
            phone = domain.normalize_phone(str(c.get("phone", "")))
            if not phone:
                continue
            drafts.append(
                Draft(
                    dedup_key=f"{kind}:{case_id}:{phone}",
                    kind=kind,
                    recipient=domain.contact_key(phone),
                    region_code=region_code,
                    message=message,
                    subject_id=household_id,
                    ref=case_id,
                    fallback=(str(c.get("name", "")), "sms", phone),
                )
            )
        if not drafts:
            # Nobody is silently forgotten: record that the household has no key contact.
            drafts.append(
                Draft(
                    dedup_key=f"{kind}:{case_id}:no-contact",
                    kind=kind,
                    recipient=RecipientKey("contact", f"household-{household_id}"),
                    region_code=region_code,
                    message=message,
                    subject_id=household_id,
                    ref=case_id,
                )
            )
        return drafts

    def _draft_monitoring_started(self, event: CloudEvent, known: Known) -> list[Draft]:
        data = event.payload()
        assert isinstance(data, assistance.MonitoringStarted)
        return self._to_key_contacts(
            known,
            household_id=data.household_id,
            region_code=data.region_code,
            kind="monitoring_started",
            case_id=data.case_id,
            build=lambda label: domain.monitoring_started(
                household=label,
                region_code=data.region_code,
                monitoring_type=data.monitoring_type,
                risk_factors=data.risk_factors,
            ),
        )

    def _draft_risk_eliminated(self, event: CloudEvent, known: Known) -> list[Draft]:
        data = event.payload()
        assert isinstance(data, assistance.RiskEliminated)
        return self._to_key_contacts(
            known,
            household_id=data.household_id,
            region_code=data.region_code,
            kind="risk_eliminated",
            case_id=data.case_id,
            build=lambda label: domain.risk_eliminated(
                household=label, region_code=data.region_code, method=data.method
            ),
        )

    def _draft_delivery_late(self, event: CloudEvent, known: Known) -> list[Draft]:
        data = event.payload()
        assert isinstance(data, datasync.DeliveryLate)
        episode = f"{data.source}:{data.period}"
        # The late department itself, and the county office that chases it.
        return [
            Draft(
                dedup_key=f"delivery.late:{episode}:{who}",
                kind="delivery_late",
                recipient=recipient,
                region_code=self.settings.county_code,
                message=domain.delivery_late(
                    source=data.source, period=data.period, due_on=data.due_on, to_county=to_county
                ),
                ref=episode,
            )
            for who, recipient, to_county in (
                ("department", domain.department_key(data.source), False),
                ("county_office", domain.county_office_key(), True),
            )
        ]

    def _draft_quality_opened(self, event: CloudEvent, known: Known) -> list[Draft]:
        """The town's office, once a county day however many checks find new errors."""
        data = event.payload()
        assert isinstance(data, quality.ErrorFindingsOpened)
        day = event.time.astimezone(domain.TZ).date().isoformat()
        return [
            Draft(
                dedup_key=f"quality.errors:{data.town_code}:{day}",
                kind="quality_errors",
                recipient=domain.town_office_key(data.town_code),
                region_code=data.town_code,
                message=domain.quality_errors_opened(
                    town_code=data.town_code, opened=data.opened, rules=data.rules
                ),
                ref=data.town_code,
            )
        ]

    def _draft_quality_overdue(self, event: CloudEvent, known: Known) -> list[Draft]:
        """督办: the town's leader and the county office, once a day per town."""
        data = event.payload()
        assert isinstance(data, quality.ErrorFindingsOverdue)
        day = event.time.astimezone(domain.TZ).date().isoformat()
        message = domain.quality_errors_overdue(
            town_code=data.town_code, count=data.count, days=data.days, oldest=data.oldest_opened_on
        )
        return [
            Draft(
                dedup_key=f"quality.overdue:{data.town_code}:{day}:{who}",
                kind="quality_overdue",
                recipient=recipient,
                region_code=data.town_code,
                message=message,
                ref=data.town_code,
            )
            for who, recipient in (
                ("town_leader", domain.town_leader_key(data.town_code)),
                ("county_office", domain.county_office_key()),
            )
        ]

    async def household_changed(self, session: AsyncSession, event: CloudEvent) -> None:
        """Keep the read model at the newest snapshot; an older version changes nothing."""
        data = event.payload()
        assert isinstance(data, registry.HouseholdEvent)
        h = data.household
        values = {
            "household_id": h.household_id,
            "version": h.version,
            "region_code": h.region_code,
            "town_code": h.town_code,
            "household_number": h.household_number,
            "type": h.type,
            "monitoring_status": h.monitoring_status,
            "contacts": [_directory_contact(c) for c in h.contacts],
            "updated_at": utcnow(),
        }
        stmt = insert(HOUSEHOLDS).values(values)
        await session.execute(
            stmt.on_conflict_do_update(
                index_elements=["household_id"],
                set_={k: stmt.excluded[k] for k in values if k != "household_id"},
                where=HOUSEHOLDS.c.version < stmt.excluded.version,
            )
        )

    def _drafters(self) -> dict[str, Any]:
        return {
            "backstop.assistance.task.opened.v1": self._draft_task_opened,
            "backstop.assistance.task.handed_over.v1": self._draft_task_handed_over,
            "backstop.assistance.task.overdue.v1": self._draft_task_overdue,
            "backstop.assistance.rectification.overdue.v1": self._draft_rectification_overdue,
            "backstop.assistance.rectification.raised.v1": self._draft_rectification_raised,
            "backstop.assistance.clue.overdue.v1": self._draft_clue_overdue,
            "backstop.assistance.monthly_report.overdue.v1": self._draft_monthly_report_overdue,
            "backstop.assistance.enrolment_check.opened.v1": self._draft_enrolment_check_opened,
            "backstop.assistance.enrolment_check.overdue.v1": self._draft_enrolment_check_overdue,
            "backstop.assistance.monitoring.started.v1": self._draft_monitoring_started,
            "backstop.assistance.risk.eliminated.v1": self._draft_risk_eliminated,
            "backstop.datasync.delivery.late.v1": self._draft_delivery_late,
            "backstop.quality.errors.opened.v1": self._draft_quality_opened,
            "backstop.quality.errors.overdue.v1": self._draft_quality_overdue,
        }

    @property
    def reminder_types(self) -> frozenset[str]:
        return frozenset(self._drafters())

    async def remind(self, session: AsyncSession, events: Sequence[CloudEvent]) -> None:
        """The batch handler: every reminder the events call for, created once."""
        drafters = self._drafters()
        ids = {h for e in events if (h := _household_of(e))}
        known: Known = {}
        if ids:
            rows = await session.execute(
                select(HOUSEHOLDS).where(HOUSEHOLDS.c.household_id.in_(ids))
            )
            known = {r.household_id: r for r in rows}
        drafts = [d for e in events for d in drafters[e.type](e, known)]
        await create_reminders(session, drafts)

    # One-event entry points (the consumer uses `remind` for these types).
    async def task_opened(self, session: AsyncSession, event: CloudEvent) -> None:
        await self.remind(session, [event])

    async def task_overdue(self, session: AsyncSession, event: CloudEvent) -> None:
        """First the assignee; the town leader after the escalation delay, unless the
        task is completed first. Once per task and due date, however often it is seen."""
        await self.remind(session, [event])

    async def rectification_overdue(self, session: AsyncSession, event: CloudEvent) -> None:
        await self.remind(session, [event])

    async def clue_overdue(self, session: AsyncSession, event: CloudEvent) -> None:
        await self.remind(session, [event])

    async def monitoring_started(self, session: AsyncSession, event: CloudEvent) -> None:
        await self.remind(session, [event])

    async def risk_eliminated(self, session: AsyncSession, event: CloudEvent) -> None:
        await self.remind(session, [event])

    async def delivery_late(self, session: AsyncSession, event: CloudEvent) -> None:
        await self.remind(session, [event])

    def by_type(self) -> dict[str, Any]:
        """Handlers of the events applied one by one."""
        return {
            "backstop.assistance.task.completed.v1": self.task_completed,
            "backstop.assistance.rectification.closed.v1": self.rectification_closed,
            "backstop.assistance.monthly_report.signed.v1": self.monthly_report_signed,
            **{t: self.household_changed for t in HOUSEHOLD_EVENT_TYPES},
        }


HOUSEHOLD_EVENT_TYPES = tuple(
    name for name, spec in registered_types().items() if spec.topic == registry.TOPIC
)


def _directory_contact(contact: registry.ContactSnapshot) -> dict[str, Any]:
    """A key contact as notify keeps it in its own directory: the phone opened from the
    sealed copy the event carries (its `phone` is masked), to be texted. A contact whose
    number does not open (another key) is kept without one and is not texted."""
    phone = contact.phone if "*" not in contact.phone else ""
    if contact.phone_sealed:
        try:
            phone = crypto.open_secret(get_settings(), contact.phone_sealed)
        except crypto.InvalidToken:
            log.error("a contact's sealed phone does not open with BACKSTOP_SECRETS_KEY")
            phone = ""
    return {"role": contact.role, "name": contact.name, "phone": phone, "unit": contact.unit}
