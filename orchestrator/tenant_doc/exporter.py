"""Database -> tenant document (plain data, then YAML).

``tenant_document`` builds the document of a tenant as the session sees it, including
pending (unflushed) changes when asked, which is how admin forms reuse the document
validation; ``origins`` maps each document path (``employees[2]``) to its row.
References are written by extension or name, never by database id; a reference to a
row outside the tenant is written as ``"#<id> (not in this tenant)"`` so that
validation refuses it.
"""
from __future__ import annotations

from typing import Any

import yaml
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from orchestrator.db.hours import format_time
from orchestrator.db.models import (
    CallerRule,
    Department,
    Employee,
    PhoneNumber,
    Schedule,
    Tenant,
    VoiceMenu,
    VoicemailBox,
)
from orchestrator.db.targets import TargetRef, read_target
from orchestrator.tenant_doc.source import join

Origins = dict[str, tuple[type, Any]]


class Flow(dict):
    """A mapping written on one line: ``{department: '200'}``."""


class _Dumper(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        """Never write anchors/aliases (an object shared twice is written out twice):
        documents with them are refused on import (``source``)."""
        return True


_Dumper.add_representer(Flow, lambda d, data: d.represent_mapping("tag:yaml.org,2002:map", data, flow_style=True))


def _tenant_of(obj: Any) -> int | None:
    if obj.tenant_id is not None:
        return obj.tenant_id
    tenant = obj.__dict__.get("tenant")
    return getattr(tenant, "id", None)


def _rows(session: Session, model: type, tenant_id: int, pending: bool, *loads: Any) -> list[Any]:
    stmt: Any = select(model).where(model.tenant_id == tenant_id)  # type: ignore[attr-defined]
    if loads:
        stmt = stmt.options(*(selectinload(x) for x in loads))
    rows = [r for r in session.scalars(stmt) if r not in session.deleted]
    if pending:
        rows += [o for o in session.new if isinstance(o, model) and _tenant_of(o) == tenant_id]
    return rows


def _prune(item: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in item.items() if v is not None and defaults.get(k, object()) != v}


EMPLOYEE_DEFAULTS = {"role": "user", "ring_seconds": 20, "logged_in": True}
DEPARTMENT_DEFAULTS = {"strategy": "ring_all", "ring_seconds": 20, "no_answer_timeout": 60, "wrapup_seconds": 0,
                       "pause_after_missed": 0, "stats_window_days": 1}
QUEUE_DEFAULTS = {"announce_position": False, "announce_every": 30, "max_wait": 300, "max_length": 0,
                  "callback_allowed": False, "callback_key": "1", "callback_attempts": 3, "callback_retry_delay": 60}
MENU_DEFAULTS = {"timeout_seconds": 5, "max_invalid": 3, "direct_dial": True}
BOX_DEFAULTS = {"max_message_seconds": 120}


def tenant_document(session: Session, tenant_id: int, *, with_secrets: bool = False,
                    pending: bool = False) -> tuple[dict[str, Any], Origins]:
    """The tenant's document and the row behind each list item's path."""
    with session.no_autoflush:
        return _document(session, tenant_id, with_secrets, pending)


def _document(session: Session, tid: int, with_secrets: bool, pending: bool) -> tuple[dict[str, Any], Origins]:
    tenant = session.get(Tenant, tid)
    if tenant is None:
        raise LookupError("no tenant %d" % tid)
    key = lambda o: (o.extension or "", o.id or 0)  # noqa: E731
    employees = sorted(_rows(session, Employee, tid, pending), key=key)
    departments = sorted(_rows(session, Department, tid, pending, Department.members), key=key)
    boxes = sorted(_rows(session, VoicemailBox, tid, pending, VoicemailBox.owners), key=lambda o: (o.name or "", o.id or 0))
    menus = sorted(_rows(session, VoiceMenu, tid, pending, VoiceMenu.options), key=lambda o: (o.name or "", o.id or 0))
    schedules = sorted(_rows(session, Schedule, tid, pending, Schedule.intervals, Schedule.exceptions),
                       key=lambda o: (o.name or "", o.id or 0))
    numbers = sorted(_rows(session, PhoneNumber, tid, pending), key=lambda o: (o.e164 or "", o.id or 0))
    caller_rules = sorted(_rows(session, CallerRule, tid, pending), key=lambda o: (o.position or 0, o.id or 0))

    names: dict[str, dict[int, str]] = {
        "employee": {e.id: e.extension for e in employees if e.id},
        "department": {d.id: d.extension for d in departments if d.id},
        "menu": {m.id: m.name for m in menus if m.id},
        "voicemail": {b.id: b.name for b in boxes if b.id},
    }
    names["fax"] = names["voicemail"]

    def ref(kind: str, obj: Any, ref_id: int | None) -> str | None:
        if obj is not None and _tenant_of(obj) in (tid, None):
            return obj.extension if kind in ("employee", "department") else obj.name
        if ref_id is None:
            return None
        return names[kind].get(ref_id, "#%d (not in this tenant)" % ref_id)

    def target(t: TargetRef | None) -> Flow | None:
        if t is None or t.kind is None:
            return None
        if t.kind in names:
            return Flow({t.kind: ref(t.kind, None, t.ref_id)})
        return Flow({t.kind: t.number if t.kind == "external" else t.sound})

    origins: Origins = {}
    doc: dict[str, Any] = {"tenant": _prune({
        "name": tenant.name, "sip_domain": tenant.sip_domain, "timezone": tenant.timezone,
        "enabled": tenant.enabled, "max_concurrent_calls": tenant.max_concurrent_calls,
        "forward_caller_id": tenant.forward_caller_id,
    }, {"forward_caller_id": "caller"})}
    out: list[dict[str, Any]] = []
    for i, e in enumerate(employees):
        origins[join("employees", i)] = (Employee, e)
        out.append(_prune({
            "name": e.name, "extension": e.extension, "email": e.email,
            "role": e.role.value if e.role is not None and hasattr(e.role, "value") else e.role,
            "mobile": e.mobile, "forward_to_mobile_after": e.forward_to_mobile_after,
            "ring_seconds": e.ring_seconds, "outbound_caller_id": e.outbound_caller_id, "logged_in": e.logged_in,
            "voicemail": ref("voicemail", e.__dict__.get("voicemail_box"), e.voicemail_box_id),
            "sip_password": e.sip_password if with_secrets else None,
        }, EMPLOYEE_DEFAULTS))
    doc["employees"] = out
    out = []
    for i, d in enumerate(departments):
        origins[join("departments", i)] = (Department, d)
        queue = _prune({k: getattr(d, "queue_" + k) for k in (
            "music", "announcement", "announce_position", "announce_every", "max_wait", "max_length",
            "callback_allowed", "callback_key", "callback_apology", "callback_prompt", "callback_attempts",
            "callback_retry_delay")} | {"callback_voicemail": ref(
                "voicemail", d.__dict__.get("queue_callback_box"), d.queue_callback_box_id)}, QUEUE_DEFAULTS)
        members = []
        for j, m in enumerate(sorted(d.members, key=lambda m: (m.order or 0, m.id or 0))):
            members.append(_prune({
                "employee": ref("employee", m.__dict__.get("employee"), m.employee_id),
                "order": m.order if m.order != j else None,
                "weight": m.weight, "escalation_offset": m.escalation_offset,
            }, {"weight": 5, "escalation_offset": 0}))
        out.append(_prune({
            "name": d.name, "extension": d.extension,
            "strategy": getattr(d.strategy, "value", d.strategy), "ring_seconds": d.ring_seconds,
            "no_answer_timeout": d.no_answer_timeout, "no_answer": target(read_target(d, "no_answer")),
            "wrapup_seconds": d.wrapup_seconds, "pause_after_missed": d.pause_after_missed,
            "stats_window_days": d.stats_window_days, "outbound_caller_id": d.outbound_caller_id,
            "queue": queue or None, "members": members or None,
        }, DEPARTMENT_DEFAULTS))
    doc["departments"] = out
    out = []
    for i, b in enumerate(boxes):
        origins[join("voicemail_boxes", i)] = (VoicemailBox, b)
        owners = sorted(filter(None, (ref("employee", o.__dict__.get("employee"), o.employee_id) for o in b.owners)))
        out.append(_prune({
            "name": b.name, "extension": b.extension, "greeting": b.greeting, "email": b.email,
            "owners": owners or None, "max_message_seconds": b.max_message_seconds,
        }, BOX_DEFAULTS))
    doc["voicemail_boxes"] = out
    out = []
    for i, m in enumerate(menus):
        origins[join("menus", i)] = (VoiceMenu, m)
        options = {o.digit: target(read_target(o, "target")) for o in sorted(m.options, key=lambda o: o.digit or "")}
        out.append(_prune({
            "name": m.name, "extension": m.extension, "greeting": m.greeting, "timeout_seconds": m.timeout_seconds,
            "options": options or None, "default": target(read_target(m, "default")), "invalid_sound": m.invalid_sound,
            "max_invalid": m.max_invalid, "direct_dial": m.direct_dial, "back_digit": m.back_digit,
        }, MENU_DEFAULTS))
    doc["menus"] = out
    out = []
    for i, s in enumerate(schedules):
        origins[join("schedules", i)] = (Schedule, s)
        out.append(_prune({
            "name": s.name, "default": s.is_default or None,
            "intervals": _intervals(s) or None,
            "exceptions": [
                Flow(_prune({"date": x.day, "name": x.name or None, "closed": None if x.closed else False,
                             "hours": x.intervals or None}, {}))
                for x in sorted(s.exceptions, key=lambda x: x.day)
            ] or None,
        }, {}))
    doc["schedules"] = out
    sched_names = {s.id: s.name for s in schedules if s.id}
    out = []
    for i, n in enumerate(numbers):
        origins[join("numbers", i)] = (PhoneNumber, n)
        schedule = n.__dict__.get("schedule")
        out.append(_prune({
            "number": n.e164, "mode": getattr(n.mode, "value", n.mode),
            "schedule": schedule.name if schedule is not None else (
                sched_names.get(n.schedule_id, "#%d (not in this tenant)" % n.schedule_id)
                if n.schedule_id else None),
            "work": target(read_target(n, "work")), "after_hours": target(read_target(n, "after_hours")),
            "dial_code": n.dial_code,
        }, {}))
    doc["numbers"] = out
    doc["caller_rules"] = [_caller_rule(r, target) for r in caller_rules]
    for i, r in enumerate(caller_rules):
        origins[join("caller_rules", i)] = (CallerRule, r)
    return {k: v for k, v in doc.items() if v or k == "tenant"}, origins


def _caller_rule(r: CallerRule, target: Any) -> dict[str, Any]:
    """A caller rule as a document item; ``days`` and ``crm`` only where they count."""
    match = getattr(r.match_kind, "value", r.match_kind)
    crm = Flow(_prune({"url": r.crm_url, "timeout_ms": r.crm_timeout_ms}, {"timeout_ms": 1000})) if match == "crm" else None
    return _prune({
        "name": r.name, "match": match, "values": r.value_list() or None, "negate": r.negate, "block": r.block,
        "numbers": r.number_list() or None, "days": r.days if match == "last_agent" else None,
        "crm": crm or None, "target": target(read_target(r, "target")),
    }, {"negate": False, "block": False})


def _intervals(schedule: Schedule) -> list[Flow]:
    """Group weekly intervals with the same hours: ``{weekdays: [0, 1, 2], start, end}``."""
    by_hours: dict[tuple[int, int], list[int]] = {}
    for i in schedule.intervals:
        by_hours.setdefault((i.start_minute, i.end_minute), []).append(i.weekday)
    return [
        Flow({"weekdays": sorted(days), "start": format_time(start), "end": format_time(end)})
        for (start, end), days in sorted(by_hours.items())
    ]


def export_tenant(session: Session, tenant_id: int, *, with_secrets: bool = False) -> str:
    """The tenant's routing data as a YAML document (SIP passwords only if asked)."""
    doc, _ = tenant_document(session, tenant_id, with_secrets=with_secrets)
    header = "# Tenant %s exported by pbx-tenant%s\n" % (
        doc["tenant"]["sip_domain"], " (CONTAINS SIP PASSWORDS)" if with_secrets else "")
    return header + yaml.dump(doc, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=110)

