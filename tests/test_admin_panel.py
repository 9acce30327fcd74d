"""Admin panel through Flask's test client on a real database: login, CSRF, tenant
scoping for tenant admins, password generation, version bumps, form errors."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import sessionmaker
from werkzeug.security import generate_password_hash

from admin.app import create_app
from orchestrator.config import Settings
from orchestrator.db import schema as db
from orchestrator.db.engine import make_engine, make_session_factory
from orchestrator.db.migrate import upgrade
from orchestrator.tenant_doc import import_tenant

DEMO = (Path(__file__).resolve().parents[1] / "orchestrator" / "demo" / "demo-tenant.yaml").read_text()
OTHER = """
tenant: {name: Rival Corp, sip_domain: rival.example}
employees: [{name: Rival Person, extension: "101"}, {name: Rival Second, extension: "102"}]
departments: [{name: Rival Desk, extension: "500", members: [{employee: "101"}]}]
voicemail_boxes: [{name: Rival box}]
numbers: [{number: "+74957770000", work: {department: "500"}}]
"""
TOKEN = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"')


@pytest.fixture(params=["sqlite", "postgresql"])
def factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sessionmaker]:
    url = (
        "sqlite:///%s" % (tmp_path / "admin.sqlite3") if request.param == "sqlite"
        else request.getfixturevalue("fresh_pg_url")
    )
    upgrade(url)
    engine = make_engine(url)
    f = make_session_factory(engine)
    with f.begin() as s:
        demo = import_tenant(s, DEMO)
        import_tenant(s, OTHER)
        s.add(db.AdminUser(username="demo-admin", role=db.AdminRole.TENANT_ADMIN, tenant_id=demo,
                           password_hash=generate_password_hash("demo-admin-secret")))
    yield f
    engine.dispose()


@pytest.fixture
def changes() -> list[tuple[dict[int, int], int | None]]:
    return []


@pytest.fixture
def app(factory: sessionmaker, changes: list) -> Flask:
    settings = Settings(admin_password="operator-secret-1", admin_secret_key="x" * 40)
    return create_app(settings, factory, on_change=lambda c, i: changes.append((c, i)))


def login(client: FlaskClient, username: str, password: str) -> None:
    token = TOKEN.search(client.get("/login").get_data(as_text=True)).group(1)
    response = client.post("/login", data={"username": username, "password": password, "csrf_token": token})
    assert response.status_code == 302, response.get_data(as_text=True)


def token_of(client: FlaskClient, url: str) -> str:
    return TOKEN.search(client.get(url).get_data(as_text=True)).group(1)


def ids(factory: sessionmaker, model: type, domain: str) -> dict[str, int]:
    with factory() as s:
        rows = s.scalars(select(model).join(db.Tenant).where(db.Tenant.sip_domain == domain))
        return {getattr(r, "extension", None) or r.name: r.id for r in rows}


def tenant_id(factory: sessionmaker, domain: str) -> int:
    with factory() as s:
        return s.scalar(select(db.Tenant.id).where(db.Tenant.sip_domain == domain))


def test_login_is_required_and_csrf_protected(app: Flask) -> None:
    client = app.test_client()
    response = client.get("/admin/employee/")
    assert response.status_code == 302 and "/login" in response.location
    assert client.get("/admin/").status_code == 302
    assert client.post("/login", data={"username": "operator", "password": "operator-secret-1"}).status_code == 400
    token = token_of(client, "/login")
    page = client.post("/login", data={"username": "operator", "password": "wrong", "csrf_token": token})
    assert page.status_code == 200 and "Wrong username or password" in page.get_data(as_text=True)
    login(client, "operator", "operator-secret-1")
    assert client.get("/admin/").status_code == 200
    assert client.get("/logout").status_code == 405  # POST only
    assert client.get("/admin/").status_code == 200
    assert client.post("/logout").status_code == 400  # no CSRF token: refused
    client.post("/logout", data={"csrf_token": token_of(client, "/admin/")})
    assert client.get("/admin/employee/").status_code == 302


def test_operator_sees_every_tenant(app: Flask) -> None:
    client = app.test_client()
    login(client, "operator", "operator-secret-1")
    page = client.get("/admin/employee/").get_data(as_text=True)
    assert "Ivan Petrov" in page and "Rival Person" in page
    assert client.get("/admin/tenant/").status_code == 200
    assert "rival.example" in client.get("/admin/tenant/").get_data(as_text=True)


def test_tenant_admin_sees_and_edits_only_their_tenant(app: Flask, factory: sessionmaker) -> None:
    client = app.test_client()
    login(client, "demo-admin", "demo-admin-secret")
    page = client.get("/admin/employee/").get_data(as_text=True)
    assert "Ivan Petrov" in page and "Rival Person" not in page
    assert "Rival Desk" not in client.get("/admin/department/").get_data(as_text=True)
    assert "+74957770000" not in client.get("/admin/number/").get_data(as_text=True)
    rival_emp = ids(factory, db.Employee, "rival.example")["101"]
    rival_dep = ids(factory, db.Department, "rival.example")["500"]
    assert client.get("/admin/employee/edit/?id=%d" % rival_emp).status_code == 404
    assert client.get("/admin/department/details/?id=%d" % rival_dep).status_code == 404
    token = token_of(client, "/admin/employee/")
    assert client.post("/admin/employee/delete/", data={"id": rival_emp, "csrf_token": token}).status_code == 404
    assert client.get("/admin/tenant/").status_code == 403  # operators only
    accounts = client.get("/admin/account/")  # their own company's accounts only
    assert accounts.status_code == 200 and "demo-admin" in accounts.get_data(as_text=True)
    assert ">operator<" not in accounts.get_data(as_text=True)
    # related pickers only offer this tenant's rows
    own_dep = ids(factory, db.Department, "demo.pbx.local")["200"]
    form = client.get("/admin/department/edit/?id=%d" % own_dep).get_data(as_text=True)
    assert "Ivan Petrov" in form and "Rival Person" not in form and "Rival Second" not in form
    # the voicemail box picker is searched (AJAX): its lookup offers only this tenant's boxes
    boxes = [label for _, label in client.get("/admin/employee/ajax/lookup/?name=voicemail_box&query=").json]
    assert "Sales voicemail" in boxes and "Rival box" not in boxes
    form = client.get("/admin/employee/new/").get_data(as_text=True)
    assert 'name="tenant"' not in form  # the tenant is implied
    with factory() as s:
        assert s.get(db.Employee, rival_emp) is not None


def test_creating_an_employee_generates_a_password_and_bumps_the_version(
        app: Flask, factory: sessionmaker, changes: list) -> None:
    demo = tenant_id(factory, "demo.pbx.local")
    with factory() as s:
        before = s.get(db.Tenant, demo).routing_version
    client = app.test_client()
    login(client, "demo-admin", "demo-admin-secret")
    token = token_of(client, "/admin/employee/new/")
    response = client.post("/admin/employee/new/", data={
        "csrf_token": token, "name": "Nina New", "extension": "106", "role": "user", "ring_seconds": "20",
        "mobile": "+79160000006", "forward_to_mobile_after": "5", "logged_in": "y", "voicemail_box": "__None",
    })
    assert response.status_code == 302, response.get_data(as_text=True)
    with factory() as s:
        emp = s.scalars(select(db.Employee).where(db.Employee.name == "Nina New")).one()
        assert emp.tenant_id == demo and emp.extension == "106"
        assert len(emp.sip_password) >= 20
        assert s.get(db.Tenant, demo).routing_version == before + 1
    assert changes[-1] == ({demo: before + 1}, None)
    listing = client.get("/admin/employee/").get_data(as_text=True)
    assert "Nina New" in listing and emp.sip_password not in listing
    assert emp.sip_password not in client.get("/admin/employee/edit/?id=%d" % emp.id).get_data(as_text=True)


@pytest.mark.parametrize("field, value, message", [
    ("extension", "200", "extension 200 is already used by department Sales"),
    ("extension", "1", "extension must be 2 to 6 digits"),
    ("mobile", "8916000", "not an E.164 number"),  # national form is normalised; this is too short
])
def test_invalid_employee_form_shows_the_error(app: Flask, factory: sessionmaker, field: str, value: str,
                                               message: str) -> None:
    client = app.test_client()
    login(client, "demo-admin", "demo-admin-secret")
    data = {"csrf_token": token_of(client, "/admin/employee/new/"), "name": "Bad Input", "extension": "107",
            "role": "user", "ring_seconds": "20", "logged_in": "y", "voicemail_box": "__None"}
    data[field] = value
    response = client.post("/admin/employee/new/", data=data)
    page = response.get_data(as_text=True)
    assert response.status_code == 200
    assert message in page
    with factory() as s:
        assert s.scalars(select(db.Employee).where(db.Employee.name == "Bad Input")).first() is None


def test_target_in_another_tenant_is_refused_in_the_form(app: Flask, factory: sessionmaker) -> None:
    client = app.test_client()
    login(client, "operator", "operator-secret-1")  # even an operator cannot cross tenants
    sales = ids(factory, db.Department, "demo.pbx.local")["200"]
    rival = ids(factory, db.Department, "rival.example")["500"]
    form = client.get("/admin/department/edit/?id=%d" % sales).get_data(as_text=True)
    data = {m.group(1): m.group(2) for m in re.finditer(r'<input[^>]*name="([^"]+)"[^>]*value="([^"]*)"', form)
            if 'type="checkbox"' not in m.group(0) and 'type="submit"' not in m.group(0)}
    data.update({"tenant": str(tenant_id(factory, "demo.pbx.local")), "strategy": "ring_all",
                 "no_answer_kind": "department", "no_answer_ref_id": str(rival)})
    # members' employees are searched pickers: hidden inputs holding the chosen id (in data already)
    assert all(data.get("members-%s-employee" % i) for i in re.findall(r'name="members-(\d+)-employee"', form))
    page = client.post("/admin/department/edit/?id=%d" % sales, data=data).get_data(as_text=True)
    assert "not in this tenant" in page
    with factory() as s:
        assert s.get(db.Department, sales).no_answer.kind == "voicemail"  # unchanged


def test_deleting_a_routed_to_department_is_refused(app: Flask, factory: sessionmaker) -> None:
    client = app.test_client()
    login(client, "demo-admin", "demo-admin-secret")
    sales = ids(factory, db.Department, "demo.pbx.local")["200"]
    token = token_of(client, "/admin/department/")
    page = client.post("/admin/department/delete/", data={"id": sales, "csrf_token": token},
                       follow_redirects=True).get_data(as_text=True)
    assert "Not deleted: still in use by" in page and "Change" in page
    with factory() as s:
        assert s.get(db.Department, sales) is not None


def test_department_form_edits_the_queue_announcement_interval(app: Flask, factory: sessionmaker) -> None:
    client = app.test_client()
    login(client, "demo-admin", "demo-admin-secret")
    support = ids(factory, db.Department, "demo.pbx.local")["300"]
    form = client.get("/admin/department/edit/?id=%d" % support).get_data(as_text=True)
    assert re.search(r'name="queue_announce_every"[^>]*value="30"', form)
    data = {m.group(1): m.group(2) for m in re.finditer(r'<input[^>]*name="([^"]+)"[^>]*value="([^"]*)"', form)
            if 'type="checkbox"' not in m.group(0) and 'type="submit"' not in m.group(0)}
    data.update({"tenant": str(tenant_id(factory, "demo.pbx.local")), "strategy": "longest_idle",
                 "no_answer_kind": "voicemail", "queue_announce_position": "y", "queue_callback_allowed": "y",
                 "queue_announce_every": "45"})
    # members' employees are searched pickers: hidden inputs holding the chosen id (in data already)
    assert all(data.get("members-%s-employee" % i) for i in re.findall(r'name="members-(\d+)-employee"', form))
    response = client.post("/admin/department/edit/?id=%d" % support, data=data)
    assert response.status_code == 302, response.get_data(as_text=True)
    with factory() as s:
        dep = s.get(db.Department, support)
        assert dep.queue_announce_every == 45 and dep.queue_announce_position and dep.queue_music == "local_stream://moh"
