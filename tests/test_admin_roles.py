"""Roles, login throttling and sessions of the admin panel (Flask test client, real
PostgreSQL, real Redis for the shared login counter)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Iterator

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import sessionmaker
from werkzeug.security import generate_password_hash

from admin.app import create_app
from admin.ratelimit import MemoryLoginThrottle
from orchestrator.config import Settings
from orchestrator.db import schema as db
from orchestrator.tenant_doc import import_tenant
from tests.test_admin_panel import DEMO, OTHER, TOKEN, token_of

SETTINGS = Settings(admin_password="operator-secret-1", admin_secret_key="x" * 40)
T0 = datetime(2026, 3, 2, 10, 0, tzinfo=timezone.utc)


@pytest.fixture
def factory(migrated_pg: sessionmaker) -> Iterator[sessionmaker]:
    f = migrated_pg
    with f.begin() as s:
        demo = import_tenant(s, DEMO)
        rival = import_tenant(s, OTHER)
        emp = {e.extension: e.id for e in s.scalars(select(db.Employee).where(db.Employee.tenant_id == demo))}
        rival_emp = s.scalars(select(db.Employee).where(db.Employee.tenant_id == rival)).first()
        for name, role, employee in (("demo-admin", db.AdminRole.TENANT_ADMIN, None),
                                     ("maria", db.AdminRole.USER, emp["102"]),
                                     ("alexey", db.AdminRole.RESTRICTED, emp["105"])):
            s.add(db.AdminUser(username=name, role=role, tenant_id=demo, employee_id=employee,
                               password_hash=generate_password_hash(name + "-secret-pw")))
        calls = [  # (uuid, caller, destination, answered by)
            ("c-ext-in", "+79990000001", "300", emp["104"]),     # to Support, Olga answered
            ("c-alexey-ans", "+79990000002", "300", emp["105"]),  # Alexey answered
            ("c-alexey-out", "105", "+79990000003", None),        # Alexey called out
            ("c-to-alexey", "101", "105", None),                  # Ivan called Alexey
        ]
        for i, (uuid, caller, dest, by) in enumerate(calls):
            s.add(db.CallRecord(tenant_id=demo, call_uuid=uuid, direction="inbound", caller=caller,
                                destination=dest, started_at=T0 + timedelta(minutes=i),
                                answered_by_employee_id=by, route="route-" + uuid))
        s.add(db.CallRecord(tenant_id=rival, call_uuid="c-rival", direction="inbound", caller="+79990000999",
                            destination="500", started_at=T0, answered_by_employee_id=rival_emp.id,
                            route="route-c-rival"))
    yield f


@pytest.fixture
def app(factory: sessionmaker) -> Flask:
    return create_app(SETTINGS, factory)


def post_login(client: FlaskClient, username: str, password: str, addr: str = "127.0.0.1"):  # noqa: ANN201
    token = TOKEN.search(client.get("/login").get_data(as_text=True)).group(1)
    return client.post("/login", data={"username": username, "password": password, "csrf_token": token},
                       environ_base={"REMOTE_ADDR": addr})


def login(client: FlaskClient, username: str) -> None:
    response = post_login(client, username, username + "-secret-pw")
    assert response.status_code == 302, response.get_data(as_text=True)


def call_id(factory: sessionmaker, uuid: str) -> int:
    with factory() as s:
        return s.scalar(select(db.CallRecord.id).where(db.CallRecord.call_uuid == uuid))


def test_user_sees_company_calls_and_nothing_to_administer(app: Flask, factory: sessionmaker) -> None:
    client = app.test_client()
    login(client, "maria")
    page = client.get("/admin/call/").get_data(as_text=True)
    for uuid in ("c-ext-in", "c-alexey-ans", "c-alexey-out", "c-to-alexey"):
        assert "route-" + uuid in page
    assert "route-c-rival" not in page
    assert client.get("/admin/call/details/?id=%d" % call_id(factory, "c-rival")).status_code == 404
    for url in ("/admin/employee/", "/admin/department/", "/admin/number/", "/admin/tenant/", "/admin/account/",
                "/admin/live/", "/admin/employee/new/"):
        assert client.get(url).status_code == 403, url
    assert client.get("/admin/voicemail/").status_code == 200  # the company's messages, like its calls
    home = client.get("/admin/").get_data(as_text=True)
    assert "Call history" in home and "My profile" in home and "/admin/employee/" not in home


def test_restricted_user_sees_only_own_calls(app: Flask, factory: sessionmaker) -> None:
    client = app.test_client()
    login(client, "alexey")
    page = client.get("/admin/call/").get_data(as_text=True)
    assert "route-c-alexey-ans" in page and "route-c-alexey-out" in page and "route-c-to-alexey" in page
    assert "route-c-ext-in" not in page and "route-c-rival" not in page
    assert client.get("/admin/call/details/?id=%d" % call_id(factory, "c-ext-in")).status_code == 404
    assert client.get("/admin/call/details/?id=%d" % call_id(factory, "c-alexey-ans")).status_code == 200
    searched = client.get("/admin/call/?flt0_0=inbound&search=300").get_data(as_text=True)
    assert "route-c-ext-in" not in searched
    assert client.get("/admin/employee/").status_code == 403


def test_profile_edits_only_the_linked_employee(app: Flask, factory: sessionmaker) -> None:
    client = app.test_client()
    login(client, "maria")
    form = client.get("/admin/profile/").get_data(as_text=True)
    assert "Maria Ivanova" in form and "102" in form
    token = token_of(client, "/admin/profile/")
    bad = client.post("/admin/profile/", data={"csrf_token": token, "name": "Maria I.", "mobile": "8916123"})
    assert bad.status_code == 200 and "not an E.164 number" in bad.get_data(as_text=True)
    assert "(in quotes)" not in bad.get_data(as_text=True)
    unforwarded = client.post("/admin/profile/", data={"csrf_token": token, "name": "Maria I.",
                                                       "forward_to_mobile_after": "10"})
    assert "needs a mobile number" in unforwarded.get_data(as_text=True)
    ok = client.post("/admin/profile/", data={"csrf_token": token, "name": "Maria I.", "email": "m@demo.example",
                                              "mobile": "+79161234567", "forward_to_mobile_after": "15",
                                              "extension": "199", "role": "administrator"})
    assert ok.status_code == 302
    with factory() as s:
        emp = s.scalars(select(db.Employee).where(db.Employee.name == "Maria I.")).one()
        assert (emp.extension, emp.mobile, emp.forward_to_mobile_after, emp.email) == \
            ("102", "+79161234567", 15, "m@demo.example")
        assert emp.role.value == "user"  # not a profile field
    assert client.post("/admin/profile/", data={"name": "No token"}).status_code == 400  # CSRF


def test_operator_and_unlinked_accounts_have_no_profile(app: Flask) -> None:
    client = app.test_client()
    login(client, "demo-admin")
    assert "not linked to an employee" in client.get("/admin/profile/").get_data(as_text=True)
    operator = app.test_client()
    assert post_login(operator, "operator", "operator-secret-1").status_code == 302
    page = operator.get("/admin/profile/")  # no employee, but a password to change
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert "Operator accounts have no employee profile" in text and 'id="change-password"' in text


def test_passwords_are_hashed_and_sessions_expire(app: Flask, factory: sessionmaker) -> None:
    with factory() as s:
        hashes = s.scalars(select(db.AdminUser.password_hash)).all()
    assert hashes and all(h.split(":")[0] in ("scrypt", "pbkdf2") for h in hashes)
    assert app.config["PERMANENT_SESSION_LIFETIME"] == timedelta(hours=8)
    response = post_login(app.test_client(), "maria", "maria-secret-pw")
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Expires=" in cookie


def test_suspended_tenant_cannot_log_in(app: Flask, factory: sessionmaker) -> None:
    with factory.begin() as s:
        s.scalars(select(db.Tenant).where(db.Tenant.sip_domain == "demo.pbx.local")).one().enabled = False
    page = post_login(app.test_client(), "maria", "maria-secret-pw").get_data(as_text=True)
    assert "suspended" in page


def _throttle_case(app: Flask) -> None:
    client = app.test_client()
    for _ in range(5):
        page = post_login(client, "maria", "wrong-password")
        assert page.status_code == 200 and "Wrong username or password" in page.get_data(as_text=True)
    refused = post_login(client, "maria", "maria-secret-pw")  # even the right password now
    assert refused.status_code == 429
    assert "Too many failed logins for maria. Wait 10 minutes" in refused.get_data(as_text=True)
    assert post_login(client, "maria", "maria-secret-pw", addr="10.1.2.3").status_code == 302  # other address
    assert post_login(client, "alexey", "alexey-secret-pw").status_code == 302  # other user


def test_login_attempts_are_throttled_in_memory(factory: sessionmaker) -> None:
    _throttle_case(create_app(SETTINGS, factory))


def test_login_attempts_are_throttled_in_redis(factory: sessionmaker, redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    _throttle_case(create_app(SETTINGS, factory, redis_client=client))
    keys = client.keys("pbx:admin:login_failures:*")
    assert len(keys) == 1 and 0 < client.pttl(keys[0]) <= 600_000
    # a second admin process shares the counter
    other = create_app(SETTINGS, factory, redis_client=client)
    assert post_login(other.test_client(), "maria", "maria-secret-pw").status_code == 429
    client.close()


def test_a_success_resets_the_failure_count(factory: sessionmaker) -> None:
    app = create_app(SETTINGS, factory)
    client = app.test_client()
    for _ in range(4):
        post_login(client, "maria", "wrong-password")
    assert post_login(client, "maria", "maria-secret-pw").status_code == 302
    for _ in range(4):
        post_login(client, "maria", "wrong-password")
    assert post_login(client, "maria", "maria-secret-pw").status_code == 302


def test_memory_throttle_window_ends() -> None:
    now = [1000.0]
    throttle = MemoryLoginThrottle(limit=2, window_seconds=60, clock=lambda: now[0])
    throttle.record_failure("u", "a")
    throttle.record_failure("u", "a")
    assert throttle.blocked("u", "a") and not throttle.blocked("u", "b")
    now[0] += 61
    assert not throttle.blocked("u", "a")
