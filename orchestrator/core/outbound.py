"""Employees' calls to external numbers: which number is dialled, which of the tenant's
numbers the callee sees. Pure (``phonenumbers`` only).

An employee's phone dials into the ``pbx-internal`` context. A dialled string that is
no extension of the tenant is an outbound call when it reads as a phone number:

* ``89161234567``, ``+79161234567``, ``007...``, ``810...`` (the national and
  international forms of the country of the caller ID in use) and emergency numbers;
* ``*7<code>*<number>``: the same, shown as the tenant's number whose dial code is
  ``<code>`` (the feature code to call with another of the tenant's numbers).

The caller ID is, in order: the feature code's number; the employee's own outbound
caller ID; the caller ID of the first of their departments (by id) that has one; the
tenant's first number (E.164 order). Only numbers in the tenant's own snapshot are ever
used: a setting that names a number the tenant no longer has is skipped, so a call never
goes out with another tenant's number.
"""
from __future__ import annotations

from dataclasses import dataclass

import phonenumbers

from orchestrator.core.model import Employee, TargetKind, TenantSnapshot

FEATURE_OTHER_NUMBER = "*7"  # *7<dial code>*<number>


@dataclass(frozen=True)
class Outbound:
    """An outbound call decided: ``number`` (E.164, or an emergency short number) shown
    as ``caller_id``; or refused (``number`` empty) with ``cause`` and ``note``."""

    number: str
    caller_id: str
    note: str
    employee_id: int | None = None
    cause: str = ""


def _employee(snap: TenantSnapshot, user: str) -> Employee | None:
    target = snap.target_for_extension(user)  # the snapshot's extension index
    if target is None or target.kind is not TargetKind.EMPLOYEE or target.ref_id is None:
        return None
    return snap.employees.get(target.ref_id)


def _default_caller_id(snap: TenantSnapshot, emp: Employee) -> tuple[str, str]:
    """(number, why) for an employee's call without the feature code; ("", why) if the
    tenant has no number at all."""
    if emp.outbound_caller_id and emp.outbound_caller_id in snap.numbers:
        return emp.outbound_caller_id, "employee's caller ID"
    for dep in sorted(snap.departments.values(), key=lambda d: d.id):
        if dep.outbound_caller_id in snap.numbers and any(m.employee_id == emp.id for m in dep.members):
            return dep.outbound_caller_id or "", "caller ID of department %s" % dep.name
    if snap.numbers:
        return sorted(snap.numbers)[0], "the tenant's first number"
    return "", "the tenant has no number"


def employee_caller_id(snap: TenantSnapshot, user: str) -> str:
    """The number ``user``'s calls out show without the feature code ("" if none)."""
    emp = _employee(snap, user)
    return _default_caller_id(snap, emp)[0] if emp is not None else ""


def _region(e164: str) -> str | None:
    try:
        return phonenumbers.region_code_for_number(phonenumbers.parse(e164, None))
    except phonenumbers.NumberParseException:
        return None


def dialled_number(text: str, region: str | None) -> str | None:
    """E.164 for a dialled string read in ``region`` (the caller ID's country), the
    short number itself for an emergency number, None for anything else."""
    raw = text.strip()
    if not raw or not all(ch.isdigit() for ch in raw.lstrip("+")):
        return None
    if region and not raw.startswith("+") and phonenumbers.is_emergency_number(raw, region):
        return raw
    if raw.startswith("00"):
        raw = "+" + raw[2:]
    try:
        parsed = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(parsed):
        return None
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def decide(snap: TenantSnapshot, caller_user: str, dialled: str) -> Outbound | None:
    """The outbound call ``caller_user`` (the phone's SIP user, i.e. the employee's
    extension) places by dialling ``dialled``; None when it is no outbound call at all."""
    code: str | None = None
    text = dialled.strip()
    if text.startswith(FEATURE_OTHER_NUMBER):
        code, sep, text = text[len(FEATURE_OTHER_NUMBER):].partition("*")
        if not sep or not code.isdigit():
            return Outbound("", "", "feature code %s: dial %s<code>*<number>" % (FEATURE_OTHER_NUMBER, FEATURE_OTHER_NUMBER),
                            cause="INVALID_NUMBER_FORMAT")
    elif not text.lstrip("+").isdigit() or len(text.lstrip("+")) < 3:
        return None
    emp = _employee(snap, caller_user)
    if code is not None:
        chosen = [n.e164 for n in snap.numbers.values() if n.dial_code == code]
        caller_id, why = (chosen[0], "dial code %s" % code) if chosen else ("", "no number of the tenant has dial code %s" % code)
    elif emp is not None:
        caller_id, why = _default_caller_id(snap, emp)
    else:
        caller_id, why = "", "not an employee's phone"
    number = dialled_number(text, _region(caller_id) if caller_id else None)
    if number is None and code is None and not text.startswith("+") and len(text) <= 6:
        return None  # short digits: an extension that does not exist
    who = emp.id if emp is not None else None
    if emp is None:
        return Outbound("", "", "outbound call from %r: not an employee's phone" % caller_user, who, "CALL_REJECTED")
    if not caller_id:
        return Outbound("", "", "outbound call refused: %s" % why, who, "UNALLOCATED_NUMBER" if code else "CALL_REJECTED")
    if number is None:
        return Outbound("", caller_id, "%s is not a valid phone number" % text, who, "INVALID_NUMBER_FORMAT")
    note = "outbound call from %s to %s as %s (%s)" % (emp.extension, number, caller_id, why)
    return Outbound(number, caller_id, note, who)
