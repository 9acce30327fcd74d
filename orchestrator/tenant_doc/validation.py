"""Every rule of a tenant document, in one place, used by the importer and admin forms.

``validate(doc)`` returns all broken rules as FieldErrors (field path + YAML line);
``check(doc)`` also returns the normalized data (defaults filled in) the importer writes.
Rules needing the database (a number owned by another tenant) live in the importer.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Any, Mapping

from orchestrator.errors import FieldError
from orchestrator.tenant_doc import rules
from orchestrator.tenant_doc.caller_rules import check_caller_rules
from orchestrator.tenant_doc.checker import Checker
from orchestrator.tenant_doc.schedules import check_schedules
from orchestrator.tenant_doc.source import Document, join
from orchestrator.tenant_doc.targets import parse_target

TOP_KEYS = ("tenant", "employees", "departments", "voicemail_boxes", "menus", "schedules", "numbers", "caller_rules")
TENANT_KEYS = ("name", "sip_domain", "timezone", "enabled", "max_concurrent_calls", "forward_caller_id")
EMPLOYEE_KEYS = ("name", "extension", "email", "role", "mobile", "forward_to_mobile_after", "ring_seconds",
                 "outbound_caller_id", "logged_in", "voicemail", "sip_password")
DEPARTMENT_KEYS = ("name", "extension", "strategy", "ring_seconds", "no_answer_timeout", "no_answer",
                   "wrapup_seconds", "pause_after_missed", "stats_window_days", "queue", "members",
                   "outbound_caller_id")
QUEUE_KEYS = ("music", "announcement", "announce_position", "announce_every", "max_wait", "max_length",
              "callback_allowed", "callback_key", "callback_apology", "callback_prompt", "callback_attempts",
              "callback_retry_delay", "callback_voicemail")
MEMBER_KEYS = ("employee", "order", "weight", "escalation_offset")
BOX_KEYS = ("name", "extension", "greeting", "email", "owners", "max_message_seconds")
MENU_KEYS = ("name", "extension", "greeting", "timeout_seconds", "options", "default", "invalid_sound",
             "max_invalid", "direct_dial", "back_digit")
NUMBER_KEYS = ("number", "mode", "schedule", "work", "after_hours", "dial_code")

Target = tuple[str, Any]  # (kind, reference): ("department", "200")


def validate(doc: Document | Mapping[str, Any]) -> list[FieldError]:
    """All broken rules of a tenant document (a parsed Document, or plain data)."""
    return check(doc)[0]


def check(doc: Document | Mapping[str, Any]) -> tuple[list[FieldError], dict[str, Any]]:
    if not isinstance(doc, Document):
        doc = Document(data=doc)
    c = Checker(doc)
    out: dict[str, Any] = {key: [] for key in TOP_KEYS}
    out["tenant"] = {}
    data = c.mapping(doc.data, "(document)") if doc.data is not None else None
    if data is None:
        if doc.data is None:
            c.error("tenant", "the document is empty: start with a 'tenant:' section")
        return c.errors, out
    c.known_keys(data, "", TOP_KEYS)
    out["tenant"] = _tenant(c, data)
    out["employees"] = [_employee(c, p, e) for p, e in c.items(data, "employees")]
    out["voicemail_boxes"] = [_box(c, p, b) for p, b in c.items(data, "voicemail_boxes")]
    out["departments"] = [_department(c, p, d) for p, d in c.items(data, "departments")]
    out["menus"] = [_menu(c, p, m) for p, m in c.items(data, "menus")]
    out["schedules"] = check_schedules(c, c.items(data, "schedules"))
    out["numbers"] = [_number(c, p, n) for p, n in c.items(data, "numbers")]
    out["caller_rules"] = check_caller_rules(c, c.items(data, "caller_rules"), _target)
    _unique_extensions(c, out)
    _unique(c, out["voicemail_boxes"], "name", "voicemail box name")
    _unique(c, out["menus"], "name", "menu name")
    _unique(c, out["departments"], "name", "department name")
    _unique(c, out["numbers"], "number", "number")
    _references(c, out)
    _cycles(c, out)
    return c.errors, out


def _tenant(c: Checker, data: dict) -> dict[str, Any]:
    t = c.mapping(data.get("tenant"), "tenant") if "tenant" in data else None
    if t is None:
        if "tenant" not in data:
            c.error("tenant", "is required: name, sip_domain and timezone of the company")
        return {}
    c.known_keys(t, "tenant", TENANT_KEYS)
    domain = c.text(t, "sip_domain", "tenant", required=True)
    if domain is not None and (problem := rules.check_domain(domain.lower())):
        c.error("tenant.sip_domain", problem)
    return {
        "name": c.text(t, "name", "tenant", required=True),
        "sip_domain": domain.lower() if domain else None,
        "timezone": c.text(t, "timezone", "tenant", rule=rules.check_timezone) or "UTC",
        "enabled": c.boolean(t, "enabled", "tenant", True),
        "max_concurrent_calls": c.integer(t, "max_concurrent_calls", "tenant", 0, minimum=0),
        "forward_caller_id": c.text(t, "forward_caller_id", "tenant",
                                    rule=lambda v: rules.check_choice(v, ("caller", "number"))) or "caller",
    }


def _target(c: Checker, obj: dict, key: str, path: str, *, required: bool = False) -> Target | None:
    field = join(path, key)
    value = obj.get(key)
    if value is None:
        if required:
            c.error(field, "is required, e.g. {department: \"200\"}")
        return None
    parsed = parse_target(value)
    if isinstance(parsed, str):
        c.error(field, parsed)
        return None
    kind, ref = parsed
    if kind == "external" and (problem := rules.check_e164(ref)):
        c.error(join(field, "external"), problem)
        return None
    if kind == "announcement" and ref is not None:
        ref = ref.strip() or None
        if ref is not None and (problem := rules.check_sound(ref)):
            c.error(join(field, "announcement"), problem)
            return None
    return kind, ref


def _employee(c: Checker, p: str, e: dict) -> dict[str, Any]:
    c.known_keys(e, p, EMPLOYEE_KEYS)
    mobile = c.text(e, "mobile", p, rule=rules.check_e164)
    after = c.integer(e, "forward_to_mobile_after", p, None, minimum=0, maximum=600)
    if after is not None and "mobile" not in e:
        c.error(join(p, "forward_to_mobile_after"), "needs a mobile number to forward to")
    email = c.text(e, "email", p, rule=rules.check_email)
    role = c.text(e, "role", p, rule=lambda v: rules.check_choice(v, rules.ROLES)) or "user"
    password = c.text(e, "sip_password", p)
    if password is not None and len(password) < 12:
        c.error(join(p, "sip_password"), "is too weak: use 12+ characters or leave it out to generate one")
    return {
        "_path": p,
        "name": c.text(e, "name", p, required=True),
        "extension": c.text(e, "extension", p, required=True, rule=rules.check_extension, numeric_ok=True),
        "email": email, "role": role, "mobile": mobile, "forward_to_mobile_after": after,
        "ring_seconds": c.integer(e, "ring_seconds", p, 20, minimum=1, maximum=600),
        "outbound_caller_id": c.text(e, "outbound_caller_id", p, rule=rules.check_e164),
        "logged_in": c.boolean(e, "logged_in", p, True),
        "voicemail": c.text(e, "voicemail", p),
        "sip_password": password,
    }


def _box(c: Checker, p: str, b: dict) -> dict[str, Any]:
    c.known_keys(b, p, BOX_KEYS)
    owners: list[tuple[str, str]] = []
    raw = b.get("owners") or []
    if not isinstance(raw, list):
        c.error(join(p, "owners"), "must be a list of employee extensions")
        raw = []
    for i, owner in enumerate(raw):
        path = join(join(p, "owners"), i)
        if isinstance(owner, int) and not isinstance(owner, bool):
            owner = str(owner)
        if not isinstance(owner, str):
            c.error(path, "must be an employee extension, e.g. \"101\"")
            continue
        owners.append((path, owner))
    return {
        "_path": p,
        "name": c.text(b, "name", p, required=True),
        "extension": c.text(b, "extension", p, rule=rules.check_extension, numeric_ok=True),
        "greeting": c.text(b, "greeting", p, rule=rules.check_sound),
        "email": c.text(b, "email", p, rule=rules.check_email),
        "max_message_seconds": c.integer(b, "max_message_seconds", p, 120, minimum=1, maximum=3600),
        "owners": owners,
    }


def _department(c: Checker, p: str, d: dict) -> dict[str, Any]:
    c.known_keys(d, p, DEPARTMENT_KEYS)
    queue: dict[str, Any] = {}
    qp = join(p, "queue")
    q = c.mapping(d["queue"], qp) if d.get("queue") is not None else {}
    if q is not None:
        c.known_keys(q, qp, QUEUE_KEYS)
        queue = {
            "music": c.text(q, "music", qp, rule=rules.check_sound),
            "announcement": c.text(q, "announcement", qp, rule=rules.check_sound),
            "announce_position": c.boolean(q, "announce_position", qp, False),
            "announce_every": c.integer(q, "announce_every", qp, 30, minimum=5, maximum=600),
            "max_wait": c.integer(q, "max_wait", qp, 300, minimum=1, maximum=86400),
            "max_length": c.integer(q, "max_length", qp, 0, minimum=0),
            "callback_allowed": c.boolean(q, "callback_allowed", qp, False),
            "callback_key": c.text(q, "callback_key", qp, rule=rules.check_digit, numeric_ok=True) or "1",
            "callback_apology": c.text(q, "callback_apology", qp, rule=rules.check_sound),
            "callback_prompt": c.text(q, "callback_prompt", qp, rule=rules.check_sound),
            "callback_attempts": c.integer(q, "callback_attempts", qp, 3, minimum=1, maximum=10),
            "callback_retry_delay": c.integer(q, "callback_retry_delay", qp, 60, minimum=0, maximum=3600),
            "callback_voicemail": c.text(q, "callback_voicemail", qp),  # a voicemail box's name
        }
    members = []
    for i, (mp, m) in enumerate(c.items(d, "members", p) if isinstance(d.get("members"), list) else []):
        c.known_keys(m, mp, MEMBER_KEYS)
        members.append({
            "_path": mp, "employee": c.text(m, "employee", mp, required=True, numeric_ok=True),
            "order": c.integer(m, "order", mp, i, minimum=0),
            "weight": c.integer(m, "weight", mp, 5, minimum=0, maximum=100),
            "escalation_offset": c.integer(m, "escalation_offset", mp, 0, minimum=0, maximum=3600),
        })
    if d.get("members") is not None and not isinstance(d.get("members"), list):
        c.error(join(p, "members"), "must be a list of {employee: \"101\"}")
    return {
        "_path": p,
        "name": c.text(d, "name", p, required=True),
        "extension": c.text(d, "extension", p, required=True, rule=rules.check_extension, numeric_ok=True),
        "strategy": c.text(d, "strategy", p, rule=lambda v: rules.check_choice(v, rules.STRATEGIES)) or "ring_all",
        "ring_seconds": c.integer(d, "ring_seconds", p, 20, minimum=1, maximum=600),
        "no_answer_timeout": c.integer(d, "no_answer_timeout", p, 60, minimum=1, maximum=86400),
        "no_answer": _target(c, d, "no_answer", p),
        "wrapup_seconds": c.integer(d, "wrapup_seconds", p, 0, minimum=0, maximum=3600),
        "pause_after_missed": c.integer(d, "pause_after_missed", p, 0, minimum=0, maximum=100),
        "stats_window_days": c.integer(d, "stats_window_days", p, 1, minimum=1, maximum=31),
        "outbound_caller_id": c.text(d, "outbound_caller_id", p, rule=rules.check_e164),
        "queue": queue, "members": members,
    }


def _menu(c: Checker, p: str, m: dict) -> dict[str, Any]:
    c.known_keys(m, p, MENU_KEYS)
    options: dict[str, tuple[str, Target]] = {}
    op = join(p, "options")
    raw = c.mapping(m["options"], op) if m.get("options") is not None else {}
    for digit, value in (raw or {}).items():
        path = join(op, str(digit))
        digit = str(digit)
        if problem := rules.check_digit(digit):
            c.error(path, problem)
            continue
        target = _target(c, {digit: value}, digit, op)
        if target is not None:
            options[digit] = (path, target)
    return {
        "_path": p,
        "name": c.text(m, "name", p, required=True),
        "extension": c.text(m, "extension", p, rule=rules.check_extension, numeric_ok=True),
        "greeting": c.text(m, "greeting", p, rule=rules.check_sound),
        "timeout_seconds": c.integer(m, "timeout_seconds", p, 5, minimum=1, maximum=120),
        "options": options,
        "default": _target(c, m, "default", p),
        "invalid_sound": c.text(m, "invalid_sound", p, rule=rules.check_sound),
        "max_invalid": c.integer(m, "max_invalid", p, 3, minimum=1, maximum=20),
        "direct_dial": c.boolean(m, "direct_dial", p, True),
        "back_digit": c.text(m, "back_digit", p, rule=rules.check_back_digit, numeric_ok=True),
    }


def _number(c: Checker, p: str, n: dict) -> dict[str, Any]:
    c.known_keys(n, p, NUMBER_KEYS)
    mode = c.text(n, "mode", p, rule=lambda v: rules.check_choice(v, rules.MODES)) or "always"
    return {
        "_path": p,
        "number": c.text(n, "number", p, required=True, rule=rules.check_e164),
        "mode": mode,
        "schedule": c.text(n, "schedule", p),
        "work": _target(c, n, "work", p, required=True),
        "after_hours": _target(c, n, "after_hours", p, required=mode == "schedule"),
        "dial_code": c.text(n, "dial_code", p, rule=rules.check_dial_code, numeric_ok=True),
    }


def _unique_extensions(c: Checker, out: dict[str, Any]) -> None:
    seen: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for section, label in (("employees", "employee"), ("departments", "department"), ("menus", "menu"),
                           ("voicemail_boxes", "voicemail box")):
        for item in out[section]:
            if item.get("extension"):
                seen[item["extension"]].append((item["_path"], "%s %s" % (label, item.get("name"))))
    for ext, uses in seen.items():
        if len(uses) > 1:
            for path, _ in uses:
                others = ", ".join("%s (%s)" % (who, where) for where, who in uses if where != path)
                c.error(join(path, "extension"), "extension %s is already used by %s" % (ext, others))


def _unique(c: Checker, items: list[dict[str, Any]], key: str, label: str) -> None:
    first: dict[str, str] = {}
    for item in items:
        value = item.get(key)
        if value is None:
            continue
        if value in first:
            c.error(join(item["_path"], key), "%s %r is used twice (also %s)" % (label, value, first[value]))
        else:
            first[value] = item["_path"]


def _references(c: Checker, out: dict[str, Any]) -> None:
    known = {
        "employee": {e["extension"] for e in out["employees"] if e.get("extension")},
        "department": {d["extension"] for d in out["departments"] if d.get("extension")},
        "menu": {m["name"] for m in out["menus"] if m.get("name")},
        "voicemail": {b["name"] for b in out["voicemail_boxes"] if b.get("name")},
    }
    known["fax"] = known["voicemail"]  # a fax is delivered to a voicemail box
    schedules = {s["name"] for s in out["schedules"] if s.get("name")}
    has_default = any(s.get("default") is not False for s in out["schedules"])

    def need(kind: str, ref: str | None, path: str) -> None:
        if ref is not None and ref not in known[kind]:
            label = {"voicemail": "voicemail box", "fax": "voicemail box"}.get(kind, kind)
            c.error(path, "no %s %r in this tenant" % (label, ref))

    def target(t: Target | None, path: str) -> None:
        if t is not None and t[0] in known:
            need(t[0], t[1], join(path, t[0]))

    for e in out["employees"]:
        need("voicemail", e.get("voicemail"), join(e["_path"], "voicemail"))
    for b in out["voicemail_boxes"]:
        for path, owner in b["owners"]:
            need("employee", owner, path)
    for d in out["departments"]:
        target(d["no_answer"], join(d["_path"], "no_answer"))
        need("voicemail", d["queue"].get("callback_voicemail"), join(join(d["_path"], "queue"), "callback_voicemail"))
        members_seen: set[str] = set()
        for m in d["members"]:
            need("employee", m["employee"], join(m["_path"], "employee"))
            if m["employee"] in members_seen:
                c.error(join(m["_path"], "employee"), "employee %s is a member twice" % m["employee"])
            members_seen.add(m["employee"])
    for m in out["menus"]:
        for path, t in m["options"].values():
            target(t, path)
        target(m["default"], join(m["_path"], "default"))
    for n in out["numbers"]:
        target(n["work"], join(n["_path"], "work"))
        target(n["after_hours"], join(n["_path"], "after_hours"))
        if n.get("schedule") is not None and n["schedule"] not in schedules:
            c.error(join(n["_path"], "schedule"), "no schedule %r in this tenant" % n["schedule"])
        if n["mode"] == "schedule" and n.get("schedule") is None and not has_default:
            c.error(join(n["_path"], "schedule"), "no default schedule: name one, or mark a schedule default: true")
    own_numbers = {n["number"] for n in out["numbers"] if n.get("number")}
    for item in out["employees"] + out["departments"]:
        if item.get("outbound_caller_id") and item["outbound_caller_id"] not in own_numbers:
            c.error(join(item["_path"], "outbound_caller_id"),
                    "%s is not a number of this tenant (calls go out only with the tenant's own numbers)" % item["outbound_caller_id"])
    codes: dict[str, str] = {}
    for n in out["numbers"]:
        code = n.get("dial_code")
        if code and code in codes:
            c.error(join(n["_path"], "dial_code"), "dial code %s is used twice (also %s)" % (code, codes[code]))
        elif code:
            codes[code] = n["_path"]
    for m in out["menus"]:
        if m.get("back_digit") and m["back_digit"] in m["options"]:
            c.error(join(m["_path"], "back_digit"), "digit %s is also an option of this menu" % m["back_digit"])
    for r in out["caller_rules"]:
        target(r["target"], join(r["_path"], "target"))
        for path, number in r["numbers"]:
            if number not in own_numbers:
                c.error(path, "%s is not a number of this tenant (the rule applies to calls to its own numbers)" % number)


def _cycles(c: Checker, out: dict[str, Any]) -> None:
    """Refuse loops in the target graph (department no-answer, menu options/default)."""
    edges: dict[tuple[str, str], list[tuple[tuple[str, str], str]]] = defaultdict(list)
    for d in out["departments"]:
        t = d["no_answer"]
        if t and t[0] in ("department", "menu") and d.get("extension"):
            edges[("department", d["extension"])].append(((t[0], t[1]), join(d["_path"], "no_answer")))
    for m in out["menus"]:
        if not m.get("name"):
            continue
        targets = list(m["options"].values()) + ([(join(m["_path"], "default"), m["default"])] if m["default"] else [])
        for path, t in targets:
            if t[0] in ("department", "menu"):
                edges[("menu", m["name"])].append(((t[0], t[1]), path))
    state: dict[tuple[str, str], int] = {}  # 1 = on the current path, 2 = done
    stack: list[tuple[str, str]] = []

    def name(node: tuple[str, str]) -> str:
        return "%s %s" % node

    def visit(node: tuple[str, str]) -> None:
        state[node] = 1
        stack.append(node)
        for nxt, path in edges.get(node, []):
            if state.get(nxt) == 1:
                loop = stack[stack.index(nxt):] + [nxt]
                c.error(path, "route target cycle: %s; calls would loop forever"
                        % " -> ".join(name(n) for n in loop))
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in list(edges):
        if node not in state:
            visit(node)
