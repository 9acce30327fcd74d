"""Immutable routing snapshots, cached per tenant, reloaded when their version moves.

A call costs one Redis GET (the tenant's routing version) and no SQL while the cached
snapshot is current. When Redis is unreachable the cached snapshot is used as it is
(a call is never refused because Redis restarted); when Redis lost the version keys
the database's version is written back (``seed``).
"""
from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from typing import Callable, TypeVar

import redis

from orchestrator.core.model import RoutingIndex, TenantSnapshot
from orchestrator.store.redis_store import RoutingVersions

log = logging.getLogger(__name__)
T = TypeVar("T")

RunBlocking = Callable[..., object]


def _direct(fn: Callable[..., T], *args: object) -> T:
    return fn(*args)


class RoutingCache:
    def __init__(
        self,
        versions: RoutingVersions,
        load_index: Callable[[], RoutingIndex],
        load_snapshot: Callable[[int], TenantSnapshot | None],
        run_blocking: RunBlocking = _direct,
        max_tenants: int = 1024,
    ) -> None:
        self._versions = versions
        self._load_index = load_index
        self._load_snapshot = load_snapshot
        self._run = run_blocking
        self._max = max_tenants
        self._index: RoutingIndex | None = None
        self._snapshots: OrderedDict[int, TenantSnapshot] = OrderedDict()
        self._locks: dict[int | None, threading.Lock] = {}
        self._locks_guard = threading.Lock()
        self.loads = 0  # how many times the database was read (for tests and stats)
        self.redis_backoff_s = 1.0
        self._redis_down_until = 0.0

    def _lock(self, key: int | None) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(key, threading.Lock())

    def _published(self, read: Callable[[], int | None]) -> tuple[bool, int | None]:
        # While Redis is known to be down, do not make every call wait for it again.
        if time.monotonic() < self._redis_down_until:
            return False, None
        try:
            return True, read()
        except redis.RedisError as exc:
            self._redis_down_until = time.monotonic() + self.redis_backoff_s
            log.warning("routing version unavailable from Redis (%s); using cached data", exc)
            return False, None

    def index(self) -> RoutingIndex:
        ok, version = self._published(self._versions.index)
        cached = self._index
        if cached is not None and (not ok or (version is not None and cached.version >= version)):
            return cached
        with self._lock(None):
            cached = self._index
            if cached is not None and version is not None and cached.version >= version:
                return cached
            fresh = self._run(self._load_index)
            assert isinstance(fresh, RoutingIndex)
            self.loads += 1
            self._index = fresh
            if ok and version is None:
                self._seed(lambda: self._versions.seed_index(fresh.version))
            return fresh

    def snapshot(self, tenant_id: int) -> TenantSnapshot | None:
        ok, version = self._published(lambda: self._versions.tenant(tenant_id))
        cached = self._snapshots.get(tenant_id)
        if cached is not None and (not ok or (version is not None and cached.version >= version)):
            self._snapshots.move_to_end(tenant_id)
            return cached
        with self._lock(tenant_id):
            cached = self._snapshots.get(tenant_id)
            if cached is not None and version is not None and cached.version >= version:
                return cached
            fresh = self._run(self._load_snapshot, tenant_id)
            self.loads += 1
            if fresh is None:
                self._snapshots.pop(tenant_id, None)
                return None
            assert isinstance(fresh, TenantSnapshot)
            self._snapshots[tenant_id] = fresh
            self._snapshots.move_to_end(tenant_id)
            while len(self._snapshots) > self._max:
                self._snapshots.popitem(last=False)
            if ok and version is None:
                self._seed(lambda: self._versions.seed_tenant(tenant_id, fresh.version))
            return fresh

    def _seed(self, write: Callable[[], None]) -> None:
        try:
            write()
        except redis.RedisError as exc:
            log.warning("could not seed routing version in Redis: %s", exc)
