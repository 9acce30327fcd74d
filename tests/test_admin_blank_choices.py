"""Optional pickers offer a readable empty choice: Flask-Admin's blank choice of a
nullable relation is the option value "__None", and without a ``blank_text`` its text is
"__None" too (the number's schedule, an account's company). Every create and edit form,
for the operator and a tenant admin."""
from __future__ import annotations

import re

import pytest
from flask import Flask
from sqlalchemy import select
from sqlalchemy.orm import sessionmaker

from orchestrator.db import schema as db
from tests.test_admin_accounts import app, factory, logged_in  # noqa: F401 - fixtures
from tests.test_admin_isolation import admin_views, scrape

OPTION = re.compile(r'<option[^>]*value="__None"[^>]*>([^<]*)</option>')


def blank_choices(html: str) -> list[str]:
    """The texts of the forms' blank choices."""
    return list(OPTION.findall(html))


@pytest.mark.parametrize("username,password", [("operator", "operator-secret-1"), ("a-admin", None)])
def test_no_form_shows_the_text___None(app: Flask, factory: sessionmaker, username: str,
                                       password: str | None) -> None:
    client = logged_in(app, username, password)
    with factory() as s:
        number_id = s.scalars(select(db.PhoneNumber.id).order_by(db.PhoneNumber.id)).first()
    seen: dict[str, list[str]] = {}
    for endpoint in admin_views(app):
        for url in ("/admin/%s/new/" % endpoint, "/admin/%s/edit/?id=%d" % (endpoint, number_id or 0)):
            response = client.get(url)
            if response.status_code == 200:
                seen[url] = blank_choices(response.get_data(as_text=True))
    shown = {url: texts for url, texts in seen.items() if any("__None" in t for t in texts)}
    assert shown == {}
    assert "(no schedule of its own: the company schedule)" in seen["/admin/number/new/"]
    assert "(no schedule of its own: the company schedule)" in seen["/admin/number/edit/?id=%d" % number_id]
    if username == "operator":
        assert "(no company: operator accounts)" in seen["/admin/account/new/"]


def test_the_empty_schedule_choice_still_saves_no_schedule(app: Flask, factory: sessionmaker) -> None:
    client = logged_in(app, "a-admin")
    with factory() as s:
        number = s.scalars(select(db.PhoneNumber).join(db.Tenant)
                           .where(db.Tenant.sip_domain == "demo.pbx.local").order_by(db.PhoneNumber.id)).first()
        schedule = s.scalars(select(db.Schedule.id).where(db.Schedule.tenant_id == number.tenant_id)).first()
        assert schedule is not None
        number_id = number.id
    url = "/admin/number/edit/?id=%d" % number_id
    form = scrape(client, url)
    form.data["schedule"] = str(schedule)
    assert client.post(url, data=form.data).status_code == 302
    form = scrape(client, url)
    form.data["schedule"] = "__None"
    assert client.post(url, data=form.data).status_code == 302
    with factory() as s:
        assert s.get(db.PhoneNumber, number_id).schedule_id is None
