"""Live state pages: calls in progress from a real Redis (CallStore), members' log-in
state, the JSON endpoint the page polls; scoped to the tenant."""
from __future__ import annotations

import time
from typing import Iterator

import pytest
import redis
from flask import Flask
from sqlalchemy.orm import sessionmaker
from werkzeug.security import generate_password_hash

from admin.app import create_app
from admin.live import call_rows
from orchestrator.config import Settings
from orchestrator.db import schema as db
from orchestrator.store.redis_store import CallStore
from orchestrator.tenant_doc import import_tenant
from tests.test_admin_isolation import B_DOC, login
from tests.test_admin_panel import DEMO

SETTINGS = Settings(admin_password="operator-secret-1", admin_secret_key="x" * 40)


@pytest.fixture
def tenants(migrated_pg: sessionmaker) -> Iterator[tuple[sessionmaker, int, int]]:
    f = migrated_pg
    with f.begin() as s:
        a = import_tenant(s, DEMO)
        b = import_tenant(s, B_DOC)
        s.add(db.AdminUser(username="a-admin", role=db.AdminRole.TENANT_ADMIN, tenant_id=a,
                           password_hash=generate_password_hash("a-admin-secret")))
    yield f, a, b


@pytest.fixture
def client_redis(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


def test_tenant_admin_sees_own_live_calls_and_members(tenants: tuple, client_redis: redis.Redis) -> None:
    factory, a, b = tenants
    store = CallStore(client_redis)
    now = int(time.time() * 1000)
    store.admit(a, "call-a-1", now, 0, {"caller": "+79160000009", "destination": "200", "state": "ringing"})
    store.admit(b, "call-b-1", now, 0, {"caller": "+79167770001", "destination": "500", "state": "answered"})
    app: Flask = create_app(SETTINGS, factory, redis_client=client_redis)
    client = app.test_client()
    login(client, "a-admin", "a-admin-secret")

    page = client.get("/admin/live/").get_data(as_text=True)
    assert "call-a-1" in page and "+79160000009" in page and "ringing" in page
    assert "call-b-1" not in page and "Quix" not in page
    assert "101 Ivan Petrov" in page and "Sales" in page  # members of departments
    assert "/admin/live/calls.json" in page and "setInterval" in page  # polls for updates

    data = client.get("/admin/live/calls.json?tenant=%d" % b).get_json()  # the tenant argument is ignored
    assert data["tenant_id"] == a and [c["uuid"] for c in data["calls"]] == ["call-a-1"]

    store.admit(a, "call-a-2", now + 10, 0, {"caller": "102", "destination": "300"})
    store.release(a, "call-a-1")
    data = client.get("/admin/live/calls.json").get_json()
    assert [c["uuid"] for c in data["calls"]] == ["call-a-2"]


def test_expired_leases_are_not_shown(tenants: tuple, client_redis: redis.Redis) -> None:
    factory, a, _ = tenants
    CallStore(client_redis, lease_ms=1).admit(a, "stale", int(time.time() * 1000) - 10_000, 0, {"caller": "1"})
    client = create_app(SETTINGS, factory, redis_client=client_redis).test_client()
    login(client, "a-admin", "a-admin-secret")
    assert client.get("/admin/live/calls.json").get_json()["calls"] == []


def test_operator_chooses_the_tenant(tenants: tuple, client_redis: redis.Redis) -> None:
    factory, a, b = tenants
    CallStore(client_redis).admit(b, "call-b-1", int(time.time() * 1000), 0, {"caller": "+79167770001"})
    client = create_app(SETTINGS, factory, redis_client=client_redis).test_client()
    login(client, "operator", "operator-secret-1")
    page = client.get("/admin/live/?tenant=%d" % b).get_data(as_text=True)
    assert "call-b-1" in page and "Quixdesk" in page and "Demo Trading LLC" in page  # selector lists all
    assert client.get("/admin/live/calls.json?tenant=%d" % b).get_json()["calls"][0]["uuid"] == "call-b-1"
    assert client.get("/admin/live/?tenant=999999").status_code == 404


def test_without_redis_the_page_says_so(tenants: tuple) -> None:
    factory, a, _ = tenants
    client = create_app(SETTINGS, factory).test_client()
    login(client, "a-admin", "a-admin-secret")
    assert "runs without Redis" in client.get("/admin/live/").get_data(as_text=True)
    assert client.get("/admin/live/calls.json").get_json() == {"tenant_id": a, "available": False, "calls": []}


def test_call_rows_put_other_facts_in_details() -> None:
    rows = call_rows({"u2": {"caller": "1"}, "u1": {"caller": "2", "route": "menu Main", "destination": "3"}})
    assert rows == [
        {"uuid": "u1", "caller": "2", "destination": "3", "state": "", "details": "route=menu Main"},
        {"uuid": "u2", "caller": "1", "destination": "", "state": "", "details": ""},
    ]
