"""Sessions end for real: logging out (POST with CSRF), a new password, disabling the
account and suspending the tenant end every session of the account, a copied cookie
included (the cookie carries the account's session version, checked on every request).
Login costs one password verification whether the username exists or not."""
from __future__ import annotations

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import sessionmaker

import admin.auth
from orchestrator.db import schema as db
from tests.test_admin_accounts import app, factory, logged_in, post_login  # noqa: F401 - fixtures
from tests.test_admin_isolation import scrape
from tests.test_admin_panel import token_of

SIGNED_IN_PAGE = "/admin/employee/"


def signed_in(client: FlaskClient) -> bool:
    response = client.get(SIGNED_IN_PAGE)
    assert response.status_code in (200, 302)
    return response.status_code == 200


def copy_of(app: Flask, client: FlaskClient) -> FlaskClient:
    """Another browser holding the same session cookie (a stolen or copied cookie)."""
    other = app.test_client()
    cookie = client.get_cookie("session")
    assert cookie is not None
    other.set_cookie("session", cookie.value)
    return other


def account_id(factory: sessionmaker, username: str) -> int:
    with factory() as s:
        return s.scalars(select(db.AdminUser.id).where(db.AdminUser.username == username)).one()


def test_logout_is_post_with_csrf_and_ends_copied_sessions(app: Flask) -> None:
    client = logged_in(app, "a-admin")
    copy = copy_of(app, client)
    elsewhere = logged_in(app, "a-admin")  # another login of the same account
    assert signed_in(copy) and signed_in(elsewhere)
    assert client.get("/logout").status_code == 405
    assert client.post("/logout").status_code == 400  # no CSRF token
    assert signed_in(client)
    page = client.get("/admin/").get_data(as_text=True)
    assert 'id="logout-form"' in page and ">Log out</button>" in page  # the layout's button
    response = client.post("/logout", data={"csrf_token": token_of(client, "/admin/")})
    assert response.status_code == 302 and response.location.endswith("/login")
    assert not signed_in(client)
    assert not signed_in(copy)  # the copied cookie is dead too
    assert not signed_in(elsewhere)  # logging out signs the account out everywhere
    assert signed_in(logged_in(app, "a-admin"))  # and a new login works


def test_new_password_ends_the_accounts_other_sessions(app: Flask, factory: sessionmaker) -> None:
    victim = logged_in(app, "a-user")
    operator = logged_in(app, "operator", "operator-secret-1")
    user_id = account_id(factory, "a-user")
    form = scrape(operator, "/admin/account/edit/?id=%d" % user_id)
    form.data["new_password"] = "a-brand-new-password"
    assert operator.post("/admin/account/edit/?id=%d" % user_id, data=form.data).status_code == 302
    assert victim.get("/admin/call/").status_code == 302  # signed out
    assert post_login(app.test_client(), "a-user", "a-brand-new-password")[0] == 302


def test_own_new_password_keeps_this_session_and_ends_the_others(app: Flask, factory: sessionmaker) -> None:
    here = logged_in(app, "a-admin")
    there = logged_in(app, "a-admin")
    own = account_id(factory, "a-admin")
    form = scrape(here, "/admin/account/edit/?id=%d" % own)
    form.data["new_password"] = "my-own-new-password"
    assert here.post("/admin/account/edit/?id=%d" % own, data=form.data).status_code == 302
    assert signed_in(here)
    assert not signed_in(there)


def test_disabling_ends_sessions_and_enabling_does_not_revive_them(app: Flask, factory: sessionmaker) -> None:
    victim = logged_in(app, "a-user")
    copy = copy_of(app, victim)
    admin_client = logged_in(app, "a-admin")
    user_id = account_id(factory, "a-user")
    token = token_of(admin_client, "/admin/account/")
    for action in ("disable", "enable"):
        response = admin_client.post("/admin/account/action/", data={"csrf_token": token, "action": action,
                                                                     "rowid": [str(user_id)]})
        assert response.status_code == 302
    assert victim.get("/admin/call/").status_code == 302
    assert copy.get("/admin/call/").status_code == 302
    assert post_login(app.test_client(), "a-user", "a-user-secret")[0] == 302  # enabled: logs in again


def test_suspending_the_tenant_signs_its_accounts_out(app: Flask, factory: sessionmaker) -> None:
    tenant_admin = logged_in(app, "a-admin")
    copy = copy_of(app, tenant_admin)
    other_tenant = logged_in(app, "quixadmin")
    operator = logged_in(app, "operator", "operator-secret-1")
    with factory() as s:
        tenant = s.scalars(select(db.Tenant).where(db.Tenant.sip_domain == "demo.pbx.local")).one()
    form = scrape(operator, "/admin/tenant/edit/?id=%d" % tenant.id)
    form.data.pop("enabled", None)  # unchecked
    assert operator.post("/admin/tenant/edit/?id=%d" % tenant.id, data=form.data).status_code == 302
    assert not signed_in(tenant_admin)
    assert signed_in(other_tenant)
    with factory.begin() as s:  # enabled again: the old sessions stay ended
        s.get(db.Tenant, tenant.id).enabled = True
    assert not signed_in(copy)


def test_suspension_outside_the_panel_ends_sessions_at_the_next_request(app: Flask, factory: sessionmaker) -> None:
    tenant_admin = logged_in(app, "a-admin")
    with factory.begin() as s:  # e.g. pbx-tenant, or SQL by the operator
        s.scalars(select(db.Tenant).where(db.Tenant.sip_domain == "demo.pbx.local")).one().enabled = False
    assert not signed_in(tenant_admin)


class VerifySpy:
    """A real password check that counts its calls and the hashes it was given."""

    def __init__(self) -> None:
        self.real = admin.auth.check_password_hash
        self.hashes: list[str] = []

    def __call__(self, pwhash: str, password: str) -> bool:
        self.hashes.append(pwhash)
        return self.real(pwhash, password)


def test_unknown_and_known_usernames_cost_one_scrypt_verification_each(
        app: Flask, factory: sessionmaker, monkeypatch: pytest.MonkeyPatch) -> None:
    spy = VerifySpy()
    monkeypatch.setattr(admin.auth, "check_password_hash", spy)
    with factory() as s:
        stored = s.scalars(select(db.AdminUser.password_hash).where(db.AdminUser.username == "a-admin")).one()
    counts = []
    for username in ("nobody-such", "a-admin"):
        spy.hashes.clear()
        status, page = post_login(app.test_client(), username, "wrong-password")
        assert status == 200 and "Wrong username or password" in page  # the same answer
        counts.append(len(spy.hashes))
        # the same method and cost parameters (scrypt:32768:8:1) as the stored hashes
        assert spy.hashes[0].split("$")[0] == stored.split("$")[0]
    assert counts == [1, 1]
