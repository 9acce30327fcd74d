"""The route-target control (admin.targets): a kind, then a searched list of the tenant's
departments / employees / menus / voicemail and fax boxes by name and extension, on every
form with a target (number, department, menu and its options, caller rule)."""
from __future__ import annotations

import html
import re

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import sessionmaker

from orchestrator.db import schema as db
from tests.test_admin_isolation import scrape
from tests.admin_env import app_for, seed, signed_in



@pytest.fixture
def factory(migrated_pg: sessionmaker) -> sessionmaker:
    return seed(migrated_pg)


@pytest.fixture
def app(factory: sessionmaker) -> Flask:
    return app_for(factory)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return signed_in(app)


def ids(factory: sessionmaker, model: type, domain: str) -> dict[str, int]:
    with factory() as s:
        rows = s.scalars(select(model).join(db.Tenant).where(db.Tenant.sip_domain == domain))
        return {str(getattr(r, "extension", None) or getattr(r, "e164", None) or r.name): r.id for r in rows}


def control(page: str, name: str) -> dict[str, str]:
    """The attributes of the input named ``name`` (the target control)."""
    match = re.search(r'<input ([^>]*\bname="%s"[^>]*)>' % re.escape(name), page)
    assert match, name
    return {k: html.unescape(v) for k, v in re.findall(r'([\w-]+)="([^"]*)"', match.group(1))}


def test_a_numbers_targets_are_picked_by_name_not_typed_as_ids(client: FlaskClient, factory: sessionmaker) -> None:
    number = ids(factory, db.PhoneNumber, "demo.pbx.local")["+74950000001"]
    page = client.get("/admin/number/edit/?id=%d" % number).get_data(as_text=True)
    assert "id (department/employee/menu/voicemail/fax box)" not in page
    work = control(page, "work_ref_id")
    assert work["data-role"] == "select2-ajax" and work["type"] == "hidden"
    assert "kind=" in work["data-url"] and "/admin/number/target_lookup/" in work["data-url"]
    kind = scrape(client, "/admin/number/edit/?id=%d" % number).data["work_kind"]
    assert work["data-url"].endswith("kind=" + kind)
    with factory() as s:
        row = s.get(db.PhoneNumber, number)
        ref_model = {"department": db.Department, "menu": db.VoiceMenu, "employee": db.Employee}[row.work_kind]
        target = s.get(ref_model, row.work_ref_id)
        label = ("%s %s" % (target.extension, target.name)) if getattr(target, "extension", None) else target.name
    assert label in work["data-json"]  # the chosen row shown by name, the only row rendered


@pytest.mark.parametrize("kind, query, expected", [
    ("department", "", {"200 Sales", "300 Support"}),
    ("department", "sup", {"300 Support"}),
    ("department", "20", {"200 Sales"}),
    ("employee", "Ivan", {"101 Ivan Petrov", "102 Maria Ivanova"}),
    ("employee", "105", {"105 Alexey Popov"}),
    ("menu", "mai", {"Main"}),
    ("voicemail", "801", {"801 Support voicemail"}),
    ("fax", "sales", {"800 Sales voicemail"}),
    ("department", "Quix", set()),  # tenant B's: never found
    ("external", "", set()),  # not a row kind
    ("nonsense", "", set()),
])
def test_lookup_finds_the_tenants_rows_by_name_and_extension(client: FlaskClient, kind: str, query: str,
                                                             expected: set[str]) -> None:
    for view in ("number", "department", "menu", "caller_rule"):
        found = client.get("/admin/%s/target_lookup/?kind=%s&query=%s" % (view, kind, query)).json
        labels = {label for _, label in found}
        assert expected <= labels if query == "" and expected else labels == expected, (view, found)


def test_lookup_is_bounded_and_needs_a_login(app: Flask, client: FlaskClient) -> None:
    assert len(client.get("/admin/number/target_lookup/?kind=employee&query=&limit=100000").json) <= 20
    anonymous = app.test_client()
    assert anonymous.get("/admin/number/target_lookup/?kind=employee&query=").status_code in (302, 403)


def test_picked_target_is_saved_and_another_tenants_id_refused(client: FlaskClient, factory: sessionmaker) -> None:
    a_dep = ids(factory, db.Department, "demo.pbx.local")
    b_dep = ids(factory, db.Department, "quix.example")
    number = ids(factory, db.PhoneNumber, "demo.pbx.local")["+74950000001"]
    url = "/admin/number/edit/?id=%d" % number
    form = scrape(client, url)
    form.data.update({"work_kind": "department", "work_ref_id": str(b_dep["500"]), "work_number": "",
                      "work_sound": ""})
    page = client.post(url, data=form.data).get_data(as_text=True)
    assert "no department" in page and "in this tenant" in page and "Quixdesk" not in page
    form.data["work_ref_id"] = "not a number"
    page = client.post(url, data=form.data).get_data(as_text=True)
    assert "Pick the target from the list" in page
    form.data["work_ref_id"] = str(a_dep["300"])
    assert client.post(url, data=form.data).status_code == 302
    with factory() as s:
        row = s.get(db.PhoneNumber, number)
        assert (row.work_kind, row.work_ref_id) == ("department", a_dep["300"])
    listing = client.get("/admin/number/").get_data(as_text=True)
    assert "department: 300 Support" in listing


def test_menu_options_and_default_use_the_control(client: FlaskClient, factory: sessionmaker) -> None:
    menu = ids(factory, db.VoiceMenu, "demo.pbx.local")["Main"]
    page = client.get("/admin/menu/edit/?id=%d" % menu).get_data(as_text=True)
    assert control(page, "default_ref_id")["data-json"].endswith('"200 Sales"]')
    option = control(page, "options-0-target_ref_id")
    assert option["data-role"] == "select2-ajax" and "/admin/menu/target_lookup/?kind=department" in option["data-url"]
    assert "Sales" in option["data-json"] or "Support" in option["data-json"]


@pytest.mark.parametrize("url, name", [
    ("/admin/department/new/", "no_answer_ref_id"),
    ("/admin/caller_rule/new/", "target_ref_id"),
    ("/admin/number/new/", "after_hours_ref_id"),
])
def test_every_target_form_has_the_control(client: FlaskClient, url: str, name: str) -> None:
    attrs = control(client.get(url).get_data(as_text=True), name)
    assert attrs["data-role"] == "select2-ajax" and "target_lookup" in attrs["data-url"]


def test_kind_choices_are_in_words(client: FlaskClient) -> None:
    form = scrape(client, "/admin/number/new/")
    page = client.get("/admin/number/new/").get_data(as_text=True)
    assert set(form.options["work_kind"]) >= {"department", "employee", "menu", "voicemail", "external", "fax"}
    assert "an outside number" in page and "a voicemail box" in page
