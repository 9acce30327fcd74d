"""Security headers on every panel response; a Content-Security-Policy the panel's own
pages satisfy (every script carries the response's nonce, no inline event handlers);
HSTS only over TLS; the client address behind trusted proxies only."""
from __future__ import annotations

import re
from dataclasses import replace

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import sessionmaker

from admin.app import create_app
from admin.ratelimit import MemoryLoginThrottle
from orchestrator.config import from_env
from orchestrator.db import schema as db
from orchestrator.errors import ConfigError
from tests.test_admin_accounts import SETTINGS, factory, logged_in  # noqa: F401 - fixtures
from tests.test_admin_panel import TOKEN

INLINE_HANDLER = re.compile(r"<[^>]*\son[a-z]+\s*=", re.IGNORECASE)
SCRIPT_TAG = re.compile(r"<script\b[^>]*>", re.IGNORECASE)
NONCE = re.compile(r"'nonce-([^']+)'")


@pytest.fixture
def app(factory: sessionmaker) -> Flask:
    return create_app(SETTINGS, factory)


def pages(factory: sessionmaker) -> list[str]:
    with factory() as s:
        tenant = s.scalars(select(db.Tenant.id).where(db.Tenant.sip_domain == "demo.pbx.local")).one()
        employee = s.scalars(select(db.Employee.id).where(db.Employee.tenant_id == tenant)).first()
        department = s.scalars(select(db.Department.id).where(db.Department.tenant_id == tenant)).first()
        box = s.scalars(select(db.VoicemailBox.id).where(db.VoicemailBox.tenant_id == tenant)).first()
        account = s.scalars(select(db.AdminUser.id).where(db.AdminUser.username == "a-user")).one()
    urls = ["/admin/", "/admin/live/", "/admin/explain/", "/admin/explain/?caller=%2B79161234567&dialed=%2B74950000001",
            "/admin/tenant/edit/?id=%d" % tenant, "/admin/employee/details/?id=%d" % employee,
            "/admin/employee/edit/?id=%d" % employee, "/admin/department/edit/?id=%d" % department,
            "/admin/voicemail_box/edit/?id=%d" % box, "/admin/account/edit/?id=%d" % account]
    for endpoint in ("tenant", "employee", "department", "number", "schedule", "menu", "voicemail_box",
                     "caller_rule", "call", "missed_offer", "voicemail", "fax", "account"):
        urls += ["/admin/%s/" % endpoint, "/admin/%s/new/" % endpoint]
    return urls


def assert_headers(response: object, url: str) -> None:
    headers = response.headers  # type: ignore[attr-defined]
    assert headers["X-Frame-Options"] == "DENY", url
    assert headers["X-Content-Type-Options"] == "nosniff", url
    assert headers["Referrer-Policy"] == "same-origin", url
    csp = headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in csp and "object-src 'none'" in csp, url
    assert "'unsafe-inline'" not in csp.split("script-src")[1].split(";")[0], url
    assert "Strict-Transport-Security" not in headers, url  # plain HTTP


def test_every_panel_page_satisfies_its_content_security_policy(app: Flask, factory: sessionmaker) -> None:
    client = logged_in(app, "operator", "operator-secret-1")
    checked = 0
    for url in pages(factory):
        response = client.get(url)
        if response.status_code != 200:  # e.g. "new" of a read-only view
            assert response.status_code in (302, 403, 404), url
            continue
        assert_headers(response, url)
        html = response.get_data(as_text=True)
        nonce = NONCE.search(response.headers["Content-Security-Policy"])
        scripts = SCRIPT_TAG.findall(html)
        assert scripts and nonce, url
        for tag in scripts:
            assert 'nonce="%s"' % nonce.group(1) in tag, (url, tag)
        assert not INLINE_HANDLER.search(html), (url, INLINE_HANDLER.search(html).group(0))
        assert 'href="javascript:' not in html.replace('href="javascript:void(0)"', ""), url
        checked += 1
    assert checked >= 25
    live = client.get("/admin/live/").get_data(as_text=True)
    assert "data-pbx-autosubmit" in live or "Live state is not available" in live


def test_the_nonce_differs_per_response_and_unmarked_pages_get_none(app: Flask) -> None:
    client = logged_in(app, "operator", "operator-secret-1")
    first, second = (NONCE.search(client.get("/admin/").headers["Content-Security-Policy"]).group(1)
                     for _ in range(2))
    assert first != second
    login = app.test_client().get("/login")
    assert_headers(login, "/login")
    assert "nonce-" not in login.headers["Content-Security-Policy"] and "<script" not in login.get_data(as_text=True)
    assert_headers(app.test_client().get("/no-such-page"), "404")


def test_flask_admin_inline_handlers_became_data_attributes(app: Flask, factory: sessionmaker) -> None:
    client = logged_in(app, "a-admin")
    accounts = client.get("/admin/account/").get_data(as_text=True)
    assert 'data-pbx-action="disable"' in accounts  # "With selected" actions
    assert "data-pbx-confirm=" in accounts  # row delete asks first
    with factory() as s:
        department = s.scalars(select(db.Department.id).join(db.Tenant)
                               .where(db.Tenant.sip_domain == "demo.pbx.local")).first()
    edit = client.get("/admin/department/edit/?id=%d" % department).get_data(as_text=True)
    assert 'data-pbx-add-inline="members"' in edit
    for handler in ("[data-pbx-action]", "[data-pbx-add-inline]", "data-pbx-confirm", "data-pbx-autosubmit"):
        assert handler in edit  # handled by the layout's one nonce'd script


def test_hsts_only_over_tls(app: Flask) -> None:
    plain = app.test_client().get("/login")
    assert "Strict-Transport-Security" not in plain.headers
    secure = app.test_client().get("/login", base_url="https://panel.example")
    assert secure.headers["Strict-Transport-Security"].startswith("max-age=")
    # X-Forwarded-Proto is believed only from trusted proxies
    spoofed = app.test_client().get("/login", headers={"X-Forwarded-Proto": "https"})
    assert "Strict-Transport-Security" not in spoofed.headers


def failing_login(client: FlaskClient, address: str, password: str = "wrong-password") -> int:
    headers = {"X-Forwarded-For": address}
    token = TOKEN.search(client.get("/login", headers=headers).get_data(as_text=True)).group(1)
    return client.post("/login", headers=headers, data={"username": "a-admin", "password": password,
                                                        "csrf_token": token}).status_code


def test_without_trusted_proxies_x_forwarded_for_is_ignored(factory: sessionmaker) -> None:
    app = create_app(SETTINGS, factory, login_throttle=MemoryLoginThrottle(limit=3))
    client = app.test_client()
    for n in range(3):  # a client "rotating" its X-Forwarded-For does not escape the throttle
        assert failing_login(client, "203.0.113.%d" % n) == 200
    assert failing_login(client, "203.0.113.99", "a-admin-secret") == 429


def test_behind_a_trusted_proxy_one_address_does_not_lock_out_everyone(factory: sessionmaker) -> None:
    app = create_app(replace(SETTINGS, trusted_proxies=1), factory, login_throttle=MemoryLoginThrottle(limit=3))
    attacker, colleague = app.test_client(), app.test_client()
    for _ in range(3):
        assert failing_login(attacker, "203.0.113.7") == 200
    assert failing_login(attacker, "203.0.113.7", "a-admin-secret") == 429
    # the same account from another client address (all arrive from the proxy's address)
    assert failing_login(colleague, "198.51.100.20", "a-admin-secret") == 302
    # the proxy appends the real address: what a client wrote further left is not believed
    assert failing_login(app.test_client(), "198.51.100.20, 203.0.113.7", "a-admin-secret") == 429


def test_trusted_proxies_setting() -> None:
    assert from_env({"PBX_TRUSTED_PROXIES": "2"}).trusted_proxies == 2
    assert from_env({}).trusted_proxies == 0
    with pytest.raises(ConfigError, match="PBX_TRUSTED_PROXIES"):
        from_env({"PBX_TRUSTED_PROXIES": "-1"})
