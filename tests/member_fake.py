"""A small real fake of the members' Redis state for core tests (no Redis, no mocks).

It answers the core's ``LookupMembers`` / ``ReserveMembers`` as the Redis adapter does
(same statuses, same order rules as ``store/agents.py``'s RESERVE script), a waiting
caller's ``LookupPosition`` (callers ahead + 1, like ``AgentStore.queue_position``) and
applies ``EndOffers``, so a test can drive a department call through ``callflow`` alone.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

from orchestrator.core import callflow
from orchestrator.core.actions import (EndOffers, JoinQueue, LeaveQueue, LookupMembers, LookupPosition, MembersReserved, MembersSeen,
                                       QueuePosition, ReserveMembers)
from orchestrator.core.strategy import MemberView


@dataclass
class Members:
    busy: set[int] = field(default_factory=set)  # a live channel
    paused: set[int] = field(default_factory=set)
    wrapup_until: dict[int, int] = field(default_factory=dict)
    offers: dict[int, str] = field(default_factory=dict)  # employee -> call uuid
    views: dict[int, MemberView] = field(default_factory=dict)
    last_answered: int | None = None
    missed: dict[int, int] = field(default_factory=dict)
    ended: list = field(default_factory=list)  # every OfferEnd seen, in order
    queue: dict[str, int] = field(default_factory=dict)  # waiting call -> place (since ms)
    now_ms: int = 0

    def status(self, emp: int, call: str) -> str:
        if emp in self.paused:
            return "paused"
        if self.offers.get(emp, call) != call:
            return "offered_elsewhere"
        if self.wrapup_until.get(emp, 0) > self.now_ms:
            return "wrapup"
        if emp in self.busy:
            return "busy"
        return "free"

    def answer(self, action, call: str):
        if isinstance(action, LookupMembers):
            return MembersSeen(action.request_id, {e: self.views.get(e, MemberView(e)) for e in action.employee_ids}, self.last_answered)
        if action.queued and self.queue and min(self.queue, key=self.queue.get) != call:
            return MembersReserved(action.request_id, {e: "queued" for e in action.candidates})
        statuses = {}
        taken = 0
        for emp in action.candidates:
            st = self.status(emp, call)
            if st == "free":
                st = "offered" if taken < action.want else "skipped"
                if st == "offered":
                    taken += 1
                    self.offers[emp] = call
            statuses[emp] = st
        if taken:
            self.queue.pop(call, None)
        return MembersReserved(action.request_id, statuses)

    def position(self, action: LookupPosition, call: str) -> QueuePosition:
        if call not in self.queue:
            return QueuePosition(action.department_id, 0)
        mine = (self.queue[call], call)
        return QueuePosition(action.department_id, 1 + sum(1 for u, p in self.queue.items() if (p, u) < mine))

    def end(self, action: EndOffers) -> None:
        for e in action.ends:
            self.ended.append(e)
            self.offers.pop(e.employee_id, None)
            if e.result == "answered":
                self.wrapup_until[e.employee_id] = self.now_ms + action.wrapup_ms
                self.last_answered = e.employee_id
                self.missed[e.employee_id] = 0
            elif e.result in ("no_answer", "rejected", "busy"):
                self.missed[e.employee_id] = self.missed.get(e.employee_id, 0) + 1
                if action.pause_after and self.missed[e.employee_id] >= action.pause_after:
                    self.paused.add(e.employee_id)

    def drive(self, decision: callflow.Decision, c: callflow.Context) -> callflow.Decision:
        """Answer every member request in ``decision`` until only FreeSWITCH work is left.

        Returns one decision with every action produced along the way, in order.
        """
        actions = []
        pending = list(decision.actions)
        state = decision.state
        while pending:
            action = pending.pop(0)
            actions.append(action)
            if isinstance(action, EndOffers):
                self.end(action)
            if isinstance(action, JoinQueue):
                self.queue.setdefault(state.call.uuid, action.since_ms)
            if isinstance(action, LeaveQueue):
                self.queue.pop(state.call.uuid, None)
            if isinstance(action, (LookupMembers, ReserveMembers)):
                d = callflow.handle(state, self.answer(action, state.call.uuid), c)
                state = d.state
                pending.extend(d.actions)
            if isinstance(action, LookupPosition):
                d = callflow.handle(state, self.position(action, state.call.uuid), c)
                state = d.state
                pending.extend(d.actions)
        return callflow.Decision(state, tuple(actions))


def step(members: Members, state, event, c) -> callflow.Decision:
    """``callflow.handle`` followed by the member answers it asks for."""
    return members.drive(callflow.handle(state, event, c), c)


def at(c: callflow.Context, now_ms: int, members: Members | None = None) -> callflow.Context:
    if members is not None:
        members.now_ms = now_ms
    return replace(c, now_ms=now_ms)
