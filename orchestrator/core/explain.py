"""The routing explainer: what happens if CALLER calls DIALED at a given time. Pure.

It asks the live call path's own functions, not a copy of them: ``callflow.opening``
(which runs ``routing.entry_target`` - the caller rules, then the schedule - and
``plan.plan_target`` exactly as ``start`` does), ``schedule.check`` (the reason behind
``schedule.is_open``) and, for each option of a voice menu, ``plan_target`` with the hop
count the menu would pass on. A caller rule that needs a lookup (last agent, CRM) is
answered by ``lookups`` - the command passes the live adapters - or, without it, treated
as an unknown caller. The result is plain data: ``render()`` for people, ``to_dict()``
for JSON.
"""
from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass
from typing import Any, Callable

from orchestrator.core.actions import CallerKnown, CallInfo, LookupCaller
from orchestrator.core.callflow import Context, opening
from orchestrator.core.model import NumberMode, Target, TargetKind, TenantSnapshot, mail_recipients
from orchestrator.core.model import Strategy
from orchestrator.core.plan import Announce, Fax, Hold, MenuStep, Offer, Policy, Ring, Step, Voicemail, plan_target
from orchestrator.core.strategy import NEEDS_STATE, PARALLEL, eligible, leg_delays, order
from orchestrator.core.routing import Entry, find_number, number_schedule
from orchestrator.core.schedule import WEEKDAYS, check, local_time

EXPLAIN_CALL_UUID = "explain"


@dataclass(frozen=True)
class LegView:
    """One phone of a ring step."""

    who: str  # "Ivan Petrov (101)", or the external number
    phone: str  # "desk 101", "mobile +7916...", the endpoint
    delay: int
    timeout: int
    employee_id: int | None = None


@dataclass(frozen=True)
class StepView:
    kind: str  # ring / voicemail / announce / menu
    label: str  # the label the live call records in its route
    details: tuple[str, ...] = ()
    legs: tuple[LegView, ...] = ()
    options: tuple["OptionView", ...] = ()


@dataclass(frozen=True)
class OptionView:
    """One way out of a voice menu: a digit, or "no input" / "invalid input"."""

    key: str
    target: str
    steps: tuple[StepView, ...] = ()


@dataclass(frozen=True)
class Explanation:
    tenant: str
    caller: str
    dialed: str
    local_time: str
    chain: tuple[str, ...]  # the decisions, in order
    target: str  # "" when the call is refused before reaching a target
    steps: tuple[StepView, ...]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def render(self) -> str:
        lines = ["%s calls %s at %s (%s)" % (self.caller or "(unknown caller)", self.dialed, self.local_time, self.tenant), ""]
        lines.append("Decision:")
        lines.extend("  - %s" % line for line in self.chain)
        lines.append("")
        lines.append("What happens:")
        lines.extend(_render_steps(self.steps, 1))
        return "\n".join(lines) + "\n"


Lookups = Callable[[LookupCaller], CallerKnown]
MAX_LOOKUPS = 16  # one per rule at most; a bound all the same


def explain(
    snapshot: TenantSnapshot, policy: Policy, caller: str, dialed: str, now_ms: int, entry: str = "public",
    lookups: Lookups | None = None,
) -> Explanation:
    """What the live call path would do with this call at ``now_ms`` (epoch ms).

    ``lookups`` answers caller rules that need data (last agent, CRM) as the live
    adapters would; None treats every such caller as unknown to them."""
    call = CallInfo(
        uuid=EXPLAIN_CALL_UUID, entry=entry, destination=dialed, caller_number=caller,
        domain=snapshot.sip_domain if entry == "internal" else "",
        caller_user=caller if entry == "internal" else "",  # an employee's extension
    )
    counter = itertools.count(1)
    ctx = Context(snapshot, policy, now_ms, lambda: "leg%d" % next(counter))
    local = local_time(now_ms, snapshot.timezone)
    when = "%s %s %s" % (WEEKDAYS[local.weekday()], local.strftime("%Y-%m-%d %H:%M"), local.tzname() or snapshot.timezone)
    chain = ["tenant %s (%s), time zone %s: it is %s" % (snapshot.name, snapshot.sip_domain, snapshot.timezone, when)]
    first = opening(call, ctx)
    answers: tuple[CallerKnown, ...] = ()
    while first.lookup is not None and len(answers) < MAX_LOOKUPS:
        ask = first.lookup
        known = lookups(ask) if lookups is not None else CallerKnown(
            ask.request_id, ask.rule_id, note="not looked up here: treated as an unknown caller")
        answers += (known,)
        first = opening(call, ctx, answers=answers)
    chain.extend(_rule_details(snapshot, call, first.entry))
    decided = first.entry.rules if first.entry is not None else None
    if decided is None or decided.rule is None or (decided.target is None and not decided.block):
        chain.extend(_entry_details(snapshot, call, now_ms))  # the schedule has its say
    target = ""
    if first.entry is not None:
        chain.append("decision: %s" % first.entry.note)
        agent = decided.agent if decided is not None else None
        if first.entry.target is not None:
            target = target_name(snapshot, first.entry.target)
        out = first.entry.outbound
        if out is not None and out.number:
            target = "external %s, shown as %s" % (out.number, out.caller_id)
        if agent is not None:
            first_ring = "employee %s (%s)" % (agent.extension, agent.name)
            target = "%s, then %s" % (first_ring, target) if target else first_ring
        if target:
            chain.append("target: %s" % target)
        elif decided is not None and decided.block and first.steps:
            chain.append("refused: %s" % first.steps[0].label)
    elif first.log is not None:
        chain.append("refused: %s" % first.log.fields.get("reason", first.log.message))
    steps = tuple(_step_view(step, snapshot, ctx, frozenset()) for step in first.steps)
    return Explanation(snapshot.name, caller, dialed, when, tuple(chain), target, steps)


# ------------------------------------------------------------------ the decision chain


def _rule_details(snap: TenantSnapshot, call: CallInfo, entry: Entry | None) -> list[str]:
    """The caller's facts and each caller rule tried, as the live call tries them."""
    who = call.caller_number or "(none)"
    if call.entry == "internal":
        return ["caller %s: an employee's call, caller-based rules do not apply" % who]
    if not snap.caller_rules:
        return ["caller %s: no caller-based rule applies (none configured)" % who]
    verdict = entry.rules if entry is not None else None
    if verdict is None:
        return ["caller %s: caller-based rules not tried (the call is refused first)" % who]
    lines = [verdict.facts.describe()] + list(verdict.notes)
    if verdict.rule is None:
        lines.append("caller %s: no caller-based rule matched; the schedule decides" % who)
    return lines


def _entry_details(snap: TenantSnapshot, call: CallInfo, now_ms: int) -> list[str]:
    if call.entry == "internal":
        return []
    number = find_number(snap, call.destination)
    if number is None:
        return []
    if number.mode is NumberMode.ALWAYS:
        return ["number %s is 24/7: always its work-hours target" % number.e164]
    schedule = number_schedule(snap, number)
    if schedule is None:
        return ["number %s follows a schedule, but none exists: treated as 24/7" % number.e164]
    whose = "its own schedule" if number.schedule_id is not None else "the company schedule"
    verdict = check(schedule, snap.timezone, now_ms)
    return ["number %s follows %s '%s': %s" % (number.e164, whose, schedule.name, verdict.reason)]


def target_name(snap: TenantSnapshot, target: Target) -> str:
    """A target in the words of the admin panel: kind, extension and name."""
    ref = target.ref_id if target.ref_id is not None else -1
    if target.kind is TargetKind.DEPARTMENT and ref in snap.departments:
        dep = snap.departments[ref]
        return "department %s (%s)" % (dep.extension, dep.name)
    if target.kind is TargetKind.EMPLOYEE and ref in snap.employees:
        emp = snap.employees[ref]
        return "employee %s (%s)" % (emp.extension, emp.name)
    if target.kind is TargetKind.MENU and ref in snap.menus:
        return "voice menu %s" % snap.menus[ref].name
    if target.kind is TargetKind.VOICEMAIL and ref in snap.voicemail_boxes:
        return "voicemail %s" % snap.voicemail_boxes[ref].name
    if target.kind is TargetKind.FAX and ref in snap.voicemail_boxes:
        return "fax to %s" % snap.voicemail_boxes[ref].name
    return target.describe()


# ------------------------------------------------------------------ the steps


def _step_view(step: Step, snap: TenantSnapshot, ctx: Context, menus_seen: frozenset[int]) -> StepView:
    if isinstance(step, Ring):
        legs = tuple(_leg_view(leg.label, leg.endpoint, leg.delay, leg.timeout, leg.employee_id, snap) for leg in step.legs)
        details = ("rings for at most %d s, first to answer gets the call" % step.call_timeout,)
        return StepView("ring", step.label, details, legs)
    if isinstance(step, Voicemail):
        box = snap.voicemail_boxes.get(step.box_id) if step.box_id is not None else None
        details_v = [
            "answers, plays %s, then records up to %d s" % (step.greeting or ctx.policy.sound_voicemail_greeting, step.max_seconds),
        ]
        if box is not None:
            owners = sorted((snap.employees[e] for e in box.owner_employee_ids if e in snap.employees), key=lambda e: e.extension)
            to = mail_recipients([box.email, *(e.email for e in owners)])
            details_v.append("e-mailed to: %s" % to if to else "nobody gets it by e-mail (no address on the box or its owners)")
        return StepView("voicemail", step.label, tuple(details_v))
    if isinstance(step, Announce):
        how = "answers and plays" if step.answer else "plays without answering"
        return StepView("announce", step.label, ("%s %s, then hangs up (%s)" % (how, step.sound, step.cause),))
    if isinstance(step, Offer):
        return _offer_view(step, snap)
    if isinstance(step, Hold):  # never planned ahead: only a live call holds
        return StepView("hold", step.label)
    if isinstance(step, Fax):
        fax_box = snap.voicemail_boxes.get(step.box_id) if step.box_id is not None else None
        mail = ("e-mailed to %s" % fax_box.email) if fax_box is not None and fax_box.email else "the box has no e-mail address"
        return StepView("fax", step.label, ("answers and receives a fax (rxfax); the document is stored, %s" % mail,))
    return _menu_view(step, snap, ctx, menus_seen)


_ORDER_NOTES = {
    Strategy.LONGEST_IDLE: "order decided at call time: longest without a call first",
    Strategy.ROUND_ROBIN: "order decided at call time: starting after whoever took the last call",
    Strategy.LEAST_TALK_TIME: "order decided at call time: least talk time first",
    Strategy.FEWEST_CALLS: "order decided at call time: fewest calls first",
    Strategy.WEIGHTED: "order drawn at call time, weighted by priority",
    Strategy.RANDOM: "order drawn at call time at random",
}


def _offer_view(step: Offer, snap: TenantSnapshot) -> StepView:
    """Who the department would ring if every logged-in member were free."""
    dep = snap.departments[step.department_id]
    members = eligible(dep, snap)
    if dep.strategy is Strategy.ESCALATION:
        members = [m for m in members if m.escalation_offset < dep.no_answer_timeout]
    members = order(dep, members, {}, None, lambda: 0.5)
    details = []
    if dep.strategy in PARALLEL:
        per_leg = dep.no_answer_timeout if dep.strategy is not Strategy.RING_ALL else min(dep.ring_seconds, dep.no_answer_timeout)
        delays = leg_delays(dep, members)
        legs = tuple(_leg_view(snap.employees[m.employee_id].extension, "", d, per_leg, m.employee_id, snap) for m, d in zip(members, delays))
        details.append("earlier members keep ringing as later ones are added; first to answer gets the call")
    else:
        legs = tuple(
            _leg_view(snap.employees[m.employee_id].extension, "", i * dep.ring_seconds, (i + 1) * dep.ring_seconds, m.employee_id, snap)
            for i, m in enumerate(members) if i * dep.ring_seconds < dep.no_answer_timeout
        )
        details.append("one at a time, %d s each; the previous one stops ringing" % dep.ring_seconds)
    if dep.strategy in NEEDS_STATE or dep.strategy in (Strategy.WEIGHTED, Strategy.RANDOM):
        details.append(_ORDER_NOTES[dep.strategy])
    details.append("members on a call, in wrap-up (%d s) or paused are skipped" % dep.wrapup_seconds)
    if dep.queue.music and dep.queue.max_wait > 0:
        details.append("nobody free: the caller waits on hold (%s) up to %d s, keeping their place" % (dep.queue.music, dep.queue.max_wait))
    details.append("nobody answers within %d s: the no-answer target" % dep.no_answer_timeout)
    return StepView("ring", step.label, tuple(details), legs)


def _leg_view(label: str, endpoint: str, delay: int, timeout: int, employee_id: int | None, snap: TenantSnapshot) -> LegView:
    emp = snap.employees.get(employee_id) if employee_id is not None else None
    if emp is None:
        return LegView(label, endpoint, delay, timeout, None)
    phone = "mobile %s" % emp.mobile if label.startswith("mobile") else "desk %s" % emp.extension
    return LegView("%s (%s)" % (emp.name, emp.extension), phone, delay, timeout, emp.id)


def _menu_view(step: MenuStep, snap: TenantSnapshot, ctx: Context, menus_seen: frozenset[int]) -> StepView:
    menu = snap.menus[step.menu_id]
    details = ["answers and plays %s, waits %d s for digits" % (menu.greeting or ctx.policy.sound_unavailable, menu.timeout_seconds)]
    if menu.direct_dial:
        details.append("the caller may also type an employee's or a department's extension")
    details.append("invalid input: replayed, up to %d tries, then the default" % menu.max_invalid)
    if menu.back_digit:
        details.append("%s: back to the menu the caller came from (at the top: this menu again)" % menu.back_digit)
    if menu.id in menus_seen:
        details.append("(this menu again: see above)")
        return StepView("menu", step.label, tuple(details))
    seen = menus_seen | {menu.id}
    ways: list[tuple[str, Target | None]] = [(option.digit, option.target) for option in menu.options]
    ways.append(("no input", menu.default_target))
    options = []
    for key, target in ways:
        # The hop count _menu_result passes on, so a cycle is capped here as at run time.
        steps = plan_target(target, snap, ctx.policy, ctx.new_id, step.hops + 1)
        name = target_name(snap, target) if target is not None else "(none)"
        options.append(OptionView(key, name, tuple(_step_view(s, snap, ctx, seen) for s in steps)))
    return StepView("menu", step.label, tuple(details), (), tuple(options))


def _render_steps(steps: tuple[StepView, ...], depth: int) -> list[str]:
    pad = "  " * depth
    lines = []
    for n, step in enumerate(steps, 1):
        prefix = "%d. " % n if n == 1 else "%d. if not answered: " % n
        lines.append("%s%s%s: %s" % (pad, prefix, step.kind, step.label))
        for leg in step.legs:
            start = "after %d s" % leg.delay if leg.delay else "at once"
            lines.append("%s     rings %s, %s, %s, until %d s" % (pad, leg.who, leg.phone, start, leg.timeout))
        lines.extend("%s     %s" % (pad, d) for d in step.details)
        for option in step.options:
            lines.append("%s     [%s] -> %s" % (pad, option.key, option.target))
            lines.extend(_render_steps(option.steps, depth + 4))
    return lines
