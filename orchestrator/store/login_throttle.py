"""Failed admin-panel logins per (username, client address), shared by every admin
process through Redis. Key names and the Lua script live here, in the Redis adapter.
"""
from __future__ import annotations

import hashlib

import redis

LOGIN_FAILURES_PREFIX = "pbx:admin:login_failures:"

# KEYS[1] = pbx:admin:login_failures:<sha256(username|address)>; ARGV[1] = window ms
# Returns the number of failures in the current window (this one included); the first
# failure starts the window (the key's TTL).
RECORD_FAILURE_LUA = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
end
return n
"""


def subject(username: str, address: str) -> str:
    raw = "%s|%s" % (username.strip().lower(), address)
    return hashlib.sha256(raw.encode()).hexdigest()


class RedisLoginThrottle:
    def __init__(self, client: redis.Redis, limit: int = 5, window_seconds: int = 600) -> None:
        self._r = client
        self.limit = limit
        self.window_seconds = window_seconds
        self._record = client.register_script(RECORD_FAILURE_LUA)

    def _key(self, username: str, address: str) -> str:
        return LOGIN_FAILURES_PREFIX + subject(username, address)

    def blocked(self, username: str, address: str) -> bool:
        count = self._r.get(self._key(username, address))
        return count is not None and int(count) >= self.limit

    def record_failure(self, username: str, address: str) -> int:
        return int(self._record(keys=[self._key(username, address)], args=[self.window_seconds * 1000]))

    def reset(self, username: str, address: str) -> None:
        self._r.delete(self._key(username, address))
