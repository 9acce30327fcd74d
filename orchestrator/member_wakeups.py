"""Wake waiting callers when a member of their tenant may have become free.

One greenlet per orchestrator process listens on Redis pub/sub channel
``pbx:members-free`` (``store.agents.FREED_CHANNEL``; the Lua scripts and the presence
watcher publish the tenant id there) and calls every callback registered for that
tenant: each waiting call then asks Redis for a member once (the head of the queue
first, so a notice to many callers still gives each member to one caller only).

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
        self._waiting: dict[int, set[Callback]] = defaultdict(set)
        self._greenlet: gevent.Greenlet | None = None
        self.notices = 0

    def register(self, tenant_id: int, callback: Callback) -> None:
        self._waiting[tenant_id].add(callback)

    def unregister(self, tenant_id: int, callback: Callback) -> None:
        callbacks = self._waiting.get(tenant_id)
        if callbacks is not None:
            callbacks.discard(callback)
            if not callbacks:
                del self._waiting[tenant_id]

    def notify(self, tenant_id: int) -> None:
        self.notices += 1
        for callback in list(self._waiting.get(tenant_id, ())):
            callback()

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
