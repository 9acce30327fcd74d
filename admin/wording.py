"""The panel's own words for what the shared rules say, and what the database refuses.

The tenant-document rules (``orchestrator.tenant_doc``) are written for someone editing a
YAML file: they name list positions (``employees[2]``), say "put it in quotes" and "give
the name as text". A form has no positions and no quotes, so ``panel_message`` rewrites
those phrases (the rules themselves are shared and stay as they are).

A unique or check constraint that a form can still hit (two menu options on one key, the
same member twice, a row still in use) becomes ``integrity_message``: which rule, in
words, never the database's text (``IntegrityError ... [SQL: INSERT ...]``).

Phone numbers typed the way people dial them in their country (``89161234567``,
``8 (495) 123-45-67``) are normalised with ``phonenumbers`` in the tenant's country (the
country of its time zone, from the IANA ``zone.tab``) to E.164 before the rules see them.
"""
from __future__ import annotations

import re
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import phonenumbers

E164_HINT = re.compile(r'write it in E\.164 form, e\.g\. "\+74951234567" \(in quotes\)')
PREFIX_HINT = re.compile(r'write \+ and the first digits, e\.g\. "\+7812" \(in quotes\)')
QUOTES = re.compile(r"\s*\((?:put it in quotes|put numbers in quotes: \"[^\"]*\")\)")
AS_TEXT = re.compile(r"^(?:([a-z_]+): )?give the (.+) as text$")
PICKED_KINDS = {"department": "department", "employee": "employee", "menu": "voice menu",
                "voicemail": "voicemail box", "fax": "voicemail box the fax goes to"}
USED_TWICE = re.compile(r" is used twice \(also [^)]*\)")
ALSO_PATH = re.compile(r" \(also [a-z_]+\[\d+\][^)]*\)")
DOC_PATH = re.compile(r"\b[a-z_]+\[\d+\](?:\.[\w*#]+(?:\[\d+\])?)*")
NIGHT_SHIFT = "(for a night shift write e.g. 22:00-26:00)"
CRM_REQUIRED = re.compile(r"^is required: \{url: [^}]*\}$")
YAML_EXAMPLE = re.compile(r",? e\.g\. \{[^{}]*\}$")
TARGET_SHAPES = re.compile(r"^a target is one of .*$")


def panel_message(text: str) -> str:
    """One rule's message as the panel says it."""
    text = E164_HINT.sub("write it with the country code, e.g. +74951234567, or as dialled in the company's "
                         "country, e.g. 8 495 123-45-67", text)
    text = PREFIX_HINT.sub("write + and the first digits, e.g. +7812", text)
    text = QUOTES.sub("", text)
    match = AS_TEXT.match(text)
    if match and match.group(1) in PICKED_KINDS:
        text = "choose the %s from the list (search by name or extension)" % PICKED_KINDS[match.group(1)]
    elif match:
        what = {"E.164 number": "outside number"}.get(match.group(2), match.group(2))
        text = "enter the %s" % what
    if CRM_REQUIRED.match(text):
        text = "is required: the CRM endpoint's URL, e.g. https://crm.example/pbx/responsible"
    if TARGET_SHAPES.match(text):
        text = "choose where the call goes"
    text = YAML_EXAMPLE.sub("", text)
    text = USED_TWICE.sub(" is already used by another one: choose a different one", text)
    text = ALSO_PATH.sub("", text)
    text = text.replace(NIGHT_SHIFT, "(for a night shift that ends after midnight, choose an end time "
                                     "earlier than the start: 22:00 to 06:00)")
    return DOC_PATH.sub("another row", text)


# Constraint names (``orchestrator.db.base.NAMING_CONVENTION``) -> (form field, message).
CONSTRAINT_MESSAGES: dict[str, tuple[str | None, str]] = {
    "uq_voice_menu_option_menu_id_digit": ("options", "Two options use the same key: each key of a menu can "
                                                      "lead to one place only. Change or remove one of them."),
    "uq_department_member_department_id_employee_id": ("members", "The same employee is listed twice as a member: "
                                                                  "remove one of the two rows."),
    "uq_voicemail_box_owner_box_id_employee_id": ("owners", "The same employee is listed twice as an owner: "
                                                            "remove one of the two rows."),
    "uq_schedule_exception_schedule_id_day": ("exceptions", "Two special days have the same date: keep one row "
                                                            "per date."),
    "uq_schedule_one_default": ("is_default", "Another schedule is already the default: untick it there first."),
    "uq_phone_number_tenant_id_dial_code": ("dial_code", "This dial code is already used by another number of the "
                                                         "company: choose another."),
    "uq_phone_number_e164": ("e164", "This number is already in use."),
    "uq_admin_user_username": ("username", "This username is taken: choose another."),
    "uq_tenant_sip_domain": ("sip_domain", "This SIP domain is used by another company: choose another."),
}
UNIQUE_NAME = re.compile(r"^uq_(\w+?)_tenant_id_(name|extension)$")


ROW_WORDS = {"employees": "employee", "departments": "department", "voicemail_boxes": "voicemail box",
             "menus": "voice menu", "schedules": "schedule", "numbers": "number", "caller_rules": "caller rule"}


def describe_path(origins: dict[str, tuple[type, Any]], path: str) -> str:
    """A tenant-document path (``numbers[2].schedule``) as the row it names
    (``number +74950000003, schedule``); ``origins`` from ``tenant_document``."""
    best = max((p for p in origins if path == p or path.startswith(p + ".")), key=len, default=None)
    if best is None:
        return panel_message(path)
    row = origins[best][1]
    words = ROW_WORDS.get(best.split("[", 1)[0], "row")
    rest = path[len(best) + 1:].replace("_", " ").replace(".", " ")
    rest = re.sub(r"\[\d+\]", "", rest).strip()
    return "%s %s" % (words, row) + (" (%s)" % rest if rest else "")


def integrity_message(exc: Exception) -> tuple[str | None, str]:
    """(form field or None, message) for a refused write; never the database's text."""
    orig = getattr(exc, "orig", None)
    name = getattr(getattr(orig, "diag", None), "constraint_name", None) or ""
    if not name:  # SQLite (tests, dev): "UNIQUE constraint failed: voice_menu_option.menu_id, ..."
        found = re.search(r"(?:constraint failed: |constraint \")([\w., ]+)", str(orig or ""))
        name = _sqlite_name(found.group(1)) if found else ""
    if name in CONSTRAINT_MESSAGES:
        return CONSTRAINT_MESSAGES[name]
    unique = UNIQUE_NAME.match(name)
    if unique:
        what = unique.group(2)
        return what, "This %s is already used by another %s of the company: choose another." % (
            what, unique.group(1).replace("_", " "))
    if name.startswith("fk_") or "FOREIGN KEY" in str(orig or ""):
        return None, ("Not saved: other rows still refer to this one (e.g. a number uses this schedule). "
                      "Change those first, then try again.")
    if name.startswith("ck_"):
        return None, "Not saved: a value is out of its allowed range. Check the numbers in the form and try again."
    return None, "Not saved: the change conflicts with another row of the company. Check the values and try again."


def _sqlite_name(columns: str) -> str:
    parts = [c.strip() for c in columns.split(",") if c.strip()]
    if not parts or "." not in parts[0]:
        return ""
    table = parts[0].split(".", 1)[0]
    return "uq_%s_%s" % (table, "_".join(p.split(".", 1)[1] for p in parts))


@lru_cache(maxsize=1)
def _zone_countries() -> dict[str, str]:
    text = ""
    try:
        text = resources.files("tzdata").joinpath("zoneinfo/zone.tab").read_text(encoding="utf-8")
    except (ModuleNotFoundError, FileNotFoundError, OSError):
        system = Path("/usr/share/zoneinfo/zone.tab")
        text = system.read_text(encoding="utf-8") if system.exists() else ""
    out: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        cols = line.split("\t")
        if len(cols) >= 3:
            out[cols[2]] = cols[0]
    return out


def tenant_region(timezone: str | None) -> str | None:
    """The ISO country of a tenant's time zone (``Europe/Moscow`` -> ``RU``), or None."""
    return _zone_countries().get(timezone or "")


MAX_NUMBER_INPUT = 40  # longer text is not a phone number; left as typed for the rules to refuse


def normalise_number(value: Any, region: str | None) -> Any:
    """``value`` in E.164 when it is a valid number (international, or national in
    ``region``); anything else unchanged, so the rules say what is wrong with it."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if not text or len(text) > MAX_NUMBER_INPUT or text.startswith("*"):
        return value
    try:
        parsed = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return value
    if not phonenumbers.is_valid_number(parsed):
        return value
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
