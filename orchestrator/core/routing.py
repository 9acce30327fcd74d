"""Which tenant a call belongs to, and where its entry point sends it. Pure."""
from __future__ import annotations

from dataclasses import dataclass

from orchestrator.core.actions import CallInfo
from orchestrator.core.model import NumberMode, PhoneNumber, RoutingIndex, Schedule, Target, TenantSnapshot
from orchestrator.core.schedule import is_open


def number_candidates(dialed: str) -> tuple[str, ...]:
    """Forms a carrier may deliver a dialled number in, most exact first.

    Numbers are stored in E.164 (``+74950000001``); carriers send ``+7495...``,
    ``7495...`` or ``007495...``. National trunk prefixes (Russia's ``8``) depend on the
    carrier and are normalised by the gateway's dialplan, not guessed here.
    """
    raw = dialed.strip()
    digits = raw[1:] if raw.startswith("+") else raw
    if digits.startswith("00"):
        digits = digits[2:]
    if not digits.isdigit():
        return (raw,)
    return tuple(dict.fromkeys((raw, "+" + digits)))


def find_tenant(index: RoutingIndex, call: CallInfo) -> int | None:
    if call.entry == "internal":
        return index.domains.get(call.domain.lower())
    for candidate in number_candidates(call.destination):
        tenant_id = index.numbers.get(candidate)
        if tenant_id is not None:
            return tenant_id
    return None


@dataclass(frozen=True)
class Entry:
    target: Target | None
    note: str  # the decision, in words, for logs and call history


def find_number(snapshot: TenantSnapshot, dialed: str) -> PhoneNumber | None:
    """The tenant's number a dialled number is, in any of its carrier forms."""
    for candidate in number_candidates(dialed):
        number = snapshot.numbers.get(candidate)
        if number is not None:
            return number
    return None


def number_schedule(snapshot: TenantSnapshot, number: PhoneNumber) -> Schedule | None:
    """The number's own schedule, else the tenant's default one."""
    if number.schedule_id is not None:
        return snapshot.schedules.get(number.schedule_id)
    return snapshot.default_schedule()


def entry_target(snapshot: TenantSnapshot, call: CallInfo, now_ms: int) -> Entry:
    if call.entry == "internal":
        target = snapshot.target_for_extension(call.destination)
        if target is None:
            return Entry(None, "extension %s does not exist" % call.destination)
        return Entry(target, "extension %s" % call.destination)
    number = find_number(snapshot, call.destination)
    if number is None:
        return Entry(None, "number %s is not assigned" % call.destination)
    if number.mode is NumberMode.ALWAYS:
        return Entry(number.work_target, "number %s (24/7)" % number.e164)
    schedule = number_schedule(snapshot, number)
    if schedule is None:
        return Entry(number.work_target, "number %s: no schedule, treated as 24/7" % number.e164)
    if is_open(schedule, snapshot.timezone, now_ms):
        return Entry(number.work_target, "number %s: work hours (%s)" % (number.e164, schedule.name))
    target = number.after_hours_target or number.work_target
    return Entry(target, "number %s: after hours (%s)" % (number.e164, schedule.name))
