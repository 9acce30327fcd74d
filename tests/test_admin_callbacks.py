"""Callbacks on the live page: listed per department, cancelled by POST (CSRF), tenant-scoped."""
from __future__ import annotations

import redis

from admin.app import create_app
from orchestrator.core.model import Department  # noqa: F401 - documents the department ids used
from orchestrator.db import schema as db
from orchestrator.store.agents import AgentStore
from orchestrator.store.callbacks import CallbackStore, member
from tests.test_admin_isolation import login
from tests.test_admin_live import SETTINGS, client_redis, ids, tenants  # noqa: F401 - fixtures


def test_admin_lists_and_cancels_a_callback_of_their_tenant_only(tenants: tuple, client_redis: redis.Redis) -> None:
    factory, a, b = tenants
    dep_a, dep_b = ids(factory, a, db.Department)["200"], next(iter(ids(factory, b, db.Department).values()))
    callbacks, agents = CallbackStore(client_redis), AgentStore(client_redis)
    agents.join_queue(a, dep_a, "call-1", 1000)
    cb = callbacks.request(a, dep_a, "call-1", 1000, "+79160000042", "+74950000001")
    cb_b = callbacks.request(b, dep_b, "call-2", 1000, "+79167770042", "+74950000002")
    app = create_app(SETTINGS, factory, redis_client=client_redis)

    other = app.test_client()
    token_b = login(other, "b-admin", "b-admin-secret")
    page = other.get("/admin/live/").get_data(as_text=True)
    assert "+79167770042" in page and "+79160000042" not in page
    assert other.post("/admin/live/callback/cancel", data={"csrf_token": token_b, "id": cb}).status_code == 404
    assert callbacks.get(a, cb).status == "pending"

    client = app.test_client()
    token = login(client, "a-admin", "a-admin-secret")
    page = client.get("/admin/live/").get_data(as_text=True)
    assert 'id="live-callbacks"' in page and "+79160000042" in page and "pending" in page and "+79167770042" not in page
    data = client.get("/admin/live/calls.json").get_json()
    assert [c["caller"] for c in data["callbacks"]] == ["+79160000042"] and data["callbacks"][0]["cancellable"]
    assert client.post("/admin/live/callback/cancel", data={"id": cb}).status_code == 400  # no CSRF token
    assert client.post("/admin/live/callback/cancel", data={"csrf_token": token, "id": cb_b}).status_code == 404
    out = client.post("/admin/live/callback/cancel", data={"csrf_token": token, "id": cb})
    assert out.status_code == 302
    assert callbacks.get(a, cb).status == "cancelled" and callbacks.get(b, cb_b).status == "pending"
    assert member(cb) not in [u for u, _ in agents.queue(a, dep_a)]
    page = client.get("/admin/live/").get_data(as_text=True)
    assert "is cancelled" in page and "No callbacks waiting." in page

    operator = app.test_client()
    token_o = login(operator, "operator", "operator-secret-1")
    assert operator.post("/admin/live/callback/cancel", data={"csrf_token": token_o, "id": cb_b}).status_code == 404  # no tenant
    assert operator.post("/admin/live/callback/cancel", data={"csrf_token": token_o, "id": cb_b, "tenant": b}).status_code == 302
    assert callbacks.get(b, cb_b).status == "cancelled"
