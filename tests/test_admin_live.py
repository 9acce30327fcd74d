"""Live state pages: calls in progress, members' state and departments' queues from a real
Redis (CallStore, AgentStore), the JSON endpoint the page polls, logging members in and
out; the missed-offers history; all scoped to the tenant."""
from __future__ import annotations

import re
import time
from datetime import datetime, timezone
from zoneinfo import ZoneInfo
from typing import Iterator

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import sessionmaker
from werkzeug.security import generate_password_hash

from admin.app import create_app
from admin.live import call_rows, member_state, queue_rows, talk_time
from admin.ratelimit import MemoryLoginThrottle
from orchestrator.config import Settings
from orchestrator.db import schema as db
from orchestrator.member_offers import utc_days
from orchestrator.store.agents import AgentStore, MemberState, Release
from orchestrator.store.redis_store import CallStore
from orchestrator.tenant_doc import import_tenant
from tests.test_admin_isolation import B_DOC, login
from tests.test_admin_panel import DEMO, TOKEN

SETTINGS = Settings(admin_password="operator-secret-1", admin_secret_key="x" * 40)


@pytest.fixture
def tenants(migrated_pg: sessionmaker) -> Iterator[tuple[sessionmaker, int, int]]:
    f = migrated_pg
    with f.begin() as s:
        a = import_tenant(s, DEMO)
        b = import_tenant(s, B_DOC)
        emp = {e.extension: e.id for e in s.scalars(select(db.Employee).where(db.Employee.tenant_id == a))}
        for name, role, tenant, employee in (("a-admin", db.AdminRole.TENANT_ADMIN, a, None),
                                             ("b-admin", db.AdminRole.TENANT_ADMIN, b, None),
                                             ("a-user", db.AdminRole.USER, a, emp["102"]),
                                             ("a-restricted", db.AdminRole.RESTRICTED, a, emp["105"])):
            s.add(db.AdminUser(username=name, role=role, tenant_id=tenant, employee_id=employee,
                               password_hash=generate_password_hash(name + "-secret")))
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


def test_operator_chooser_scales_to_hundreds_of_tenants(tenants: tuple, client_redis: redis.Redis) -> None:
    """The chooser lists at most 50 tenants and a search (name or SIP domain) narrows it;
    any tenant stays reachable by id."""
    factory, a, b = tenants
    with factory.begin() as s:
        s.add_all(db.Tenant(name="Company %03d" % i, sip_domain="c%03d.example" % i) for i in range(300))
    with factory() as s:
        last = s.scalar(select(db.Tenant.id).where(db.Tenant.name == "Company 299"))
    client = create_app(SETTINGS, factory, redis_client=client_redis).test_client()
    login(client, "operator", "operator-secret-1")
    page = client.get("/admin/live/").get_data(as_text=True)
    assert page.count("<option ") == 50 and "the first 50 of 302" in page and 'name="find"' in page
    found = client.get("/admin/live/?find=quix.EXAMPLE").get_data(as_text=True)  # by domain, any case
    assert re.search(r'<option value="%d" selected>Quixcorp \(quix.example\)' % b, found)
    assert "1 match<" in found and "Company 0" not in found and "Quixdesk" in found  # the one match is shown
    several = client.get("/admin/live/?find=Company 29&tenant=%d" % a).get_data(as_text=True)
    assert several.count("<option ") == 10 + 1 and "10 matches<" in several  # Company 290-299, and the chosen one
    assert re.search(r'<option value="%d" selected>Demo Trading LLC' % a, several)
    chosen = client.get("/admin/live/?tenant=%d&find=nothing-like-it" % last).get_data(as_text=True)
    assert re.search(r'<option value="%d" selected>Company 299' % last, chosen) and "0 matches<" in chosen
    assert "0 matches<" in client.get("/admin/live/?find=100%25&tenant=" + str(a)).get_data(as_text=True)
    admin = create_app(SETTINGS, factory, redis_client=client_redis).test_client()
    login(admin, "a-admin", "a-admin-secret")
    assert 'name="find"' not in admin.get("/admin/live/?find=quix").get_data(as_text=True)


def test_without_redis_the_page_says_so(tenants: tuple) -> None:
    factory, a, _ = tenants
    client = create_app(SETTINGS, factory).test_client()
    login(client, "a-admin", "a-admin-secret")
    assert "runs without Redis" in client.get("/admin/live/").get_data(as_text=True)
    data = client.get("/admin/live/calls.json").get_json()
    assert isinstance(data.pop("now_ms"), int)
    assert data == {"tenant_id": a, "available": False, "calls": [], "members": [], "queues": [], "problem": ""}


def test_call_rows_put_other_facts_in_details() -> None:
    rows = call_rows({"u2": {"caller": "1"}, "u1": {"caller": "2", "route": "menu Main", "destination": "3"}})
    assert [(r["uuid"], r["caller"], r["destination"], r["state_text"], r["details"]) for r in rows] == [
        ("u1", "2", "3", "starting", "route=menu Main"),
        ("u2", "1", "", "starting", ""),
    ]


def test_call_rows_say_state_whom_since_and_duration() -> None:
    """The facts the orchestrator writes (call_handler.live_facts) in words: who rings, who
    talks, which queue; since when in the tenant's time; durations on ``now_ms``; raw
    ``started_ms`` never shown."""
    started = 1_796_458_023_623  # 2026-12-05 08:07:03.623 UTC, 11:07:03 in Moscow
    calls = {
        "talk": {"caller": "+79160000009", "destination": "+74950000001", "entry": "did", "state": "talking",
                 "with": "7", "department": "3", "started_ms": str(started), "state_ms": str(started + 20_000)},
        "ring": {"caller": "102", "destination": "200", "state": "ringing", "with": "7,8", "department": "3",
                 "started_ms": str(started + 1000), "state_ms": str(started + 1000)},
        "queue": {"caller": "103", "destination": "200", "state": "queue", "department": "3",
                  "started_ms": str(started + 2000), "state_ms": str(started + 5000)},
        "out": {"caller": "101", "destination": "+74951112233", "state": "talking", "with": "tel:+74951112233",
                "started_ms": str(started + 3000), "state_ms": str(started + 4000)},
        "menu": {"caller": "104", "destination": "100", "state": "menu", "started_ms": str(started + 4000)},
    }
    rows = call_rows(calls, {7: "101 Ivan Petrov", 8: "102 Anna"}, {3: "200 Sales"}, started + 65_000,
                     ZoneInfo("Europe/Moscow"))
    by = {r["uuid"]: r for r in rows}
    assert [r["uuid"] for r in rows] == ["talk", "ring", "queue", "out", "menu"]  # oldest first
    assert by["talk"]["state_text"] == "talking with 101 Ivan Petrov"
    assert by["ring"]["state_text"] == "ringing 101 Ivan Petrov, 102 Anna (200 Sales)"
    assert by["queue"]["state_text"] == "waiting in the queue (200 Sales)"
    assert by["out"]["state_text"] == "talking with +74951112233"
    assert by["menu"]["state_text"] == "in the menu"
    assert (by["talk"]["since"], by["talk"]["in_state"], by["talk"]["duration"]) == ("11:07:23", "0:45", "1:05")
    assert by["menu"]["since_ms"] == started + 4000 and by["menu"]["in_state"] == "1:01"  # since the start
    assert all("started_ms" not in r["details"] for r in rows) and by["talk"]["details"] == ""


def test_answered_member_shows_talking_with_the_caller(tenants: tuple, client_redis: redis.Redis) -> None:
    """Real Redis state as the orchestrator leaves it after a bridge: the member's offer is
    still held (AgentStore) and the call's facts say talking with them (CallStore, written
    by call_handler._publish). The page says so, names the member, and ticks the durations
    with a script carrying the response's CSP nonce."""
    factory, a, b = tenants
    emp, dep = ids(factory, a), ids(factory, a, db.Department)
    agents, store = AgentStore(client_redis), CallStore(client_redis)
    now = int(time.time() * 1000)
    agents.reserve(a, "call-talk", dep["200"], [emp["101"]], 1)
    agents.reserve(a, "call-ring", dep["200"], [emp["102"]], 1)
    store.admit(a, "call-talk", now, 0, {"caller": "+79160000009", "destination": "+74950000001",
                                         "started_ms": str(now - 30_000), "state": "talking", "with": str(emp["101"]),
                                         "department": str(dep["200"]), "state_ms": str(now - 10_000)})
    store.admit(a, "call-ring", now, 0, {"caller": "+79160000008", "destination": "200", "started_ms": str(now),
                                         "state": "ringing", "with": str(emp["102"]), "department": str(dep["200"])})
    client = create_app(SETTINGS, factory, redis_client=client_redis).test_client()
    login(client, "a-admin", "a-admin-secret")

    data = client.get("/admin/live/calls.json").get_json()
    members = members_of(data)
    assert (members["101"]["state"], members["101"]["state_text"]) == ("talking", "talking with +79160000009")
    assert (members["102"]["state"], members["102"]["state_text"]) == ("ringing", "ringing (call from +79160000008)")
    calls = {c["uuid"]: c for c in data["calls"]}
    assert calls["call-talk"]["state_text"] == "talking with 101 Ivan Petrov"
    assert calls["call-talk"]["destination"] == "+74950000001" and calls["call-talk"]["caller"] == "+79160000009"
    assert calls["call-talk"]["since_ms"] == now - 10_000 and calls["call-talk"]["started_ms"] == now - 30_000
    assert re.fullmatch(r"0:(29|3\d)", calls["call-talk"]["duration"]), calls["call-talk"]
    assert calls["call-ring"]["state_text"].startswith("ringing 102 ")
    assert abs(data["now_ms"] - int(time.time() * 1000)) < 60_000

    response = client.get("/admin/live/")
    page = response.get_data(as_text=True)
    assert "talking with 101 Ivan Petrov" in page and "started_ms=" not in page
    assert 'data-pbx-since="%d"' % (now - 30_000) in page and "setInterval(tick, 1000)" in page
    nonce = re.search(r"'nonce-([^']+)'", response.headers["Content-Security-Policy"]).group(1)
    script = page.index("setInterval(tick, 1000)")
    assert page.rindex("<script", 0, script) == page.rindex('<script nonce="%s"' % nonce, 0, script)


# ---------------------------------------------------------------- members' state

def ids(factory: sessionmaker, tenant_id: int, model: type = db.Employee) -> dict[str, int]:
    with factory() as s:
        return {r.extension: r.id for r in s.scalars(select(model).where(model.tenant_id == tenant_id))}


def logged_in(factory: sessionmaker, employee_id: int) -> bool:
    with factory() as s:
        return s.get(db.Employee, employee_id).logged_in


def routing_version(factory: sessionmaker, tenant_id: int) -> int:
    with factory() as s:
        return s.get(db.Tenant, tenant_id).routing_version


def pause(agents: AgentStore, tenant_id: int, department_id: int, employee_id: int, misses: int) -> None:
    """Miss ``misses`` offers in a row with the department pausing after that many."""
    for n in range(misses):
        agents.reserve(tenant_id, "missed-%d" % n, department_id, [employee_id], 1)
        agents.release(tenant_id, "missed-%d" % n, department_id,
                       [Release(employee_id, "missed", pause_after=misses)], utc_days(int(time.time() * 1000), 1)[0])


def members_of(data: dict) -> dict[str, dict]:
    return {m["employee"].split()[0]: m for m in data["members"]}


def sign_in(client: FlaskClient, username: str) -> str:
    """Log in any role (``login`` reads its token from an admin-only page); returns a CSRF token."""
    token = TOKEN.search(client.get("/login").get_data(as_text=True)).group(1)
    response = client.post("/login", data={"username": username, "password": username + "-secret",
                                           "csrf_token": token})
    assert response.status_code == 302
    return TOKEN.search(client.get("/admin/profile/").get_data(as_text=True)).group(1)


def test_members_states_come_from_redis(tenants: tuple, client_redis: redis.Redis) -> None:
    factory, a, b = tenants
    emp, dep = ids(factory, a), ids(factory, a, db.Department)
    agents = AgentStore(client_redis)
    pause(agents, a, dep["200"], emp["102"], 2)
    agents.channel_up(a, emp["103"], "chan-103", 60_000)
    agents.reserve(a, "call-to-support", dep["300"], [emp["104"]], 1)
    agents.reserve(a, "call-answered", dep["300"], [emp["105"]], 1)
    agents.release(a, "call-answered", dep["300"], [Release(emp["105"], "answered", wrapup_ms=30_000, talk_ms=65_000)],
                   utc_days(int(time.time() * 1000), 1)[0])
    b_emp = ids(factory, b)
    pause(agents, b, ids(factory, b, db.Department)["500"], b_emp["101"], 1)
    client = create_app(SETTINGS, factory, redis_client=client_redis).test_client()
    login(client, "a-admin", "a-admin-secret")

    members = members_of(client.get("/admin/live/calls.json").get_json())
    states = {ext: m["state_text"] for ext, m in members.items()}
    assert states["101"] == "available"
    assert states["102"] == "paused after 2 missed offers"
    assert states["103"] == "talking"
    assert states["104"] == "ringing"
    assert re.fullmatch(r"wrap-up, (29|30) s left", states["105"]), states["105"]
    assert (members["105"]["calls_today"], members["105"]["talk_today"]) == (1, "1:05")
    assert (members["101"]["calls_today"], members["101"]["talk_today"]) == (0, "0:00")
    assert {m["employee_id"] for m in members.values()} <= set(emp.values())  # never B's members

    page = client.get("/admin/live/").get_data(as_text=True)
    for words in ("paused after 2 missed offers", "talking", "ringing", "available", "1:05"):
        assert words in page
    assert "Quixperson" not in page and "Resume" in page and "Log out" in page

    with factory.begin() as s:
        s.get(db.Employee, emp["101"]).logged_in = False
    members = members_of(client.get("/admin/live/calls.json").get_json())
    assert members["101"]["state_text"] == "logged out" and members["101"]["logged_in"] is False
    assert 'value="%d"' % emp["101"] in client.get("/admin/live/").get_data(as_text=True)


def test_operator_sees_the_chosen_tenants_members(tenants: tuple, client_redis: redis.Redis) -> None:
    factory, a, b = tenants
    pause(AgentStore(client_redis), b, ids(factory, b, db.Department)["500"], ids(factory, b)["101"], 1)
    client = create_app(SETTINGS, factory, redis_client=client_redis).test_client()
    login(client, "operator", "operator-secret-1")
    members = members_of(client.get("/admin/live/calls.json?tenant=%d" % b).get_json())
    assert members["101"]["state_text"] == "paused after 1 missed offer" and members["102"]["state_text"] == "available"
    assert "Ivan Petrov" not in {m["employee"] for m in members.values()}


def test_tenant_admin_logs_a_member_out_and_in(tenants: tuple, client_redis: redis.Redis) -> None:
    factory, a, _ = tenants
    emp, dep = ids(factory, a), ids(factory, a, db.Department)
    agents = AgentStore(client_redis)
    client = create_app(SETTINGS, factory, redis_client=client_redis).test_client()
    token = login(client, "a-admin", "a-admin-secret")
    version = routing_version(factory, a)

    out = client.post("/admin/live/member/logout", data={"csrf_token": token, "id": emp["103"]})
    assert out.status_code == 302 and out.headers["Location"].endswith("/admin/live/")
    assert not logged_in(factory, emp["103"])
    assert routing_version(factory, a) > version  # the next call routes without 103
    page = client.get("/admin/live/").get_data(as_text=True)
    assert "103 Sergey Smirnov is logged out." in page and "logged out" in page

    pause(agents, a, dep["200"], emp["103"], 3)
    assert agents.states(a, [emp["103"]])[emp["103"]].paused
    assert client.post("/admin/live/member/login", data={"csrf_token": token, "id": emp["103"]}).status_code == 302
    assert logged_in(factory, emp["103"])
    state = agents.states(a, [emp["103"]])[emp["103"]]
    assert not state.paused and state.missed == 0
    assert members_of(client.get("/admin/live/calls.json").get_json())["103"]["state_text"] == "available"


def test_another_tenants_admin_and_plain_users_cannot_log_members(tenants: tuple, client_redis: redis.Redis) -> None:
    factory, a, _ = tenants
    emp, dep = ids(factory, a), ids(factory, a, db.Department)
    agents = AgentStore(client_redis)
    pause(agents, a, dep["200"], emp["102"], 1)
    with factory.begin() as s:
        s.get(db.Employee, emp["101"]).logged_in = False
    version = routing_version(factory, a)
    app = create_app(SETTINGS, factory, redis_client=client_redis)

    other = app.test_client()
    token = login(other, "b-admin", "b-admin-secret")
    assert other.post("/admin/live/member/login", data={"csrf_token": token, "id": emp["101"]}).status_code == 404
    assert other.post("/admin/live/member/login", data={"csrf_token": token, "id": emp["102"]}).status_code == 404
    assert other.post("/admin/live/member/logout", data={"csrf_token": token, "id": emp["102"]}).status_code == 404
    assert other.post("/admin/live/member/logout", data={"csrf_token": token}).status_code == 404

    user = app.test_client()
    user_token = sign_in(user, "a-user")
    assert user.get("/admin/live/").status_code == 403
    assert user.post("/admin/live/member/login", data={"csrf_token": user_token, "id": emp["101"]}).status_code == 403
    assert user.post("/admin/live/member/logout", data={"csrf_token": user_token, "id": emp["102"]}).status_code == 403

    admin = app.test_client()
    login(admin, "a-admin", "a-admin-secret")
    assert admin.post("/admin/live/member/login", data={"id": emp["101"]}).status_code == 400  # no CSRF token
    assert admin.post("/admin/live/member/logout", data={"id": emp["102"], "csrf_token": "forged"}).status_code == 400

    assert not logged_in(factory, emp["101"]) and logged_in(factory, emp["102"])
    assert agents.states(a, [emp["102"]])[emp["102"]].paused
    assert routing_version(factory, a) == version


def test_log_in_stands_when_redis_is_down(tenants: tuple) -> None:
    factory, a, _ = tenants
    emp = ids(factory, a)
    with factory.begin() as s:
        s.get(db.Employee, emp["101"]).logged_in = False
    dead = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5)
    client = create_app(SETTINGS, factory, redis_client=dead, login_throttle=MemoryLoginThrottle()).test_client()
    token = login(client, "a-admin", "a-admin-secret")
    page = client.get("/admin/live/").get_data(as_text=True)
    assert "Redis is not answering" in page and "101 Ivan Petrov" in page  # members from the database
    assert 'id="live-queues"' in page and "300 Support" in page and "unknown (live state unavailable)" in page
    data = client.get("/admin/live/calls.json").get_json()
    assert "Redis is not answering" in data["problem"] and data["calls"] == []
    assert data["queues"] and not any(q["known"] or q["waiting"] for q in data["queues"])
    response = client.post("/admin/live/member/login", data={"csrf_token": token, "id": emp["101"]},
                           follow_redirects=True)
    assert response.status_code == 200 and logged_in(factory, emp["101"])
    assert "automatic pause after missed offers could not be ended" in response.get_data(as_text=True)
    dead.close()


def test_member_state_words() -> None:
    now = 1_000_000
    cases = [
        (False, MemberState(1, paused=True), "logged out"),
        (True, None, "unknown (live state unavailable)"),
        (True, MemberState(1, paused=True, missed=3, channels=1), "paused after 3 missed offers"),
        (True, MemberState(1, paused=True), "paused"),
        (True, MemberState(1, channels=2, offer="c", offer_until_ms=now + 1), "talking"),
        (True, MemberState(1, offer="c", offer_until_ms=now + 1, wrapup_until_ms=now + 5000), "ringing"),
        (True, MemberState(1, offer="c", offer_until_ms=now), "available"),  # its lease expired
        (True, MemberState(1, wrapup_until_ms=now + 4001), "wrap-up, 5 s left"),
        (True, MemberState(1, wrapup_until_ms=now), "available"),
    ]
    for is_logged_in, state, words in cases:
        assert member_state(is_logged_in, state, now)[1] == words, (state, words)
    # The held offer of an answered call is not "ringing": the call's facts say talking.
    held = MemberState(1, offer="c", offer_until_ms=now + 1, channels=1)
    assert member_state(True, held, now, ("talking", "+7916")) == ("talking", "talking with +7916")
    assert member_state(True, held, now, ("ringing", "+7916")) == ("ringing", "ringing (call from +7916)")
    assert member_state(True, MemberState(1, paused=True), now, ("talking", "x"))[0] == "paused"
    assert member_state(False, held, now, ("talking", "x"))[0] == "logged_out"
    assert [talk_time(ms) for ms in (0, 65_400, 3_725_000)] == ["0:00", "1:05", "1:02:05"]


# ---------------------------------------------------------------- queues

def redis_now_ms(client: redis.Redis) -> int:
    seconds, micros = client.time()
    return int(seconds) * 1000 + int(micros) // 1000


def queues_of(data: dict) -> dict[str, list[dict]]:
    """Department extension -> its waiting callers."""
    return {q["department"].split()[0]: q["waiting"] for q in data["queues"]}


def test_queues_show_waiting_callers_in_order(tenants: tuple, client_redis: redis.Redis) -> None:
    factory, a, b = tenants
    dep, b_dep = ids(factory, a, db.Department), ids(factory, b, db.Department)
    agents, calls = AgentStore(client_redis), CallStore(client_redis)
    now = redis_now_ms(client_redis)
    calls.admit(a, "q-first", int(time.time() * 1000), 0, {"caller": "+79160000042", "state": "queued"})
    agents.join_queue(a, dep["300"], "q-second", now - 5_000)  # no call facts: no caller shown
    agents.join_queue(a, dep["300"], "q-first", now - 42_000)  # waited longer: first
    calls.admit(b, "quix-queued", int(time.time() * 1000), 0, {"caller": "+79167770001"})
    agents.join_queue(b, b_dep["500"], "quix-queued", now - 1_000)
    agents.join_queue(b, dep["300"], "quix-same-id", now - 1_000)  # B's key, A's department id
    client = create_app(SETTINGS, factory, redis_client=client_redis).test_client()
    login(client, "a-admin", "a-admin-secret")

    data = client.get("/admin/live/calls.json?tenant=%d" % b).get_json()  # the tenant argument is ignored
    queues = queues_of(data)
    first, second = queues["300"]
    assert (first["position"], first["uuid"], first["caller"]) == (1, "q-first", "+79160000042")
    assert (second["position"], second["uuid"], second["caller"]) == (2, "q-second", "")
    assert first["waited_s"] in (42, 43) and second["waited_s"] in (5, 6), (first, second)
    assert queues["200"] == [] and all(q["known"] for q in data["queues"])
    assert set(queues) == set(ids(factory, a, db.Department))  # every department of A, none of B
    assert "quix" not in str(data).lower() and "7770001" not in str(data)

    page = client.get("/admin/live/").get_data(as_text=True)
    table = page[page.index('id="live-queues"'):]
    table = table[:table.index("</table>")]
    assert table.index("q-first") < table.index("q-second") and "+79160000042" in table
    assert re.search(r"<td>1</td>\s*<td>\+79160000042</td><td>4[23] s</td>", table), table
    assert "200 Sales" in table and "nobody waiting" in table
    assert "quix" not in page.lower() and "7770001" not in page
    assert "#live-queues tbody" in page and "nobody waiting" in page[page.index("<script"):]  # redrawn

    agents.leave_queue(a, dep["300"], "q-first")
    second, = queues_of(client.get("/admin/live/calls.json").get_json())["300"]
    assert (second["position"], second["uuid"]) == (1, "q-second")


def test_operator_sees_the_chosen_tenants_queues(tenants: tuple, client_redis: redis.Redis) -> None:
    factory, a, b = tenants
    dep, b_dep = ids(factory, a, db.Department), ids(factory, b, db.Department)
    agents = AgentStore(client_redis)
    now = redis_now_ms(client_redis)
    CallStore(client_redis).admit(b, "quix-queued", int(time.time() * 1000), 0, {"caller": "+79167770001"})
    agents.join_queue(b, b_dep["500"], "quix-queued", now - 7_000)
    agents.join_queue(a, dep["200"], "a-queued", now)
    client = create_app(SETTINGS, factory, redis_client=client_redis).test_client()
    login(client, "operator", "operator-secret-1")

    (waiting,) = queues_of(client.get("/admin/live/calls.json?tenant=%d" % b).get_json()).values()
    assert [(w["position"], w["uuid"], w["caller"]) for w in waiting] == [(1, "quix-queued", "+79167770001")]
    assert waiting[0]["waited_s"] in (7, 8)
    page = client.get("/admin/live/?tenant=%d" % b).get_data(as_text=True)
    assert "500 Quixdesk" in page and "quix-queued" in page and "a-queued" not in page
    queues = queues_of(client.get("/admin/live/calls.json?tenant=%d" % a).get_json())
    assert [w["uuid"] for w in queues["200"]] == ["a-queued"] and "500" not in queues


def test_queue_rows() -> None:
    rows = queue_rows([(7, "Sales", "200"), (8, "Support", "300")],
                      {7: [("u1", 1_000), ("u2", 9_500)]}, {"u2": {"caller": "+7900"}}, 10_999)
    assert rows == [
        {"department": "200 Sales", "department_id": 7, "known": True, "waiting": [
            {"position": 1, "uuid": "u1", "caller": "", "waited_s": 9},
            {"position": 2, "uuid": "u2", "caller": "+7900", "waited_s": 1}]},
        {"department": "300 Support", "department_id": 8, "known": True, "waiting": []},
    ]
    assert queue_rows([(7, "Sales", "200")], {7: [("u1", 20_000)]}, {}, 10_000)[0]["waiting"][0]["waited_s"] == 0
    assert queue_rows([(7, "Sales", "200")], None, {}, 0) == [
        {"department": "200 Sales", "department_id": 7, "known": False, "waiting": []}]


# ---------------------------------------------------------------- missed offers

def test_missed_offers_are_history_scoped_like_calls(tenants: tuple) -> None:
    factory, a, b = tenants
    emp, dep = ids(factory, a), ids(factory, a, db.Department)
    b_emp, b_dep = ids(factory, b), ids(factory, b, db.Department)
    when = datetime(2026, 3, 2, 10, 0, tzinfo=timezone.utc)
    with factory.begin() as s:
        for uuid, tenant, employee, department, result in (
                ("miss-102", a, emp["102"], dep["200"], "no_answer"),
                ("miss-105", a, emp["105"], dep["300"], "rejected"),
                ("miss-quix", b, b_emp["101"], b_dep["500"], "busy")):
            s.add(db.MissedOffer(tenant_id=tenant, employee_id=employee, department_id=department, call_uuid=uuid,
                                 offered_at=when, rang_ms=12_300, result=result, paused=uuid == "miss-105"))
    with factory() as s:
        quix_row = s.scalar(select(db.MissedOffer.id).where(db.MissedOffer.call_uuid == "miss-quix"))
    app = create_app(SETTINGS, factory)

    admin = app.test_client()
    login(admin, "a-admin", "a-admin-secret")
    page = admin.get("/admin/missed_offer/").get_data(as_text=True)
    assert "miss-102" in page and "miss-105" in page and "102 Maria Ivanova" in page and "Sales" in page
    assert "no answer" in page and "12.3 s" in page
    assert "miss-quix" not in page and "Quix" not in page  # nor B's names among the filter choices
    assert admin.get("/admin/missed_offer/details/?id=%d" % quix_row).status_code == 404
    assert admin.get("/admin/missed_offer/new/").status_code in (302, 403, 404)
    filtered = admin.get("/admin/missed_offer/?flt0_0=%d" % emp["105"]).get_data(as_text=True)
    assert "miss-105" in filtered and "miss-102" not in filtered
    by_result = admin.get("/admin/missed_offer/?flt0_2=no_answer").get_data(as_text=True)
    assert "miss-102" in by_result and "miss-105" not in by_result

    user = app.test_client()
    sign_in(user, "a-user")
    page = user.get("/admin/missed_offer/").get_data(as_text=True)
    assert "miss-102" in page and "miss-105" in page and "miss-quix" not in page
    restricted = app.test_client()
    sign_in(restricted, "a-restricted")
    page = restricted.get("/admin/missed_offer/").get_data(as_text=True)
    assert "miss-105" in page and "miss-102" not in page and "Maria" not in page

    operator = app.test_client()
    login(operator, "operator", "operator-secret-1")
    assert "miss-quix" in operator.get("/admin/missed_offer/").get_data(as_text=True)
