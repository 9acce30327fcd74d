"""Immutable routing snapshots, cached per tenant, reloaded when their version moves.

A call costs one Redis round trip (an MGET of the index's and its tenant's routing
versions, ``route``) and no SQL while the cached snapshots are current. When Redis is
unreachable the cached snapshot is used as it is (a call is never refused because Redis
restarted); when Redis lost the version keys the database's version is written back
(``seed``).
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

    def _published(self, read: Callable[[], T]) -> tuple[bool, T | None]:
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
        return self._index_at(ok, version)

    def snapshot(self, tenant_id: int) -> TenantSnapshot | None:
        ok, version = self._published(lambda: self._versions.tenant(tenant_id))
        return self._snapshot_at(tenant_id, ok, version)

    def route(self, find: Callable[[RoutingIndex], int | None]) -> tuple[int | None, TenantSnapshot | None]:
        """The tenant ``find`` picks in the current index, and its current snapshot.

        A new call's first Redis round trip, and usually its only one here: the index's
        version and the version of the tenant the cached index points to are read with
        one MGET. Only when the index moved and now names another tenant is that
        tenant's version read separately. Each read yields the call's greenlet to every
        other ready one, so a round trip saved here is queueing saved at the routing
        p99 under load (bench/results.md, session 10)."""
        cached_index = self._index
        guess = find(cached_index) if cached_index is not None else None
        if guess is None:
            index = self.index()
            tenant_id = find(index)
            return tenant_id, (self.snapshot(tenant_id) if tenant_id is not None else None)
        ok, versions = self._published(lambda: self._versions.index_and_tenant(guess))
        index_version, tenant_version = versions if versions is not None else (None, None)
        tenant_id = find(self._index_at(ok, index_version))
        if tenant_id is None:
            return None, None
        if tenant_id != guess:
            return tenant_id, self.snapshot(tenant_id)
        return tenant_id, self._snapshot_at(tenant_id, ok, tenant_version)

    def _index_at(self, ok: bool, version: int | None) -> RoutingIndex:
        """The index, given the published version (``ok`` False: Redis did not answer)."""
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

    def _snapshot_at(self, tenant_id: int, ok: bool, version: int | None) -> TenantSnapshot | None:
        """A tenant's snapshot, given its published version (``ok`` as in ``_index_at``)."""
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
