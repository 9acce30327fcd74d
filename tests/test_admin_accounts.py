"""Accounts of the admin panel: a tenant admin manages their own company's accounts
(tenant admin, user, restricted), never an operator, never another company's, never
their own role or access; operators manage all. Real PostgreSQL, Flask test client."""
from __future__ import annotations

from typing import Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import sessionmaker
from werkzeug.security import check_password_hash, generate_password_hash

from admin.app import create_app
from orchestrator.config import Settings
from orchestrator.db import schema as db
from orchestrator.tenant_doc import import_tenant
from tests.test_admin_isolation import B_DOC, scrape
from tests.test_admin_panel import DEMO, TOKEN, token_of

SETTINGS = Settings(admin_password="operator-secret-1", admin_secret_key="x" * 40)


@pytest.fixture
def factory(migrated_pg: sessionmaker) -> Iterator[sessionmaker]:
    f = migrated_pg
    with f.begin() as s:
        a = import_tenant(s, DEMO)
        b = import_tenant(s, B_DOC)
        emp = {e.extension: e.id for e in s.scalars(select(db.Employee).where(db.Employee.tenant_id == a))}
        for name, role, tenant, employee in (("a-admin", db.AdminRole.TENANT_ADMIN, a, None),
                                             ("a-user", db.AdminRole.USER, a, emp["102"]),
                                             ("a-restricted", db.AdminRole.RESTRICTED, a, emp["105"]),
                                             ("quixadmin", db.AdminRole.TENANT_ADMIN, b, None)):
            s.add(db.AdminUser(username=name, role=role, tenant_id=tenant, employee_id=employee,
                               password_hash=generate_password_hash(name + "-secret")))
    yield f


@pytest.fixture
def app(factory: sessionmaker) -> Flask:
    return create_app(SETTINGS, factory)


def post_login(client: FlaskClient, username: str, password: str) -> tuple[int, str]:
    token = TOKEN.search(client.get("/login").get_data(as_text=True)).group(1)
    response = client.post("/login", data={"username": username, "password": password, "csrf_token": token})
    return response.status_code, response.get_data(as_text=True)


def logged_in(app: Flask, username: str, password: str | None = None) -> FlaskClient:
    client = app.test_client()
    status, page = post_login(client, username, password or username + "-secret")
    assert status == 302, page
    return client


def account(factory: sessionmaker, username: str) -> db.AdminUser | None:
    with factory() as s:
        return s.scalar(select(db.AdminUser).where(db.AdminUser.username == username))


def employee_id(factory: sessionmaker, domain: str, extension: str) -> int:
    with factory() as s:
        return s.scalar(select(db.Employee.id).join(db.Tenant).where(db.Tenant.sip_domain == domain,
                                                                     db.Employee.extension == extension))


def new_account(client: FlaskClient, **changes: str) -> tuple[int, str]:
    form = scrape(client, "/admin/account/new/")
    data = {**form.data, "username": "olga", "role": "user", "new_password": "olga-password-1",
            "employee": "__None", **changes}
    response = client.post("/admin/account/new/", data=data)
    return response.status_code, response.get_data(as_text=True)


def test_tenant_admin_lists_only_own_accounts_and_pickers(app: Flask, factory: sessionmaker) -> None:
    client = logged_in(app, "a-admin")
    page = client.get("/admin/account/").get_data(as_text=True)
    assert "a-admin" in page and "a-user" in page and "a-restricted" in page
    assert "quixadmin" not in page and ">operator<" not in page
    form = scrape(client, "/admin/account/new/")
    assert form.options["role"] == ["tenant_admin", "user", "restricted"]
    b_employees = {str(employee_id(factory, "quix.example", x)) for x in ("101", "102")}
    # the employee picker is searched (AJAX): its lookup offers only this tenant's employees
    offered = {str(i) for i, _ in client.get("/admin/account/ajax/lookup/?name=employee&query=").json}
    assert str(employee_id(factory, "demo.pbx.local", "104")) in offered and not offered & b_employees
    assert "employee" not in form.options
    assert "tenant" not in form.options and "tenant" not in form.data
    quix = account(factory, "quixadmin")
    for url in ("/admin/account/edit/?id=%d" % quix.id, "/admin/account/details/?id=%d" % quix.id):
        assert client.get(url).status_code == 404


def test_tenant_admin_creates_an_account_that_logs_in(app: Flask, factory: sessionmaker) -> None:
    client = logged_in(app, "a-admin")
    olga = employee_id(factory, "demo.pbx.local", "104")
    status, page = new_account(client, employee=str(olga), tenant=str(account(factory, "quixadmin").tenant_id))
    assert status == 302, page
    created = account(factory, "olga")
    assert created.role is db.AdminRole.USER and created.employee_id == olga
    assert created.tenant_id == account(factory, "a-admin").tenant_id  # the tenant field is ignored
    assert created.password_hash.startswith("scrypt:") and check_password_hash(created.password_hash,
                                                                               "olga-password-1")
    listing = client.get("/admin/account/").get_data(as_text=True)
    assert "olga" in listing and "scrypt" not in listing and "olga-password-1" not in listing
    edit = client.get("/admin/account/edit/?id=%d" % created.id).get_data(as_text=True)
    assert "scrypt" not in edit and "olga-password-1" not in edit
    olga_client = logged_in(app, "olga", "olga-password-1")
    assert "Olga Kuznetsova" in olga_client.get("/admin/profile/").get_data(as_text=True)


@pytest.mark.parametrize("changes, message", [
    ({"role": "operator"}, "Not a valid choice"),
    ({"username": "quixadmin"}, "The username quixadmin is taken; choose another one."),
    ({"username": "a b"}, "A username is 3 to 100 letters, digits or . _ @ -."),
    ({"new_password": "short"}, "Use a password of 10 or more characters."),
    ({"new_password": ""}, "Give the new account a password (10+ characters)."),
    ({"role": "restricted"}, "A restricted account sees only its employee&#39;s calls: choose the employee."),
])
def test_tenant_admin_account_form_refuses(app: Flask, factory: sessionmaker, changes: dict[str, str],
                                           message: str) -> None:
    client = logged_in(app, "a-admin")
    status, page = new_account(client, **changes)
    assert status == 200 and message in page
    assert account(factory, "olga") is None and account(factory, "a b") is None


def test_another_tenants_employee_cannot_be_linked(app: Flask, factory: sessionmaker) -> None:
    client = logged_in(app, "a-admin")
    status, page = new_account(client, employee=str(employee_id(factory, "quix.example", "101")))
    assert status == 200 and "Not a valid choice" in page and account(factory, "olga") is None


def test_password_change_and_disable_enable(app: Flask, factory: sessionmaker) -> None:
    admin = logged_in(app, "a-admin")
    maria = logged_in(app, "a-user")  # an open session of the account about to be disabled
    target = account(factory, "a-user")
    url = "/admin/account/edit/?id=%d" % target.id
    form = scrape(admin, url)
    assert form.data.get("new_password", "") == "" and "disabled" not in form.data
    assert admin.post(url, data={**form.data, "new_password": "maria-new-password"}).status_code == 302
    assert post_login(app.test_client(), "a-user", "a-user-secret")[0] == 200  # old one no longer works
    assert account(factory, "a-user").employee_id == target.employee_id  # unchanged fields stay

    form = scrape(admin, url)
    assert admin.post(url, data={**form.data, "disabled": "y"}).status_code == 302
    assert "disabled" in admin.get("/admin/account/").get_data(as_text=True)
    status, page = post_login(app.test_client(), "a-user", "maria-new-password")
    assert status == 200 and "This account is disabled; ask your administrator." in page
    assert post_login(app.test_client(), "a-user", "wrong-password-1")[1].count("disabled") == 0  # no hint
    assert maria.get("/admin/call/").status_code == 302  # the open session ended

    form = scrape(admin, url)
    assert form.data.get("disabled") == "y"
    del form.data["disabled"]
    assert admin.post(url, data=form.data).status_code == 302
    assert post_login(app.test_client(), "a-user", "maria-new-password")[0] == 302  # same password again


def test_disable_and_enable_actions_stay_in_the_tenant(app: Flask, factory: sessionmaker) -> None:
    admin = logged_in(app, "a-admin")
    token = token_of(admin, "/admin/account/")
    ids = [str(account(factory, n).id) for n in ("a-user", "a-restricted", "quixadmin", "a-admin")]
    page = admin.post("/admin/account/action/", data={"csrf_token": token, "action": "disable", "rowid": ids},
                      follow_redirects=True).get_data(as_text=True)
    assert "2 accounts disabled." in page and "You cannot disable your own account" in page
    assert post_login(app.test_client(), "a-restricted", "a-restricted-secret")[0] == 200
    assert post_login(app.test_client(), "quixadmin", "quixadmin-secret")[0] == 302  # another company's
    assert admin.get("/admin/account/").status_code == 200  # still logged in
    admin.post("/admin/account/action/", data={"csrf_token": token, "action": "enable", "rowid": ids})
    assert post_login(app.test_client(), "a-restricted", "a-restricted-secret")[0] == 302


def test_nobody_changes_their_own_role_or_access(app: Flask, factory: sessionmaker) -> None:
    for username, password in (("a-admin", "a-admin-secret"), ("operator", "operator-secret-1")):
        client = logged_in(app, username, password)
        me = account(factory, username)
        url = "/admin/account/edit/?id=%d" % me.id
        form = scrape(client, url)
        assert "role" not in form.data and "disabled" not in form.data
        response = client.post(url, data={**form.data, "role": "user", "disabled": "y"})
        assert response.status_code == 302
        after = account(factory, username)
        assert after.role is me.role and after.password_hash == me.password_hash
        token = token_of(client, "/admin/account/")
        page = client.post("/admin/account/delete/", data={"id": str(me.id), "csrf_token": token},
                           follow_redirects=True).get_data(as_text=True)
        assert "You cannot delete your own account." in page and account(factory, username) is not None


def test_tenant_admin_deletes_an_account_of_their_company_only(app: Flask, factory: sessionmaker) -> None:
    client = logged_in(app, "a-admin")
    token = token_of(client, "/admin/account/")
    quix = account(factory, "quixadmin")
    assert client.post("/admin/account/delete/", data={"id": str(quix.id), "csrf_token": token}).status_code == 404
    restricted = account(factory, "a-restricted")
    assert client.post("/admin/account/delete/", data={"id": str(restricted.id), "csrf_token": token}
                       ).status_code == 302
    assert account(factory, "a-restricted") is None and account(factory, "quixadmin") is not None


@pytest.mark.parametrize("username", ["a-user", "a-restricted"])
def test_users_cannot_manage_accounts(app: Flask, factory: sessionmaker, username: str) -> None:
    client = logged_in(app, username)
    for url in ("/admin/account/", "/admin/account/new/",
                "/admin/account/edit/?id=%d" % account(factory, username).id):
        assert client.get(url).status_code == 403, url
    token = token_of(client, "/admin/profile/")
    assert client.post("/admin/account/action/", data={"csrf_token": token, "action": "disable",
                                                       "rowid": [str(account(factory, "a-admin").id)]}
                       ).status_code == 403
    assert "/admin/account/" not in client.get("/admin/").get_data(as_text=True)


def test_operator_manages_every_account(app: Flask, factory: sessionmaker) -> None:
    client = logged_in(app, "operator", "operator-secret-1")
    page = client.get("/admin/account/").get_data(as_text=True)
    assert "quixadmin" in page and "a-admin" in page
    form = scrape(client, "/admin/account/new/")
    assert "operator" in form.options["role"]
    b = str(account(factory, "quixadmin").tenant_id)
    assert b in form.options["tenant"]
    status, page = new_account(client, username="staff2", role="operator", tenant="__None")
    assert status == 302, page
    assert account(factory, "staff2").tenant_id is None
    status, page = new_account(client, username="staff3", role="operator", tenant=b)
    assert status == 200 and "Operator accounts belong to no tenant" in page
    status, page = new_account(client, username="quixuser", role="user", tenant="__None")
    assert status == 200 and "Choose the company (tenant) this account belongs to." in page
    status, page = new_account(client, username="quixuser", role="user", tenant=b,
                               employee=str(employee_id(factory, "demo.pbx.local", "101")))
    assert status == 200 and "Link an employee of the account&#39;s own company" in page
    status, page = new_account(client, username="quixuser", role="user", tenant=b,
                               employee=str(employee_id(factory, "quix.example", "101")))
    assert status == 302, page
    assert account(factory, "quixuser").tenant_id == int(b)
    # the operator's employee picker names each employee's company
    offered = [label for _, label in client.get("/admin/account/ajax/lookup/?name=employee&query=Quix").json]
    assert "101 Quixperson One (Quixcorp)" in offered


def test_a_disabled_bootstrap_operator_stays_disabled(factory: sessionmaker) -> None:
    create_app(SETTINGS, factory)
    with factory.begin() as s:
        operator = s.scalar(select(db.AdminUser).where(db.AdminUser.username == "operator"))
        operator.password_hash = "!" + operator.password_hash
    other = Settings(admin_password="a-new-operator-secret", admin_secret_key="x" * 40)
    app = create_app(other, factory)  # a restart with a new bootstrap password
    status, page = post_login(app.test_client(), "operator", "a-new-operator-secret")
    assert status == 200 and "This account is disabled" in page

