"""Callbacks from a department's queue in Redis: the only code that knows their keys.

A caller on hold who asks to be called back keeps their place: their queue entry becomes
the member ``cb:<id>`` of the same queue, with the same place and its own long lease
(``max_age_ms``), so ``RESERVE_LUA`` (store.agents) serves it at its turn like any caller.

Keys of tenant ``T`` (hash tag ``{t:T}``):

    {t:T}:callback:<id>   HASH  caller, dialed, department, since (place, ms), created and
                                expires (ms; its queue lease),
                                status (pending | dialing | done | expired | failed |
                                cancelled),
                                attempts, until (dialing: lease expiry ms), result,
                                legs (the uuids the current attempt's job originated,
                                space-separated, so a lost attempt's legs can be hung
                                up), client_attempt (the attempt that dialled the client:
                                the client is dialled at most once per attempt),
                                call (the caller's original call uuid: the expired
                                callback's voicemail is linked to it),
                                client_tries (attempts that reached a member but not
                                the client), not_before (ms: waiting out the
                                department's retry delay, out of the queue, until then),
                                mode ("" | apology: expired, the client is called with
                                the department's apology and may leave a voicemail)
    {t:T}:callbacks       ZSET  id -> created ms: the tenant's open callbacks (pending or
                                dialing); done/failed/cancelled ones leave it
    {t:T}:queue:<dept>    ZSET  (store.agents) ``cb:<id>`` -> the caller's place
    {t:T}:queue:<dept>:lease    ``cb:<id>`` -> created + max age

    {t:T}:callbacks:talking HASH id -> JSON of a ``Talk`` (agent_uuid, employee_id,
                                department_id, wrapup_ms, since_ms): bridged callbacks whose
                                member is still on the call (their offer is held until the
                                agent's leg is gone)

    pbx:callback-tenants  SET   tenant ids that may have open or talking callbacks (the
                                dispatcher's directory; outside any tenant's slot, so never
                                in a script)

A callback being dialled has left the queue (the reservation took it out) and carries a
lease (``until``): a dispatcher or worker that dies leaves it ``dialing`` only until the
lease ends, then ``sweep`` puts it back at its place (and hands back the legs that
attempt's job left in FreeSWITCH, for the dispatcher to hang up).

The numbers are checked when stored (``request``): the caller's must be E.164 exactly as
``core.dialstrings.e164`` writes it, since it is dialled later (``ValueError`` otherwise).
"""
from __future__ import annotations

import dataclasses
import json
import uuid as uuidlib
from dataclasses import dataclass

import redis

from orchestrator.core.dialstrings import e164, safe_uuid
from orchestrator.store.agents import queue_key, queue_lease_key
from orchestrator.store.redis_store import tenant_tag

TENANTS_KEY = "pbx:callback-tenants"
MAX_AGE_MS = 2 * 3600 * 1000
OPEN = ("pending", "dialing")
# Settled: done (bridged), expired (the apology call reached the client), failed, cancelled.


def callback_key(tenant_id: int, callback_id: str) -> str:
    return "%s:callback:%s" % (tenant_tag(tenant_id), callback_id)


def index_key(tenant_id: int) -> str:
    return "%s:callbacks" % tenant_tag(tenant_id)


def talking_key(tenant_id: int) -> str:
    return "%s:callbacks:talking" % tenant_tag(tenant_id)


@dataclass(frozen=True)
class Talk:
    """A bridged callback whose member is still on the call."""

    callback_id: str
    agent_uuid: str
    employee_id: int
    department_id: int
    wrapup_ms: int
    since_ms: int


def member(callback_id: str) -> str:
    """The callback's name in its department's queue (and its reservations' call id)."""
    return "cb:%s" % callback_id


_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

# KEYS[1] = {t:T}:queue:<dept>, KEYS[2] = {t:T}:queue:<dept>:lease,
# KEYS[3] = {t:T}:callback:<id>, KEYS[4] = {t:T}:callbacks
# ARGV[1] = the caller's call uuid, ARGV[2] = cb:<id>, ARGV[3] = place (ms), ARGV[4] = max
# age ms, ARGV[5] = caller number, ARGV[6] = dialled number, ARGV[7] = department id,
# ARGV[8] = callback id
# The caller's entry leaves the queue and the callback takes its place. Returns now ms.
REQUEST_LUA = _NOW + """
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[2])
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[4]), ARGV[2])
redis.call('HSET', KEYS[3], 'caller', ARGV[5], 'dialed', ARGV[6], 'department', ARGV[7], 'since', ARGV[3],
           'created', now, 'expires', now + tonumber(ARGV[4]), 'status', 'pending', 'attempts', 0, 'call', ARGV[1],
           'client_tries', 0, 'not_before', 0, 'mode', '')
redis.call('PEXPIRE', KEYS[3], tonumber(ARGV[4]) + 86400000)
redis.call('ZADD', KEYS[4], now, ARGV[8])
return now
"""

# KEYS[1] = {t:T}:callback:<id>, KEYS[2] = {t:T}:queue:<dept>, KEYS[3] = ...:lease
# ARGV[1] = dialing lease ms, ARGV[2] = "apology": the callback expired (it leaves the
# queue now, for good, and is marked mode=apology) | "" (the reservation takes it out),
# ARGV[3] = cb:<id>
# pending -> dialing (attempts + 1, until = now + lease). Returns the attempt, or 0 when
# the callback is not pending (cancelled, taken by another dispatcher, gone).
CLAIM_LUA = _NOW + """
if redis.call('HGET', KEYS[1], 'status') ~= 'pending' then return 0 end
redis.call('HSET', KEYS[1], 'status', 'dialing', 'until', now + tonumber(ARGV[1]), 'legs', '', 'not_before', 0)
if ARGV[2] == 'apology' then
  redis.call('HSET', KEYS[1], 'mode', 'apology')
  redis.call('ZREM', KEYS[2], ARGV[3])
  redis.call('ZREM', KEYS[3], ARGV[3])
end
return redis.call('HINCRBY', KEYS[1], 'attempts', 1)
"""

# KEYS[1] = {t:T}:callback:<id>, KEYS[2] = {t:T}:queue:<dept>, KEYS[3] = ...:lease
# ARGV[1] = cb:<id>, ARGV[2] = max age ms
# A pending callback whose retry delay is over (0 < not_before <= now) and that is not an
# apology goes back into the queue at its own place (NX); its queue lease (expires) is
# at least now + max age again (retries may outlast the first lease). Returns 1 if it
# was put back.
REQUEUE_LUA = _NOW + """
local f = redis.call('HMGET', KEYS[1], 'status', 'not_before', 'since', 'expires', 'mode')
if f[1] ~= 'pending' or tonumber(f[2] or '0') == 0 or tonumber(f[2]) > now or f[5] == 'apology' then return 0 end
local expires = math.max(tonumber(f[4] or '0'), now + tonumber(ARGV[2]))
redis.call('HSET', KEYS[1], 'not_before', 0, 'expires', expires)
redis.call('PEXPIRE', KEYS[1], expires - now + 86400000)
redis.call('ZADD', KEYS[2], 'NX', f[3], ARGV[1])
redis.call('ZADD', KEYS[3], expires, ARGV[1])
return 1
"""

# KEYS[1] = {t:T}:callback:<id>
# ARGV[1] = the job's attempt, ARGV[2] = agent | client, ARGV[3] = the leg's uuid
# The job may originate this leg only while its attempt is the callback's current one
# (dialing, attempts == ARGV[1]), and the client only once per attempt. The leg is
# recorded first (a job killed mid-way leaves its legs listed). Returns 1: go, 0: not.
LEG_LUA = """
local f = redis.call('HMGET', KEYS[1], 'status', 'attempts', 'client_attempt', 'legs')
if f[1] ~= 'dialing' or f[2] ~= ARGV[1] then return 0 end
if ARGV[2] == 'client' then
  if f[3] == ARGV[1] then return 0 end
  redis.call('HSET', KEYS[1], 'client_attempt', ARGV[1])
end
local legs = f[4] or ''
if legs ~= '' then legs = legs .. ' ' end
redis.call('HSET', KEYS[1], 'legs', legs .. ARGV[3])
return 1
"""

# KEYS[1] = {t:T}:callback:<id>, KEYS[2] = {t:T}:queue:<dept>, KEYS[3] = ...:lease,
# KEYS[4] = {t:T}:callbacks
# ARGV[1] = cb:<id>, ARGV[2] = new status (pending | done | failed | cancelled),
# ARGV[3] = result text, ARGV[4] = "1": only if dialing and its lease ended (sweep),
# ARGV[5] = callback id, ARGV[6] = retry delay ms (pending: wait that long out of the
# queue; 0: back at once), ARGV[7] = "1": the client did not answer (client_tries + 1)
# pending: back in the queue at its own place (NX) with expires (created + max age) as
# its lease again - unless it waits out a retry delay or is an apology: then out of the
# queue, not_before = now + delay (``REQUEUE_LUA`` / the dispatcher take it then);
# otherwise: out of the queue and of the open index. Returns 1 if changed.
SETTLE_LUA = _NOW + """
local f = redis.call('HMGET', KEYS[1], 'status', 'until', 'since', 'expires', 'mode')
if not f[1] then return 0 end
if f[1] ~= 'pending' and f[1] ~= 'dialing' then return 0 end
if ARGV[4] == '1' and (f[1] ~= 'dialing' or tonumber(f[2] or '0') > now) then return 0 end
redis.call('HSET', KEYS[1], 'status', ARGV[2], 'result', ARGV[3], 'until', 0)
if ARGV[7] == '1' then redis.call('HINCRBY', KEYS[1], 'client_tries', 1) end
local delay = tonumber(ARGV[6] or '0') or 0
if ARGV[2] == 'pending' and (delay > 0 or f[5] == 'apology') then
  redis.call('HSET', KEYS[1], 'not_before', now + delay)
  redis.call('ZREM', KEYS[2], ARGV[1])
  redis.call('ZREM', KEYS[3], ARGV[1])
elseif ARGV[2] == 'pending' then
  redis.call('ZADD', KEYS[2], 'NX', f[3], ARGV[1])
  redis.call('ZADD', KEYS[3], f[4], ARGV[1])
else
  redis.call('ZREM', KEYS[2], ARGV[1])
  redis.call('ZREM', KEYS[3], ARGV[1])
  redis.call('ZREM', KEYS[4], ARGV[5])
end
return 1
"""


@dataclass(frozen=True)
class Callback:
    id: str
    department_id: int
    caller: str
    dialed: str
    since_ms: int
    created_ms: int
    status: str
    attempts: int = 0
    until_ms: int = 0
    result: str = ""
    legs: tuple[str, ...] = ()  # what the current attempt's job originated (uuids)
    call_uuid: str = ""  # the caller's original call
    client_tries: int = 0  # attempts in which a member answered but the client did not
    not_before_ms: int = 0  # waiting out the retry delay (out of the queue) until then
    mode: str = ""  # "apology": expired, the client is called with the apology

    @property
    def member_tries(self) -> int:
        """Attempts that did not reach the client because no member answered (or lost)."""
        return self.attempts - self.client_tries


def _s(v: object) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def _i(v: object) -> int:
    try:
        return int(float(_s(v)))
    except (TypeError, ValueError):
        return 0


class CallbackStore:
    """Callbacks of every tenant; every method takes the tenant id first."""

    def __init__(self, client: redis.Redis, max_age_ms: int = MAX_AGE_MS) -> None:
        self.r = client
        self.max_age_ms = max_age_ms
        self._request = client.register_script(REQUEST_LUA)
        self._claim = client.register_script(CLAIM_LUA)
        self._settle = client.register_script(SETTLE_LUA)
        self._leg = client.register_script(LEG_LUA)
        self._requeue = client.register_script(REQUEUE_LUA)

    def request(self, tenant_id: int, department_id: int, call_uuid: str, since_ms: int, caller: str, dialed: str) -> str:
        """Turn the caller's queue entry into a callback at the same place; its id.

        ``caller`` is dialled later: it must be an E.164 number as ``e164`` writes it
        (``dialed``, shown to the client, too, or empty); ValueError otherwise."""
        if e164(caller) != caller:
            raise ValueError("caller's number %r is not an E.164 number: no callback" % caller[:40])
        if dialed and e164(dialed) != dialed:
            raise ValueError("dialled number %r is not an E.164 number: no callback" % dialed[:40])
        cb = uuidlib.uuid4().hex[:16]
        keys = [queue_key(tenant_id, department_id), queue_lease_key(tenant_id, department_id),
                callback_key(tenant_id, cb), index_key(tenant_id)]
        self._request(keys=keys, args=[call_uuid, member(cb), since_ms, self.max_age_ms, caller, dialed, department_id, cb])
        self.r.sadd(TENANTS_KEY, str(tenant_id))
        return cb

    def get(self, tenant_id: int, callback_id: str) -> Callback | None:
        h = {_s(k): _s(v) for k, v in self.r.hgetall(callback_key(tenant_id, callback_id)).items()}  # type: ignore[union-attr]
        if not h:
            return None
        return Callback(callback_id, _i(h.get("department")), h.get("caller", ""), h.get("dialed", ""), _i(h.get("since")),
                        _i(h.get("created")), h.get("status", ""), _i(h.get("attempts")), _i(h.get("until")), h.get("result", ""),
                        tuple(h.get("legs", "").split()), h.get("call", ""), _i(h.get("client_tries")),
                        _i(h.get("not_before")), h.get("mode", ""))

    def open(self, tenant_id: int) -> list[Callback]:
        """Pending and dialing callbacks, oldest first (lost hashes are dropped from the index)."""
        ids = [_s(x) for x in self.r.zrange(index_key(tenant_id), 0, -1)]  # type: ignore[union-attr]
        out = []
        for cb in ids:
            got = self.get(tenant_id, cb)
            if got is None or got.status not in OPEN:
                self.r.zrem(index_key(tenant_id), cb)
                continue
            out.append(got)
        return sorted(out, key=lambda c: c.since_ms)

    def tenants(self) -> list[int]:
        return sorted(_i(x) for x in self.r.smembers(TENANTS_KEY))  # type: ignore[union-attr]

    def forget_tenant_if_idle(self, tenant_id: int) -> None:
        if not self.r.zcard(index_key(tenant_id)) and not self.r.hlen(talking_key(tenant_id)):
            self.r.srem(TENANTS_KEY, str(tenant_id))

    def talking(self, tenant_id: int, talk: Talk) -> None:
        """The callback is bridged: its member stays on it until ``end_talk``."""
        self.r.hset(talking_key(tenant_id), talk.callback_id, json.dumps(dataclasses.asdict(talk)))
        self.r.sadd(TENANTS_KEY, str(tenant_id))

    def talks(self, tenant_id: int) -> list[Talk]:
        out = []
        for cb, raw in self.r.hgetall(talking_key(tenant_id)).items():  # type: ignore[union-attr]
            try:
                out.append(Talk(**json.loads(_s(raw))))
            except (ValueError, TypeError):
                self.r.hdel(talking_key(tenant_id), cb)  # unreadable: its offer lease frees the member
        return out

    def end_talk(self, tenant_id: int, callback_id: str) -> bool:
        """Forget a talking callback; False when another dispatcher already did."""
        return bool(self.r.hdel(talking_key(tenant_id), callback_id))

    def claim(self, tenant_id: int, callback_id: str, lease_ms: int, *, department_id: int = 0, apology: bool = False) -> int:
        """pending -> dialing; the attempt number, 0 when it was not pending. ``apology``:
        the callback expired; it leaves its department's queue for good."""
        keys = [callback_key(tenant_id, callback_id), queue_key(tenant_id, department_id),
                queue_lease_key(tenant_id, department_id)]
        return _i(self._claim(keys=keys, args=[lease_ms, "apology" if apology else "", member(callback_id)]))

    def settle(self, tenant_id: int, callback: Callback, status: str, result: str = "", *, only_expired: bool = False,
               retry_delay_ms: int = 0, client_missed: bool = False) -> bool:
        """Change the callback's status. ``pending`` puts it back at its place, or, with
        ``retry_delay_ms`` (or as an apology), out of the queue until ``requeue`` / the
        dispatcher takes it again; ``client_missed`` counts an attempt the client did not
        answer."""
        keys = [callback_key(tenant_id, callback.id), queue_key(tenant_id, callback.department_id),
                queue_lease_key(tenant_id, callback.department_id), index_key(tenant_id)]
        out = self._settle(keys=keys, args=[member(callback.id), status, result, "1" if only_expired else "0", callback.id,
                                            max(0, int(retry_delay_ms)), "1" if client_missed else "0"])
        return _i(out) == 1

    def requeue(self, tenant_id: int, callback: Callback) -> bool:
        """A callback whose retry delay is over goes back into the queue at its own place."""
        keys = [callback_key(tenant_id, callback.id), queue_key(tenant_id, callback.department_id),
                queue_lease_key(tenant_id, callback.department_id)]
        return _i(self._requeue(keys=keys, args=[member(callback.id), self.max_age_ms])) == 1

    def leg(self, tenant_id: int, callback_id: str, attempt: int, which: str, leg_uuid: str) -> bool:
        """May attempt ``attempt``'s job originate its ``which`` (agent | client) leg
        ``leg_uuid`` now? Records the leg when yes. No when a newer attempt took the
        callback or it is settled, and for a second client leg in one attempt."""
        if which not in ("agent", "client"):
            raise ValueError("which must be agent or client")
        out = self._leg(keys=[callback_key(tenant_id, callback_id)], args=[str(attempt), which, safe_uuid(leg_uuid)])
        return _i(out) == 1

    def unclaim(self, tenant_id: int, callback: Callback, result: str) -> None:
        """Undo a claim that led to no call (nobody free): pending again, attempt not counted."""
        if self.settle(tenant_id, callback, "pending", result):
            self.r.hincrby(callback_key(tenant_id, callback.id), "attempts", -1)

    def cancel(self, tenant_id: int, callback_id: str) -> bool:
        """Cancel a pending callback (a dialing one finishes its attempt first: False)."""
        got = self.get(tenant_id, callback_id)
        if got is None or got.status != "pending":
            return False
        return self.settle(tenant_id, got, "cancelled", "cancelled by an administrator")

    def sweep(self, tenant_id: int) -> list[Callback]:
        """Dialing callbacks whose lease ended go back to their place: those callbacks
        (with the legs their lost attempt originated, to be hung up)."""
        return [cb for cb in self.open(tenant_id)
                if cb.status == "dialing" and self.settle(tenant_id, cb, "pending", "dialing lease expired", only_expired=True)]
