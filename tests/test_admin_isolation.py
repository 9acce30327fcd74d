"""Tenant isolation, proven by walking every registered endpoint of the admin panel as
tenant A's administrator: lists, details, edit forms, filters, search, AJAX lookups,
exports, actions, deletes and saves, with tenant B's ids and values. Nothing of B may be
shown, and B's rows must be exactly as before. A control walk as the operator shows the
same requests do reach B's data when allowed, so the walk is not vacuous."""
from __future__ import annotations

import time
from dataclasses import replace
from datetime import datetime, timezone
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import quote, quote_plus

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import sessionmaker
from werkzeug.security import generate_password_hash

from admin.app import create_app
from orchestrator.config import Settings
from orchestrator.db import schema as db
from orchestrator.store.agents import AgentStore, Release
from orchestrator.store.redis_store import CallStore
from orchestrator.tenant_doc import export_tenant, import_tenant
from tests.test_admin_panel import DEMO, TOKEN

B_DOC = """
tenant: {name: Quixcorp, sip_domain: quix.example, timezone: Europe/Berlin}
employees:
  - {name: Quixperson One, extension: "101", email: one@quix.example, mobile: "+79167770001"}
  - {name: Quixperson Two, extension: "102"}
departments:
  - name: Quixdesk
    extension: "500"
    no_answer: {voicemail: Quixbox}
    members: [{employee: "101"}, {employee: "102"}]
voicemail_boxes: [{name: Quixbox, extension: "800", email: box@quix.example, owners: ["102"]}]
menus: [{name: Quixmenu, options: {"1": {department: "500"}}, default: {department: "500"}}]
schedules:
  - name: Quixhours
    default: true
    intervals: [{weekdays: [0], start: "09:00", end: "17:00"}]
    exceptions: [{date: 2026-01-02, name: Quixholiday}]
numbers:
  - {number: "+74957770000", mode: schedule, work: {department: "500"}, after_hours: {voicemail: Quixbox}}
caller_rules:
  - {name: Quixrule, match: list, values: ["+79167770001"], target: {employee: "101"}}
"""
B_MARKERS = ("quix", "7770000", "7770001")  # in every B row's text; checked case-insensitively
B_VALUES = ("Quixperson One", "Quixdesk", "+74957770000", "+79167770001", "quixcall")  # sent as queries
SETTINGS = Settings(admin_password="operator-secret-1", admin_secret_key="x" * 40)
UNSAFE = ("Hackedname", "+74957770099")  # values the walk tries to write into B's rows
WALK_MODELS = {"live": db.Employee}  # pages without a model whose requests name rows: the ids to try


@pytest.fixture
def recordings(tmp_path: Path) -> Path:
    return tmp_path / "recordings"


@pytest.fixture
def factory(migrated_pg: sessionmaker, recordings: Path) -> Iterator[sessionmaker]:
    f = migrated_pg
    with f.begin() as s:
        a = import_tenant(s, DEMO)
        b = import_tenant(s, B_DOC)
        s.add(db.AdminUser(username="a-admin", role=db.AdminRole.TENANT_ADMIN, tenant_id=a,
                           password_hash=generate_password_hash("a-admin-secret")))
        s.add(db.AdminUser(username="quixadmin", role=db.AdminRole.TENANT_ADMIN, tenant_id=b,
                           password_hash=generate_password_hash("quix-admin-secret")))
        box = s.scalar(select(db.VoicemailBox.id).where(db.VoicemailBox.tenant_id == b))
        when = datetime(2026, 3, 2, 10, 0, tzinfo=timezone.utc)
        s.add(db.CallRecord(tenant_id=b, call_uuid="quixcall", direction="inbound", caller="+79167770001",
                            destination="500", started_at=when, route="Quixroute"))
        recording = recordings / str(b) / str(box) / "Quixrecording.wav"  # served to whoever may hear it
        recording.parent.mkdir(parents=True)
        recording.write_bytes(b"RIFF Quixrecording")
        s.add(db.VoicemailMessage(tenant_id=b, box_id=box, caller="+79167770001", call_uuid="quixcall",
                                  recording_path=str(recording), duration_ms=1000, created_at=when))
        s.add(db.FaxMessage(tenant_id=b, box_id=box, caller="+79167770001", call_uuid="quixcall",
                            document_path="/rec/Quixfax.tif", pages=1, created_at=when))
        b_emp = {e.extension: e for e in s.scalars(select(db.Employee).where(db.Employee.tenant_id == b))}
        for name, role in (("quixuser", db.AdminRole.USER), ("quixrestricted", db.AdminRole.RESTRICTED)):
            s.add(db.AdminUser(username=name, role=role, tenant_id=b, employee_id=b_emp["102"].id,
                               password_hash=generate_password_hash(name + "-secret")))
        b_emp["102"].logged_in = False  # the walk's log-ins must not log this one in
        s.add(db.MissedOffer(tenant_id=b, employee_id=b_emp["101"].id, call_uuid="quixcall", offered_at=when,
                             rang_ms=20_000, result="no_answer", paused=True,
                             department_id=s.scalar(select(db.Department.id).where(db.Department.tenant_id == b))))
    yield f


@pytest.fixture
def app(factory: sessionmaker, redis_url: str, recordings: Path) -> Iterator[Flask]:
    """With a real Redis holding a live call of each tenant (for the live-state pages) and
    tenant B's member 101 paused after a missed offer (the walk's log-ins must not resume it)."""
    client = redis.Redis.from_url(redis_url)
    store = CallStore(client)
    now = int(time.time() * 1000)
    store.admit(tenant_of(factory, "demo.pbx.local"), "a-live-call", now, 0, {"caller": "+79160000009"})
    b = tenant_of(factory, "quix.example")
    store.admit(b, "quix-live-call", now, 0, {"caller": "+79167770001", "destination": "Quixdesk"})
    agents, b_emp = AgentStore(client), b_paused_member(factory, b)
    agents.reserve(b, "quix-missed", 0, [b_emp], 1)
    agents.release(b, "quix-missed", 0, [Release(b_emp, "missed", pause_after=1)], "20260302")
    yield create_app(replace(SETTINGS, recordings_dir=str(recordings)), factory, redis_client=client)
    client.close()


def login(client: FlaskClient, username: str, password: str) -> str:
    token = TOKEN.search(client.get("/login").get_data(as_text=True)).group(1)
    response = client.post("/login", data={"username": username, "password": password, "csrf_token": token})
    assert response.status_code == 302
    return TOKEN.search(client.get("/admin/employee/new/")
                        .get_data(as_text=True)).group(1)


def b_paused_member(factory: sessionmaker, b_tenant: int) -> int:
    with factory() as s:
        return s.scalar(select(db.Employee.id).where(db.Employee.tenant_id == b_tenant, db.Employee.extension == "101"))


def tenant_of(factory: sessionmaker, domain: str) -> int:
    with factory() as s:
        return s.scalar(select(db.Tenant.id).where(db.Tenant.sip_domain == domain))


def rows_of(factory: sessionmaker, model: type, tenant_id: int) -> list[int]:
    with factory() as s:
        if model is db.Tenant:
            return [tenant_id]
        return list(s.scalars(select(model.id).where(model.tenant_id == tenant_id)))


def snapshot(factory: sessionmaker, tenant_id: int) -> tuple[Any, ...]:
    """Everything of a tenant, to compare before and after the walk."""
    with factory() as s:
        tenant = s.get(db.Tenant, tenant_id)
        calls = s.execute(select(db.CallRecord.id, db.CallRecord.route, db.CallRecord.caller)
                          .where(db.CallRecord.tenant_id == tenant_id)).all()
        messages = s.execute(select(db.VoicemailMessage.id, db.VoicemailMessage.recording_path)
                             .where(db.VoicemailMessage.tenant_id == tenant_id)).all()
        messages += s.execute(select(db.FaxMessage.id, db.FaxMessage.document_path)
                              .where(db.FaxMessage.tenant_id == tenant_id)).all()
        misses = s.execute(select(db.MissedOffer.id, db.MissedOffer.employee_id, db.MissedOffer.result)
                           .where(db.MissedOffer.tenant_id == tenant_id)).all()
        accounts = s.execute(select(db.AdminUser.id, db.AdminUser.username, db.AdminUser.password_hash,
                                    db.AdminUser.role).where(db.AdminUser.tenant_id == tenant_id)).all()
        return (export_tenant(s, tenant_id, with_secrets=True), tenant.routing_version, tenant.enabled,
                sorted(calls), sorted(messages), sorted(misses), sorted(accounts))


def admin_views(app: Flask) -> dict[str, Any]:
    (panel,) = app.extensions["admin"]
    return {view.endpoint: view for view in panel._views}


def requests_for(app: Flask, b_tenant: int, factory: sessionmaker, token: str) -> Iterator[tuple[str, str, Any]]:
    """(method, url, form data) for every panel endpoint, aimed at tenant B."""
    views = admin_views(app)
    seen_endpoints = set()
    for rule in app.url_map.iter_rules():
        blueprint = rule.endpoint.split(".", 1)[0]
        if blueprint not in views or rule.endpoint.endswith(".static"):
            continue
        seen_endpoints.add(rule.endpoint)
        view = views[blueprint]
        args = {"export_type": "csv"} if "export_type" in rule.arguments else {}
        assert set(rule.arguments) <= set(args), "walk does not know how to fill %s" % rule
        with app.test_request_context():
            base = app.url_for(rule.endpoint, **args)
        model = getattr(view, "model", None) or WALK_MODELS.get(blueprint)
        b_ids = rows_of(factory, model, b_tenant) if model is not None else []
        gets = [base, base + "?tenant=%d" % b_tenant] + [base + "?id=%d" % i for i in b_ids]
        gets += [base + "?id=%d&download=1" % i for i in b_ids]
        for value in map(quote_plus, B_VALUES):
            gets.append(base + "?search=%s" % value)
            gets.append(base + "?find=%s" % value)
            for index in range(len(getattr(view, "_filters", None) or [])):
                gets.append(base + "?flt0_%d=%s" % (index, value))
            for name in ("employee", "voicemail_box", "schedule", "members", "owners", "tenant",
                         "departmentmember-employee", "voicemailboxowner-employee"):
                gets.append(base + "?name=%s&query=%s" % (name, value))
                gets.append(base + "?name=%s&query=&limit=100000" % name)  # everything the picker offers
            for kind in ("department", "employee", "menu", "voicemail", "fax"):  # route-target pickers
                gets.append(base + "?kind=%s&query=%s" % (kind, value))
                gets.append(base + "?kind=%s&query=&limit=100000" % kind)
        if "GET" in rule.methods:
            for url in gets:
                yield "GET", url, None
        if "POST" in rule.methods:
            actions = [name for name, _ in getattr(view, "_actions", None) or []] or ["delete"]
            for i in b_ids or [0]:
                for action in actions if rule.endpoint.endswith(".action_view") else ["delete"]:
                    yield "POST", base + "?id=%d" % i, {
                        "csrf_token": token, "id": str(i), "rowid": [str(x) for x in b_ids], "action": action,
                        "list_form_pk": str(i), "name": UNSAFE[0], "extension": "555", "e164": UNSAFE[1],
                        "enabled": "", "max_concurrent_calls": "1", "username": UNSAFE[0].lower(),
                        "tenant": str(b_tenant), "email": "x@example.com", "url": "/admin/", "role": "user",
                        "new_password": "walk-password-1", "disabled": "y", "email_it": "y",
                    }
    assert len(seen_endpoints) >= 90, sorted(seen_endpoints)  # every ModelView's endpoints + pages


def leaks(body: str, url: str, data: dict[str, Any] | None,
          previous: tuple[str, dict[str, Any] | None] = ("", None)) -> list[str]:
    """B's markers in a response, once the request's own values (echoed back in search
    boxes, filters, pagination links and re-shown forms) are taken out, and those of the
    request before it (a message flashed by a refused POST is shown on the next page)."""
    text = body.lower()
    sent = [v for v in B_VALUES + UNSAFE
            for u, d in ((url, data), previous) if quote_plus(v) in u or (d and v in d.values())]
    for value in sent:
        for form in (value, quote_plus(value), quote(value, safe=""), quote(quote_plus(value), safe="")):
            text = text.replace(form.lower(), "")
    return [m for m in B_MARKERS if m in text]


def test_tenant_admin_sees_and_changes_nothing_of_another_tenant(app: Flask, factory: sessionmaker,
                                                                 redis_url: str) -> None:
    b = tenant_of(factory, "quix.example")
    before = snapshot(factory, b)
    client = app.test_client()
    token = login(client, "a-admin", "a-admin-secret")
    statuses: dict[int, int] = {}
    problems = []
    previous: tuple[str, dict[str, Any] | None] = ("", None)
    for method, url, data in requests_for(app, b, factory, token):
        response = client.get(url) if method == "GET" else client.post(url, data=data)
        body = response.get_data(as_text=True) + response.headers.get("Location", "")
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
        if response.status_code >= 500:
            problems.append("%s %s -> %d" % (method, url, response.status_code))
        elif leaks(body, url, data, previous):
            problems.append("%s %s -> %d shows %s" % (method, url, response.status_code, leaks(body, url, data, previous)))
        previous = (url, data)
    assert not problems, "\n".join(problems)
    assert statuses.get(200, 0) > 50 and statuses.get(404, 0) > 20 and statuses.get(403, 0) > 10, statuses
    assert snapshot(factory, b) == before
    client_redis = redis.Redis.from_url(redis_url)
    assert AgentStore(client_redis).states(b, [b_paused_member(factory, b)])[b_paused_member(factory, b)].paused
    client_redis.close()
    a = tenant_of(factory, "demo.pbx.local")
    with factory() as s:  # what the walk's saves did create (new rows) landed in A
        for model in (db.Employee, db.Department, db.Schedule, db.VoiceMenu, db.VoicemailBox):
            assert set(s.scalars(select(model.tenant_id).where(model.name == UNSAFE[0]))) <= {a}
        assert set(s.scalars(select(db.PhoneNumber.tenant_id).where(db.PhoneNumber.e164 == UNSAFE[1]))) <= {a}
        assert set(s.scalars(select(db.AdminUser.tenant_id).where(db.AdminUser.username == UNSAFE[0].lower()))) <= {a}
        assert s.scalar(select(db.Tenant.id).where(db.Tenant.name == UNSAFE[0])) is None


def test_the_walk_reaches_other_tenants_data_when_allowed(app: Flask, factory: sessionmaker) -> None:
    """Control: the operator, who may see every tenant, sees B through the same walk."""
    b = tenant_of(factory, "quix.example")
    client = app.test_client()
    token = login(client, "operator", "operator-secret-1")
    shown = set()
    for method, url, _ in requests_for(app, b, factory, token):
        if method == "GET" and "export" not in url:
            response = client.get(url)
            if response.status_code == 200 and leaks(response.get_data(as_text=True), url, None):
                shown.add(url.split("?")[0])
    for endpoint in ("employee", "department", "number", "schedule", "menu", "voicemail_box", "call",
                     "voicemail", "missed_offer", "tenant", "account", "live", "caller_rule", "fax"):
        assert "/admin/%s/" % endpoint in shown, endpoint
    for page in ("employee/details", "employee/edit", "live/calls.json", "voicemail/recording", "account/details",
                 "number/target_lookup", "department/target_lookup", "menu/target_lookup", "caller_rule/target_lookup"):
        assert "/admin/%s/" % page in shown or "/admin/%s" % page in shown, page


class FormScraper(HTMLParser):
    """The values a browser would submit for a form page, plus every select's options."""

    def __init__(self) -> None:
        super().__init__()
        self.data: dict[str, str] = {}
        self.options: dict[str, list[str]] = {}
        self._select: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        name = a.get("name")
        if tag == "input" and name and a.get("type") not in ("submit", "checkbox"):
            self.data[name] = a.get("value") or ""
        elif tag == "input" and name and "checked" in a:
            self.data[name] = a.get("value") or "y"
        elif tag == "select" and name:
            self._select = name
            self.options[name] = []
        elif tag == "option" and self._select:
            self.options[self._select].append(a.get("value") or "")
            if "selected" in a or self._select not in self.data:
                self.data[self._select] = a.get("value") or ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "select":
            self._select = None


def scrape(client: FlaskClient, url: str) -> FormScraper:
    response = client.get(url)
    assert response.status_code == 200, url
    scraper = FormScraper()
    scraper.feed(response.get_data(as_text=True))
    return scraper


def a_and_b(factory: sessionmaker, model: type) -> tuple[dict[str, int], dict[str, int]]:
    with factory() as s:
        out = []
        for domain in ("demo.pbx.local", "quix.example"):
            rows = s.scalars(select(model).join(db.Tenant).where(db.Tenant.sip_domain == domain))
            out.append({str(getattr(r, "extension", None) or getattr(r, "e164", None) or r.name): r.id
                        for r in rows})
        return out[0], out[1]


def test_pickers_offer_only_own_rows_and_refuse_injected_ids(app: Flask, factory: sessionmaker) -> None:
    b = tenant_of(factory, "quix.example")
    before = snapshot(factory, b)
    a_emp, b_emp = a_and_b(factory, db.Employee)
    a_dep, _ = a_and_b(factory, db.Department)
    a_num, _ = a_and_b(factory, db.PhoneNumber)
    _, b_box = a_and_b(factory, db.VoicemailBox)
    _, b_sched = a_and_b(factory, db.Schedule)
    client = app.test_client()
    login(client, "a-admin", "a-admin-secret")

    dep_form = scrape(client, "/admin/department/edit/?id=%d" % a_dep["200"])
    member_fields = [n for n in dep_form.data if n.startswith("members-") and n.endswith("-employee")]
    assert member_fields and not any(dep_form.data[n] in {str(i) for i in b_emp.values()} for n in member_fields)
    # the member picker is searched (AJAX): its lookup offers A's employees only, whatever the query
    for query in ("", "10", "Ivan"):
        found = client.get("/admin/department/ajax/lookup/?name=departmentmember-employee&query=%s" % query).json
        assert found and {row[0] for row in found} <= set(a_emp.values()), (query, found)
    assert client.get("/admin/department/ajax/lookup/?name=departmentmember-employee&query=Quixperson"
                      ).json == []
    dep_form.data[member_fields[0]] = str(b_emp["101"])
    page = client.post("/admin/department/edit/?id=%d" % a_dep["200"], data=dep_form.data)
    assert page.status_code == 200 and "Not a valid choice" in page.get_data(as_text=True)

    num_form = scrape(client, "/admin/number/edit/?id=%d" % a_num["+74950000003"])
    assert not set(num_form.options["schedule"]) & {str(i) for i in b_sched.values()}
    num_form.data["schedule"] = str(b_sched["Quixhours"])
    assert "Not a valid choice" in client.post("/admin/number/edit/?id=%d" % a_num["+74950000003"],
                                               data=num_form.data).get_data(as_text=True)

    emp_form = scrape(client, "/admin/employee/new/")
    boxes = client.get("/admin/employee/ajax/lookup/?name=voicemail_box&query=").json
    assert boxes and not {row[0] for row in boxes} & set(b_box.values())
    assert "tenant" not in emp_form.data
    emp_form.data.update({"name": "Picker Test", "extension": "190", "ring_seconds": "20", "role": "user",
                          "voicemail_box": str(b_box["800"]), "tenant": str(b)})
    assert "Not a valid choice" in client.post("/admin/employee/new/", data=emp_form.data).get_data(as_text=True)
    emp_form.data["voicemail_box"] = "__None"  # the tenant field is ignored: the row lands in A
    assert client.post("/admin/employee/new/", data=emp_form.data).status_code == 302

    edit = scrape(client, "/admin/employee/edit/?id=%d" % a_emp["102"])
    edit.data.update({"tenant": str(b), "name": "Maria Moved"})
    assert client.post("/admin/employee/edit/?id=%d" % a_emp["102"], data=edit.data).status_code == 302
    with factory() as s:
        assert s.scalars(select(db.Employee.tenant_id).where(db.Employee.name == "Picker Test")).one() != b
        assert s.get(db.Employee, a_emp["102"]).tenant_id != b
    assert snapshot(factory, b) == before
