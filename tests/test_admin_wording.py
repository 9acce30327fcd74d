"""Errors in the panel's own words (admin.wording): next to the field, no tenant-document
wording (list positions, "in quotes", "as text"), every integrity error a form can hit
said in words (never ``IntegrityError`` / SQL), and numbers typed in national form
normalised to E.164 in the tenant's country."""
from __future__ import annotations

import re

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import sessionmaker

from admin.wording import CONSTRAINT_MESSAGES, integrity_message, normalise_number, panel_message, tenant_region
from orchestrator.db import schema as db
from tests.test_admin_isolation import scrape
from tests.admin_env import app_for, seed, signed_in

RAW = ("IntegrityError", "[SQL:", "INSERT INTO", "UPDATE ", "psycopg", "sqlite3", "duplicate key", "violates")
DOC_WORDING = re.compile(r"\w+\[\d+\]|in quotes|as text|\{department:|\{url:")


@pytest.fixture
def factory(migrated_pg: sessionmaker) -> sessionmaker:
    return seed(migrated_pg)


@pytest.fixture
def client(factory: sessionmaker) -> FlaskClient:
    return signed_in(app_for(factory))


def demo(factory: sessionmaker, model: type, **where: str) -> int:
    with factory() as s:
        query = select(model.id).join(db.Tenant).where(db.Tenant.sip_domain == "demo.pbx.local")
        for column, value in where.items():
            query = query.where(getattr(model, column) == value)
        return s.scalars(query).one()


def no_raw_error(page: str) -> None:
    for raw in RAW:
        assert raw not in page, raw
    errors = _errors_of(page)
    assert errors and not DOC_WORDING.search(errors), errors


def _errors_of(page: str) -> str:
    """The error texts of a page: flashed alerts and the errors under fields."""
    found = re.findall(r'<div class="alert [^"]*">(.*?)</div>', page, re.S)
    found += re.findall(r'<ul class="form-text text-danger[^"]*">(.*?)</ul>', page, re.S)
    return " | ".join(" ".join(re.sub(r"<[^>]+>|&times;", " ", f).split()) for f in found)


def field_error(page: str, text: str) -> bool:
    """``text`` shown under a field (not only in the flash at the top)."""
    return any(text in e for e in re.findall(r'<ul class="form-text text-danger[^"]*">(.*?)</ul>', page, re.S))


# -- integrity errors a form can hit -------------------------------------------------

def test_a_duplicate_menu_digit_says_so_next_to_the_option(client: FlaskClient, factory: sessionmaker) -> None:
    menu = demo(factory, db.VoiceMenu, name="Main")
    url = "/admin/menu/edit/?id=%d" % menu
    form = scrape(client, url)
    assert form.data["options-0-digit"] == "1" and form.data["options-1-digit"] == "2"
    form.data["options-1-digit"] = "1"
    page = client.post(url, data=form.data).get_data(as_text=True)
    assert "Key 1 is already used by another option: each key leads to one place only." in page
    assert field_error(page, "Key 1 is already used")
    no_raw_error(page)
    with factory() as s:
        assert sorted(o.digit for o in s.get(db.VoiceMenu, menu).options) == ["1", "2"]


def test_a_new_option_on_a_used_digit_is_refused_too(client: FlaskClient, factory: sessionmaker) -> None:
    menu = demo(factory, db.VoiceMenu, name="Main")
    url = "/admin/menu/edit/?id=%d" % menu
    form = scrape(client, url)
    form.data.update({"options-2-digit": "2", "options-2-target_kind": "department",
                      "options-2-target_ref_id": str(demo(factory, db.Department, extension="300")),
                      "options-2-target_number": "", "options-2-target_sound": ""})
    page = client.post(url, data=form.data).get_data(as_text=True)
    assert "Key 2 is already used by another option" in page
    no_raw_error(page)


def test_the_same_member_twice_is_refused_in_words(client: FlaskClient, factory: sessionmaker) -> None:
    sales = demo(factory, db.Department, extension="200")
    url = "/admin/department/edit/?id=%d" % sales
    form = scrape(client, url)
    form.data["members-1-employee"] = form.data["members-0-employee"]
    page = client.post(url, data=form.data).get_data(as_text=True)
    assert "is already a member: remove one of the two rows." in page
    no_raw_error(page)


def test_the_same_owner_twice_is_refused_in_words(client: FlaskClient, factory: sessionmaker) -> None:
    box = demo(factory, db.VoicemailBox, extension="800")
    url = "/admin/voicemail_box/edit/?id=%d" % box
    form = scrape(client, url)
    form.data.update({"owners-1-employee": form.data["owners-0-employee"]})
    page = client.post(url, data=form.data).get_data(as_text=True)
    assert "is already an owner: remove one of the two rows." in page
    no_raw_error(page)


def test_a_second_default_schedule_and_a_schedule_in_use_are_refused_in_words(client: FlaskClient,
                                                                              factory: sessionmaker) -> None:
    form = scrape(client, "/admin/schedule/new/")
    page = client.post("/admin/schedule/new/", data={**form.data, "name": "Second", "is_default": "y"})
    body = page.get_data(as_text=True)
    no_raw_error(body)
    with factory() as s:
        defaults = s.scalars(select(db.Schedule.name).join(db.Tenant).where(
            db.Tenant.sip_domain == "demo.pbx.local", db.Schedule.is_default.is_(True))).all()
    assert len(defaults) <= 1
    used = demo(factory, db.Schedule, name="Office hours")
    with factory.begin() as s:  # a number names the schedule (the demo's uses the default implicitly)
        s.get(db.PhoneNumber, demo(factory, db.PhoneNumber, e164="+74950000003")).schedule_id = used
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"',
                      client.get("/admin/schedule/").get_data(as_text=True)).group(1)
    response = client.post("/admin/schedule/delete/", data={"id": str(used), "csrf_token": token,
                                                            "url": "/admin/schedule/"}, follow_redirects=True)
    body = response.get_data(as_text=True)
    no_raw_error(body)
    with factory() as s:
        assert s.get(db.Schedule, used) is not None


def test_every_named_constraint_exists_and_gets_words(factory: sessionmaker) -> None:
    """The translator's table names real constraints (a renamed one would fall back to
    the generic sentence silently), and each real violation is said in words."""
    with factory() as s:
        names = set(s.scalars(text("SELECT conname FROM pg_constraint UNION SELECT indexname FROM pg_indexes")))
    assert set(CONSTRAINT_MESSAGES) <= names, set(CONSTRAINT_MESSAGES) - names
    menu, option = None, None
    with factory() as s:
        menu = demo(factory, db.VoiceMenu, name="Main")
        option = s.scalars(select(db.VoiceMenuOption).where(db.VoiceMenuOption.menu_id == menu)).first()
        tenant = option.tenant_id
    cases = [
        (db.VoiceMenuOption(tenant_id=tenant, menu_id=menu, digit=option.digit, target_kind="announcement"),
         "Two options use the same key"),
        (db.VoiceMenuOption(tenant_id=tenant, menu_id=menu, digit="x", target_kind="announcement"),
         "out of its allowed range"),
    ]
    for row, words in cases:
        with factory() as s:
            s.add(row)
            with pytest.raises(IntegrityError) as caught:
                s.flush()
            field, message = integrity_message(caught.value)
            assert words in message and not any(raw in message for raw in RAW), message


# -- the panel's words ----------------------------------------------------------------

@pytest.mark.parametrize("doc_text, panel_text", [
    ("'8916' is not an E.164 number: write it in E.164 form, e.g. \"+74951234567\" (in quotes)",
     "'8916' is not an E.164 number: write it with the country code, e.g. +74951234567, or as dialled in the "
     "company's country, e.g. 8 495 123-45-67"),
    ("must be text, got number 5 (put it in quotes)", "must be text, got number 5"),
    ("department: give the extension as text", "choose the department from the list (search by name or extension)"),
    ("external: give the E.164 number as text", "enter the outside number"),
    ("extension '101' is used twice (also employees[2])",
     "extension '101' is already used by another one: choose a different one"),
    ("is required: where matching callers go, e.g. {department: \"200\"}", "is required: where matching callers go"),
    ("route target cycle via menus[0].options.1", "route target cycle via another row"),
])
def test_panel_message(doc_text: str, panel_text: str) -> None:
    assert panel_message(doc_text) == panel_text


def test_form_errors_use_no_document_wording(client: FlaskClient, factory: sessionmaker) -> None:
    form = scrape(client, "/admin/employee/new/")
    page = client.post("/admin/employee/new/", data={**form.data, "name": "New", "extension": "107", "role": "user",
                                                     "ring_seconds": "20", "voicemail_box": "__None",
                                                     "mobile": "+7916"}).get_data(as_text=True)
    assert field_error(page, "is not a valid phone number") or "is not a valid phone number" in page
    assert "(in quotes)" not in page and "write it with the country code" in page
    number = demo(factory, db.PhoneNumber, e164="+74950000001")
    url = "/admin/number/edit/?id=%d" % number
    form = scrape(client, url)
    form.data.update({"work_kind": "department", "work_ref_id": "", "work_number": "", "work_sound": ""})
    page = client.post(url, data=form.data).get_data(as_text=True)
    assert "choose the department from the list" in page
    no_raw_error(page)


# -- numbers in national form ---------------------------------------------------------

def test_tenant_region_and_normalisation() -> None:
    assert tenant_region("Europe/Moscow") == "RU" and tenant_region("Europe/Berlin") == "DE"
    assert tenant_region("UTC") is None
    assert normalise_number("89161234567", "RU") == "+79161234567"
    assert normalise_number("8 (495) 123-45-67", "RU") == "+74951234567"
    assert normalise_number("030 1234567", "DE") == "+49301234567"
    assert normalise_number("89161234567", None) == "89161234567"  # no country: left for the rules to refuse
    assert normalise_number("+7916", "RU") == "+7916" and normalise_number("x" * 1000, "RU") == "x" * 1000


def test_numbers_typed_in_national_form_are_saved_and_shown_in_e164(client: FlaskClient,
                                                                     factory: sessionmaker) -> None:
    form = scrape(client, "/admin/number/new/")
    response = client.post("/admin/number/new/", data={
        **form.data, "e164": "8 (495) 000-00-09", "mode": "always", "work_kind": "external",
        "work_ref_id": "", "work_number": "89161234567", "work_sound": "", "dial_code": ""})
    assert response.status_code == 302, _errors_of(response.get_data(as_text=True))
    with factory() as s:
        row = s.scalars(select(db.PhoneNumber).where(db.PhoneNumber.e164 == "+74950000009")).one()
        assert (row.work_kind, row.work_number) == ("external", "+79161234567")
    # an error elsewhere in the form shows the number back already in E.164
    form = scrape(client, "/admin/employee/new/")
    page = client.post("/admin/employee/new/", data={**form.data, "name": "New", "extension": "101", "role": "user",
                                                     "ring_seconds": "20", "voicemail_box": "__None",
                                                     "mobile": "8 916 765-43-21"}).get_data(as_text=True)
    assert "already used by employee Ivan Petrov" in page
    assert 'value="+79167654321"' in page
    form = scrape(client, "/admin/employee/new/")
    assert client.post("/admin/employee/new/", data={**form.data, "name": "New", "extension": "107", "role": "user",
                                                     "ring_seconds": "20", "voicemail_box": "__None",
                                                     "mobile": "89167654321"}).status_code == 302
    with factory() as s:
        assert s.scalars(select(db.Employee.mobile).where(db.Employee.extension == "107")).all() == ["+79167654321"]


def test_a_taken_number_typed_nationally_is_still_refused(client: FlaskClient) -> None:
    form = scrape(client, "/admin/number/new/")
    page = client.post("/admin/number/new/", data={**form.data, "e164": "8 495 000-00-01", "mode": "always",
                                                   "work_kind": "external", "work_ref_id": "",
                                                   "work_number": "+79161234567", "work_sound": "", "dial_code": ""})
    assert page.status_code == 200 and "already in use" in page.get_data(as_text=True)
