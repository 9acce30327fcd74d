"""Turn a route target into the steps that serve it. Pure.

A *plan* is the list of steps a call walks through until one of them connects it:
ring (one ``bridge``), voice menu, voicemail, announcement. Each failed ring falls
through to the next step; a department's no-answer target is planned after its ring.
Chains of targets are capped at ``Policy.max_route_hops`` so that a cycle that slipped
past validation still ends (with the tenant's "unavailable" announcement).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping, Union

from orchestrator.core.dialstrings import Leg, external_endpoint, ring_all, user_endpoint
from orchestrator.core.strategy import eligible
from orchestrator.core.model import Department, Employee, Member, Target, TargetKind, TenantSnapshot


@dataclass(frozen=True)
class Policy:
    """Deployment-wide call-flow settings (from Settings, via the wiring module)."""

    external_dial_template: str = "sofia/gateway/pstn/{number}"
    sound_unavailable: str = "ivr/ivr-not_available.wav"
    sound_unknown_number: str = "ivr/ivr-not_available.wav"
    sound_busy_limit: str = "ivr/ivr-all_circuits_busy.wav"
    sound_voicemail_greeting: str = "voicemail/vm-record_message.wav"
    sound_voicemail_beep: str = "tone_stream://%(250,0,1000)"
    sound_menu_invalid: str = "ivr/ivr-that_was_an_invalid_entry.wav"
    sound_callback_requested: str = "ivr/ivr-thank_you.wav"
    recordings_dir: str = "/var/lib/freeswitch/recordings/pbx"
    external_ring_seconds: int = 60
    max_route_hops: int = 8
    menu_digit_timeout_ms: int = 2000
    # Per call (``routing.forward_caller_id``): the caller ID external legs show; "" leaves
    # FreeSWITCH's default (the caller's own).
    forward_caller_id: str = ""


@dataclass(frozen=True)
class RingLeg:
    """One phone a Ring step rings, described for people (the explainer, logs).

    Derived from the same ``Leg`` values the dial string is built from; ``dial`` stays
    what actually runs.
    """

    label: str  # "desk 101", "mobile of 101", "+7916..."
    endpoint: str
    delay: int  # seconds before this phone starts ringing
    timeout: int  # seconds it may ring, counted from the start of the bridge
    employee_id: int | None = None
    uuid: str = ""  # the leg's origination_uuid (FreeSWITCH's channel uuid)


@dataclass(frozen=True)
class Ring:
    """Ring some phones with one ``bridge``; first answer wins."""

    dial: str
    label: str
    # b-leg uuid (set with origination_uuid) or dialled destination -> employee id
    owners: Mapping[str, int] = field(default_factory=dict)
    legs: tuple[RingLeg, ...] = ()
    call_timeout: int = 0  # seconds the whole attempt may last
    final: bool = False  # not answered: hang up with the bridge's cause (outbound calls)


@dataclass(frozen=True)
class Voicemail:
    box_id: int | None
    greeting: str | None
    max_seconds: int
    label: str


@dataclass(frozen=True)
class Fax:
    """Answer and receive a fax (mod_spandsp ``rxfax``) for a voicemail box."""

    box_id: int | None
    label: str


@dataclass(frozen=True)
class Announce:
    sound: str
    label: str
    cause: str = "NORMAL_CLEARING"
    answer: bool = True


@dataclass(frozen=True)
class MenuStep:
    menu_id: int
    label: str
    invalid_count: int = 0
    hops: int = 0
    # The menus the caller came through, (menu id, its hops), nearest last: the menu's
    # "back" digit returns to the last one.
    came_from: tuple[tuple[int, int], ...] = ()


@dataclass(frozen=True)
class Offer:
    """Offer the call to a department's members by its strategy (``core.strategy``).

    Who rings is decided when the call gets here, from the members' live state: the
    adapter takes members for the call atomically, then one ``bridge`` rings them
    (parallel strategies) or one bridge per member (hunt strategies).
    """

    department_id: int
    label: str
    hops: int = 0


@dataclass(frozen=True)
class Hold:
    """A caller waiting in a department's queue, hearing its hold music."""

    department_id: int
    sound: str
    label: str


Step = Union[Ring, Voicemail, Announce, MenuStep, Offer, Hold, Fax]


def _leg(endpoint: str, timeout: int, label: str, owner: int | None, owners: dict[str, int], new_id: Callable[[], str],
         delay: int = 0, caller_id: str = "") -> Leg:
    leg_uuid = new_id()
    if owner is not None:
        owners[leg_uuid] = owner
    variables: tuple[tuple[str, str], ...] = (("origination_uuid", leg_uuid),)
    if caller_id:  # switch_ivr_originate.c: the new leg's caller ID number
        variables += (("origination_caller_id_number", caller_id),)
    return Leg(endpoint, timeout, delay, label, variables)


def _ring(legs: list[Leg], call_timeout: int, label: str, owners: dict[str, int]) -> Ring:
    """The Ring step for ``legs``, with the legs described next to the dial string."""
    described = []
    for leg in legs:
        leg_uuid = dict(leg.variables).get("origination_uuid", "")
        described.append(RingLeg(leg.label, leg.endpoint, leg.delay, leg.timeout, owners.get(leg_uuid), leg_uuid))
    return Ring(ring_all(legs, call_timeout), label, owners, tuple(described), call_timeout)


def _cap(legs: list[Leg]) -> int:
    """``call_timeout`` for legs that carry their own ``leg_timeout``.

    FreeSWITCH (switch_ivr_originate.c) ends the whole attempt when elapsed >=
    call_timeout, one whole-second tick BEFORE a leg's elapsed > leg_timeout: with equal
    values every leg would end NO_ANSWER instead of ALLOTTED_TIMEOUT. Two seconds more
    keep the whole-attempt limit clearly behind every leg's own timeout (one more would
    land on the same tick), so each leg's timeout decides and is reported as such.
    """
    return max(leg.timeout for leg in legs) + 2


def _employee_legs(emp: Employee, domain: str, policy: Policy, new_id: Callable[[], str], owners: dict[str, int]) -> list[Leg]:
    """The desk phone; plus the mobile after ``forward_to_mobile_after`` seconds.

    The desk phone keeps ringing when the mobile is added (``leg_delay_start``), so
    whoever picks up first, desk or mobile, gets the call. ``leg_timeout`` counts from
    the start of the bridge, delay included.
    """
    owners[emp.extension] = emp.id
    desk = user_endpoint(emp.extension, domain)
    if emp.mobile and emp.forward_to_mobile_after is not None:
        delay = max(0, emp.forward_to_mobile_after)
        total = delay + emp.ring_seconds
        owners[emp.mobile] = emp.id
        mobile = external_endpoint(policy.external_dial_template, emp.mobile)
        return [
            _leg(desk, total, "desk %s" % emp.extension, emp.id, owners, new_id),
            _leg(mobile, total, "mobile of %s" % emp.extension, emp.id, owners, new_id, delay, policy.forward_caller_id),
        ]
    return [_leg(desk, emp.ring_seconds, "desk %s" % emp.extension, emp.id, owners, new_id)]


def plan_target(
    target: Target | None,
    snap: TenantSnapshot,
    policy: Policy,
    new_id: Callable[[], str],
    hops: int = 0,
) -> list[Step]:
    if target is None:
        return [Announce(policy.sound_unavailable, "no target configured")]
    if hops >= policy.max_route_hops:
        return [Announce(policy.sound_unavailable, "route chain longer than %d targets: stopped" % policy.max_route_hops)]
    kind = target.kind
    if kind is TargetKind.EMPLOYEE:
        emp = snap.employees.get(target.ref_id or -1)
        if emp is None:
            return [Announce(policy.sound_unavailable, "employee #%s no longer exists" % target.ref_id)]
        owners: dict[str, int] = {}
        legs: list[Leg] = _employee_legs(emp, snap.sip_domain, policy, new_id, owners)
        steps: list[Step] = [_ring(legs, _cap(legs), "employee %s (%s)" % (emp.extension, emp.name), owners)]
        if emp.voicemail_box_id is not None:
            steps.append(_voicemail(snap, emp.voicemail_box_id, policy))
        else:
            steps.append(Announce(policy.sound_unavailable, "employee %s did not answer" % emp.extension))
        return steps
    if kind is TargetKind.DEPARTMENT:
        dep = snap.departments.get(target.ref_id or -1)
        if dep is None:
            return [Announce(policy.sound_unavailable, "department #%s no longer exists" % target.ref_id)]
        label = "department %s (%s), %s" % (dep.extension, dep.name, dep.strategy.value.replace("_", " "))
        # Nobody logged in: straight to the no-answer target (known before the call).
        steps = [Offer(dep.id, label, hops)] if eligible(dep, snap) else []
        steps.extend(plan_target(dep.no_answer_target, snap, policy, new_id, hops + 1) if dep.no_answer_target else [Announce(policy.sound_unavailable, "%s: nobody answered" % label)])
        return steps
    if kind is TargetKind.VOICEMAIL:
        return [_voicemail(snap, target.ref_id, policy)]
    if kind is TargetKind.EXTERNAL:
        number = target.number or ""
        owners = {}
        legs = [_leg(external_endpoint(policy.external_dial_template, number), policy.external_ring_seconds, number, None, owners,
                     new_id, caller_id=policy.forward_caller_id)]
        return [_ring(legs, _cap(legs), "external %s" % number, owners), Announce(policy.sound_unavailable, "external %s did not answer" % number)]
    if kind is TargetKind.ANNOUNCEMENT:
        return [Announce(target.sound or policy.sound_unavailable, "announcement")]
    if kind is TargetKind.FAX:
        box = snap.voicemail_boxes.get(target.ref_id or -1)
        if box is None:
            return [Announce(policy.sound_unavailable, "fax box #%s no longer exists" % target.ref_id)]
        return [Fax(box.id, "fax to %s" % box.name)]
    if kind is TargetKind.MENU:
        menu = snap.menus.get(target.ref_id or -1)
        if menu is None:
            return [Announce(policy.sound_unavailable, "voice menu #%s no longer exists" % target.ref_id)]
        return [MenuStep(menu.id, "voice menu %s" % menu.name, 0, hops)]
    return [Announce(policy.sound_unavailable, "unsupported target %s" % kind)]


def agent_first(emp: Employee, why: str, then: list[Step], snap: TenantSnapshot, policy: Policy, new_id: Callable[[], str]) -> list[Step]:
    """A caller rule's employee (last agent, CRM) rings on their own phones first; if
    they do not answer, the call goes on with ``then`` (the rule's target, or the
    schedule's) instead of their voicemail."""
    owners: dict[str, int] = {}
    legs = _employee_legs(emp, snap.sip_domain, policy, new_id, owners)
    label = "employee %s (%s), %s" % (emp.extension, emp.name, why)
    return [_ring(legs, _cap(legs), label, owners)] + then


def plan_outbound(number: str, caller_id: str, policy: Policy, new_id: Callable[[], str]) -> list[Step]:
    """An employee's call out through the carrier gateway, shown as ``caller_id``.

    ``origination_caller_id_number`` in the dial string sets the new leg's caller ID
    (switch_ivr_originate.c reads it from the originate variables); the caller hears the
    carrier's early media; when nobody answers, the phone gets the bridge's own cause
    (busy, no answer, invalid number) instead of an announcement.
    """
    owners: dict[str, int] = {}
    leg = _leg(external_endpoint(policy.external_dial_template, number), policy.external_ring_seconds, number, None, owners, new_id)
    variables = (("origination_caller_id_number", caller_id), ("origination_caller_id_name", caller_id))
    dial = ring_all([leg], _cap([leg]), variables, early_media=True)
    uuid = dict(leg.variables).get("origination_uuid", "")
    ring_leg = RingLeg(number, leg.endpoint, 0, leg.timeout, None, uuid)
    return [Ring(dial, "outbound %s as %s" % (number, caller_id), owners, (ring_leg,), _cap([leg]), final=True)]


def _voicemail(snap: TenantSnapshot, box_id: int | None, policy: Policy) -> Voicemail:
    box = snap.voicemail_boxes.get(box_id or -1)
    if box is None:
        return Voicemail(None, None, 120, "voicemail #%s (missing): general recording" % box_id)
    return Voicemail(box.id, box.greeting, box.max_message_seconds, "voicemail %s" % box.name)


def department_ring(
    dep: Department,
    snap: TenantSnapshot,
    members: list[Member],
    delays: list[int],
    leg_seconds: int,
    new_id: Callable[[], str],
    label: str,
) -> Ring:
    """One ``bridge`` ringing ``members`` (already taken for the call), member i
    starting ``delays[i]`` s after the bridge and ringing until ``leg_seconds`` after
    it (FreeSWITCH's ``leg_timeout`` counts from the bridge start, delay included)."""
    owners: dict[str, int] = {}
    legs = []
    for member, delay in zip(members, delays):
        emp = snap.employees[member.employee_id]
        owners[emp.extension] = emp.id
        legs.append(_leg(user_endpoint(emp.extension, snap.sip_domain), leg_seconds, emp.extension, emp.id, owners, new_id, delay))
    return _ring(legs, _cap(legs), label, owners)
