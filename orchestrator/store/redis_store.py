"""The Redis adapter: the only code that knows key names and Lua scripts.

Keys (every key of a tenant carries the hash tag ``{t:<tenant>}`` so that a tenant's
keys share one Redis Cluster slot and one Lua script can touch them together):

    {t:<id>}:calls              ZSET  call uuid -> lease expiry (epoch ms)
    {t:<id>}:call:<uuid>        HASH  live facts of one call (for inspection); TTL
    {t:<id>}:routing_version    STR   version of the tenant's routing data
    pbx:routing_index_version   STR   version of the number/domain -> tenant index
    pbx:active_tenants          ZSET  tenant id -> last call start (for inspection)

A call holds a *lease* in its tenant's ``calls`` set, renewed while the call runs; a
lease whose orchestrator died expires on its own and is swept by the next admission,
so a crashed process never leaves a tenant's limit stuck.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Mapping

import redis

log = logging.getLogger(__name__)

INDEX_VERSION_KEY = "pbx:routing_index_version"
ACTIVE_TENANTS_KEY = "pbx:active_tenants"


def tenant_tag(tenant_id: int) -> str:
    return "{t:%d}" % tenant_id


def calls_key(tenant_id: int) -> str:
    return "%s:calls" % tenant_tag(tenant_id)


def call_key(tenant_id: int, uuid: str) -> str:
    return "%s:call:%s" % (tenant_tag(tenant_id), uuid)


def routing_version_key(tenant_id: int) -> str:
    return "%s:routing_version" % tenant_tag(tenant_id)


# KEYS[1] = {t:<id>}:calls, KEYS[2] = {t:<id>}:call:<uuid>
# ARGV[1] = call uuid, ARGV[2] = now ms, ARGV[3] = lease ms, ARGV[4] = limit (0 = none),
# ARGV[5..] = field, value pairs describing the call
# Returns {admitted (1/0), active calls after the decision}
ADMIT_LUA = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[2])
local limit = tonumber(ARGV[4])
local count = redis.call('ZCARD', KEYS[1])
local known = redis.call('ZSCORE', KEYS[1], ARGV[1])
if limit > 0 and count >= limit and not known then
  return {0, count}
end
local expiry = tonumber(ARGV[2]) + tonumber(ARGV[3])
redis.call('ZADD', KEYS[1], expiry, ARGV[1])
if #ARGV > 4 then
  redis.call('HSET', KEYS[2], unpack(ARGV, 5))
end
redis.call('PEXPIRE', KEYS[2], ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return {1, redis.call('ZCARD', KEYS[1])}
"""

# KEYS[1] = {t:<id>}:calls, KEYS[2] = {t:<id>}:call:<uuid>
# ARGV[1] = call uuid, ARGV[2] = now ms, ARGV[3] = lease ms, ARGV[4..] = field, value pairs
# Returns 1 if the lease was renewed, 0 if it had already expired (then it is re-taken:
# the call is real and running, so it counts again, even past the limit).
RENEW_LUA = """
local existed = redis.call('ZSCORE', KEYS[1], ARGV[1]) and 1 or 0
local expiry = tonumber(ARGV[2]) + tonumber(ARGV[3])
redis.call('ZADD', KEYS[1], expiry, ARGV[1])
if #ARGV > 3 then
  redis.call('HSET', KEYS[2], unpack(ARGV, 4))
end
redis.call('PEXPIRE', KEYS[2], ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return existed
"""

# KEYS[1] = {t:<id>}:calls, KEYS[2] = {t:<id>}:call:<uuid>; ARGV[1] = call uuid
# Returns the number of calls still active for the tenant.
RELEASE_LUA = """
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('DEL', KEYS[2])
return redis.call('ZCARD', KEYS[1])
"""


# KEYS[1] = a version key; ARGV[1] = version. Sets the key unless it already holds a
# higher version (two admin processes committing out of order). Returns the stored value.
_MAX_SET_LUA = """
local cur = tonumber(redis.call('GET', KEYS[1]) or '-1')
local new = tonumber(ARGV[1])
if new > cur then
  redis.call('SET', KEYS[1], ARGV[1])
  return new
end
return cur
"""


@dataclass(frozen=True)
class Admission:
    admitted: bool
    active: int


def _flatten(fields: Mapping[str, str]) -> list[str]:
    out: list[str] = []
    for key, value in fields.items():
        out.extend((key, str(value)))
    return out


class CallStore:
    """Live calls per tenant: admission under the tenant's limit, leases, facts."""

    def __init__(self, client: redis.Redis, lease_ms: int = 60_000, active_every_ms: int = 1000) -> None:
        self._r = client
        self.lease_ms = lease_ms
        # pbx:active_tenants is for inspection only: a tenant's "last call start" is
        # written at most once a second per process, not as a second round trip per call.
        self._active_every_ms = active_every_ms
        self._active_written: dict[int, int] = {}
        self._admit = client.register_script(ADMIT_LUA)
        self._renew = client.register_script(RENEW_LUA)
        self._release = client.register_script(RELEASE_LUA)

    def admit(self, tenant_id: int, uuid: str, now_ms: int, limit: int, fields: Mapping[str, str]) -> Admission:
        admitted, active = self._admit(
            keys=[calls_key(tenant_id), call_key(tenant_id, uuid)],
            args=[uuid, now_ms, self.lease_ms, limit, *_flatten(fields)],
        )
        if now_ms - self._active_written.get(tenant_id, -self._active_every_ms) >= self._active_every_ms:
            self._r.zadd(ACTIVE_TENANTS_KEY, {str(tenant_id): now_ms})
            self._active_written[tenant_id] = now_ms
        return Admission(bool(admitted), int(active))

    def renew(self, tenant_id: int, uuid: str, now_ms: int, fields: Mapping[str, str] | None = None) -> bool:
        result = self._renew(
            keys=[calls_key(tenant_id), call_key(tenant_id, uuid)],
            args=[uuid, now_ms, self.lease_ms, *_flatten(fields or {})],
        )
        if int(result) == 0:
            log.warning("lease of call %s (tenant %d) had expired; taken again", uuid, tenant_id)
            return False
        return True

    def release(self, tenant_id: int, uuid: str) -> int:
        return int(self._release(keys=[calls_key(tenant_id), call_key(tenant_id, uuid)], args=[uuid]))

    def active_calls(self, tenant_id: int, now_ms: int) -> dict[str, dict[str, str]]:
        uuids: list[bytes | str] = list(self._r.zrangebyscore(calls_key(tenant_id), now_ms, "+inf"))  # type: ignore[arg-type]
        out: dict[str, dict[str, str]] = {}
        for raw in uuids:
            uuid = raw.decode() if isinstance(raw, bytes) else str(raw)
            facts = self._r.hgetall(call_key(tenant_id, uuid))
            out[uuid] = {
                (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
                for k, v in facts.items()
            }
        return out

    def active_tenants(self) -> list[int]:
        members: list[bytes | str] = list(self._r.zrange(ACTIVE_TENANTS_KEY, 0, -1))  # type: ignore[arg-type]
        return [int(t) for t in members]


class RoutingVersions:
    """Where writers publish, and readers check, the version of routing data."""

    def __init__(self, client: redis.Redis) -> None:
        self._r = client
        self._max_set = client.register_script(_MAX_SET_LUA)

    def tenant(self, tenant_id: int) -> int | None:
        raw = self._r.get(routing_version_key(tenant_id))
        return int(raw) if raw is not None else None

    def index(self) -> int | None:
        raw = self._r.get(INDEX_VERSION_KEY)
        return int(raw) if raw is not None else None

    def index_and_tenant(self, tenant_id: int) -> tuple[int | None, int | None]:
        """The index's and a tenant's versions in one round trip (MGET: on a Redis Cluster,
        where the two keys live in different slots, this would be two GETs)."""
        raw_index, raw_tenant = self._r.mget(INDEX_VERSION_KEY, routing_version_key(tenant_id))
        return (int(raw_index) if raw_index is not None else None, int(raw_tenant) if raw_tenant is not None else None)

    def publish(self, changed: Mapping[int, int], index_version: int | None) -> None:
        """Called after a commit that changed routing data. Versions only go up."""
        for tenant_id, version in changed.items():
            self._max_set(keys=[routing_version_key(tenant_id)], args=[version])
        if index_version is not None:
            self._max_set(keys=[INDEX_VERSION_KEY], args=[index_version])

    def seed_tenant(self, tenant_id: int, version: int) -> None:
        """After a Redis restart lost the key: put back what the database says."""
        self._max_set(keys=[routing_version_key(tenant_id)], args=[version])

    def seed_index(self, version: int) -> None:
        self._max_set(keys=[INDEX_VERSION_KEY], args=[version])


