"""Call history (admin.history): the company's local time without microseconds, duration
and talk time, names and extensions, no tenant id column, filters (dates in the
company's time, number, department, member, result) and a CSV export scoped like the list
(a restricted user exports only their own calls)."""
from __future__ import annotations

import csv
import io
import re
from datetime import datetime, timezone
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
from orchestrator.tenant_doc import import_tenant
from tests.test_admin_isolation import B_DOC, login
from tests.test_admin_panel import DEMO
from tests.test_admin_panel import login as panel_login

SETTINGS = Settings(admin_password="operator-secret-1", admin_secret_key="x" * 40)
UTC = timezone.utc


def at(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%d %H:%M:%S.%f").replace(tzinfo=UTC)


@pytest.fixture
def factory(migrated_pg: sessionmaker) -> Iterator[sessionmaker]:
    with migrated_pg.begin() as s:
        a = import_tenant(s, DEMO)  # Europe/Moscow: UTC+3
        b = import_tenant(s, B_DOC)
        emp = {e.extension: e.id for e in s.scalars(select(db.Employee).where(db.Employee.tenant_id == a))}
        s.add_all([
            db.AdminUser(username="a-admin", role=db.AdminRole.TENANT_ADMIN, tenant_id=a,
                         password_hash=generate_password_hash("a-admin-secret")),
            db.AdminUser(username="a-restricted", role=db.AdminRole.RESTRICTED, tenant_id=a, employee_id=emp["105"],
                         password_hash=generate_password_hash("a-restricted-secret")),
            db.CallRecord(tenant_id=a, call_uuid="sales-answered", direction="inbound", caller="+79160000009",
                          destination="200", started_at=at("2026-03-02 07:00:00.123456"),
                          answered_at=at("2026-03-02 07:00:05.5"), ended_at=at("2026-03-02 07:02:10.9"),
                          answered_by_employee_id=emp["101"], hangup_cause="NORMAL_CLEARING", route="Sales"),
            db.CallRecord(tenant_id=a, call_uuid="support-missed", direction="inbound", caller="+79161112233",
                          destination="300", started_at=at("2026-03-02 22:30:00.5"),  # 01:30 on 3 March in Moscow
                          ended_at=at("2026-03-02 22:31:00.5"), hangup_cause="NO_ANSWER", route="Support"),
            db.CallRecord(tenant_id=a, call_uuid="popov-internal", direction="internal", caller="105",
                          destination="101", started_at=at("2026-03-01 09:00:00.0"),
                          answered_at=at("2026-03-01 09:00:02.0"), ended_at=at("2026-03-01 10:05:03.0"),
                          answered_by_employee_id=emp["101"], route="internal"),
            db.CallRecord(tenant_id=b, call_uuid="quixcall", direction="inbound", caller="+79167770001",
                          destination="500", started_at=at("2026-03-02 07:00:00.0"), route="Quixroute"),
        ])
    yield migrated_pg


@pytest.fixture
def app(factory: sessionmaker) -> Flask:
    return create_app(SETTINGS, factory)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    c = app.test_client()
    login(c, "a-admin", "a-admin-secret")
    return c


def rows_of(page: str) -> list[str]:
    start = page.index("</thead>", page.index("column-header"))  # the list's table
    body = page[start:page.index("</table>", start)]
    return [" ".join(re.sub(r"<[^>]+>", " ", r).split()) for r in re.findall(r"<tr[^>]*>(.*?)</tr>", body, re.S)]


def department(factory: sessionmaker, extension: str) -> int:
    with factory() as s:
        return s.scalars(select(db.Department.id).join(db.Tenant).where(
            db.Tenant.sip_domain == "demo.pbx.local", db.Department.extension == extension)).one()


def employee(factory: sessionmaker, extension: str) -> int:
    with factory() as s:
        return s.scalars(select(db.Employee.id).join(db.Tenant).where(
            db.Tenant.sip_domain == "demo.pbx.local", db.Employee.extension == extension)).one()


def test_history_reads_like_a_call_log(client: FlaskClient) -> None:
    page = client.get("/admin/call/").get_data(as_text=True)
    head = page[page.index("<thead"):page.index("</thead>")]
    assert "Tenant" not in head and "Company" not in head and "Started (company time)" in head
    rows = rows_of(page)
    assert len(rows) == 3, rows
    sales = next(r for r in rows if "200 Sales" in r)
    assert "2026-03-02 10:00:00" in sales and ".123456" not in page  # Moscow time, whole seconds
    assert "+79160000009" in sales and "101 Ivan Petrov" in sales and "answered" in sales
    assert "2:10" in sales and "2:05" in sales  # duration 2:10, talk 2:05 (seconds cut, not rounded)
    missed = next(r for r in rows if "300 Support" in r)
    assert "2026-03-03 01:30:00" in missed and "not answered" in missed
    internal = next(r for r in rows if "105 Alexey Popov" in r)
    assert "1:05:03" in internal and "internal" in internal
    assert not any("quix" in r.lower() for r in rows)


@pytest.mark.parametrize("flt, expected", [
    ("flt0_0=2026-03-02+to+2026-03-02", {"sales-answered"}),  # 22:30 UTC on the 2nd is the 3rd in Moscow
    ("flt0_0=2026-03-03+to+2026-03-03", {"support-missed"}),
    ("flt0_1=9160000009", {"sales-answered"}),
    ("flt0_1=105", {"popov-internal"}),
    ("flt0_4=missed", {"support-missed"}),
    ("flt0_4=answered", {"sales-answered", "popov-internal"}),
])
def test_filters(client: FlaskClient, flt: str, expected: set[str]) -> None:
    assert exported(client, flt) == expected


def test_department_and_member_filters(client: FlaskClient, factory: sessionmaker) -> None:
    assert exported(client, "flt0_2=%d" % department(factory, "200")) == {"sales-answered", "popov-internal"}
    assert exported(client, "flt0_2=%d" % department(factory, "300")) == {"support-missed"}
    assert exported(client, "flt0_3=%d" % employee(factory, "101")) == {"sales-answered", "popov-internal"}
    page = client.get("/admin/call/").get_data(as_text=True)
    assert "Date (company time)" in page and "Answered by" in page and "Department" in page


def exported(client: FlaskClient, query: str = "") -> set[str]:
    response = client.get("/admin/call/export/csv/" + ("?" + query if query else ""))
    assert response.status_code == 200 and "text/csv" in response.headers["Content-Type"]
    return {row["Call"] for row in csv.DictReader(io.StringIO(response.get_data(as_text=True)))}


def test_csv_export_is_the_list_in_words_and_scoped(client: FlaskClient, app: Flask) -> None:
    response = client.get("/admin/call/export/csv/")
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    assert {r["Call"] for r in rows} == {"sales-answered", "support-missed", "popov-internal"}
    sales = next(r for r in rows if r["Call"] == "sales-answered")
    assert sales["Started (company time)"] == "2026-03-02 10:00:00" and sales["Answered by"] == "101 Ivan Petrov"
    assert sales["Dialled"] == "200 Sales" and sales["Duration"] == "2:10" and sales["Result"] == "answered"
    restricted = app.test_client()
    panel_login(restricted, "a-restricted", "a-restricted-secret")
    response = restricted.get("/admin/call/export/csv/")
    assert response.status_code == 200
    assert {r["Call"] for r in csv.DictReader(io.StringIO(response.get_data(as_text=True)))} == {"popov-internal"}


def test_operator_sees_the_company_by_name(app: Flask) -> None:
    operator = app.test_client()
    login(operator, "operator", "operator-secret-1")
    page = operator.get("/admin/call/").get_data(as_text=True)
    assert "Demo Trading LLC" in page and "Quixcorp" in page
    rows = list(csv.DictReader(io.StringIO(operator.get("/admin/call/export/csv/").get_data(as_text=True))))
    assert {r["Company"] for r in rows} == {"Demo Trading LLC", "Quixcorp"}
