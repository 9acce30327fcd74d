"""The routing explainer page of the panel: the same answer as ``pbx-explain``, for the
user's own company only (operators name one); bad input gets a clear message."""
from __future__ import annotations

import html

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.orm import sessionmaker

from admin.app import create_app
from orchestrator.core.explain import explain
from orchestrator.db import schema as db
from orchestrator.db.snapshot import load_tenant_snapshot
from orchestrator.explain_cli import parse_local_time
from orchestrator.wiring import policy_from
from tests.test_admin_isolation import login
from tests.test_admin_validation import SETTINGS, client, factory  # noqa: F401 - fixtures


def result(page: str) -> str:
    start = page.index('<pre id="explain-result">') + len('<pre id="explain-result">')
    return html.unescape(page[start:page.index("</pre>", start)])


def test_tenant_admin_gets_the_explainers_answer_for_their_company(client: FlaskClient, factory: sessionmaker) -> None:  # noqa: F811
    query = {"caller": "+78121234567", "dialed": "+74950000003", "at": "2026-11-28 21:00"}
    page = client.get("/admin/explain/", query_string=query).get_data(as_text=True)
    with factory() as s:
        tenant_id = s.query(db.Tenant.id).filter(db.Tenant.sip_domain == "demo.pbx.local").scalar()
        snapshot = load_tenant_snapshot(s, tenant_id)
    assert snapshot is not None
    expected = explain(snapshot, policy_from(SETTINGS), "+78121234567", "+74950000003",
                       parse_local_time("2026-11-28 21:00", snapshot.timezone)).render()
    assert result(page) == expected
    assert "after hours" in expected and "Saturday 2026-11-28 21:00" in expected


def test_an_employees_outbound_call_is_explained(client: FlaskClient) -> None:  # noqa: F811
    page = client.get("/admin/explain/", query_string={"caller": "101", "dialed": "89161234567",
                                                       "internal": "1"}).get_data(as_text=True)
    assert "outbound call from 101 to +79161234567 as +74950000001" in result(page)


def test_a_tenant_admin_cannot_ask_about_another_company(client: FlaskClient) -> None:  # noqa: F811
    # The company field is ignored for tenant admins: always their own routing data.
    page = client.get("/admin/explain/", query_string={"tenant": "quix.example", "caller": "+49301234567",
                                                       "dialed": "+74957770000"}).get_data(as_text=True)
    text = result(page)
    assert "Quixcorp" not in text and "number +74957770000 is not assigned" in text


def test_bad_time_is_a_clear_message(client: FlaskClient) -> None:  # noqa: F811
    page = client.get("/admin/explain/", query_string={"dialed": "+74950000003", "at": "tomorrow"})
    assert page.status_code == 200
    assert "The time must look like 2026-11-28 21:00" in page.get_data(as_text=True)


def test_operator_names_the_company(factory: sessionmaker) -> None:  # noqa: F811
    app: Flask = create_app(SETTINGS, factory)
    c = app.test_client()
    login(c, "operator", "operator-secret-1")
    page = c.get("/admin/explain/", query_string={"tenant": "QUIX.example", "dialed": "+74957770000"}).get_data(as_text=True)
    assert "(Quixcorp)" in result(page)
    page = c.get("/admin/explain/", query_string={"tenant": "nobody.example", "dialed": "+1"}).get_data(as_text=True)
    assert "No company with SIP domain nobody.example." in page


def test_only_administrators_see_the_explainer(factory: sessionmaker) -> None:  # noqa: F811
    from werkzeug.security import generate_password_hash
    with factory.begin() as s:
        tenant_id = s.query(db.Tenant.id).filter(db.Tenant.sip_domain == "demo.pbx.local").scalar()
        s.add(db.AdminUser(username="a-user", role=db.AdminRole.USER, tenant_id=tenant_id,
                           password_hash=generate_password_hash("a-user-secret")))
    c = create_app(SETTINGS, factory).test_client()
    assert c.get("/admin/explain/").status_code == 302  # not logged in: to the login page
    login_page = c.get("/login").get_data(as_text=True)
    assert "csrf_token" in login_page
    from tests.test_admin_panel import TOKEN
    token = TOKEN.search(login_page).group(1)
    c.post("/login", data={"username": "a-user", "password": "a-user-secret", "csrf_token": token})
    assert c.get("/admin/explain/").status_code == 403
