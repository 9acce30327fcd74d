"""Department ring strategies: who is tried, in what order, and how. Pure.

Two shapes:

* **parallel** (all at once, increasing, escalation): every available member is taken
  for the call at once and rung by ONE ``bridge`` with per-leg ``leg_delay_start``
  (FreeSWITCH creates the delayed leg at once and only delays its INVITE, transcript
  P03), so earlier members keep ringing while later ones are added;
* **hunt** (one by one, round robin, longest idle, weighted, least talk time, fewest
  calls, random): one member at a time, each for their ring time, by one ``bridge``
  each; the previous one has stopped ringing when the next starts. The order is decided
  from the members' live state (``MemberView``) when the call reaches the department.

Who is *available* is not decided here: the Redis adapter takes members for a call with
one atomic script, trying them in the order given here.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

from orchestrator.core.model import Department, Member, Strategy, TenantSnapshot

PARALLEL = frozenset({Strategy.RING_ALL, Strategy.INCREASING, Strategy.ESCALATION})
# Strategies whose order depends on the members' live state (read before ordering).
NEEDS_STATE = frozenset({Strategy.LONGEST_IDLE, Strategy.ROUND_ROBIN, Strategy.LEAST_TALK_TIME, Strategy.FEWEST_CALLS})


@dataclass(frozen=True)
class MemberView:
    """A member's live figures, as the strategies need them."""

    employee_id: int
    last_end_ms: int = 0  # end of the last answered call (0 = none yet)
    calls: int = 0  # answered calls in the department's statistics window
    talk_ms: int = 0


def eligible(dep: Department, snap: TenantSnapshot) -> list[Member]:
    """Members that may be rung at all: existing and logged in, in configured order."""
    out = []
    for member in sorted(dep.members, key=lambda m: (m.order, m.employee_id)):
        emp = snap.employees.get(member.employee_id)
        if emp is not None and emp.logged_in:
            out.append(member)
    return out


def order(
    dep: Department,
    members: Sequence[Member],
    views: Mapping[int, MemberView],
    last_answered: int | None,
    rand: Callable[[], float],
) -> list[Member]:
    """The order in which ``members`` are tried (parallel strategies: leg order)."""
    base = list(members)
    strategy = dep.strategy

    def view(m: Member) -> MemberView:
        return views.get(m.employee_id) or MemberView(m.employee_id)

    if strategy is Strategy.ROUND_ROBIN and last_answered is not None:
        ids = [m.employee_id for m in base]
        if last_answered in ids:
            i = ids.index(last_answered) + 1
            return base[i:] + base[:i]
        return base
    if strategy is Strategy.LONGEST_IDLE:
        return sorted(base, key=lambda m: view(m).last_end_ms)  # stable: ties keep the order
    if strategy is Strategy.LEAST_TALK_TIME:
        return sorted(base, key=lambda m: view(m).talk_ms)
    if strategy is Strategy.FEWEST_CALLS:
        return sorted(base, key=lambda m: view(m).calls)
    if strategy is Strategy.WEIGHTED:
        # Weighted sampling without replacement (Efraimidis & Spirakis): key u^(1/w),
        # highest first. A member with weight 8 is first 8/(8+5) of the time against 5.
        def key(m: Member) -> float:
            u = min(max(rand(), 1e-12), 1.0)
            return math.log(u) / max(m.weight, 1)

        return sorted(base, key=key, reverse=True)
    if strategy is Strategy.RANDOM:
        keyed = [(rand(), i, m) for i, m in enumerate(base)]
        return [m for _, _, m in sorted(keyed)]
    if strategy is Strategy.ESCALATION:
        return sorted(base, key=lambda m: m.escalation_offset)  # stable within a step
    return base


def leg_delays(dep: Department, taken: Sequence[Member]) -> list[int]:
    """Seconds after the bridge starts at which each taken member starts ringing.

    Increasing: each next available member is added one ring time after the previous
    one (members who could not be taken leave no gap). Escalation: the member's step
    offset. All at once: 0.
    """
    if dep.strategy is Strategy.INCREASING:
        return [i * dep.ring_seconds for i in range(len(taken))]
    if dep.strategy is Strategy.ESCALATION:
        return [max(0, m.escalation_offset) for m in taken]
    return [0 for _ in taken]
