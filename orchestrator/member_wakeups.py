"""Wake waiting callers when a member of their tenant may have become free.

One greenlet per orchestrator process listens on Redis pub/sub channel
``pbx:members-free`` (``store.agents.FREED_CHANNEL``; the Lua scripts and the presence
watcher publish the tenant id there) and calls every callback registered for that
tenant, but only the first caller in line (in this process) of each department: that
caller asks Redis for a member; the reserve script serves the department's head of the
queue first and, when it took a member while others still wait, publishes again so the
next in line looks. A freed member thus costs one or two Redis calls, not one per
waiting caller.

Pub/sub is a hint, not the truth: a notice lost while Redis restarts costs at most the
waiting call's periodic check (``CallHandler.hold_check_ms``).
"""
from __future__ import annotations

import logging
from collections import defaultdict
from typing import Callable

import gevent
import redis

from orchestrator.store.agents import FREED_CHANNEL

log = logging.getLogger("orchestrator.wakeups")

Callback = Callable[[], None]


class Wakeups:
    def __init__(self, client: redis.Redis | None = None, *, retry_s: float = 1.0) -> None:
        self.client = client
        self.retry_s = retry_s
        self._waiting: dict[int, dict[int, dict[Callback, int]]] = defaultdict(lambda: defaultdict(dict))
        self._greenlet: gevent.Greenlet | None = None
        self.notices = 0

    def register(self, tenant_id: int, department_id: int, since_ms: int, callback: Callback) -> None:
        self._waiting[tenant_id][department_id][callback] = since_ms

    def unregister(self, tenant_id: int, department_id: int, callback: Callback) -> None:
        departments = self._waiting.get(tenant_id)
        if departments is None:
            return
        waiters = departments.get(department_id)
        if waiters is not None:
            waiters.pop(callback, None)
            if not waiters:
                del departments[department_id]
        if not departments:
            del self._waiting[tenant_id]

    def is_first(self, tenant_id: int, department_id: int, callback: Callback) -> bool:
        """Is this the earliest waiting caller of the department in this process?"""
        waiters = self._waiting.get(tenant_id, {}).get(department_id) or {}
        return bool(waiters) and min(waiters, key=waiters.__getitem__) is callback

    def notify(self, tenant_id: int) -> None:
        self.notices += 1
        for waiters in list(self._waiting.get(tenant_id, {}).values()):
            if waiters:
                min(waiters, key=waiters.__getitem__)()

    # ------------------------------------------------------------ listening

    def start(self) -> None:
        if self.client is not None and self._greenlet is None:
            self._greenlet = gevent.spawn(self._listen)

    def stop(self) -> None:
        if self._greenlet is not None:
            self._greenlet.kill(block=False)
            self._greenlet = None

    def _listen(self) -> None:
        assert self.client is not None
        while True:
            pubsub = self.client.pubsub(ignore_subscribe_messages=True)
            try:
                pubsub.subscribe(FREED_CHANNEL)
                log.info("listening for free members on %s", FREED_CHANNEL)
                while True:
                    message = pubsub.get_message(timeout=5.0)
                    if message is None:
                        continue
                    try:
                        tenant_id = int(message["data"])
                    except (TypeError, ValueError):
                        log.warning("ignoring a malformed notice on %s: %r", FREED_CHANNEL, message.get("data"))
                        continue
                    self.notify(tenant_id)
            except redis.RedisError as exc:
                log.warning("member notices interrupted (%s); retrying in %.1f s", exc, self.retry_s)
            finally:
                try:
                    pubsub.close()
                except redis.RedisError:
                    pass
            gevent.sleep(self.retry_s)
