"""The department form in groups (who, how they ring, when nobody answers, queue and
callback: Flask-Admin ``form_rules`` / ``FieldSet``) with strategies in words."""
from __future__ import annotations

import re

import pytest
from flask import Flask
from flask.testing import FlaskClient
from flask_admin.form import rules
from sqlalchemy import select
from sqlalchemy.orm import sessionmaker

from admin.departments import GROUPS, STRATEGY_WORDS, grouped_rules
from orchestrator.core.model import Strategy
from orchestrator.db import schema as db
from tests.test_admin_isolation import scrape
from tests.admin_env import app_for, seed, signed_in



@pytest.fixture
def factory(migrated_pg: sessionmaker) -> sessionmaker:
    return seed(migrated_pg, with_b=False)


@pytest.fixture
def app(factory: sessionmaker) -> Flask:
    return app_for(factory)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return signed_in(app)


def sales(factory: sessionmaker) -> int:
    with factory() as s:
        return s.scalars(select(db.Department.id).where(db.Department.extension == "200")).one()


def test_every_strategy_has_words() -> None:
    assert set(STRATEGY_WORDS) == {s.value for s in Strategy}
    assert all(name and len(line) < 140 and "_" not in name for name, line in STRATEGY_WORDS.values())


def test_form_is_grouped_and_keeps_every_field(app: Flask, client: FlaskClient, factory: sessionmaker) -> None:
    url = "/admin/department/edit/?id=%d" % sales(factory)
    page = client.get(url).get_data(as_text=True)
    legends = re.findall(r"<h3>\s*(.*?)\s*</h3>", page)
    assert legends[:4] == ["Who", "How they ring", "When nobody answers", "Queue and callback"], legends
    view = next(v for v in app.extensions["admin"][0]._views if getattr(v, "endpoint", "") == "department")
    shown = set(scrape(client, url).data) | set(scrape(client, url).options)
    for name in view.form_columns:
        if name not in ("tenant", "members"):  # tenant: operators only; members: inline rows
            assert name in shown or 'name="%s"' % name in page, name
    assert "members-0-employee" in shown
    assert client.post(url, data=scrape(client, url).data).status_code == 302  # saved as shown


def test_strategies_are_offered_and_listed_in_words(client: FlaskClient, factory: sessionmaker) -> None:
    url = "/admin/department/edit/?id=%d" % sales(factory)
    page = client.get(url).get_data(as_text=True)
    assert "All at once: every available member&#39;s phone rings together" in page
    assert "Longest free first: one by one" in page and ">ring_all<" not in page
    form = scrape(client, url)
    assert form.data["strategy"] == "ring_all"
    form.data["strategy"] = "longest_idle"
    assert client.post(url, data=form.data).status_code == 302
    with factory() as s:
        assert s.get(db.Department, sales(factory)).strategy in (Strategy.LONGEST_IDLE, "longest_idle")
    listing = client.get("/admin/department/").get_data(as_text=True)
    start = listing.index("</thead>", listing.index("column-header"))  # the list's rows
    rows = re.sub(r"<[^>]+>", "", listing[start:listing.index("</table>", start)])
    assert "Longest free first" in rows and "longest_idle" not in rows and "ring_all" not in rows


def test_a_field_added_later_is_never_dropped_from_the_groups() -> None:
    got = grouped_rules(["name", "strategy", "queue_new_setting", "brand_new", "no_answer_kind"])
    assert all(isinstance(r, rules.FieldSet) for r in got[:-1]) and got[-1].visible_fields == ["csrf_token"]
    flat = {r.rules[0].default_args["text"]: [f.field_name for f in r.rules[1:]] for r in got[:-1]}
    assert flat == {"Who": ["name"], "How they ring": ["strategy"], "When nobody answers": ["no_answer_kind"],
                    "Queue and callback": ["queue_new_setting"], "More": ["brand_new"]}
    assert [t for t, _ in GROUPS][:4] == ["Who", "How they ring", "When nobody answers", "Queue and callback"]
