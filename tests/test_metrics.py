"""Operators' metrics (orchestrator.metrics): the exposition parses, the labels stay
bounded, the error counters count real failures, and the panel's /metrics is for
operators only. Real Redis, real PostgreSQL / SQLite; no mocks of either."""
from __future__ import annotations

import socket
from pathlib import Path
from typing import Iterator

import gevent
import pytest
import redis
from flask import Flask
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text
from sqlalchemy.orm import sessionmaker
from werkzeug.security import generate_password_hash

from orchestrator import metrics
from orchestrator.db.engine import make_engine, make_session_factory
from orchestrator.db.migrate import upgrade
from orchestrator.esl import inbound
from orchestrator.member_wakeups import Wakeups
from orchestrator.store.callbacks import CallbackStore


def samples(body: str | bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of an exposition: (name, sorted labels) -> value (parses or fails)."""
    if isinstance(body, bytes):
        body = body.decode("utf-8")
    out = {}
    for family in text_string_to_metric_families(body):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def scrape(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    body, content_type = metrics.exposition(registry, None)
    assert content_type.startswith("text/plain")
    return samples(body)


def test_latency_histogram_buckets_are_prometheus_le_and_cumulative() -> None:
    h = metrics.LatencyHistogram((0.01, 0.1))
    for v in (0.005, 0.01, 0.05, 0.2):
        h.observe(v)
    registry = CollectorRegistry()

    class One:
        def collect(self):  # noqa: ANN202
            yield h.family("pbx_test_seconds", "test")

    registry.register(One())  # type: ignore[arg-type]
    got = scrape(registry)
    assert got[("pbx_test_seconds_bucket", (("le", "0.01"),))] == 2  # 0.01 itself is "le 0.01"
    assert got[("pbx_test_seconds_bucket", (("le", "0.1"),))] == 3
    assert got[("pbx_test_seconds_bucket", (("le", "+Inf"),))] == 4
    assert got[("pbx_test_seconds_count", ())] == 4
    assert got[("pbx_test_seconds_sum", ())] == pytest.approx(0.265)


class _History:
    queued = 7
    stats = {"written": 40, "not_kept": 1, "refused": 2, "failures": 3}


def test_waiting_callers_are_bounded_to_the_top_tenants() -> None:
    """60 tenants with callers on hold: the per-tenant gauges carry 20 tenants (the most
    callers / the longest waits), the totals count everyone."""
    wakeups = Wakeups()
    now = 1_000_000
    for tenant in range(1, 61):
        for n in range(tenant % 5 + 1):  # 1..5 callers each
            wakeups.register(tenant, 9, now - 1000 * tenant - n, lambda: None)
    stats = {"calls": 12, "errors": 1}
    registry = metrics.orchestrator_registry(stats, lambda: 3, wakeups, _History(), lambda: now)
    got = scrape(registry)
    total = sum(tenant % 5 + 1 for tenant in range(1, 61))
    assert got[("pbx_queue_waiting_callers", ())] == total
    assert got[("pbx_queue_longest_wait_seconds", ())] == pytest.approx(60.0)
    per_tenant = {dict(labels)["tenant"]: v for (name, labels), v in got.items() if name == "pbx_tenant_queue_waiting_callers"}
    assert len(per_tenant) == metrics.TOP_TENANTS
    # The 12 tenants with 5 callers, then 4 callers by lower id first.
    assert per_tenant == {**{str(t): 5.0 for t in range(4, 61, 5)}, **{str(t): 4.0 for t in range(3, 39, 5)}}
    waits = {dict(labels)["tenant"] for (name, labels), v in got.items() if name == "pbx_tenant_queue_longest_wait_seconds"}
    assert waits == {str(t) for t in range(41, 61)}  # the 20 longest waits
    assert got[("pbx_calls_total", ())] == 12 and got[("pbx_call_failures_total", ())] == 1
    assert got[("pbx_calls_in_progress", ())] == 3
    assert got[("pbx_history_rows_queued", ())] == 7
    assert got[("pbx_history_rows_written_total", ())] == 40 and got[("pbx_history_rows_not_stored_total", ())] == 3
    assert ("process_resident_memory_bytes", ()) in got


def test_callbacks_pending_read_from_redis_with_a_cap(redis_client: redis.Redis) -> None:
    store = CallbackStore(redis_client)
    for tenant in (3, 4, 5):
        for n in range(tenant):
            store.request(tenant, 11, "call-%d-%d" % (tenant, n), 1000 + n, "+7999000%04d" % n, "+74950000000")
    got = scrape(metrics.worker_registry(redis_client, ("pbx-callbacks", "pbx-default"), None, top_tenants=2))
    assert got[("pbx_callbacks_pending", ())] == 12
    per_tenant = {dict(labels)["tenant"]: v for (name, labels), v in got.items() if name == "pbx_tenant_callbacks_pending"}
    assert per_tenant == {"5": 5.0, "4": 4.0}  # top 2 only
    assert got[("pbx_worker_queue_jobs", (("queue", "pbx-callbacks"),))] == 0
    capped = scrape(_registry(metrics.RedisLive(redis_client, max_tenants=1)))
    assert capped[("pbx_callbacks_pending", ())] == 3  # one tenant read (the lowest id), never more


def _registry(*collectors) -> CollectorRegistry:  # noqa: ANN002
    registry = CollectorRegistry()
    for c in collectors:
        registry.register(c)
    return registry


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_redis_errors_are_counted(redis_url: str) -> None:
    broken = redis.Redis(host="127.0.0.1", port=_free_port(), socket_connect_timeout=1)  # nothing listens there
    metrics.count_redis_errors(broken)
    before = metrics.REDIS_ERRORS._value.get()
    with pytest.raises(redis.ConnectionError):
        broken.get("x")
    assert metrics.REDIS_ERRORS._value.get() >= before + 1
    working = redis.Redis.from_url(redis_url)
    metrics.count_redis_errors(working)
    before = metrics.REDIS_ERRORS._value.get()
    assert working.set("metrics-test", "1")
    assert metrics.REDIS_ERRORS._value.get() == before  # a command that works is not an error
    working.lpush("metrics-test-list", "a")
    with pytest.raises(redis.ResponseError):
        working.incr("metrics-test-list")
    assert metrics.REDIS_ERRORS._value.get() == before + 1  # WRONGTYPE: an error reply


def test_database_errors_are_counted(tmp_path: Path) -> None:
    engine = make_engine("sqlite:///%s" % (tmp_path / "m.sqlite3"))
    metrics.count_database_errors(engine)
    before = metrics.DATABASE_ERRORS._value.get()
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))
        with pytest.raises(Exception):
            conn.execute(text("SELECT * FROM no_such_table"))
    assert metrics.DATABASE_ERRORS._value.get() == before + 1
    engine.dispose()


def test_esl_reconnect_attempts_are_counted() -> None:
    """The inbound client's reconnect loop calls the hook on each attempt."""
    client = inbound.InboundClient("127.0.0.1", _free_port(), "x", reconnect=True, connect_timeout=0.5,
                                   backoff_initial=0.01, backoff_max=0.02)
    failed = metrics.ESL_RECONNECTS.labels("failed")
    before = failed._value.get()
    old, inbound.on_reconnect = inbound.on_reconnect, metrics.esl_reconnect
    try:
        client.start()  # nothing listens: retried in the background
        with gevent.Timeout(20, AssertionError("no reconnect attempt counted")):
            while failed._value.get() < before + 2:
                gevent.sleep(0.01)
    finally:
        client.close()
        inbound.on_reconnect = old


def test_metrics_server_serves_only_metrics() -> None:
    import urllib.error
    import urllib.request

    registry = _registry(metrics.RedisLive(redis.Redis(host="127.0.0.1", port=_free_port(), socket_connect_timeout=0.5)))
    server = metrics.serve(registry, "127.0.0.1", 0)
    try:
        host, port = server.address[:2]
        pool = gevent.get_hub().threadpool
        body = pool.apply(lambda: urllib.request.urlopen("http://%s:%d/metrics" % (host, port), timeout=10).read())
        assert samples(body) == {}  # Redis away: its figures are left out, the scrape still answers
        with pytest.raises(urllib.error.HTTPError) as err:
            pool.apply(lambda: urllib.request.urlopen("http://%s:%d/other" % (host, port), timeout=10).read())
        assert err.value.code == 404
    finally:
        server.stop(timeout=1)


# ------------------------------------------------------------------ the panel's /metrics


@pytest.fixture
def panel(tmp_path: Path) -> Iterator[tuple[Flask, sessionmaker]]:
    from admin.app import create_app
    from orchestrator.config import Settings
    from orchestrator.db import schema as db
    from orchestrator.tenant_doc import import_tenant
    from tests.test_admin_panel import DEMO

    url = "sqlite:///%s" % (tmp_path / "admin.sqlite3")
    upgrade(url)
    engine = make_engine(url)
    factory = make_session_factory(engine)
    with factory.begin() as s:
        demo = import_tenant(s, DEMO)
        s.add(db.AdminUser(username="demo-admin", role=db.AdminRole.TENANT_ADMIN, tenant_id=demo,
                           password_hash=generate_password_hash("demo-admin-secret")))
    settings = Settings(admin_password="operator-secret-1", admin_secret_key="x" * 40, metrics_password="scrape-secret-0123")
    yield create_app(settings, factory), factory
    engine.dispose()


def test_panel_metrics_for_operators_only(panel) -> None:
    from tests.test_admin_panel import login

    app, _ = panel
    anonymous = app.test_client()
    refused = anonymous.get("/metrics")
    assert refused.status_code == 401 and "Basic" in refused.headers["WWW-Authenticate"]
    assert anonymous.get("/metrics", auth=("prometheus", "wrong-password-000")).status_code == 401
    scraper = anonymous.get("/metrics", auth=("prometheus", "scrape-secret-0123"))
    assert scraper.status_code == 200
    got = samples(scraper.get_data())
    assert got[("pbx_panel_requests_total", (("status", "4xx"),))] >= 2  # the two refusals above

    tenant_admin = app.test_client()
    login(tenant_admin, "demo-admin", "demo-admin-secret")
    forbidden = tenant_admin.get("/metrics")
    assert forbidden.status_code == 403 and b"pbx_" not in forbidden.get_data()

    operator = app.test_client()
    login(operator, "operator", "operator-secret-1")
    shown = operator.get("/metrics")
    assert shown.status_code == 200 and ("pbx_panel_request_seconds_count", ()) in samples(shown.get_data())


def test_metrics_settings() -> None:
    from orchestrator import config
    from orchestrator.errors import ConfigError

    assert config.from_env({}).metrics_port is None  # off unless asked for
    assert config.from_env({"PBX_METRICS_LISTEN": ""}).metrics_port is None
    on = config.from_env({"PBX_METRICS_LISTEN": "0.0.0.0:9101", "PBX_METRICS_PASSWORD": "p" * 20})
    assert (on.metrics_host, on.metrics_port, on.metrics_user) == ("0.0.0.0", 9101, "prometheus")
    assert "p" * 20 not in repr(on)
    with pytest.raises(ConfigError, match="PBX_METRICS_LISTEN must look like HOST:PORT"):
        config.from_env({"PBX_METRICS_LISTEN": "9101x"})
    weak = config.Settings(env="production", metrics_password="short")
    with pytest.raises(ConfigError, match="PBX_METRICS_PASSWORD is shorter than 16"):
        weak.check()


def test_live_calls_read_from_the_call_leases(redis_client: redis.Redis) -> None:
    """The panel's cluster-wide view: calls with a live lease per tenant, top N only."""
    from orchestrator.store.redis_store import CallStore

    calls = CallStore(redis_client)
    now = metrics.now_ms()
    for tenant, n in ((1, 3), (2, 1), (3, 2)):
        for i in range(n):
            assert calls.admit(tenant, "live-%d-%d" % (tenant, i), now, 10, {}).admitted
    calls.release(2, "live-2-0")  # ended: no longer counted
    got = scrape(_registry(metrics.RedisLive(redis_client, calls=True, top_tenants=1)))
    assert got[("pbx_live_calls", ())] == 5
    assert {labels: v for (name, labels), v in got.items() if name == "pbx_tenant_live_calls"} == {(("tenant", "1"),): 3.0}
