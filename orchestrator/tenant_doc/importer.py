"""Write a validated tenant document into the database.

``import_tenant(session, text)`` creates a tenant; with ``replace=True`` it replaces the
routing data of the tenant with the same ``sip_domain`` in place: rows are matched by
their natural key (employee/department by extension, menu/box/schedule by name, number
by E.164) and updated, so ids stay stable (call history, voicemail messages and admin
accounts keep pointing at the same employee/box); rows missing from the document are
deleted; child lists (members, intervals, exceptions, options, owners) are rewritten.
The session is flushed, not committed: the caller's transaction makes it atomic.
"""
from __future__ import annotations

from typing import Any, Callable

from sqlalchemy import select
from sqlalchemy.orm import Session

from orchestrator.core.model import CallerMatch, NumberMode, Role, Strategy
from orchestrator.db.base import generate_sip_password
from orchestrator.db.hours import format_hours
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
from orchestrator.db.targets import TargetRef
from orchestrator.errors import FieldError, TenantDataError
from orchestrator.tenant_doc.source import Document, join, parse
from orchestrator.tenant_doc.validation import check


def load_and_validate(text: str, source: str | None = None) -> tuple[Document, dict[str, Any]]:
    """Parse and validate; raise TenantDataError with every problem found."""
    doc = parse(text, source)
    errors, data = check(doc)
    if errors:
        raise TenantDataError(errors)
    return doc, data


def import_tenant(session: Session, text: str, *, replace: bool = False, source: str | None = None) -> int:
    """Create the tenant described by ``text`` (or replace its routing data); return its id."""
    doc, data = load_and_validate(text, source)
    t = data["tenant"]
    tenant = session.scalar(select(Tenant).where(Tenant.sip_domain == t["sip_domain"]))
    line = doc.line("tenant.sip_domain")
    if tenant is not None and not replace:
        raise TenantDataError([FieldError("tenant.sip_domain", "tenant %s already exists; use --replace to replace "
                                          "its routing data" % t["sip_domain"], line)])
    if tenant is None and replace:
        raise TenantDataError([FieldError("tenant.sip_domain", "no tenant %s to replace; import it without "
                                          "--replace first" % t["sip_domain"], line)])
    _check_numbers_free(session, doc, data, tenant.id if tenant else None)
    if tenant is None:
        tenant = Tenant(sip_domain=t["sip_domain"], name=t["name"], timezone=t["timezone"])
        session.add(tenant)
    for key in ("name", "timezone", "enabled", "max_concurrent_calls", "forward_caller_id"):
        setattr(tenant, key, t[key])
    session.flush()
    _Writer(session, tenant.id, data).write()
    return tenant.id


def _check_numbers_free(session: Session, doc: Document, data: dict[str, Any], tenant_id: int | None) -> None:
    wanted = {n["number"]: n["_path"] for n in data["numbers"]}
    taken = session.execute(
        select(PhoneNumber.e164, Tenant.sip_domain).join(Tenant, Tenant.id == PhoneNumber.tenant_id)
        .where(PhoneNumber.e164.in_(wanted), PhoneNumber.tenant_id != (tenant_id or -1))
    ).all()
    if taken:
        raise TenantDataError([
            FieldError(join(wanted[e164], "number"), "number %s belongs to another tenant (%s)" % (e164, domain),
                       doc.line(join(wanted[e164], "number")))
            for e164, domain in taken
        ])


class _Writer:
    def __init__(self, session: Session, tenant_id: int, data: dict[str, Any]) -> None:
        self.s = session
        self.tid = tenant_id
        self.data = data

    def _existing(self, model: type, key: Callable[[Any], str]) -> dict[str, Any]:
        rows: Any = self.s.scalars(select(model).where(model.tenant_id == self.tid))  # type: ignore[attr-defined]
        return {key(row): row for row in rows}

    def _sync(self, model: type, key: str, wanted: list[dict[str, Any]], doc_key: str | None = None,
              required: tuple[str, ...] = ()) -> dict[str, Any]:
        """Delete rows whose key is gone; create the new ones; return key -> row."""
        existing = self._existing(model, lambda r: getattr(r, key))
        keep = {item[doc_key or key] for item in wanted}
        for k, row in existing.items():
            if k not in keep:
                self.s.delete(row)
        rows: dict[str, Any] = {}
        for item in wanted:
            k = item[doc_key or key]
            row = existing.get(k)
            if row is None:
                row = model(tenant_id=self.tid, **{key: k}, **{f: item[f] for f in required})
                self.s.add(row)
            rows[k] = row
        return rows

    def write(self) -> None:
        d = self.data
        s = self.s
        # 1. free unique secondary values and drop child rows, so updates never collide.
        for model in (DepartmentMember, ScheduleInterval, ScheduleException, VoiceMenuOption, VoicemailBoxOwner):
            for row in s.scalars(select(model).where(model.tenant_id == self.tid)):  # type: ignore[attr-defined]
                s.delete(row)
        for emp in self._existing(Employee, lambda r: r.extension).values():
            emp.voicemail_box_id = None
        for dep in self._existing(Department, lambda r: r.extension).values():
            dep.queue_callback_box_id = None
        for num in self._existing(PhoneNumber, lambda r: r.e164).values():
            num.schedule_id = None
        for i, dep in enumerate(self._existing(Department, lambda r: r.extension).values()):
            dep.name = "~renaming-%d-%d" % (dep.id, i)
        for named in (VoiceMenu, VoicemailBox):
            for row in self._existing(named, lambda r: r.name).values():
                row.extension = None
        for sched in self._existing(Schedule, lambda r: r.name).values():
            sched.is_default = False
        s.flush()
        # 2. delete what is gone, create what is new (natural keys only), get ids.
        numbers = self._sync(PhoneNumber, "e164", d["numbers"], "number")
        s.flush()
        menus = self._sync(VoiceMenu, "name", d["menus"])
        departments = self._sync(Department, "extension", d["departments"], required=("name",))
        s.flush()
        employees = self._sync(Employee, "extension", d["employees"], required=("name",))
        boxes = self._sync(VoicemailBox, "name", d["voicemail_boxes"])
        schedules = self._sync(Schedule, "name", d["schedules"])
        s.flush()
        ids = {
            "employee": {k: r.id for k, r in employees.items()},
            "department": {k: r.id for k, r in departments.items()},
            "menu": {k: r.id for k, r in menus.items()},
            "voicemail": {k: r.id for k, r in boxes.items()},
        }
        ids["fax"] = ids["voicemail"]

        def target(t: tuple[str, Any] | None) -> TargetRef:
            if t is None:
                return TargetRef()
            kind, ref = t
            return TargetRef.of(kind, ids[kind][ref] if kind in ids else ref)

        # 3. every field, reference and child row.
        for b in d["voicemail_boxes"]:
            box = boxes[b["name"]]
            for key in ("extension", "greeting", "email", "max_message_seconds"):
                setattr(box, key, b[key])
            for _, owner in b["owners"]:
                s.add(VoicemailBoxOwner(tenant_id=self.tid, box_id=box.id, employee_id=ids["employee"][owner]))
        for e in d["employees"]:
            emp = employees[e["extension"]]
            for key in ("name", "email", "mobile", "forward_to_mobile_after", "ring_seconds",
                        "outbound_caller_id", "logged_in"):
                setattr(emp, key, e[key])
            emp.role = Role(e["role"])
            emp.voicemail_box_id = ids["voicemail"][e["voicemail"]] if e["voicemail"] else None
            if e["sip_password"]:
                emp.sip_password = e["sip_password"]
            elif not emp.sip_password:
                emp.sip_password = generate_sip_password()
        for dd in d["departments"]:
            dep = departments[dd["extension"]]
            dep.name = dd["name"]
            dep.strategy = Strategy(dd["strategy"])
            for key in ("ring_seconds", "no_answer_timeout", "wrapup_seconds", "pause_after_missed", "stats_window_days",
                        "outbound_caller_id"):
                setattr(dep, key, dd[key])
            for key, value in dd["queue"].items():
                if key == "callback_voicemail":  # a box's name -> its id
                    dep.queue_callback_box_id = ids["voicemail"][value] if value else None
                else:
                    setattr(dep, "queue_" + key, value)
            dep.no_answer = target(dd["no_answer"])
            for m in dd["members"]:
                s.add(DepartmentMember(
                    tenant_id=self.tid, department_id=dep.id, employee_id=ids["employee"][m["employee"]],
                    order=m["order"], weight=m["weight"], escalation_offset=m["escalation_offset"],
                ))
        for m in d["menus"]:
            menu = menus[m["name"]]
            for key in ("extension", "greeting", "timeout_seconds", "invalid_sound", "max_invalid", "direct_dial",
                        "back_digit"):
                setattr(menu, key, m[key])
            menu.default = target(m["default"])
            for digit, (_, t) in sorted(m["options"].items()):
                s.add(VoiceMenuOption(tenant_id=self.tid, menu_id=menu.id, digit=digit, target=target(t)))
        for sd in d["schedules"]:
            sched = schedules[sd["name"]]
            sched.is_default = sd["default"]
            for weekday, start, end in sd["intervals"]:
                s.add(ScheduleInterval(tenant_id=self.tid, schedule_id=sched.id, weekday=weekday,
                                       start_minute=start, end_minute=end))
            for x in sd["exceptions"]:
                s.add(ScheduleException(tenant_id=self.tid, schedule_id=sched.id, day=x["date"], name=x["name"],
                                        closed=x["closed"], intervals=format_hours(x["hours"])))
        for n in d["numbers"]:
            num = numbers[n["number"]]
            num.mode = NumberMode(n["mode"])
            num.schedule_id = schedules[n["schedule"]].id if n["schedule"] else None
            num.work = target(n["work"])
            num.after_hours = target(n["after_hours"])
            num.dial_code = n["dial_code"]
        rules = self._sync(CallerRule, "name", d["caller_rules"])
        for position, r in enumerate(d["caller_rules"]):
            rule = rules[r["name"]]
            rule.position = position
            rule.match_kind = CallerMatch(r["match"])
            rule.match_values = "\n".join(r["values"])
            rule.numbers = "\n".join(number for _, number in r["numbers"])
            for key in ("negate", "block", "days", "crm_url", "crm_timeout_ms"):
                setattr(rule, key, r[key])
            rule.target = target(r["target"])
        s.flush()
