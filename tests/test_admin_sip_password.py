"""One-click SIP password: a new strong password shown once (never again in lists, forms,
details), optionally e-mailed to the employee through a real SMTP server on loopback
(aiosmtpd), scoped to the tenant, CSRF-protected."""
from __future__ import annotations

import email
import email.policy
import re
from typing import Iterator

import pytest
from aiosmtpd.controller import Controller
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import sessionmaker
from werkzeug.security import generate_password_hash

from admin.app import create_app
from orchestrator.config import Settings
from orchestrator.db import schema as db
from orchestrator.tenant_doc import import_tenant
from tests.test_admin_isolation import B_DOC
from tests.test_admin_panel import DEMO, login, token_of
from tests.test_voicemail_mail import Inbox, _free_port

SETTINGS = Settings(admin_password="operator-secret-1", admin_secret_key="x" * 40)
SHOWN = re.compile(r'<code id="sip-password">([^<]+)</code>')


@pytest.fixture
def factory(migrated_pg: sessionmaker) -> Iterator[sessionmaker]:
    f = migrated_pg
    with f.begin() as s:
        a = import_tenant(s, DEMO)
        import_tenant(s, B_DOC)
        maria = s.scalar(select(db.Employee.id).where(db.Employee.tenant_id == a, db.Employee.extension == "102"))
        s.add(db.AdminUser(username="a-admin", role=db.AdminRole.TENANT_ADMIN, tenant_id=a,
                           password_hash=generate_password_hash("a-admin-secret")))
        s.add(db.AdminUser(username="a-user", role=db.AdminRole.USER, tenant_id=a, employee_id=maria,
                           password_hash=generate_password_hash("a-user-secret")))
    yield f


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    inbox, port = Inbox(), _free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


def employee(factory: sessionmaker, domain: str, extension: str) -> db.Employee:
    with factory() as s:
        return s.scalars(select(db.Employee).join(db.Tenant).where(db.Tenant.sip_domain == domain,
                                                                   db.Employee.extension == extension)).one()


def admin_client(app: Flask, username: str = "a-admin", password: str = "a-admin-secret") -> FlaskClient:
    client = app.test_client()
    login(client, username, password)
    return client


def generate(client: FlaskClient, employee_id: int, **extra: str):  # noqa: ANN201 - a test response
    token = token_of(client, "/admin/employee/new/")
    return client.post("/admin/employee/sip-password/?id=%d" % employee_id, data={"csrf_token": token, **extra})


def test_new_password_is_shown_once_and_never_again(factory: sessionmaker) -> None:
    changes: list = []
    app = create_app(SETTINGS, factory, on_change=lambda c, i: changes.append(c))
    client = admin_client(app)
    ivan = employee(factory, "demo.pbx.local", "101")
    for url in ("/admin/employee/details/?id=%d" % ivan.id, "/admin/employee/edit/?id=%d" % ivan.id):
        page = client.get(url).get_data(as_text=True)
        assert "Generate new SIP password" in page and "/admin/employee/sip-password/?id=%d" % ivan.id in page
        assert ivan.sip_password not in page

    response = generate(client, ivan.id)
    page = response.get_data(as_text=True)
    assert response.status_code == 200 and response.headers["Cache-Control"] == "no-store"
    shown = SHOWN.search(page).group(1)
    after = employee(factory, "demo.pbx.local", "101")
    assert shown == after.sip_password != ivan.sip_password and len(shown) >= 20
    assert "<code>101</code>" in page and "<code>demo.pbx.local</code>" in page
    assert "only time the password is shown" in page and "mail-note" not in page  # no e-mail asked for
    assert changes and after.tenant_id in changes[-1]  # routing version bumped: the directory serves it

    for url in ("/admin/employee/", "/admin/employee/details/?id=%d" % ivan.id,
                "/admin/employee/edit/?id=%d" % ivan.id, "/admin/employee/?search=101",
                "/admin/department/", "/admin/voicemail_box/", "/admin/account/new/", "/admin/live/"):
        body = client.get(url).get_data(as_text=True)
        assert shown not in body, url
    export = client.get("/admin/employee/export/csv/")  # no export at all: back to the list
    assert export.status_code == 302 and shown not in export.get_data(as_text=True)


def test_credentials_are_e_mailed_through_the_deployments_smtp(factory: sessionmaker,
                                                               smtp: tuple[Inbox, int]) -> None:
    inbox, port = smtp
    settings = Settings(admin_password="operator-secret-1", admin_secret_key="x" * 40, smtp_host="127.0.0.1",
                        smtp_port=port, smtp_from="PBX <pbx@operator.example>")
    client = admin_client(create_app(settings, factory))
    maria = employee(factory, "demo.pbx.local", "102")
    page = generate(client, maria.id, email_it="y").get_data(as_text=True)
    shown = SHOWN.search(page).group(1)
    assert "E-mailed to maria.ivanova@demo.example." in page
    ((sender, rcpts, raw),) = inbox.received
    assert sender == "pbx@operator.example" and rcpts == ["maria.ivanova@demo.example"]
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert msg["Subject"] == "Your phone's new SIP password (extension 102)"
    body = msg.get_body(("plain",)).get_content()
    assert "SIP user:  102" in body and "Domain:    demo.pbx.local" in body and "Password:  %s" % shown in body


def test_no_smtp_configured_says_so_and_still_shows_the_password(factory: sessionmaker) -> None:
    client = admin_client(create_app(SETTINGS, factory))
    maria = employee(factory, "demo.pbx.local", "102")
    page = generate(client, maria.id, email_it="y").get_data(as_text=True)
    assert "no mail server configured (PBX_SMTP_HOST is empty)" in page
    assert SHOWN.search(page).group(1) == employee(factory, "demo.pbx.local", "102").sip_password


def test_mail_server_down_says_so_and_the_password_stands(factory: sessionmaker) -> None:
    port = _free_port()  # nothing listens there
    settings = Settings(admin_password="operator-secret-1", admin_secret_key="x" * 40, smtp_host="127.0.0.1",
                        smtp_port=port)
    client = admin_client(create_app(settings, factory))
    maria = employee(factory, "demo.pbx.local", "102")
    page = generate(client, maria.id, email_it="y").get_data(as_text=True)
    assert "Not e-mailed: the mail server 127.0.0.1:%d did not take the message" % port in page
    assert SHOWN.search(page).group(1) == employee(factory, "demo.pbx.local", "102").sip_password


def test_employee_without_address_is_not_mailed(factory: sessionmaker, smtp: tuple[Inbox, int]) -> None:
    inbox, port = smtp
    settings = Settings(admin_password="operator-secret-1", admin_secret_key="x" * 40, smtp_host="127.0.0.1",
                        smtp_port=port)
    client = admin_client(create_app(settings, factory))
    with factory.begin() as s:
        s.get(db.Employee, employee(factory, "demo.pbx.local", "103").id).email = None
    sergey = employee(factory, "demo.pbx.local", "103")
    details = client.get("/admin/employee/details/?id=%d" % sergey.id).get_data(as_text=True)
    assert re.search(r'name="email_it"[^>]*\sdisabled', details) and "no e-mail address on file" in details
    page = generate(client, sergey.id, email_it="y").get_data(as_text=True)
    assert "Not e-mailed: 103 Sergey Smirnov has no e-mail address." in page and inbox.received == []


def test_csrf_scope_and_roles(factory: sessionmaker) -> None:
    app = create_app(SETTINGS, factory)
    client = admin_client(app)
    ivan = employee(factory, "demo.pbx.local", "101")
    assert client.post("/admin/employee/sip-password/?id=%d" % ivan.id).status_code == 400  # no CSRF token
    assert client.get("/admin/employee/sip-password/?id=%d" % ivan.id).status_code == 405
    quix = employee(factory, "quix.example", "101")
    response = generate(client, quix.id)
    assert response.status_code == 404 and "quix" not in response.get_data(as_text=True).lower()
    assert employee(factory, "quix.example", "101").sip_password == quix.sip_password
    assert employee(factory, "demo.pbx.local", "101").sip_password == ivan.sip_password

    user = admin_client(app, "a-user", "a-user-secret")
    token = token_of(user, "/admin/profile/")
    assert user.post("/admin/employee/sip-password/?id=%d" % ivan.id, data={"csrf_token": token}
                     ).status_code == 403
    assert employee(factory, "demo.pbx.local", "101").sip_password == ivan.sip_password

    operator = admin_client(app, "operator", "operator-secret-1")
    page = generate(operator, quix.id).get_data(as_text=True)
    assert SHOWN.search(page).group(1) == employee(factory, "quix.example", "101").sip_password
    assert "<code>quix.example</code>" in page
