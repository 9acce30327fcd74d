"""The members adapter: the core's member requests -> the Redis agent store (and back).

``LookupMembers`` / ``ReserveMembers`` / ``LookupPosition`` are answered at once with the
core events ``MembersSeen`` / ``MembersReserved`` / ``QueuePosition``; ``EndOffers`` ends
offers in Redis (wrap-up, statistics, miss streaks and automatic pauses) and writes
missed offers to the database.

When Redis is unreachable a call is never refused for it: members are rung in the
strategy's order without the cross-process guarantee (logged), and the offers that could
not be written simply do not exist; a lease written before the outage expires by itself.
"""
from __future__ import annotations

import logging
import time
from typing import Callable, Protocol

import redis

from orchestrator.core.actions import (
    MISSED_RESULTS,
    PAUSING_RESULTS,
    CallInfo,
    EndOffers,
    JoinQueue,
    LeaveQueue,
    LookupMembers,
    LookupPosition,
    MembersReserved,
    MembersSeen,
    QueuePosition,
    ReserveMembers,
)
from orchestrator.core.strategy import MemberView
from orchestrator.db.queries import Miss
from orchestrator.store.agents import AgentStore, Release

log = logging.getLogger("orchestrator.members")

# A member who lost the race (or whose caller gave up) is held this long more: FreeSWITCH
# sends the phone's CANCEL a few ms after the event we act on (P01: 12-15 ms), and the
# next call must not ring the phone while that leg is still being torn down.
SETTLE_MS = 300


class MissRecorder(Protocol):
    def missed_offers(self, tenant_id: int, call: CallInfo, department_id: int, ended_ms: int, misses: list[Miss]) -> None: ...


def utc_days(now_ms: int, count: int) -> list[str]:
    """``count`` UTC day names (yyyymmdd) ending today: the statistics window."""
    return [time.strftime("%Y%m%d", time.gmtime(now_ms / 1000 - 86400 * i)) for i in range(max(1, count))]


class MemberOffers:
    def __init__(
        self,
        agents: AgentStore,
        recorder: MissRecorder | None,
        clock: Callable[[], int],
        background: Callable[[Callable[[], None]], None] = lambda fn: fn(),
        later: Callable[[float, Callable[[], None]], None] | None = None,
    ) -> None:
        self.agents = agents
        self.recorder = recorder
        self.clock = clock
        # Runs the missed-offer insert without holding up the call: the next member
        # is rung while the row is written (the wiring passes a greenlet spawn).
        self.background = background
        # Wakes waiting callers when a wrap-up ends (the wiring passes gevent.spawn_later).
        self.later = later

    def lookup(self, tenant_id: int, action: LookupMembers) -> MembersSeen:
        try:
            figures, last = self.agents.order_views(tenant_id, action.department_id, action.employee_ids,
                                                    utc_days(self.clock(), action.window_days))
        except redis.RedisError as exc:
            log.warning("tenant %d: members' state unavailable (%s); configured order used", tenant_id, exc)
            return MembersSeen(action.request_id)
        views = {e: MemberView(e, *f) for e, f in figures.items()}
        return MembersSeen(action.request_id, views, last)

    def reserve(self, tenant_id: int, call_uuid: str, action: ReserveMembers) -> MembersReserved:
        try:
            _, statuses = self.agents.reserve(tenant_id, call_uuid, action.department_id, action.candidates, action.want,
                                              action.queued, own_channels=action.own_channels)
        except redis.RedisError as exc:
            log.warning("tenant %d call %s: Redis unavailable (%s); ringing without offer protection", tenant_id, call_uuid, exc)
            statuses = {e: ("offered" if i < action.want else "skipped") for i, e in enumerate(action.candidates)}
        return MembersReserved(action.request_id, statuses)

    def renew(self, tenant_id: int, call_uuid: str, held: tuple[int, ...], queue_department: int | None = None) -> None:
        try:
            if held:
                self.agents.renew(tenant_id, call_uuid, held)
            if queue_department is not None:
                self.agents.renew_queue(tenant_id, queue_department, call_uuid)
        except redis.RedisError as exc:
            log.warning("tenant %d call %s: could not renew member offers: %s", tenant_id, call_uuid, exc)

    def queue(self, tenant_id: int, call_uuid: str, action: JoinQueue | LeaveQueue) -> None:
        try:
            if isinstance(action, JoinQueue):
                ahead = self.agents.join_queue(tenant_id, action.department_id, call_uuid, action.since_ms)
                log.info("tenant %d call %s: waiting in the queue of department %d, %d ahead", tenant_id, call_uuid, action.department_id, ahead)
            else:
                self.agents.leave_queue(tenant_id, action.department_id, call_uuid)
        except redis.RedisError as exc:
            # Without Redis the caller still waits and is served by the periodic check.
            log.warning("tenant %d call %s: queue unavailable: %s", tenant_id, call_uuid, exc)

    def position(self, tenant_id: int, call_uuid: str, action: LookupPosition) -> QueuePosition:
        """The caller's place for an announcement; 0 (not said) when Redis cannot tell."""
        try:
            place = self.agents.queue_position(tenant_id, action.department_id, call_uuid)
        except redis.RedisError as exc:
            log.warning("tenant %d call %s: queue position unavailable: %s", tenant_id, call_uuid, exc)
            place = 0
        return QueuePosition(action.department_id, place)

    def _announce(self, tenant_id: int) -> None:
        try:
            self.agents.announce_free(tenant_id)
        except redis.RedisError as exc:
            log.warning("tenant %d: could not announce a wrap-up end: %s", tenant_id, exc)

    def end(self, tenant_id: int, call: CallInfo, action: EndOffers) -> list[int]:
        """End the offers; returns members paused by these misses."""
        releases = []
        for e in action.ends:
            if e.result in ("lost_race", "cancelled"):
                releases.append(Release(e.employee_id, "settle", SETTLE_MS))
                continue
            outcome = "answered" if e.result == "answered" else "missed" if e.result in PAUSING_RESULTS else "free"
            releases.append(Release(e.employee_id, outcome, action.wrapup_ms, e.talk_ms, action.pause_after))
        now = self.clock()
        try:
            paused = self.agents.release(tenant_id, call.uuid, action.department_id, releases, utc_days(now, 1)[0])
        except redis.RedisError as exc:
            log.warning("tenant %d call %s: could not end member offers (their leases expire): %s", tenant_id, call.uuid, exc)
            paused = []
        for emp in paused:
            log.info("tenant %d: member %d paused after %d missed offers", tenant_id, emp, action.pause_after)
        if self.later is not None:
            # Members free later (wrap-up, settling): wake waiting callers then.
            if action.wrapup_ms > 0 and any(e.result == "answered" for e in action.ends):
                self.later(action.wrapup_ms / 1000.0, lambda: self._announce(tenant_id))
            if any(e.result in ("lost_race", "cancelled") for e in action.ends):
                self.later(SETTLE_MS / 1000.0, lambda: self._announce(tenant_id))
        misses = [Miss(e.employee_id, e.result, e.rang_ms, e.employee_id in paused) for e in action.ends if e.result in MISSED_RESULTS]
        if misses and self.recorder is not None:
            recorder = self.recorder

            def write() -> None:
                try:
                    recorder.missed_offers(tenant_id, call, action.department_id, now, misses)
                except Exception as exc:  # noqa: BLE001 - history must not break the call
                    log.error("tenant %d call %s: could not record missed offers: %s", tenant_id, call.uuid, exc)

            self.background(write)
        return paused
