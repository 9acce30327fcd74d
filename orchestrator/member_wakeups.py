"""Wake waiting callers when a member of their tenant may have become free.

One greenlet per orchestrator process listens on Redis pub/sub channel
``pbx:members-free`` (``store.agents.FREED_CHANNEL``; the Lua scripts and the presence
watcher publish the tenant id there) and calls every callback registered for that
tenant, but only the first caller in line (in this process) of each department: that
caller asks Redis for a member. The reserve script lets the first k callers in line take
k available members; when members remain available after it took one while others still
wait, it publishes ``<tenant>:<department>:<count>`` and that many of the next in line
(in each process) look at once, so k members freed together reach k callers in one hop,
not k hops. A freed member thus costs one or two Redis calls, not one per waiting
caller.

Pub/sub is a hint, not the truth: a notice lost while Redis restarts costs at most the
waiting call's periodic check (``CallHandler.hold_check_ms``).
"""
from __future__ import annotations

import heapq
import logging
from collections import defaultdict
from typing import Callable

import gevent
import redis

from orchestrator.store.agents import FREED_CHANNEL

log = logging.getLogger("orchestrator.wakeups")

Callback = Callable[[], None]
MAX_WOKEN = 20  # callers one notice may wake in one department (per process)


def parse_notice(data: object) -> tuple[int, int | None, int] | None:
    """``b"7"`` (a member of tenant 7 may be free) -> (7, None, 1);
    ``b"7:12:3"`` (3 members of department 12 are free) -> (7, 12, 3); else None."""
    try:
        text = data.decode("ascii") if isinstance(data, bytes) else str(data)
        parts = [int(p) for p in text.split(":")]
    except (UnicodeDecodeError, ValueError):
        return None
    if len(parts) == 1:
        return parts[0], None, 1
    if len(parts) == 3 and parts[2] > 0:
        return parts[0], parts[1], min(parts[2], MAX_WOKEN)
    return None


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

    def waiting(self) -> dict[int, tuple[int, int]]:
        """Callers on hold in this process, per tenant: (how many, earliest place ms).
        Read by the metrics on scrape (``orchestrator.metrics.WaitingCallers``)."""
        out: dict[int, tuple[int, int]] = {}
        for tenant_id, departments in self._waiting.items():
            places = [since for waiters in departments.values() for since in waiters.values()]
            if places:
                out[tenant_id] = (len(places), min(places))
        return out

    def notify(self, tenant_id: int, department_id: int | None = None, count: int = 1) -> None:
        """Wake the first in line of each of the tenant's departments; or, for one
        department, its first ``count`` in line."""
        self.notices += 1
        departments = self._waiting.get(tenant_id, {})
        if department_id is not None:
            waiters = departments.get(department_id) or {}
            for callback in heapq.nsmallest(max(1, count), waiters, key=waiters.__getitem__):
                callback()
            return
        for waiters in list(departments.values()):
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
                    notice = parse_notice(message.get("data"))
                    if notice is None:
                        log.warning("ignoring a malformed notice on %s: %r", FREED_CHANNEL, message.get("data"))
                        continue
                    self.notify(*notice)
            except redis.RedisError as exc:
                log.warning("member notices interrupted (%s); retrying in %.1f s", exc, self.retry_s)
            finally:
                try:
                    pubsub.close()
                except redis.RedisError:
                    pass
            gevent.sleep(self.retry_s)
