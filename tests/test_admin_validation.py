"""Form validation with clear messages (the tenant-document rules, run on every save):
extensions, feature codes, E.164 numbers owned by the tenant, route cycles, schedules."""
from __future__ import annotations

from typing import Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import sessionmaker
from werkzeug.security import generate_password_hash

from admin.app import create_app
from orchestrator.config import Settings
from orchestrator.db import schema as db
from orchestrator.tenant_doc import import_tenant
from tests.test_admin_isolation import B_DOC, login, scrape
from tests.test_admin_panel import DEMO
from tests.test_admin_panel import login as panel_login

SETTINGS = Settings(admin_password="operator-secret-1", admin_secret_key="x" * 40)


@pytest.fixture
def factory(migrated_pg: sessionmaker) -> Iterator[sessionmaker]:
    f = migrated_pg
    with f.begin() as s:
        a = import_tenant(s, DEMO)
        import_tenant(s, B_DOC)
        s.add(db.AdminUser(username="a-admin", role=db.AdminRole.TENANT_ADMIN, tenant_id=a,
                           password_hash=generate_password_hash("a-admin-secret")))
    yield f


@pytest.fixture
def client(factory: sessionmaker) -> FlaskClient:
    app: Flask = create_app(SETTINGS, factory)
    c = app.test_client()
    login(c, "a-admin", "a-admin-secret")
    return c


def demo_id(factory: sessionmaker, model: type, **where: str) -> int:
    with factory() as s:
        query = select(model.id).join(db.Tenant).where(db.Tenant.sip_domain == "demo.pbx.local")
        for column, value in where.items():
            query = query.where(getattr(model, column) == value)
        return s.scalars(query).one()


def count(factory: sessionmaker, model: type) -> int:
    with factory() as s:
        return s.scalar(select(func.count()).select_from(model))


EMPLOYEE = {"name": "New Person", "extension": "107", "role": "user", "ring_seconds": "20", "logged_in": "y",
            "voicemail_box": "__None"}


@pytest.mark.parametrize("changes, message", [
    ({"extension": "101"}, "extension 101 is already used by employee Ivan Petrov"),
    ({"extension": "300"}, "extension 300 is already used by department Support"),
    ({"extension": "800"}, "extension 800 is already used by voicemail box Sales voicemail"),
    ({"extension": "*72"}, "numbers starting with * are feature codes"),
    ({"mobile": "+7916"}, "is not a valid phone number"),
    ({"outbound_caller_id": "+74957770000"}, "is not a number of this tenant; use one of: +74950000001"),
    ({"forward_to_mobile_after": "10"}, "needs a mobile number to forward to"),
])
def test_employee_form_refuses_with_a_clear_message(client: FlaskClient, factory: sessionmaker,
                                                    changes: dict[str, str], message: str) -> None:
    form = scrape(client, "/admin/employee/new/")
    before = count(factory, db.Employee)
    page = client.post("/admin/employee/new/", data={**form.data, **EMPLOYEE, **changes})
    assert page.status_code == 200 and message in page.get_data(as_text=True)
    assert count(factory, db.Employee) == before


def test_employee_with_own_caller_id_is_saved(client: FlaskClient, factory: sessionmaker) -> None:
    form = scrape(client, "/admin/employee/new/")
    page = client.post("/admin/employee/new/", data={**form.data, **EMPLOYEE,
                                                     "outbound_caller_id": "+74950000002"})
    assert page.status_code == 302


@pytest.mark.parametrize("e164, message", [
    ("8495", "is not an E.164 number"),  # too short to be a national number either
    # who has it, as far as this tenant may know (never Flask-Admin's bare "Already exists.")
    ("+74957770000", "This number is already in use by another customer. Check the digits"),  # tenant B's
    ("+74950000001", "This number is already in use: it is already one of this company&#39;s numbers."),
])
def test_number_form_refuses_bad_or_taken_numbers(client: FlaskClient, factory: sessionmaker, e164: str,
                                                  message: str) -> None:
    form = scrape(client, "/admin/number/new/")
    before = count(factory, db.PhoneNumber)
    data = {**form.data, "e164": e164, "mode": "always", "work_kind": "department",
            "work_ref_id": str(demo_id(factory, db.Department, extension="200"))}
    page = client.post("/admin/number/new/", data=data)
    assert page.status_code == 200 and message in page.get_data(as_text=True)
    assert "Already exists" not in page.get_data(as_text=True) and "Quixcorp" not in page.get_data(as_text=True)
    assert count(factory, db.PhoneNumber) == before


def test_editing_a_number_to_a_taken_one_says_so(client: FlaskClient, factory: sessionmaker) -> None:
    url = "/admin/number/edit/?id=%d" % demo_id(factory, db.PhoneNumber, e164="+74950000003")
    form = scrape(client, url)
    page = client.post(url, data={**form.data, "e164": "+74957770000"}).get_data(as_text=True)
    assert "This number is already in use by another customer" in page
    assert client.post(url, data=form.data).status_code == 302  # its own number is not "taken"


def test_operator_is_told_which_tenant_has_the_number(factory: sessionmaker) -> None:
    c = create_app(SETTINGS, factory).test_client()
    login(c, "operator", "operator-secret-1")
    form = scrape(c, "/admin/number/new/")
    page = c.post("/admin/number/new/", data={**form.data, "e164": "+74957770000", "mode": "always"})
    assert "This number is already in use by tenant Quixcorp." in page.get_data(as_text=True)


@pytest.mark.parametrize("name", ["", "   "])
def test_profile_refuses_a_blank_name(factory: sessionmaker, name: str) -> None:
    with factory.begin() as s:
        maria = s.scalars(select(db.Employee).where(db.Employee.extension == "102").join(db.Tenant)
                          .where(db.Tenant.sip_domain == "demo.pbx.local")).one()
        s.add(db.AdminUser(username="maria", role=db.AdminRole.USER, tenant_id=maria.tenant_id,
                           employee_id=maria.id, password_hash=generate_password_hash("maria-secret-pw")))
    c = create_app(SETTINGS, factory).test_client()
    panel_login(c, "maria", "maria-secret-pw")
    form = scrape(c, "/admin/profile/")
    page = c.post("/admin/profile/", data={**form.data, "name": name})
    assert page.status_code == 200 and "Enter your name: it cannot be blank." in page.get_data(as_text=True)
    with factory() as s:
        assert s.scalars(select(db.Employee.name).where(db.Employee.extension == "102").join(db.Tenant)
                         .where(db.Tenant.sip_domain == "demo.pbx.local")).one() == "Maria Ivanova"


@pytest.mark.parametrize("url, model", [("/admin/employee/new/", db.Employee),
                                        ("/admin/department/new/", db.Department),
                                        ("/admin/voicemail_box/new/", db.VoicemailBox)])
def test_forms_refuse_a_blank_name(client: FlaskClient, factory: sessionmaker, url: str, model: type) -> None:
    form = scrape(client, url)
    before = count(factory, model)
    extra = EMPLOYEE if model is db.Employee else {"extension": "777"}
    page = client.post(url, data={**form.data, **extra, "name": "  "})
    assert page.status_code == 200 and "Enter a name: it cannot be blank." in page.get_data(as_text=True)
    assert count(factory, model) == before


def test_route_cycle_is_refused(client: FlaskClient, factory: sessionmaker) -> None:
    """Menu Main sends 1 -> Sales; Sales' no-answer -> menu Main would loop forever."""
    sales = demo_id(factory, db.Department, extension="200")
    url = "/admin/department/edit/?id=%d" % sales
    form = scrape(client, url)
    form.data.update({"no_answer_kind": "menu", "no_answer_ref_id": str(demo_id(factory, db.VoiceMenu,
                                                                                 name="Main"))})
    page = client.post(url, data=form.data).get_data(as_text=True)
    assert "route target cycle: department 200 -&gt; menu Main -&gt; department 200" in page
    with factory() as s:
        assert s.get(db.Department, sales).no_answer.kind == "voicemail"


def _schedule(name: str, *intervals: tuple[int, int, int]) -> dict[str, str]:
    """The schedule form's rows (weekday checkboxes, from-to times) for these intervals."""
    data = {"name": name}
    for i, (day, start, end) in enumerate(intervals):
        data.update({"hours-%d-day-%d" % (i, day): "y", "hours-%d-start" % i: "%02d:%02d" % divmod(start, 60),
                     "hours-%d-end" % i: "%02d:%02d" % divmod(end % 1440 if end != 1440 else end, 60)})
    return data


@pytest.mark.parametrize("intervals, message", [
    (((0, 540, 720), (0, 700, 800)), "Mon 11:40-13:20 overlaps Mon 09:00-12:00"),
    (((6, 1320, 1800), (0, 0, 300)), "Sun 22:00-06:00 overlaps Mon 00:00-05:00"),  # Sunday night into Monday
    (((1, 600, 600),), "from and to are the same time"),
])
def test_schedule_form_refuses_overlaps_and_backwards_intervals(
        client: FlaskClient, factory: sessionmaker, intervals: tuple, message: str) -> None:
    form = scrape(client, "/admin/schedule/new/")
    before = count(factory, db.Schedule)
    page = client.post("/admin/schedule/new/", data={**form.data, **_schedule("Night shift", *intervals)})
    assert page.status_code == 200 and message in page.get_data(as_text=True)
    assert count(factory, db.Schedule) == before


def test_valid_schedule_is_saved(client: FlaskClient, factory: sessionmaker) -> None:
    form = scrape(client, "/admin/schedule/new/")
    page = client.post("/admin/schedule/new/", data={**form.data, **_schedule("Night shift", (4, 1320, 1800),
                                                                              (5, 1320, 1800))})
    assert page.status_code == 302
    with factory() as s:
        schedule = s.scalars(select(db.Schedule).where(db.Schedule.name == "Night shift")).one()
        assert [(i.weekday, i.start_minute, i.end_minute) for i in schedule.intervals] == \
            [(4, 1320, 1800), (5, 1320, 1800)]


RULE = {"name": "Petersburg", "position": "0", "match_kind": "city", "match_values": "St Petersburg",
        "numbers": "", "days": "30", "crm_url": "", "crm_timeout_ms": "1000", "target_kind": "department",
        "target_number": "", "target_sound": ""}


@pytest.mark.parametrize("changes, message", [
    ({"match_kind": "country", "match_values": "RU\nRussia"}, "&#39;Russia&#39; is not a country code"),
    ({"match_kind": "list", "match_values": "89161112233"}, "is not an E.164 number"),
    ({"match_values": ""}, "is required for a city rule"),
    ({"numbers": "+74957770000"}, "+74957770000 is not a number of this tenant"),  # tenant B's
    ({"block": "y"}, "a block rule refuses the call: its target may only be the announcement"),
    ({"match_kind": "crm", "match_values": ""}, "is required: the CRM endpoint"),
    ({"match_kind": "crm", "match_values": "", "crm_url": "ftp://crm.example/"}, "is not an http(s) URL"),
    ({"target_kind": "", "target_ref_id": ""}, "is required: where matching callers go"),
])
def test_caller_rule_form_refuses_with_a_clear_message(client: FlaskClient, factory: sessionmaker,
                                                       changes: dict[str, str], message: str) -> None:
    form = scrape(client, "/admin/caller_rule/new/")
    before = count(factory, db.CallerRule)
    data = {**form.data, **RULE, "target_ref_id": str(demo_id(factory, db.Department, extension="300")), **changes}
    page = client.post("/admin/caller_rule/new/", data=data)
    assert page.status_code == 200 and message in page.get_data(as_text=True), page.get_data(as_text=True)[-3000:]
    assert count(factory, db.CallerRule) == before


def test_caller_rule_is_saved_in_order_and_the_number_it_names_cannot_go(client: FlaskClient,
                                                                         factory: sessionmaker) -> None:
    with factory() as s:
        version = s.scalars(select(db.Tenant.routing_version).where(db.Tenant.sip_domain == "demo.pbx.local")).one()
    form = scrape(client, "/admin/caller_rule/new/")
    data = {**form.data, **RULE, "target_ref_id": str(demo_id(factory, db.Department, extension="300")),
            "match_values": " St Petersburg \r\n\r\nMoscow", "numbers": "+74950000002"}
    assert client.post("/admin/caller_rule/new/", data=data).status_code == 302
    with factory() as s:
        rule = s.scalars(select(db.CallerRule).where(db.CallerRule.name == "Petersburg")).one()
        assert rule.value_list() == ["St Petersburg", "Moscow"] and rule.match_values == "St Petersburg\nMoscow"
        assert s.get(db.Tenant, rule.tenant_id).routing_version > version  # takes effect on the next call
    number = demo_id(factory, db.PhoneNumber, e164="+74950000002")
    page = client.post("/admin/number/delete/", data={"id": str(number), "url": "/admin/number/",
                                                      "csrf_token": form.data["csrf_token"]}, follow_redirects=True)
    assert "Not deleted: still in use by caller rule Petersburg (numbers)." in page.get_data(as_text=True)
    assert count(factory, db.PhoneNumber) >= 1 and demo_id(factory, db.PhoneNumber, e164="+74950000002") == number


def test_fax_target_on_a_number(client: FlaskClient, factory: sessionmaker) -> None:
    form = scrape(client, "/admin/number/new/")
    data = {**form.data, "e164": "+74950000009", "mode": "always", "work_kind": "fax", "work_ref_id": "987654"}
    page = client.post("/admin/number/new/", data=data)
    assert page.status_code == 200 and "no voicemail box" in page.get_data(as_text=True)
    data["work_ref_id"] = str(demo_id(factory, db.VoicemailBox, name="Sales voicemail"))
    assert client.post("/admin/number/new/", data=data).status_code == 302


# ------------------------------------------------------------------ outbound calls, menu "back"


def test_department_caller_id_must_be_one_of_the_companys_numbers(client: FlaskClient, factory: sessionmaker) -> None:
    url = "/admin/department/edit/?id=%d" % demo_id(factory, db.Department, extension="200")
    form = scrape(client, url)
    page = client.post(url, data={**form.data, "outbound_caller_id": "+74957770000"})  # tenant B's number
    assert page.status_code == 200 and "is not a number of this tenant" in page.get_data(as_text=True)
    assert client.post(url, data={**form.data, "outbound_caller_id": "+74950000002"}).status_code == 302
    with factory() as s:
        assert s.get(db.Department, demo_id(factory, db.Department, extension="200")).outbound_caller_id == "+74950000002"


def test_number_dial_codes_are_digits_and_unique(client: FlaskClient, factory: sessionmaker) -> None:
    first = "/admin/number/edit/?id=%d" % demo_id(factory, db.PhoneNumber, e164="+74950000001")
    second = "/admin/number/edit/?id=%d" % demo_id(factory, db.PhoneNumber, e164="+74950000002")
    page = client.post(first, data={**scrape(client, first).data, "dial_code": "1a"}).get_data(as_text=True)
    assert "dial code must be 1-3 digits" in page
    assert client.post(first, data={**scrape(client, first).data, "dial_code": "1"}).status_code == 302
    page = client.post(second, data={**scrape(client, second).data, "dial_code": "1"}).get_data(as_text=True)
    assert "dial code 1 is already used by another one" in page
    assert client.post(second, data={**scrape(client, second).data, "dial_code": ""}).status_code == 302
    with factory() as s:
        codes = dict(s.execute(select(db.PhoneNumber.e164, db.PhoneNumber.dial_code)).all())
    assert codes["+74950000001"] == "1" and codes["+74950000002"] is None  # blank = no code


def test_menu_back_digit_cannot_be_an_option_or_the_terminator(client: FlaskClient, factory: sessionmaker) -> None:
    url = "/admin/menu/edit/?id=%d" % demo_id(factory, db.VoiceMenu, name="Main")
    form = scrape(client, url)
    for digit, message in (("1", "digit 1 is also an option of this menu"), ("#", "back digit must be one of 0-9 or *")):
        page = client.post(url, data={**form.data, "back_digit": digit})
        assert page.status_code == 200 and message in page.get_data(as_text=True)
    assert client.post(url, data={**form.data, "back_digit": "*"}).status_code == 302


def test_none_as_an_optional_target_kind_saves_no_target(client: FlaskClient, factory: sessionmaker) -> None:
    """"(none)" posts empty strings for a target's four columns: stored as no target."""
    dep_id = demo_id(factory, db.Department, extension="300")
    url = "/admin/department/edit/?id=%d" % dep_id
    form = scrape(client, url)
    blank = {"no_answer_kind": "", "no_answer_ref_id": "", "no_answer_number": "", "no_answer_sound": ""}
    page = client.post(url, data={**form.data, **blank})
    assert page.status_code == 302, page.get_data(as_text=True)
    with factory() as s:
        dep = s.get(db.Department, dep_id)
        assert (dep.no_answer_kind, dep.no_answer_ref_id, dep.no_answer_number, dep.no_answer_sound) == (None,) * 4
    menu_url = "/admin/menu/edit/?id=%d" % demo_id(factory, db.VoiceMenu, name="Main")
    form = scrape(client, menu_url)
    blank = {"default_kind": "", "default_ref_id": "", "default_number": "", "default_sound": ""}
    assert client.post(menu_url, data={**form.data, **blank}).status_code == 302


def test_queue_announcement_interval_out_of_range_is_refused_at_its_field(client: FlaskClient, factory: sessionmaker) -> None:
    url = "/admin/department/edit/?id=%d" % demo_id(factory, db.Department, extension="300")
    form = scrape(client, url)
    page = client.post(url, data={**form.data, "queue_announce_every": "3"})
    text = page.get_data(as_text=True)
    assert page.status_code == 200 and "at least 5" in text
    at = text.index('id="queue_announce_every"')
    assert "is-invalid" in text[at - 80:at + 200] and "at least 5" in text[at:at + 800], text[at - 300:at + 800]
    assert client.post(url, data={**form.data, "queue_announce_every": "45"}).status_code == 302
