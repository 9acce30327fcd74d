"""The department's callback settings (migration 0006): the apology and the client's
prompt (sounds of the grammar), the attempts to reach the client and the delay between
them - in tenant documents (validation, import, export), the routing snapshot and the
admin panel's department form."""
from __future__ import annotations

import pytest
import yaml
from flask import Flask
from sqlalchemy.orm import sessionmaker

from orchestrator.db import schema as db
from orchestrator.db.snapshot import load_tenant_snapshot
from orchestrator.tenant_doc import parse, validate
from tests.test_tenant_doc_import import OTHER, _export, _import, factory  # noqa: F401 - the fixture
from tests.test_tenant_doc_validation import BASE

DESK = OTHER + """\
voicemail_boxes:
  - {name: Late callers, extension: "801"}
departments:
  - name: Desk
    extension: "200"
    queue: {callback_allowed: true, callback_apology: "tenant:sorry.wav", callback_prompt: ivr/ivr-thank_you.wav,
            callback_attempts: 5, callback_retry_delay: 120, callback_voicemail: Late callers}
    members:
      - {employee: "101"}
"""


def _errors(text: str) -> list[tuple[str, str]]:
    return [(e.field, e.message) for e in validate(parse(text))]


@pytest.mark.parametrize("queue, field, words", [
    ('{callback_apology: "ivr/x.wav ${system(id)}"}', "departments[0].queue.callback_apology", "'$'"),
    ("{callback_prompt: /etc/passwd.wav}", "departments[0].queue.callback_prompt", "absolute paths"),
    ("{callback_attempts: 0}", "departments[0].queue.callback_attempts", "at least 1"),
    ("{callback_attempts: 11}", "departments[0].queue.callback_attempts", "at most 10"),
    ("{callback_retry_delay: 3601}", "departments[0].queue.callback_retry_delay", "at most 3600"),
    ("{callback_retry_delay: soon}", "departments[0].queue.callback_retry_delay", "whole number"),
    ("{callback_voicemail: Nobody's box}", "departments[0].queue.callback_voicemail", "no voicemail box \"Nobody's box\""),
])
def test_bad_callback_settings_are_refused_with_the_field_named(queue: str, field: str, words: str) -> None:
    text = BASE.replace("    no_answer: {voicemail: Sales box}\n", "    no_answer: {voicemail: Sales box}\n    queue: %s\n" % queue)
    ((got_field, message),) = _errors(text)
    assert got_field == field and words in message, message


def test_callback_settings_round_trip_and_reach_the_snapshot(factory: sessionmaker) -> None:  # noqa: F811
    tid = _import(factory, DESK)
    (dep,) = yaml.safe_load(_export(factory, tid))["departments"]
    assert dep["queue"] == {"callback_allowed": True, "callback_apology": "tenant:sorry.wav",
                            "callback_prompt": "ivr/ivr-thank_you.wav", "callback_attempts": 5, "callback_retry_delay": 120,
                            "callback_voicemail": "Late callers"}
    with factory() as s:
        snap = load_tenant_snapshot(s, tid)
    (core,) = snap.departments.values()
    q = core.queue
    assert (q.callback_apology, q.callback_prompt, q.callback_attempts, q.callback_retry_delay) == (
        "tenant:sorry.wav", "ivr/ivr-thank_you.wav", 5, 120)
    assert snap.voicemail_boxes[q.callback_box_id].name == "Late callers"
    # --replace without the box: the department's reference goes first, then the box.
    _import(factory, DESK.replace("callback_attempts: 5, callback_retry_delay: 120, callback_voicemail: Late callers",
                                  "callback_attempts: 3").replace('  - {name: Late callers, extension: "801"}\n', ""),
            replace=True)
    (dep,) = yaml.safe_load(_export(factory, tid))["departments"]
    assert "callback_attempts" not in dep["queue"] and "callback_retry_delay" not in dep["queue"]  # defaults left out
    assert "callback_voicemail" not in dep["queue"]
    with factory() as s:
        (core,) = load_tenant_snapshot(s, tid).departments.values()
    assert (core.queue.callback_attempts, core.queue.callback_retry_delay, core.queue.callback_box_id) == (3, 60, None)


def test_the_department_form_edits_the_callback_settings_and_refuses_a_bad_sound(migrated_pg: sessionmaker) -> None:
    from sqlalchemy import select
    from werkzeug.security import generate_password_hash

    from admin.app import create_app
    from orchestrator.tenant_doc import import_tenant
    from tests.test_admin_isolation import login, scrape
    from tests.test_admin_panel import DEMO
    from tests.test_admin_validation import SETTINGS

    with migrated_pg.begin() as s:
        tid = import_tenant(s, DEMO)
        s.add(db.AdminUser(username="cb-admin", role=db.AdminRole.TENANT_ADMIN, tenant_id=tid,
                           password_hash=generate_password_hash("cb-admin-secret")))
    app: Flask = create_app(SETTINGS, migrated_pg)
    client = app.test_client()
    login(client, "cb-admin", "cb-admin-secret")
    with migrated_pg() as s:
        dep_id = s.scalars(select(db.Department.id).where(db.Department.tenant_id == tid, db.Department.extension == "200")).one()
    url = "/admin/department/edit/?id=%d" % dep_id
    form = scrape(client, url)
    for name in ("queue_callback_apology", "queue_callback_prompt", "queue_callback_attempts", "queue_callback_retry_delay"):
        assert name in form.data
    page = client.post(url, data={**form.data, "queue_callback_apology": "ivr/sorry.wav!/etc/shadow"})
    assert page.status_code == 200 and "callback_apology" in page.get_data(as_text=True)
    assert "it separates the files of a list" in page.get_data(as_text=True)
    with migrated_pg() as s:
        box = s.scalars(select(db.VoicemailBox.id).where(db.VoicemailBox.tenant_id == tid)).first()
    assert "queue_callback_box" in form.data and box is not None
    page = client.post(url, data={**form.data, "queue_callback_apology": "tenant:sorry.wav", "queue_callback_attempts": "4",
                                  "queue_callback_retry_delay": "90", "queue_callback_box": str(box)})
    assert page.status_code == 302, page.get_data(as_text=True)
    with migrated_pg() as s:
        dep = s.get(db.Department, dep_id)
        assert (dep.queue_callback_apology, dep.queue_callback_attempts, dep.queue_callback_retry_delay,
                dep.queue_callback_box_id) == ("tenant:sorry.wav", 4, 90, box)
