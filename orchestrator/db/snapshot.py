"""Build the core's frozen routing data (``orchestrator.core.model``) from the tables.

``load_tenant_snapshot`` runs one query per table of the tenant (about ten, however
many rows), never one per row.
"""
from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import replace
from datetime import date
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from orchestrator.core.model import (
    CallerMatch,
    CallerRule as CoreCallerRule,
    Department as CoreDepartment,
    Employee as CoreEmployee,
    Interval,
    Member,
    MenuOption,
    PhoneNumber as CorePhoneNumber,
    QueueSettings,
    RoutingIndex,
    Schedule as CoreSchedule,
    ScheduleException as CoreScheduleException,
    Sound,
    SoundError,
    Target,
    TargetKind,
    TenantSnapshot,
    VoiceMenu as CoreVoiceMenu,
    VoicemailBox as CoreVoicemailBox,
)
from orchestrator.db.hours import parse_hours
from orchestrator.db.meta import INDEX_VERSION, RoutingMeta
from orchestrator.db.targets import read_target
from orchestrator.db.models import (
    CallerRule,
    Department,
    DepartmentMember,
    Employee,
    PhoneNumber,
    Schedule,
    ScheduleException,
    ScheduleInterval,
    Tenant,
    VoiceMenu,
    VoiceMenuOption,
    VoicemailBox,
    VoicemailBoxOwner,
)


log = logging.getLogger("orchestrator.snapshot")


def _sound(value: str | None, tenant_id: int, where: str) -> Sound | None:
    """A sound column as a checked :class:`Sound`. A row saved before the grammar existed
    (or written around the panel) that does not match it is dropped - the call plays the
    default sound instead - with an error log naming the row and field."""
    if not value:
        return None
    try:
        return Sound.parse(value)
    except SoundError as exc:
        log.error("sound refused in the routing data: %s", exc, extra={"pbx": {"tenant": tenant_id, "field": where}})
        return None


def _target(target: Target | None, tenant_id: int, where: str) -> Target | None:
    """A route target; an announcement's sound checked like every sound (``_sound``)."""
    if target is None or target.kind is not TargetKind.ANNOUNCEMENT:
        return target
    return replace(target, sound=_sound(target.sound, tenant_id, where))


def _rows(session: Session, model: type, tenant_id: int, *order: Any) -> list[Any]:
    stmt: Any = select(model).where(model.tenant_id == tenant_id)  # type: ignore[attr-defined]
    return list(session.scalars(stmt.order_by(*order) if order else stmt))


def _employee(e: Employee) -> CoreEmployee:
    return CoreEmployee(
        id=e.id, name=e.name, extension=e.extension, role=e.role, email=e.email, mobile=e.mobile,
        forward_to_mobile_after=e.forward_to_mobile_after, ring_seconds=e.ring_seconds,
        outbound_caller_id=e.outbound_caller_id, logged_in=e.logged_in, voicemail_box_id=e.voicemail_box_id,
    )


def _department(d: Department, members: tuple[Member, ...]) -> CoreDepartment:
    where = "department %s" % d.extension
    return CoreDepartment(
        id=d.id, name=d.name, extension=d.extension, strategy=d.strategy, ring_seconds=d.ring_seconds,
        no_answer_timeout=d.no_answer_timeout,
        no_answer_target=_target(read_target(d, "no_answer").to_core(), d.tenant_id, where + " no_answer"),
        wrapup_seconds=d.wrapup_seconds, pause_after_missed=d.pause_after_missed,
        stats_window_days=d.stats_window_days,
        queue=QueueSettings(
            music=_sound(d.queue_music, d.tenant_id, where + " queue.music"),
            announcement=_sound(d.queue_announcement, d.tenant_id, where + " queue.announcement"),
            announce_position=d.queue_announce_position, max_wait=d.queue_max_wait,
            max_length=d.queue_max_length, callback_allowed=d.queue_callback_allowed,
            callback_key=d.queue_callback_key, announce_every=d.queue_announce_every,
            callback_apology=_sound(d.queue_callback_apology, d.tenant_id, where + " queue.callback_apology"),
            callback_prompt=_sound(d.queue_callback_prompt, d.tenant_id, where + " queue.callback_prompt"),
            callback_attempts=d.queue_callback_attempts, callback_retry_delay=d.queue_callback_retry_delay,
            callback_box_id=d.queue_callback_box_id,
        ),
        members=members, outbound_caller_id=d.outbound_caller_id,
    )


def _exception(x: ScheduleException) -> CoreScheduleException:
    return CoreScheduleException(
        day=x.day if isinstance(x.day, date) else date.fromisoformat(str(x.day)),
        closed=x.closed, intervals=tuple(parse_hours(x.intervals)), name=x.name,
    )


def _caller_rule(r: CallerRule) -> CoreCallerRule:
    return CoreCallerRule(
        id=r.id, name=r.name, match=CallerMatch(r.match_kind), values=tuple(r.value_list()), negate=r.negate,
        target=_target(read_target(r, "target").to_core(), r.tenant_id, "caller rule %s target" % r.name), block=r.block, numbers=tuple(r.number_list()),
        order=r.position, days=r.days, crm_url=r.crm_url or "", crm_timeout_ms=r.crm_timeout_ms,
    )


def load_tenant_snapshot(session: Session, tenant_id: int) -> TenantSnapshot | None:
    """The tenant's routing data frozen at its ``routing_version``; None if unknown."""
    tenant = session.get(Tenant, tenant_id, populate_existing=True)
    if tenant is None:
        return None
    members: dict[int, list[Member]] = defaultdict(list)
    for m in _rows(session, DepartmentMember, tenant_id, DepartmentMember.order, DepartmentMember.id):
        members[m.department_id].append(
            Member(employee_id=m.employee_id, order=m.order, weight=m.weight, escalation_offset=m.escalation_offset)
        )
    intervals: dict[int, list[Interval]] = defaultdict(list)
    for i in _rows(session, ScheduleInterval, tenant_id, ScheduleInterval.weekday, ScheduleInterval.start_minute):
        intervals[i.schedule_id].append(Interval(weekday=i.weekday, start=i.start_minute, end=i.end_minute))
    exceptions: dict[int, list[CoreScheduleException]] = defaultdict(list)
    for x in _rows(session, ScheduleException, tenant_id, ScheduleException.day):
        exceptions[x.schedule_id].append(_exception(x))
    options: dict[int, list[MenuOption]] = defaultdict(list)
    for o in _rows(session, VoiceMenuOption, tenant_id, VoiceMenuOption.digit):
        target = _target(read_target(o, "target").to_core(), tenant_id, "menu #%s option %s" % (o.menu_id, o.digit))
        if target is not None:
            options[o.menu_id].append(MenuOption(digit=o.digit, target=target))
    owners: dict[int, list[int]] = defaultdict(list)
    for w in _rows(session, VoicemailBoxOwner, tenant_id, VoicemailBoxOwner.employee_id):
        owners[w.box_id].append(w.employee_id)

    return TenantSnapshot(
        tenant_id=tenant.id, name=tenant.name, sip_domain=tenant.sip_domain, timezone=tenant.timezone,
        enabled=tenant.enabled, max_concurrent_calls=tenant.max_concurrent_calls,
        forward_caller_id=tenant.forward_caller_id or "caller",
        version=tenant.routing_version,
        employees={e.id: _employee(e) for e in _rows(session, Employee, tenant_id, Employee.id)},
        departments={
            d.id: _department(d, tuple(members[d.id])) for d in _rows(session, Department, tenant_id, Department.id)
        },
        numbers={
            n.e164: CorePhoneNumber(
                e164=n.e164, mode=n.mode, work_target=_target(read_target(n, "work").to_core(), tenant_id, n.e164 + " work"),
                after_hours_target=_target(read_target(n, "after_hours").to_core(), tenant_id, n.e164 + " after_hours"),
                schedule_id=n.schedule_id,
                dial_code=n.dial_code,
            )
            for n in _rows(session, PhoneNumber, tenant_id, PhoneNumber.e164)
        },
        schedules={
            s.id: CoreSchedule(
                id=s.id, name=s.name, intervals=tuple(intervals[s.id]),
                exceptions=tuple(exceptions[s.id]), is_default=s.is_default,
            )
            for s in _rows(session, Schedule, tenant_id, Schedule.id)
        },
        menus={
            m.id: CoreVoiceMenu(
                id=m.id, name=m.name, extension=m.extension,
                greeting=_sound(m.greeting, tenant_id, "menu %s greeting" % m.name), options=tuple(options[m.id]),
                timeout_seconds=m.timeout_seconds,
                default_target=_target(read_target(m, "default").to_core(), tenant_id, "menu %s default" % m.name),
                invalid_sound=_sound(m.invalid_sound, tenant_id, "menu %s invalid_sound" % m.name), max_invalid=m.max_invalid, direct_dial=m.direct_dial,
                back_digit=m.back_digit,
            )
            for m in _rows(session, VoiceMenu, tenant_id, VoiceMenu.id)
        },
        voicemail_boxes={
            b.id: CoreVoicemailBox(
                id=b.id, name=b.name, extension=b.extension,
                greeting=_sound(b.greeting, tenant_id, "voicemail box %s greeting" % b.name), email=b.email,
                owner_employee_ids=tuple(owners[b.id]), max_message_seconds=b.max_message_seconds,
            )
            for b in _rows(session, VoicemailBox, tenant_id, VoicemailBox.id)
        },
        caller_rules=tuple(_caller_rule(r) for r in _rows(session, CallerRule, tenant_id, CallerRule.position, CallerRule.id)),
    )


def load_routing_index(session: Session) -> RoutingIndex:
    """Numbers of enabled tenants and every enabled tenant's SIP domain -> tenant id."""
    numbers = session.execute(
        select(PhoneNumber.e164, PhoneNumber.tenant_id)
        .join(Tenant, Tenant.id == PhoneNumber.tenant_id)
        .where(Tenant.enabled.is_(True))
    )
    domains = session.execute(select(Tenant.sip_domain, Tenant.id).where(Tenant.enabled.is_(True)))
    version = session.scalar(select(RoutingMeta.value).where(RoutingMeta.key == INDEX_VERSION))
    return RoutingIndex(
        numbers={e164: tid for e164, tid in numbers},
        domains={domain: tid for domain, tid in domains},
        version=version or 0,
    )
