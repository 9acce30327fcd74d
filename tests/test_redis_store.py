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


def test_inspect_lists_live_calls(raw):
    store = CallStore(raw, lease_ms=600_000)
    now = inspect_cli._now_ms()
    store.admit(3, "call-1", now, 0, {"caller": "+78121234567", "destination": "+74950000001", "entry": "public", "started_ms": str(now - 65_000)})
    out = io.StringIO()
    assert inspect_cli.main(["calls", "--json"], out=out, client=raw) == 0
    (row,) = json.loads(out.getvalue())
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
    rows = {r["employee"]: r for r in json.loads(out.getvalue())}
    assert rows[41]["offer"] == "call-a" and rows[42]["offer"] == ""
    assert 55_000 < rows[42]["wrapup_left_ms"] <= 60_000 and rows[42]["calls_today"] == 1 and rows[42]["talk_s_today"] == 30
    out = io.StringIO()
    inspect_cli.main(["members", "--tenant", "3"], out=out, client=raw)
    assert "call-a" in out.getvalue() and "EMPLOYEE" in out.getvalue()
    out = io.StringIO()
    inspect_cli.main(["queues", "--tenant", "3"], out=out, client=raw)
    assert out.getvalue().startswith("department 10: 1 waiting\n  1. call-c waiting 5s")
