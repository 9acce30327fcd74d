"""Single-value rules shared by tenant documents and admin forms.

Each ``check_*`` returns None when the value is fine, or a message saying what is wrong
and what to write instead.
"""
from __future__ import annotations

import re
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers

from orchestrator.core.model import NumberMode, Role, Strategy

EXTENSION_RE = re.compile(r"^[0-9]{2,6}$")
DOMAIN_RE = re.compile(r"^(?=.{1,253}$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$")
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
DIGITS = tuple("0123456789*#")
ROLES = tuple(r.value for r in Role)
STRATEGIES = tuple(s.value for s in Strategy)
MODES = tuple(m.value for m in NumberMode)
WEEKDAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


def check_extension(value: str) -> str | None:
    if value.startswith("*"):
        return "extension %r is reserved: numbers starting with * are feature codes" % value
    if not EXTENSION_RE.match(value):
        return "extension must be 2 to 6 digits, got %r" % value
    return None


def check_e164(value: str) -> str | None:
    hint = "write it in E.164 form, e.g. \"+74951234567\" (in quotes)"
    if not value.startswith("+"):
        return "%r is not an E.164 number: %s" % (value, hint)
    try:
        parsed = phonenumbers.parse(value, None)
    except phonenumbers.NumberParseException:
        return "%r is not a phone number: %s" % (value, hint)
    if not phonenumbers.is_valid_number(parsed):
        return "%r is not a valid phone number: %s" % (value, hint)
    if phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164) != value:
        return "%r is not in E.164 form: %s" % (value, hint)
    return None


def check_timezone(value: str) -> str | None:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        return "unknown IANA time zone %r (e.g. Europe/Moscow, UTC)" % value
    return None


def check_domain(value: str) -> str | None:
    if not DOMAIN_RE.match(value):
        return "%r is not a valid SIP domain (lower-case host name, e.g. acme.pbx.example)" % value
    return None


def check_email(value: str) -> str | None:
    return None if EMAIL_RE.match(value) else "%r is not an e-mail address" % value


def check_digit(value: str) -> str | None:
    return None if value in DIGITS else "menu digit must be one of 0-9, * or #, got %r" % value


def check_choice(value: str, choices: tuple[str, ...]) -> str | None:
    return None if value in choices else "must be one of %s, got %r" % (", ".join(choices), value)
