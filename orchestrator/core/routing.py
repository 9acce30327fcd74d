"""Which tenant a call belongs to, and where its entry point sends it. Pure."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from orchestrator.core.actions import CallerKnown, CallInfo
from orchestrator.core.caller_rules import Verdict, caller_facts, evaluate
from orchestrator.core.outbound import Outbound, decide as decide_outbound, employee_caller_id
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
    rules: Verdict | None = None  # the caller rules tried (public calls of a tenant with rules)
    outbound: Outbound | None = None  # an employee's call to an external number


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


def entry_target(snapshot: TenantSnapshot, call: CallInfo, now_ms: int, answers: Mapping[int, CallerKnown] | None = None) -> Entry:
    """Where the call goes: the caller rules first (public calls), then the schedule.

    ``answers`` are the lookups made so far for rules that need one (``Entry.rules``
    says when another is pending)."""
    if call.entry == "internal":
        target = snapshot.target_for_extension(call.destination)
        if target is not None:
            return Entry(target, "extension %s" % call.destination)
        out = decide_outbound(snapshot, call.caller_user, call.destination)
        if out is None:
            return Entry(None, "extension %s does not exist" % call.destination)
        return Entry(None, out.note, outbound=out)
    number = find_number(snapshot, call.destination)
    if number is None:
        return Entry(None, "number %s is not assigned" % call.destination)
    if not snapshot.caller_rules:
        return scheduled_target(snapshot, number, now_ms)
    verdict = evaluate(snapshot, number.e164, caller_facts(call.caller_number, number.e164), answers or {})
    if verdict.pending or verdict.block:
        return Entry(None, verdict.note, verdict)
    if verdict.rule is not None and verdict.target is not None:
        return Entry(verdict.target, verdict.note, verdict)
    scheduled = scheduled_target(snapshot, number, now_ms)
    if verdict.agent is not None:  # the agent first, then as the schedule says
        return Entry(scheduled.target, "%s, then %s" % (verdict.note, scheduled.note), verdict)
    return Entry(scheduled.target, scheduled.note, verdict)


def forward_caller_id(snapshot: TenantSnapshot, call: CallInfo) -> str:
    """The caller ID an external phone sees when this call is forwarded to it (an
    external target, an employee's mobile), by the tenant's ``forward_caller_id``
    policy: the caller's own number, or the tenant's number that was called. A caller
    without a plain number (anonymous) shows the tenant's number; an employee's call
    shows their outbound caller ID (``core.outbound``), never their extension."""
    if call.entry == "internal":
        return employee_caller_id(snapshot, call.caller_user)
    number = find_number(snapshot, call.destination)
    own = number.e164 if number is not None else ""
    caller = call.caller_number.strip()
    plain = caller.lstrip("+").isdigit() and 3 <= len(caller.lstrip("+")) <= 20 and caller.count("+") <= 1
    if snapshot.forward_caller_id == "number" or not plain:
        return own
    return caller


def scheduled_target(snapshot: TenantSnapshot, number: PhoneNumber, now_ms: int) -> Entry:
    """The number's own target by its mode and schedule (no caller rule decided)."""
    if number.mode is NumberMode.ALWAYS:
        return Entry(number.work_target, "number %s (24/7)" % number.e164)
    schedule = number_schedule(snapshot, number)
    if schedule is None:
        return Entry(number.work_target, "number %s: no schedule, treated as 24/7" % number.e164)
    if is_open(schedule, snapshot.timezone, now_ms):
        return Entry(number.work_target, "number %s: work hours (%s)" % (number.e164, schedule.name))
    target = number.after_hours_target or number.work_target
    return Entry(target, "number %s: after hours (%s)" % (number.e164, schedule.name))
