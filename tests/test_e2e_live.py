"""The live page against a call in the simulator: simulated FreeSWITCH -> a real
``pbx-orchestrator`` process -> real Redis, read by the admin panel (Flask test client).
While a department member talks, the page says "talking" for the member and "talking with
<member>" for the call; when the call ends, both are gone from "talking"."""
from __future__ import annotations

import redis
from flask.testing import FlaskClient

from admin.app import create_app
from simulator import Answer
from test_e2e_calls import members_start_free, wait_until  # noqa: F401 - fixture
from test_e2e_departments import _department, agents, dept_db, e2e_redis, ids, orchestrator, sim  # noqa: F401 - fixtures
from tests.test_admin_isolation import login
from tests.test_admin_live import SETTINGS


def live(client: FlaskClient, tenant_id: int) -> dict:
    response = client.get("/admin/live/calls.json?tenant=%d" % tenant_id)
    assert response.status_code == 200
    return response.get_json()


def member(data: dict, extension: str) -> dict:
    """The employee's row (one per department they belong to: all say the same state)."""
    rows = [m for m in data["members"] if m["employee"].split()[0] == extension]
    assert rows and all((m["state"], m["state_text"]) == (rows[0]["state"], rows[0]["state_text"]) for m in rows), rows
    return rows[0]


def test_talking_member_shows_talking_on_the_live_page(sim, dept_db, agents, e2e_redis):
    factory, tenant_id = dept_db
    seven = sim.add_user("307", "dept.pbx.test", behavior=Answer(after=1, hangup_after=500))  # 10 s real
    client = create_app(SETTINGS, factory, redis_client=redis.Redis.from_url(e2e_redis)).test_client()
    login(client, "operator", "operator-secret-1")
    call = sim.place_call("+74952220060", caller_id="+79990000011")
    wait_until(lambda: seven.legs and seven.legs[0].answered_at is not None, timeout=30, what="307 answered")
    # The bridge's facts reach Redis a moment after the simulated answer: wait for them.
    wait_until(lambda: member(live(client, tenant_id), "307")["state"] == "talking", timeout=30,
               what="307 talking on the live page")
    data = live(client, tenant_id)
    assert member(data, "307")["state_text"] == "talking with +79990000011"
    (row,) = [c for c in data["calls"] if c["uuid"] == call.uuid]
    assert row["state"] == "talking" and row["state_text"].startswith("talking with 307 ")
    assert row["caller"] == "+79990000011" and row["destination"] == "+74952220060"
    assert row["started_ms"] > 0 and row["since_ms"] >= row["started_ms"]
    page = client.get("/admin/live/?tenant=%d" % tenant_id).get_data(as_text=True)
    assert "talking with 307 " in page and "started_ms=" not in page

    call.wait(timeout=60)
    wait_until(lambda: not any(c["uuid"] == call.uuid for c in live(client, tenant_id)["calls"]), timeout=30,
               what="the call gone from the live page")
    assert member(live(client, tenant_id), "307")["state"] != "talking"
    wait_until(lambda: agents.live_offers(tenant_id) == {}, what="offers released")
