"""Single-value rules shared by tenant documents and admin forms.

Each ``check_*`` returns None when the value is fine, or a message saying what is wrong
and what to write instead.
"""
from __future__ import annotations

import re
from typing import Callable
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers

from orchestrator.core.model import NumberMode, Role, Strategy, sound_problem

EXTENSION_RE = re.compile(r"^[0-9]{2,6}$")
DOMAIN_RE = re.compile(r"^(?=.{1,253}$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$")
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
DIGITS = tuple("0123456789*#")
ROLES = tuple(r.value for r in Role)
STRATEGIES = tuple(s.value for s in Strategy)
MODES = tuple(m.value for m in NumberMode)
WEEKDAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
PREFIX_RE = re.compile(r"^\+[1-9][0-9]{0,14}$")

Rule = Callable[[str], "str | None"]


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


def check_sound(value: str) -> str | None:
    """A sound field (greeting, music, announcement...): one of the forms of
    ``core.model.Sound`` - nothing FreeSWITCH would expand or split (``core.sounds``)."""
    return sound_problem(value)


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


def check_back_digit(value: str) -> str | None:
    return None if value in DIGITS and value != "#" else "back digit must be one of 0-9 or * (# ends the input), got %r" % value


def check_dial_code(value: str) -> str | None:
    ok = value.isascii() and value.isdigit() and 1 <= len(value) <= 3
    return None if ok else "dial code must be 1-3 digits (employees dial *7<code>*<number>), got %r" % value


def check_choice(value: str, choices: tuple[str, ...]) -> str | None:
    return None if value in choices else "must be one of %s, got %r" % (", ".join(choices), value)


def check_country(value: str) -> str | None:
    if value.upper() in phonenumbers.SUPPORTED_REGIONS:
        return None
    return "%r is not a country code: use ISO 3166 codes such as RU, KZ, DE, US" % value


def check_prefix(value: str) -> str | None:
    if PREFIX_RE.match(value):
        return None
    return "%r is not a number prefix: write + and the first digits, e.g. \"+7812\" (in quotes)" % value


def check_place(value: str) -> str | None:
    if len(value) > 100 or not any(ch.isalpha() for ch in value):
        return "%r is not a place name: write it as pbx-explain shows it, e.g. St Petersburg, Moscow" % value
    return None


def check_url(value: str) -> str | None:
    """An http(s) URL with a host (the CRM endpoint)."""
    try:
        parts = urlsplit(value)
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname or len(value) > 500:
        return "%r is not an http(s) URL, e.g. https://crm.example/pbx/responsible" % value
    return None
