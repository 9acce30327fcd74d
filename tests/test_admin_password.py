"""Passwords from the panel: every signed-in account (user, restricted, operator) changes
its own password (current + new twice, minimum length, the same scrypt hashing; its other
sessions end, this one stays); an operator resets any account's password and that
account's sessions end; a tenant admin resets only their own company's accounts, never an
operator's. Real PostgreSQL, Flask test client."""
from __future__ import annotations

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.orm import sessionmaker
from werkzeug.test import TestResponse

from admin.accounts import MIN_PASSWORD
from tests.test_admin_accounts import account, app, factory, logged_in, post_login  # noqa: F401 - fixtures
from tests.test_admin_isolation import scrape
from tests.test_admin_sessions import copy_of

PAGE = "/admin/profile/password"


def signed_in(client: FlaskClient) -> bool:
    response = client.get(PAGE)
    assert response.status_code in (200, 302)
    return response.status_code == 200


def change(client: FlaskClient, current: str, new: str, repeat: str | None = None) -> TestResponse:
    form = scrape(client, PAGE)
    form.data.update(current_password=current, new_password=new,
                     repeat_password=new if repeat is None else repeat)
    return client.post(PAGE, data=form.data)


@pytest.mark.parametrize("username,password", [("a-restricted", None), ("a-user", None),
                                               ("operator", "operator-secret-1")])
def test_any_account_changes_its_own_password_and_its_other_sessions_end(
        app: Flask, factory: sessionmaker, username: str, password: str | None) -> None:
    old = password or username + "-secret"
    here = logged_in(app, username, old)
    there = logged_in(app, username, old)
    copy = copy_of(app, there)
    profile = here.get("/admin/profile/").get_data(as_text=True)
    assert 'id="change-password"' in profile
    response = change(here, old, "a-new-password-1")
    assert response.status_code == 302
    assert 'id="password-saved"' in here.get(response.location).get_data(as_text=True)
    assert signed_in(here)
    assert not signed_in(there) and not signed_in(copy)
    assert post_login(app.test_client(), username, old)[0] == 200  # refused
    assert post_login(app.test_client(), username, "a-new-password-1")[0] == 302
    row = account(factory, username)
    assert row is not None and row.password_hash.startswith("scrypt:")


@pytest.mark.parametrize("current,new,repeat,message", [
    ("wrong-password", "a-new-password-1", None, "That is not your current password"),
    ("a-user-secret", "short", None, "Use a password of %d or more characters" % MIN_PASSWORD),
    ("a-user-secret", "a-new-password-1", "a-new-password-2", "The two new passwords differ"),
    ("", "a-new-password-1", None, "Enter your current password"),
])
def test_password_change_refusals_say_what_to_do_and_change_nothing(
        app: Flask, factory: sessionmaker, current: str, new: str, repeat: str | None, message: str) -> None:
    before = account(factory, "a-user")
    client = logged_in(app, "a-user")
    other = logged_in(app, "a-user")
    response = change(client, current, new, repeat)
    assert response.status_code == 200
    assert message in response.get_data(as_text=True)
    after = account(factory, "a-user")
    assert before is not None and after is not None
    assert (after.password_hash, after.session_version) == (before.password_hash, before.session_version)
    assert signed_in(other)


def test_password_change_needs_the_csrf_token(app: Flask, factory: sessionmaker) -> None:
    client = logged_in(app, "a-user")
    before = account(factory, "a-user")
    response = client.post(PAGE, data={"current_password": "a-user-secret", "new_password": "a-new-password-1",
                                       "repeat_password": "a-new-password-1"})
    assert response.status_code == 400
    after = account(factory, "a-user")
    assert before is not None and after is not None and after.password_hash == before.password_hash


def test_not_signed_in_goes_to_login(app: Flask) -> None:
    response = app.test_client().get(PAGE)
    assert response.status_code == 302 and "/login" in response.location


def test_tenant_admin_resets_own_company_accounts_only(app: Flask, factory: sessionmaker) -> None:
    victim = logged_in(app, "a-user")
    admin = logged_in(app, "a-admin")
    user_row = account(factory, "a-user")
    assert user_row is not None
    form = scrape(admin, "/admin/account/edit/?id=%d" % user_row.id)
    form.data["new_password"] = "reset-by-admin-1"
    assert admin.post("/admin/account/edit/?id=%d" % user_row.id, data=form.data).status_code == 302
    assert not signed_in(victim)
    assert post_login(app.test_client(), "a-user", "reset-by-admin-1")[0] == 302
    for other in ("operator", "quixadmin"):  # an operator's, another company's
        row = account(factory, other)
        assert row is not None
        token = scrape(admin, "/admin/account/edit/?id=%d" % user_row.id).data["csrf_token"]
        admin.post("/admin/account/edit/?id=%d" % row.id,
                   data={"csrf_token": token, "new_password": "taken-over-pass-1", "username": other})
        after = account(factory, other)
        assert after is not None and after.password_hash == row.password_hash
        assert after.session_version == row.session_version
