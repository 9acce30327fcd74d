"""One department offer of one call: take members, ring them, end their offers. Pure.

``callflow`` drives it; this module only turns the offer's state and an event into the
next state and actions. The sequence for one department:

    LookupMembers -> MembersSeen      (only strategies that order by live figures)
    ReserveMembers -> MembersReserved (atomic in Redis: nobody is offered two calls)
    bridge ... -> Bridged / failed    -> EndOffers (missed, lost race, answered + wrap-up)

FreeSWITCH behaviour relied on (shared/freeswitch transcripts):
* the bridge's per-leg results are in ``originate_causes`` of its EXECUTE_COMPLETE:
  ``ARRAY::<uuid>;<cause>|:<uuid>;<cause>`` for several legs, ``<uuid>;<cause>`` for one;
  the winner's cause is ``NONE``, the others ``LOSE_RACE`` (P01); a leg that never got a
  channel (``user/`` of an unregistered phone: USER_NOT_REGISTERED at once, inbound_07)
  has no entry; a caller hanging up while ringing cancels every leg ORIGINATOR_CANCEL
  (P01d); leg_timeout expiry is ALLOTTED_TIMEOUT, a 486 is USER_BUSY (P04);
* ``CHANNEL_BRIDGE`` names the answering leg in ``Other-Leg-Unique-ID`` (our
  ``origination_uuid``), and the member's hang-up gives ``CHANNEL_UNBRIDGE``.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Mapping

from orchestrator.core.actions import (
    Action,
    EndOffers,
    LeaveQueue,
    Log,
    LookupMembers,
    MembersReserved,
    MembersSeen,
    OfferEnd,
    ReserveMembers,
)
from orchestrator.core.model import Department, Strategy, TenantSnapshot
from orchestrator.core.plan import Ring, department_ring
from orchestrator.core.strategy import NEEDS_STATE, PARALLEL, eligible, leg_delays, order

_RESULTS = {
    "NONE": "answered",
    "SUCCESS": "answered",
    "LOSE_RACE": "lost_race",
    "ORIGINATOR_CANCEL": "cancelled",
    "NO_ANSWER": "no_answer",
    "ALLOTTED_TIMEOUT": "no_answer",
    "NO_USER_RESPONSE": "no_answer",
    "RECOVERY_ON_TIMER_EXPIRE": "no_answer",
    "PROGRESS_TIMEOUT": "no_answer",
    "USER_BUSY": "busy",
    "CALL_REJECTED": "rejected",
    "USER_NOT_REGISTERED": "unregistered",
    "SUBSCRIBER_ABSENT": "unregistered",
}


@dataclass(frozen=True)
class OfferRun:
    department_id: int
    label: str
    deadline_ms: int  # the department's overall no-answer timeout
    order: tuple[int, ...] = ()  # employee ids in the order they are tried
    next_index: int = 0  # hunt: where the next reservation starts in ``order``
    rang_this_pass: bool = False  # hunt: somebody really rang since the list started over
    request_id: str = ""
    held: tuple[int, ...] = ()  # members this call holds (offered, ringing or talking)
    ring_started_ms: int = 0
    delays: Mapping[int, int] = None  # type: ignore[assignment]
    winner: int | None = None
    bridged_ms: int = 0
    tried: int = 0  # reservations that gave someone to ring
    wrapup_ms: int = 0
    pause_after: int = 0
    # Queue (departments with hold music): the caller waits while nobody is free.
    queued: bool = False  # the department queues callers (reservations respect their order)
    waiting: bool = False  # on hold now
    since_ms: int = 0  # the caller's place in the queue (kept when they come back)
    wait_until_ms: int = 0  # the queue's time limit for this caller
    pending: Ring | None = None  # taken while on hold: rung once the music has stopped
    leaving: bool = False  # the time limit passed: to the no-answer target after the music
    # Announcements on hold (core/announcements.py); each stops the music with a uuid_break.
    announce_at_ms: int = 0  # when the music stops for the next announcement (0: none due)
    announce_next: str = ""  # to play once the music has stopped (its uuid_break is on its way)
    announcing: str = ""  # playing now instead of the music
    rung: tuple[str, ...] = ()  # uuids of the legs this offer rang (newest last, at most MAX_RUNG)
    # The bridge runs nested in the hold playback, which was not stopped (departments.
    # member_answer): when it ends unanswered that playback resumes and is stopped first.
    over_hold: bool = False


# Legs remembered per offer: a hunt starting over must not take its own ended legs for
# the members' live calls (ReserveMembers.own_channels); the last few rings suffice.
MAX_RUNG = 32


def result_of(cause: str) -> str:
    return _RESULTS.get(cause, "failed")


def begin(dep: Department, snap: TenantSnapshot, label: str, now_ms: int, new_id: Callable[[], str], rand: Callable[[], float]) -> tuple[OfferRun | None, list[Action]]:
    """Start offering; None when nobody can be rung at all (nobody logged in)."""
    members = eligible(dep, snap)
    if dep.strategy is Strategy.ESCALATION:
        members = [m for m in members if m.escalation_offset < dep.no_answer_timeout]
    if not members:
        return None, [Log("department has nobody logged in", "info", {"department": dep.extension})]
    run = OfferRun(dep.id, label, now_ms + dep.no_answer_timeout * 1000, tuple(m.employee_id for m in members), delays={},
                   wrapup_ms=dep.wrapup_seconds * 1000, pause_after=dep.pause_after_missed, queued=can_wait(dep))
    request = new_id()
    if dep.strategy in NEEDS_STATE:
        return replace(run, request_id=request), [LookupMembers(request, dep.id, run.order, dep.stats_window_days)]
    return _reserve(replace(run, order=_ordered(dep, snap, run.order, MembersSeen(request), rand)), dep, request)


def seen(run: OfferRun, event: MembersSeen, dep: Department, snap: TenantSnapshot, rand: Callable[[], float], new_id: Callable[[], str]) -> tuple[OfferRun, list[Action]]:
    return _reserve(replace(run, order=_ordered(dep, snap, run.order, event, rand)), dep, new_id())


def _ordered(dep: Department, snap: TenantSnapshot, ids: tuple[int, ...], event: MembersSeen, rand: Callable[[], float]) -> tuple[int, ...]:
    members = [m for m in eligible(dep, snap) if m.employee_id in ids]
    return tuple(m.employee_id for m in order(dep, members, event.views, event.last_answered, rand))


def can_wait(dep: Department) -> bool:
    """Callers wait on hold when nobody is free (the department has hold music)."""
    return bool(dep.queue.music) and dep.queue.max_wait > 0


def retry(run: OfferRun, dep: Department, now_ms: int, new_id: Callable[[], str]) -> tuple[OfferRun, list[Action]]:
    """A caller on hold looks for a free member again, from the top of the order."""
    run = replace(run, next_index=0, rang_this_pass=False, deadline_ms=now_ms + dep.no_answer_timeout * 1000)
    request = new_id()
    if dep.strategy in NEEDS_STATE:
        return replace(run, request_id=request), [LookupMembers(request, dep.id, run.order, dep.stats_window_days)]
    return _reserve(run, dep, request)


def _reserve(run: OfferRun, dep: Department, request: str) -> tuple[OfferRun, list[Action]]:
    if dep.strategy in PARALLEL:
        return replace(run, request_id=request), [ReserveMembers(request, dep.id, run.order, len(run.order), run.queued, run.rung)]
    candidates = run.order[run.next_index:]
    return replace(run, request_id=request), [ReserveMembers(request, dep.id, candidates, 1, run.queued, run.rung)]


def reserved(run: OfferRun, event: MembersReserved, dep: Department, snap: TenantSnapshot, now_ms: int, new_id: Callable[[], str]) -> tuple[OfferRun, Ring | None, list[Action]]:
    """Ring who was taken, or None: nobody could be taken (then the offer is over)."""
    if event.request_id != run.request_id:
        return run, None, []
    taken = [emp for emp in event.statuses if event.statuses[emp] == "offered" and emp in run.order]
    skipped = {str(emp): st for emp, st in event.statuses.items() if st not in ("offered", "skipped", "queued")}
    actions: list[Action] = [Log("members not available", "info", skipped)] if skipped else []
    run = replace(run, request_id="")
    if not taken:
        return run, None, actions
    by_id = {m.employee_id: m for m in dep.members}
    members = [by_id[e] for e in taken if e in by_id and e in snap.employees]
    remaining_s = max(1, -(-(run.deadline_ms - now_ms) // 1000))
    if dep.strategy in PARALLEL:
        members = sorted(members, key=lambda m: run.order.index(m.employee_id))
        delays = leg_delays(dep, members)
        per_leg = remaining_s if dep.strategy is not Strategy.RING_ALL else min(dep.ring_seconds, remaining_s)
        next_index = len(run.order)
    else:
        delays = [0]
        per_leg = min(dep.ring_seconds, remaining_s)
        next_index = run.order.index(members[0].employee_id) + 1
    label = "ringing " + ", ".join(snap.employees[m.employee_id].extension for m in members)
    ring = department_ring(dep, snap, members, delays, per_leg, new_id, label)
    rung = (run.rung + tuple(leg.uuid for leg in ring.legs if leg.uuid))[-MAX_RUNG:]
    run = replace(run, held=tuple(m.employee_id for m in members), ring_started_ms=now_ms,
                  delays={m.employee_id: d for m, d in zip(members, delays)}, next_index=next_index, tried=run.tried + 1,
                  rung=rung)
    return run, ring, actions


def bridged(run: OfferRun, ring: Ring, other_uuid: str, now_ms: int) -> tuple[OfferRun, list[Action]]:
    """Someone answered: the others' offers end at once (they lost the race)."""
    winner = ring.owners.get(other_uuid)
    if winner is None:
        return run, []
    losers = tuple(OfferEnd(e, "lost_race", _rang(run, e, now_ms)) for e in run.held if e != winner)
    run = replace(run, held=(winner,), winner=winner, bridged_ms=now_ms)
    return run, [EndOffers(run.department_id, losers)] if losers else []


def talk_ended(run: OfferRun, now_ms: int) -> tuple[OfferRun, list[Action]]:
    """The answering member's call is over: wrap-up starts now."""
    if run.winner is None or run.winner not in run.held:
        return run, []
    end = OfferEnd(run.winner, "answered", 0, max(0, now_ms - run.bridged_ms))
    return replace(run, held=()), [EndOffers(run.department_id, (end,), run.wrapup_ms, run.pause_after)]


def failed(run: OfferRun, ring: Ring, variables: Mapping[str, str], now_ms: int) -> tuple[OfferRun, list[Action]]:
    """The bridge ended with nobody answering: end every offer with its leg's result."""
    causes = _leg_causes(variables.get("originate_causes", ""))
    overall = variables.get("originate_failed_cause") or variables.get("originate_disposition") or ""
    leg_of = {leg.employee_id: leg.uuid for leg in ring.legs}
    ends = []
    rang = False
    for emp in run.held:
        cause = causes.get(leg_of.get(emp, ""))
        if cause is None:
            # No channel was created for the leg (unregistered), or a single leg's
            # result is only in originate_failed_cause.
            cause = overall if len(run.held) == 1 else "USER_NOT_REGISTERED"
        result = result_of(cause)
        rang = rang or result == "no_answer"
        ends.append(OfferEnd(emp, result, _rang(run, emp, now_ms)))
    run = replace(run, held=(), rang_this_pass=run.rang_this_pass or rang)
    actions: list[Action] = [EndOffers(run.department_id, tuple(ends), 0, run.pause_after)] if ends else []
    return run, actions


def next_attempt(run: OfferRun, dep: Department, now_ms: int, new_id: Callable[[], str]) -> tuple[OfferRun, list[Action]] | None:
    """Hunt: the next member to try, or None when the department's offer is over.

    Past the end of the list the hunt starts over while time remains, but only if
    somebody actually rang during the last pass (not when everyone was busy or
    unregistered, which would spin).
    """
    if dep.strategy in PARALLEL or now_ms >= run.deadline_ms - 500:
        return None
    if run.next_index >= len(run.order):
        if not run.rang_this_pass:
            return None
        run = replace(run, next_index=0, rang_this_pass=False)
    return _reserve(run, dep, new_id())


def abandon(run: OfferRun, now_ms: int) -> list[Action]:
    """The caller is gone: end whatever this call still holds, leave the queue."""
    out: list[Action] = [LeaveQueue(run.department_id)] if run.since_ms else []
    if not run.held:
        return out
    if run.winner is not None:
        return out + talk_ended(run, now_ms)[1]
    return out + [EndOffers(run.department_id, tuple(OfferEnd(e, "cancelled", _rang(run, e, now_ms)) for e in run.held))]


def _rang(run: OfferRun, emp: int, now_ms: int) -> int:
    return max(0, now_ms - run.ring_started_ms - (run.delays or {}).get(emp, 0) * 1000)


def _leg_causes(value: str) -> dict[str, str]:
    """``ARRAY::u1;C1|:u2;C2`` or ``u1;C1`` -> {u1: C1, u2: C2}."""
    if value.startswith("ARRAY::"):
        items = value[len("ARRAY::"):].split("|:")
    else:
        items = [value] if value else []
    out = {}
    for item in items:
        uuid, _, cause = item.partition(";")
        if uuid:
            out[uuid] = cause
    return out
