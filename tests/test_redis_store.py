"""Call leases, routing versions, the snapshot cache and pbx-inspect on a real Redis."""
from __future__ import annotations

import io
import json

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from orchestrator import inspect_cli
from orchestrator.core.model import RoutingIndex, TenantSnapshot
from orchestrator.store.redis_store import CallStore, RoutingVersions, calls_key, routing_version_key
from orchestrator.store.routing_cache import RoutingCache


@pytest.fixture
def raw(redis_url):
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


def test_admission_respects_the_tenant_limit_and_keys_share_a_slot(raw):
    store = CallStore(raw, lease_ms=10_000)
    assert store.admit(1, "a", 1000, 2, {"caller": "x"}).admitted
    assert store.admit(1, "b", 1000, 2, {}).admitted
    third = store.admit(1, "c", 1000, 2, {})
    assert not third.admitted and third.active == 2
    assert store.admit(1, "a", 1001, 2, {}).admitted  # the same call again is not a new one
    assert store.admit(2, "c", 1000, 2, {}).admitted  # another tenant has its own limit
    assert calls_key(1).startswith("{t:1}") and routing_version_key(1).startswith("{t:1}")
    assert store.release(1, "b") == 1
    assert store.admit(1, "c", 1002, 2, {}).admitted


def test_a_dead_orchestrators_lease_expires_and_frees_the_slot(raw):
    store = CallStore(raw, lease_ms=5_000)
    assert store.admit(1, "crashed", 1_000, 1, {}).admitted
    assert not store.admit(1, "next", 3_000, 1, {}).admitted
    # No renewal came for the crashed call: after its lease it no longer counts.
    assert store.admit(1, "next", 6_001, 1, {}).admitted
    assert list(store.active_calls(1, 6_001)) == ["next"]


def test_renew_keeps_a_long_call_and_reports_a_lost_lease(raw):
    store = CallStore(raw, lease_ms=5_000)
    store.admit(1, "long", 1_000, 1, {})
    assert store.renew(1, "long", 4_000)
    assert not store.admit(1, "other", 8_000, 1, {}).admitted  # renewed until 9 000
    raw.delete(calls_key(1))  # e.g. Redis restarted
    assert store.renew(1, "long", 9_000) is False  # re-taken, and said so


def test_versions_only_go_up(raw):
    versions = RoutingVersions(raw)
    assert versions.tenant(5) is None
    versions.publish({5: 3}, 7)
    versions.publish({5: 2}, 6)  # a slower writer with older data
    assert versions.tenant(5) == 3 and versions.index() == 7


def _snap(version: int) -> TenantSnapshot:
    return TenantSnapshot(tenant_id=5, name="T", sip_domain="t.example", version=version)


def test_cache_reads_the_database_only_when_the_version_moves(raw):
    versions = RoutingVersions(raw)
    db = {"version": 1}
    cache = RoutingCache(versions, lambda: RoutingIndex(version=1), lambda tid: _snap(db["version"]))
    first = cache.snapshot(5)
    assert first.version == 1 and versions.tenant(5) == 1  # seeded from the database
    assert cache.snapshot(5) is first and cache.loads == 1
    db["version"] = 2
    versions.publish({5: 2}, None)
    assert cache.snapshot(5).version == 2 and cache.loads == 2


def test_cache_survives_redis_loss(raw):
    versions = RoutingVersions(raw)
    cache = RoutingCache(versions, lambda: RoutingIndex(version=1), lambda tid: _snap(4))
    snap = cache.snapshot(5)
    raw.flushdb()  # Redis restarted without persistence: the version key is gone
    assert cache.snapshot(5).version == 4 and versions.tenant(5) == 4  # reloaded and re-seeded
    dead = RoutingVersions(redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0)))
    offline = RoutingCache(dead, lambda: RoutingIndex(version=1), lambda tid: snap)
    assert offline.snapshot(5) is snap  # Redis down: the database still answers
    assert offline.snapshot(5) is snap and offline.loads == 1  # and the cache is used


class _CountingVersions(RoutingVersions):
    """The real versions on the real Redis, counting the round trips a route costs."""

    def __init__(self, client):
        super().__init__(client)
        self.reads = []

    def index(self):
        self.reads.append("index")
        return super().index()

    def tenant(self, tenant_id):
        self.reads.append("tenant %d" % tenant_id)
        return super().tenant(tenant_id)

    def index_and_tenant(self, tenant_id):
        self.reads.append("both %d" % tenant_id)
        return super().index_and_tenant(tenant_id)


def test_route_reads_both_versions_in_one_round_trip(raw):
    versions = _CountingVersions(raw)
    db = {"index": RoutingIndex(numbers={"+100": 5}, version=1), 5: 1, 6: 1}
    cache = RoutingCache(versions, lambda: db["index"],
                         lambda tid: TenantSnapshot(tenant_id=tid, name="T%d" % tid, sip_domain="t%d.example" % tid, version=db[tid]))
    find = lambda index: index.numbers.get("+100")  # noqa: E731
    tenant_id, first = cache.route(find)
    assert (tenant_id, first.tenant_id, cache.loads) == (5, 5, 2)  # nothing cached yet: read as before
    versions.reads.clear()
    tenant_id, again = cache.route(find)
    assert tenant_id == 5 and again is first and cache.loads == 2
    assert versions.reads == ["both 5"]  # current cache: one MGET, no SQL
    # The tenant's routing changed: the same round trip sees it and the snapshot reloads.
    db[5] = 2
    versions.publish({5: 2}, None)
    versions.reads.clear()
    assert cache.route(find)[1].version == 2 and versions.reads == ["both 5"] and cache.loads == 3
    # The number moved to tenant 6: the index reloads and tenant 6's own version is read.
    db["index"] = RoutingIndex(numbers={"+100": 6}, version=2)
    versions.publish({}, 2)
    versions.reads.clear()
    tenant_id, moved = cache.route(find)
    assert (tenant_id, moved.tenant_id) == (6, 6) and versions.reads == ["both 5", "tenant 6"]
    # A number no longer anyone's routes nowhere.
    db["index"] = RoutingIndex(numbers={}, version=3)
    versions.publish({}, 3)
    assert cache.route(find) == (None, None)


def test_route_uses_the_cache_while_redis_is_down(raw):
    versions = RoutingVersions(raw)
    index = RoutingIndex(numbers={"+100": 5}, version=1)
    cache = RoutingCache(versions, lambda: index, lambda tid: _snap(1))
    find = lambda i: i.numbers.get("+100")  # noqa: E731
    _, snap = cache.route(find)
    cache._versions = RoutingVersions(redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0)))
    assert cache.route(find) == (5, snap) and cache.loads == 2


def test_active_tenants_written_at_most_once_a_second(raw):
    store = CallStore(raw, lease_ms=10_000)
    store.admit(1, "a", 1_000, 0, {})
    store.admit(1, "b", 1_500, 0, {})
    assert raw.zscore("pbx:active_tenants", "1") == 1_000
    store.admit(1, "c", 2_000, 0, {})
    store.admit(2, "d", 2_100, 0, {})
    assert store.active_tenants() == [1, 2] and raw.zscore("pbx:active_tenants", "1") == 2_000


def test_inspect_lists_live_calls(raw):
    store = CallStore(raw, lease_ms=600_000)
    now = inspect_cli._now_ms()
    store.admit(3, "call-1", now, 0, {"caller": "+78121234567", "destination": "+74950000001", "entry": "public", "started_ms": str(now - 65_000)})
    out = io.StringIO()
    assert inspect_cli.main(["calls", "--json"], out=out, client=raw) == 0
    doc = json.loads(out.getvalue())
    assert doc["tenant"] is None
    (row,) = doc["items"]
    assert row["uuid"] == "call-1" and row["tenant"] == 3 and row["age"] == "1:05"
    out = io.StringIO()
    inspect_cli.main(["keys", "--tenant", "3"], out=out, client=raw)
    assert "{t:3}:calls (zset)" in out.getvalue() and "{t:3}:call:call-1 (hash)" in out.getvalue()
    out = io.StringIO()
    inspect_cli.main(["tenants"], out=out, client=raw)
    assert out.getvalue() == "tenant 3: 1 live call(s)\n"


def test_inspect_members_and_queues(raw):
    from orchestrator.store.agents import AgentStore, Release

    agents = AgentStore(raw)
    agents.reserve(3, "call-a", 10, [41, 42], want=1)
    agents.reserve(3, "call-b", 10, [42], want=1)
    agents.release(3, "call-b", 10, [Release(42, "answered", wrapup_ms=60_000, talk_ms=30_000)], inspect_cli.utc_days(inspect_cli._redis_ms(raw), 1)[0])
    agents.join_queue(3, 10, "call-c", inspect_cli._redis_ms(raw) - 5000)
    out = io.StringIO()
    assert inspect_cli.main(["members", "--tenant", "3", "--json"], out=out, client=raw) == 0
    rows = {r["employee"]: r for r in json.loads(out.getvalue())["items"]}
    assert rows[41]["offer"] == "call-a" and rows[42]["offer"] == ""
    assert 55_000 < rows[42]["wrapup_left_ms"] <= 60_000 and rows[42]["calls_today"] == 1 and rows[42]["talk_s_today"] == 30
    out = io.StringIO()
    inspect_cli.main(["members", "--tenant", "3"], out=out, client=raw)
    assert "call-a" in out.getvalue() and "EMPLOYEE" in out.getvalue()
    out = io.StringIO()
    inspect_cli.main(["queues", "--tenant", "3"], out=out, client=raw)
    assert out.getvalue().startswith("department 10: 1 waiting\n  1. call-c waiting 5s")
