"""Department members' live state in Redis: offers (reservations), busy channels,
wrap-up, missed-offer pauses and per-day statistics. The only code that knows these
key names and Lua scripts.

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


# Shared Lua prelude: Redis's clock in ms (scripts are effect-replicated in Redis >= 5,
# so TIME is allowed in a script that writes).
_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

# KEYS[2i-1] = {t:T}:agent:<emp_i>, KEYS[2i] = {t:T}:agent:<emp_i>:ch  (i = 1..n, in the
#   order the strategy wants them tried); KEYS[2n+1] = {t:T}:offers;
#   KEYS[2n+2] = {t:T}:queue:<dept>, KEYS[2n+3] = {t:T}:queue:<dept>:lease
# ARGV[1] = call uuid, ARGV[2] = lease ms, ARGV[3] = how many to take at most,
# ARGV[4] = department id, ARGV[5] = "1" when the department queues callers,
# ARGV[6] = tenant id, ARGV[6+i] = employee id of candidate i
# Returns {now ms, status_1, ..., status_n}; status: "offered" (taken for this call),
# "paused", "offered_elsewhere", "wrapup", "busy" (a live channel), "skipped" (enough
# taken), "queued" (callers who waited longer come first: nothing was taken).
# A queued caller who takes a member leaves the queue, and the next one is woken.
RESERVE_LUA = _NOW + """
local n = (#KEYS - 3) / 2
local Q, QL = KEYS[#KEYS - 1], KEYS[#KEYS]
local want = tonumber(ARGV[3])
local taken = 0
local out = {now}
redis.call('ZREMRANGEBYSCORE', KEYS[2 * n + 1], '-inf', now)  -- expired offers (inspection index)
if ARGV[5] == '1' then
  local dead = redis.call('ZRANGEBYSCORE', QL, '-inf', now)
  for _, u in ipairs(dead) do
    redis.call('ZREM', Q, u)
    redis.call('ZREM', QL, u)
  end
  local head = redis.call('ZRANGE', Q, 0, 0)[1]
  if head and head ~= ARGV[1] then
    for i = 1, n do out[#out + 1] = 'queued' end
    return out
  end
end
for i = 1, n do
  local h = KEYS[2 * i - 1]
  local st
  local f = redis.call('HMGET', h, 'offer', 'offer_until', 'wrapup_until', 'paused')
  redis.call('ZREMRANGEBYSCORE', KEYS[2 * i], '-inf', now)
  if f[4] == '1' then
    st = 'paused'
  elseif f[1] and f[1] ~= '' and f[1] ~= ARGV[1] and tonumber(f[2] or '0') > now then
    st = 'offered_elsewhere'
  elseif tonumber(f[3] or '0') > now then
    st = 'wrapup'
  elseif redis.call('ZCARD', KEYS[2 * i]) > 0 then
    st = 'busy'
  elseif taken >= want then
    st = 'skipped'
  else
    local until_ms = now + tonumber(ARGV[2])
    redis.call('HSET', h, 'offer', ARGV[1], 'offer_until', until_ms, 'offer_dept', ARGV[4])
    redis.call('ZADD', KEYS[2 * n + 1], until_ms, ARGV[6 + i])
    taken = taken + 1
    st = 'offered'
  end
  out[#out + 1] = st
end
if taken > 0 and redis.call('ZREM', Q, ARGV[1]) == 1 then
  redis.call('ZREM', QL, ARGV[1])
  if redis.call('ZCARD', Q) > 0 then
    redis.call('PUBLISH', 'pbx:members-free', ARGV[6])
  end
end
return out
"""

# KEYS[1] = {t:T}:queue:<dept>, KEYS[2] = {t:T}:queue:<dept>:lease
# ARGV[1] = call uuid, ARGV[2] = place (ms first queued), ARGV[3] = lease ms
# The place is only set the first time (NX): a caller coming back keeps it.
JOIN_QUEUE_LUA = _NOW + """
redis.call('ZADD', KEYS[1], 'NX', ARGV[2], ARGV[1])
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[3]), ARGV[1])
return redis.call('ZRANK', KEYS[1], ARGV[1])
"""

# KEYS[1] = {t:T}:queue:<dept>:lease; ARGV[1] = call uuid, ARGV[2] = lease ms
# Renews the lease of a caller still in the queue (XX: never re-adds one that left).
RENEW_QUEUE_LUA = _NOW + """
return redis.call('ZADD', KEYS[1], 'XX', 'CH', now + tonumber(ARGV[2]), ARGV[1])
"""

# KEYS[i] = {t:T}:agent:<emp_i> (i = 1..n); KEYS[n+1] = {t:T}:offers
# ARGV[1] = call uuid, ARGV[2] = lease ms, ARGV[2+i] = employee id i
# Extends the lease of every offer this call holds. Returns how many were renewed.
RENEW_LUA = _NOW + """
local n = #KEYS - 1
local renewed = 0
for i = 1, n do
  if redis.call('HGET', KEYS[i], 'offer') == ARGV[1] then
    local until_ms = now + tonumber(ARGV[2])
    redis.call('HSET', KEYS[i], 'offer_until', until_ms)
    redis.call('ZADD', KEYS[n + 1], until_ms, ARGV[2 + i])
    renewed = renewed + 1
  end
end
return renewed
"""

# KEYS[i] = {t:T}:agent:<emp_i> (i = 1..n); KEYS[n+1] = {t:T}:offers;
# KEYS[n+2] = {t:T}:stats:<today>; KEYS[n+3] = {t:T}:dept:<id>:last
# ARGV[1] = call uuid, ARGV[2] = stats TTL s, ARGV[3] = tenant id,
# then per member i, 5 values from ARGV[4+5(i-1)]:
#   employee id, outcome ("answered" | "missed" | "free" | "settle"), wrap-up ms (for
#   "settle": how long the offer still holds), talk ms, pause after N misses (0 = never)
# Only offers held by this call are touched (a lease that expired and was taken by another
# call is left alone). "answered": wrap-up starts now, last_end = now, today's stats grow,
# the miss streak and any pause end, the department remembers who answered; "missed":
# the streak grows and may pause the member; "free": the offer just ends; "settle": the
# offer ends after a short while (the phone's leg is still being cancelled: LOSE_RACE /
# ORIGINATOR_CANCEL legs get their CANCEL a few ms after the event we act on, P01/P01d).
# Members free at once (no wrap-up, not paused) are announced on pbx:members-free.
# Returns {now ms, paused employee ids...} (members paused by this release).
RELEASE_LUA = _NOW + """
local n = #KEYS - 3
local out = {now}
local freed = false
for i = 1, n do
  local b = 4 + 5 * (i - 1)
  local emp, outcome = ARGV[b], ARGV[b + 1]
  local h = KEYS[i]
  if redis.call('HGET', h, 'offer') == ARGV[1] and outcome == 'settle' then
    local until_ms = now + tonumber(ARGV[b + 2])
    redis.call('HSET', h, 'offer_until', until_ms)
    redis.call('ZADD', KEYS[n + 1], until_ms, emp)
  elseif redis.call('HGET', h, 'offer') == ARGV[1] then
    redis.call('HDEL', h, 'offer', 'offer_until', 'offer_dept')
    redis.call('ZREM', KEYS[n + 1], emp)
    if outcome == 'answered' then
      redis.call('HSET', h, 'wrapup_until', now + tonumber(ARGV[b + 2]), 'last_end', now, 'missed', 0, 'paused', 0)
      redis.call('HINCRBY', KEYS[n + 2], 'c:' .. emp, 1)
      redis.call('HINCRBY', KEYS[n + 2], 't:' .. emp, tonumber(ARGV[b + 3]))
      redis.call('EXPIRE', KEYS[n + 2], ARGV[2])
      redis.call('SET', KEYS[n + 3], emp)
      if tonumber(ARGV[b + 2]) <= 0 then
        freed = true  -- no wrap-up: free now (otherwise announced when it ends)
      end
    elseif outcome == 'missed' then
      local missed = redis.call('HINCRBY', h, 'missed', 1)
      local limit = tonumber(ARGV[b + 4])
      if limit > 0 and missed >= limit and redis.call('HGET', h, 'paused') ~= '1' then
        redis.call('HSET', h, 'paused', 1)
        out[#out + 1] = emp
      else
        freed = true
      end
    else
      freed = true
    end
  end
end
if freed then
  redis.call('PUBLISH', 'pbx:members-free', ARGV[3])
end
return out
"""

# KEYS[1] = {t:T}:agent:<emp>:ch, KEYS[2] = {t:T}:agent:<emp>
# ARGV[1] = channel uuid, ARGV[2] = ttl ms, ARGV[3] = "1" when the member placed this call
#   (it ends an automatic pause: "resumes on their next call")
CHANNEL_UP_LUA = _NOW + """
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
if ARGV[3] == '1' then
  redis.call('HSET', KEYS[2], 'paused', 0, 'missed', 0)
end
return 1
"""


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

    # ------------------------------------------------------------ offers

    def reserve(self, tenant_id: int, call_uuid: str, department_id: int, candidates: Sequence[int], want: int,
                queued: bool = False) -> tuple[int, dict[int, str]]:
        """Take up to ``want`` of ``candidates`` (tried in order) for this call.

        ``queued``: the department queues callers; callers who waited longer come first.
        Returns (Redis time ms, {employee id: status}); status "offered" means taken.
        """
        if not candidates:
            return 0, {}
        keys: list[str] = []
        for emp in candidates:
            keys += [agent_key(tenant_id, emp), channels_key(tenant_id, emp)]
        keys += [offers_key(tenant_id), queue_key(tenant_id, department_id), queue_lease_key(tenant_id, department_id)]
        args = [call_uuid, self.lease_ms, want, department_id, "1" if queued else "0", tenant_id, *candidates]
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

    def queue(self, tenant_id: int, department_id: int) -> list[tuple[str, int]]:
        """Waiting callers in order: (call uuid, place ms)."""
        rows: list[tuple[object, float]] = self.r.zrange(queue_key(tenant_id, department_id), 0, -1, withscores=True)  # type: ignore[assignment]
        return [(_s(k), int(v)) for k, v in rows]

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
