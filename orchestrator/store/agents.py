"""Department members' live state in Redis: offers (reservations), busy channels,
wrap-up, missed-offer pauses and per-day statistics. The only code that knows these
key names (its scripts are in ``store/agents_lua.py``).

Keys of tenant ``T`` (hash tag ``{t:T}``, so one Lua script can touch them together and
any number of orchestrator processes share them):

    {t:T}:agent:<emp>          HASH  offer (call uuid holding the member), offer_until
                                     (lease expiry, ms), offer_dept, wrapup_until (ms),
                                     last_end (ms, end of the last answered call),
                                     missed (consecutive missed offers), paused ("1")
    {t:T}:agent:<emp>:ch       ZSET  channel uuid -> expiry (ms): the member's phone is on
                                     a call (any call, seen in FreeSWITCH channel events)
    {t:T}:offers               ZSET  employee id -> offer lease expiry (inspection, and
                                     the "no stuck reservation" check)
    {t:T}:stats:<yyyymmdd>     HASH  c:<emp> answered calls, t:<emp> talk ms (that day, UTC)
    {t:T}:dept:<id>:last       STR   employee who answered the department's last call
                                     (round robin with memory)
    {t:T}:queue:<dept>         ZSET  waiting call uuid -> its place (ms it first queued)
    {t:T}:queue:<dept>:lease   ZSET  waiting call uuid -> lease expiry (ms): a caller whose
                                     orchestrator died leaves the queue by itself

Channel ``pbx:members-free`` (pub/sub, message = tenant id): a member of the tenant may
have become free (an offer ended, a wrap-up ended, a phone hung up); orchestrators wake
their waiting callers, who then try to take a member (the head of the queue first).

Time is Redis's own clock (``TIME``) inside every script, so that orchestrators on
different hosts compare wrap-up ends and leases on one clock, in milliseconds.

An offer is only ever taken by a Lua script that checks, for each candidate in the
caller's order, that the member is not paused, not already offered (or the offer's lease
expired: its orchestrator died), not in wrap-up and has no live channel; then takes it.
Redis runs scripts one at a time, so no member is ever offered two calls at once. The
orchestrator renews its offers' leases with its call's lease; a dead orchestrator's
offers expire after ``lease_ms``.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

import redis

from orchestrator.store.agents_lua import (
    CHANNEL_UP_LUA,
    JOIN_QUEUE_LUA,
    ORDER_VIEWS_LUA,
    QUEUE_POSITION_LUA,
    RELEASE_LUA,
    RENEW_LUA,
    RENEW_QUEUE_LUA,
    RESERVE_LUA,
)
from orchestrator.store.redis_store import tenant_tag

log = logging.getLogger(__name__)

STATS_TTL_S = 40 * 86400


def agent_key(tenant_id: int, employee_id: int) -> str:
    return "%s:agent:%d" % (tenant_tag(tenant_id), employee_id)


def channels_key(tenant_id: int, employee_id: int) -> str:
    return "%s:agent:%d:ch" % (tenant_tag(tenant_id), employee_id)


def offers_key(tenant_id: int) -> str:
    return "%s:offers" % tenant_tag(tenant_id)


def stats_key(tenant_id: int, day: str) -> str:
    return "%s:stats:%s" % (tenant_tag(tenant_id), day)


def last_answer_key(tenant_id: int, department_id: int) -> str:
    return "%s:dept:%d:last" % (tenant_tag(tenant_id), department_id)


def queue_key(tenant_id: int, department_id: int) -> str:
    return "%s:queue:%d" % (tenant_tag(tenant_id), department_id)


def queue_lease_key(tenant_id: int, department_id: int) -> str:
    return "%s:queue:%d:lease" % (tenant_tag(tenant_id), department_id)


FREED_CHANNEL = "pbx:members-free"



@dataclass(frozen=True)
class MemberState:
    """What the strategies and the inspection tools read of one member."""

    employee_id: int
    offer: str = ""  # call uuid holding the member, if any
    offer_until_ms: int = 0
    wrapup_until_ms: int = 0
    last_end_ms: int = 0
    missed: int = 0
    paused: bool = False
    channels: int = 0
    calls_today: int = 0
    talk_ms_today: int = 0


@dataclass(frozen=True)
class Release:
    """How one offered member's offer ends (see RELEASE_LUA)."""

    employee_id: int
    outcome: str  # "answered" | "missed" | "free"
    wrapup_ms: int = 0
    talk_ms: int = 0
    pause_after: int = 0


def _s(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _int(value: object) -> int:
    try:
        return int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return 0


class AgentStore:
    """Members' offers and state; every method takes the tenant id first."""

    def __init__(self, client: redis.Redis, lease_ms: int = 20_000) -> None:
        self.r = client
        self.lease_ms = lease_ms
        self._reserve = client.register_script(RESERVE_LUA)
        self._renew = client.register_script(RENEW_LUA)
        self._release = client.register_script(RELEASE_LUA)
        self._channel_up = client.register_script(CHANNEL_UP_LUA)
        self._join_queue = client.register_script(JOIN_QUEUE_LUA)
        self._renew_queue = client.register_script(RENEW_QUEUE_LUA)
        self._queue_position = client.register_script(QUEUE_POSITION_LUA)
        self._order_views = client.register_script(ORDER_VIEWS_LUA)

    # ------------------------------------------------------------ offers

    def reserve(self, tenant_id: int, call_uuid: str, department_id: int, candidates: Sequence[int], want: int,
                queued: bool = False, *, own_channels: Sequence[str] = ()) -> tuple[int, dict[int, str]]:
        """Take up to ``want`` of ``candidates`` (tried in order) for this call.

        ``queued``: the department queues callers; callers who waited longer come first.
        ``own_channels``: legs this call rang itself and that have ended; a member's
        channel among them is not a live call (its CHANNEL_HANGUP_COMPLETE may still be
        on its way to the presence watcher).
        Returns (Redis time ms, {employee id: status}); status "offered" means taken.
        """
        if not candidates:
            return 0, {}
        keys: list[str] = []
        for emp in candidates:
            keys += [agent_key(tenant_id, emp), channels_key(tenant_id, emp)]
        keys += [offers_key(tenant_id), queue_key(tenant_id, department_id), queue_lease_key(tenant_id, department_id)]
        args = [call_uuid, self.lease_ms, want, department_id, "1" if queued else "0", tenant_id, *candidates, *own_channels]
        out = self._reserve(keys=keys, args=args)
        now = _int(out[0])
        return now, {emp: _s(st) for emp, st in zip(candidates, out[1:])}

    def renew(self, tenant_id: int, call_uuid: str, employee_ids: Iterable[int]) -> int:
        ids = list(employee_ids)
        if not ids:
            return 0
        keys = [agent_key(tenant_id, emp) for emp in ids] + [offers_key(tenant_id)]
        return _int(self._renew(keys=keys, args=[call_uuid, self.lease_ms, *ids]))

    def release(self, tenant_id: int, call_uuid: str, department_id: int, releases: Sequence[Release], day: str) -> list[int]:
        """End this call's offers; returns the members that got paused by it."""
        if not releases:
            return []
        keys = [agent_key(tenant_id, r.employee_id) for r in releases]
        keys += [offers_key(tenant_id), stats_key(tenant_id, day), last_answer_key(tenant_id, department_id)]
        args: list[str | int] = [call_uuid, STATS_TTL_S, tenant_id]
        for r in releases:
            args += [r.employee_id, r.outcome, r.wrapup_ms, r.talk_ms, r.pause_after]
        out = self._release(keys=keys, args=args)
        return [_int(x) for x in out[1:]]

    def offer_department(self, tenant_id: int, employee_id: int, call_uuid: str) -> int | None:
        """The department whose offer ``call_uuid`` holds on the member, or None."""
        offer, dept = self.r.hmget(agent_key(tenant_id, employee_id), "offer", "offer_dept")
        if offer is None or _s(offer) != call_uuid or dept is None:
            return None
        return _int(dept) or None

    # ------------------------------------------------------------ channels (presence)

    def channel_up(self, tenant_id: int, employee_id: int, channel_uuid: str, ttl_ms: int, *, placed_by_member: bool = False) -> None:
        """The member's phone is on ``channel_uuid`` (refresh it before ``ttl_ms`` ends)."""
        self._channel_up(keys=[channels_key(tenant_id, employee_id), agent_key(tenant_id, employee_id)],
                         args=[channel_uuid, ttl_ms, "1" if placed_by_member else "0"])

    def channel_down(self, tenant_id: int, employee_id: int, channel_uuid: str) -> None:
        if self.r.zrem(channels_key(tenant_id, employee_id), channel_uuid):
            self.announce_free(tenant_id)

    def announce_free(self, tenant_id: int) -> None:
        """Tell every orchestrator that a member of the tenant may be free now."""
        self.r.publish(FREED_CHANNEL, str(tenant_id))

    # ------------------------------------------------------------ queue

    def join_queue(self, tenant_id: int, department_id: int, call_uuid: str, since_ms: int) -> int:
        """Put the caller in the department's queue (keeping an earlier place); returns
        how many callers are ahead."""
        keys = [queue_key(tenant_id, department_id), queue_lease_key(tenant_id, department_id)]
        return _int(self._join_queue(keys=keys, args=[call_uuid, since_ms, self.lease_ms]))

    def leave_queue(self, tenant_id: int, department_id: int, call_uuid: str) -> None:
        pipe = self.r.pipeline(transaction=True)
        pipe.zrem(queue_key(tenant_id, department_id), call_uuid)
        pipe.zrem(queue_lease_key(tenant_id, department_id), call_uuid)
        removed = pipe.execute()[0]
        if removed and self.r.zcard(queue_key(tenant_id, department_id)):
            self.announce_free(tenant_id)  # the next caller may be able to take someone

    def renew_queue(self, tenant_id: int, department_id: int, call_uuid: str) -> None:
        self._renew_queue(keys=[queue_lease_key(tenant_id, department_id)], args=[call_uuid, self.lease_ms])

    def queue_position(self, tenant_id: int, department_id: int, call_uuid: str) -> int:
        """The caller's place in line (1 = next), counting the live callers and callbacks
        ahead; 0 when the caller is not in the queue."""
        keys = [queue_key(tenant_id, department_id), queue_lease_key(tenant_id, department_id)]
        return _int(self._queue_position(keys=keys, args=[call_uuid]))

    def queue(self, tenant_id: int, department_id: int) -> list[tuple[str, int]]:
        """Waiting callers in order: (call uuid, place ms). Callers whose lease expired
        (their orchestrator died) are left out; the next reservation removes them."""
        pipe = self.r.pipeline(transaction=False)
        pipe.zrange(queue_key(tenant_id, department_id), 0, -1, withscores=True)
        pipe.zrange(queue_lease_key(tenant_id, department_id), 0, -1, withscores=True)
        pipe.time()
        rows, leases, (sec, usec) = pipe.execute()
        now = int(sec) * 1000 + int(usec) // 1000
        alive = {_s(k) for k, v in leases if v > now}
        return [(_s(k), int(v)) for k, v in rows if _s(k) in alive]

    # ------------------------------------------------------------ pause / resume

    def resume(self, tenant_id: int, employee_id: int) -> None:
        """End an automatic pause (the member logged in again)."""
        self.r.hset(agent_key(tenant_id, employee_id), mapping={"paused": 0, "missed": 0})

    # ------------------------------------------------------------ reading

    def states(self, tenant_id: int, employee_ids: Sequence[int], days: Sequence[str] = ()) -> dict[int, MemberState]:
        """Every member's state in one round trip (strategies and inspection).

        ``calls_today`` / ``talk_ms_today`` sum the statistics of ``days`` (the
        department's window: today, or the last N days).
        """
        if not employee_ids:
            return {}
        pipe = self.r.pipeline(transaction=False)
        for emp in employee_ids:
            pipe.hgetall(agent_key(tenant_id, emp))
            pipe.zcard(channels_key(tenant_id, emp))
        stats_fields = []
        for emp in employee_ids:
            stats_fields += ["c:%d" % emp, "t:%d" % emp]
        for day in days:
            pipe.hmget(stats_key(tenant_id, day), stats_fields)
        out = pipe.execute()
        per_day = out[2 * len(employee_ids):]
        result: dict[int, MemberState] = {}
        for i, emp in enumerate(employee_ids):
            raw: Mapping[object, object] = out[2 * i]
            h = {_s(k): _s(v) for k, v in raw.items()}
            result[emp] = MemberState(
                employee_id=emp,
                offer=h.get("offer", ""),
                offer_until_ms=_int(h.get("offer_until")),
                wrapup_until_ms=_int(h.get("wrapup_until")),
                last_end_ms=_int(h.get("last_end")),
                missed=_int(h.get("missed")),
                paused=h.get("paused") == "1",
                channels=_int(out[2 * i + 1]),
                calls_today=sum(_int(day[2 * i]) for day in per_day),
                talk_ms_today=sum(_int(day[2 * i + 1]) for day in per_day),
            )
        return result

    def order_views(self, tenant_id: int, department_id: int, employee_ids: Sequence[int],
                    days: Sequence[str]) -> tuple[dict[int, tuple[int, int, int]], int | None]:
        """What the strategies order members by, in one script call: {employee id:
        (last_end ms, calls, talk ms over ``days``)} and who answered the department's
        last call (``states`` + ``last_answered``, without the rest of the state)."""
        if not employee_ids:
            return {}, self.last_answered(tenant_id, department_id)
        keys = [agent_key(tenant_id, emp) for emp in employee_ids] + [stats_key(tenant_id, day) for day in days]
        keys.append(last_answer_key(tenant_id, department_id))
        out = self._order_views(keys=keys, args=[len(employee_ids), *employee_ids])
        last = _s(out[0])
        views = {emp: (_int(_s(out[1 + 3 * i])), _int(out[2 + 3 * i]), _int(out[3 + 3 * i]))
                 for i, emp in enumerate(employee_ids)}
        return views, (int(last) if last else None)

    def last_answered(self, tenant_id: int, department_id: int) -> int | None:
        value = self.r.get(last_answer_key(tenant_id, department_id))
        return _int(value) if value is not None else None

    def offers(self, tenant_id: int) -> dict[int, int]:
        """Employee id -> offer lease expiry (ms) of every offer held in the tenant
        (may include offers that expired since the last reservation; see ``live_offers``)."""
        rows: list[tuple[object, float]] = self.r.zrange(offers_key(tenant_id), 0, -1, withscores=True)  # type: ignore[assignment]
        return {_int(k): int(v) for k, v in rows}

    def live_offers(self, tenant_id: int) -> dict[int, int]:
        """Offers whose lease has not expired (on Redis's clock)."""
        sec, usec = self.r.time()  # type: ignore[misc]
        now = int(sec) * 1000 + int(usec) // 1000
        return {emp: until for emp, until in self.offers(tenant_id).items() if until > now}
