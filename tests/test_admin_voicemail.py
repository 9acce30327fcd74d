"""Voicemail messages in the panel: read-only, scoped per tenant and per role (restricted
accounts: boxes their employee owns), filters by box and by the company's local day, the
recording served only to admins and the box's owners and only from the tenant's folder
under the recordings directory."""
from __future__ import annotations

import json
import re
from datetime import datetime, timezone
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
from orchestrator.tenant_doc import import_tenant
from tests.test_admin_isolation import B_DOC
from tests.test_admin_panel import DEMO, login

WAV = b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(range(32))
ACCOUNTS = {  # username: (role, employee extension)
    "a-admin": (db.AdminRole.TENANT_ADMIN, None),
    "maria": (db.AdminRole.USER, "102"),  # owns no box
    "ivan": (db.AdminRole.USER, "101"),  # owns Sales voicemail
    "olga": (db.AdminRole.RESTRICTED, "104"),  # owns Support voicemail
    "alexey": (db.AdminRole.RESTRICTED, "105"),  # owns no box
}


@pytest.fixture
def world(migrated_pg: sessionmaker, tmp_path: Path) -> Iterator[tuple[sessionmaker, dict[str, int], Path]]:
    """Messages: m1 Sales (13:00 Moscow), m2 Support (01:30 Moscow the next day), m3 Sales
    with its file outside the recordings directory, m4 Sales whose path climbs into B's
    folder, and B's own message; every file exists."""
    rec = tmp_path / "rec"
    f = migrated_pg
    ids: dict[str, int] = {}
    with f.begin() as s:
        a = import_tenant(s, DEMO)
        b = import_tenant(s, B_DOC)
        emp = {e.extension: e.id for e in s.scalars(select(db.Employee).where(db.Employee.tenant_id == a))}
        for name, (role, ext) in ACCOUNTS.items():
            s.add(db.AdminUser(username=name, role=role, tenant_id=a, employee_id=emp.get(ext or ""),
                               password_hash=generate_password_hash(name + "-secret")))
        boxes = {x.name: x.id for x in s.scalars(select(db.VoicemailBox))}
        ids.update({"a": a, "b": b, "sales": boxes["Sales voicemail"], "support": boxes["Support voicemail"],
                    "quixbox": boxes["Quixbox"]})
        outside = tmp_path / "outside" / "secret.wav"
        climbing = rec / str(a) / ".." / str(b) / str(boxes["Quixbox"]) / "quix-1.wav"
        rows = [
            ("m1", a, "sales", "+79990000001", datetime(2026, 3, 2, 10, 0), 18_400,
             rec / str(a) / str(boxes["Sales voicemail"]) / "m1.wav"),
            ("m2", a, "support", "+79990000002", datetime(2026, 3, 2, 22, 30), 65_000,
             rec / str(a) / str(boxes["Support voicemail"]) / "m2.wav"),
            ("m3", a, "sales", "+79990000003", datetime(2026, 3, 2, 11, 0), 1_000, outside),
            ("m4", a, "sales", "+79990000004", datetime(2026, 3, 2, 12, 0), 1_000, climbing),
            ("quix", b, "quixbox", "+79167770001", datetime(2026, 3, 2, 9, 0), 2_000, climbing),
        ]
        for key, tenant, box, caller, when, ms, path in rows:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            Path(path).write_bytes(WAV + key.encode())
            message = db.VoicemailMessage(tenant_id=tenant, box_id=ids[box], caller=caller, call_uuid=key,
                                          recording_path=str(path), duration_ms=ms,
                                          created_at=when.replace(tzinfo=timezone.utc))
            s.add(message)
            s.flush()
            ids[key] = message.id
    yield f, ids, rec


@pytest.fixture
def app(world: tuple) -> Flask:
    _, _, rec = world
    return create_app(Settings(admin_password="operator-secret-1", admin_secret_key="x" * 40,
                               recordings_dir=str(rec)), world[0])


def client_of(app: Flask, username: str) -> FlaskClient:
    client = app.test_client()
    login(client, username, "operator-secret-1" if username == "operator" else username + "-secret")
    return client


def box_options(page: str) -> set[str]:
    """The box filter's choices (Flask-Admin puts the filters in a JSON block)."""
    groups = json.loads(re.search(r'<div id="filter-groups-data" class="d-none">(.*?)</div>', page).group(1))
    return {label for item in groups["Box"] for _, label in item["options"]}


def callers(page: str) -> set[str]:
    return set(re.findall(r"\+7999000000\d|\+79167770001", page))


def test_tenant_admin_lists_the_companys_messages(app: Flask, world: tuple) -> None:
    _, ids, _ = world
    client = client_of(app, "a-admin")
    page = client.get("/admin/voicemail/").get_data(as_text=True)
    assert callers(page) == {"+79990000001", "+79990000002", "+79990000003", "+79990000004"}
    assert "2026-03-02 13:00:00 MSK" in page and "0:18" in page and "1:05" in page
    assert "Sales voicemail" in page and "Support voicemail" in page and "Quix" not in page
    assert "/admin/voicemail/recording/?id=%d" % ids["m1"] in page
    recording = client.get("/admin/voicemail/recording/?id=%d" % ids["m1"])
    assert recording.status_code == 200 and recording.data == WAV + b"m1"
    assert recording.mimetype in ("audio/wav", "audio/x-wav")
    download = client.get("/admin/voicemail/recording/?id=%d&download=1" % ids["m1"])
    assert "attachment" in download.headers["Content-Disposition"]
    assert "voicemail-%d.wav" % ids["m1"] in download.headers["Content-Disposition"]
    for key in ("m3", "m4"):  # outside the recordings directory; climbing into tenant B's folder
        assert client.get("/admin/voicemail/recording/?id=%d" % ids[key]).status_code == 404
    assert page.count("not on this server") == 2
    for url in ("/admin/voicemail/details/?id=%d", "/admin/voicemail/recording/?id=%d"):
        assert client.get(url % ids["quix"]).status_code == 404
    for url in ("/admin/voicemail/new/", "/admin/voicemail/edit/?id=%d" % ids["m1"]):
        assert client.get(url).status_code in (302, 403, 404)


def test_filters_by_box_and_by_local_day(app: Flask, world: tuple) -> None:
    _, ids, _ = world
    client = client_of(app, "a-admin")
    page = client.get("/admin/voicemail/").get_data(as_text=True)
    assert box_options(page) == {"Sales voicemail", "Support voicemail"}
    support = client.get("/admin/voicemail/?flt0_0=%d" % ids["support"]).get_data(as_text=True)
    assert callers(support) == {"+79990000002"}
    other = client.get("/admin/voicemail/?flt0_0=%d" % ids["quixbox"]).get_data(as_text=True)
    assert callers(other) == set()
    # 22:30 UTC on 2 March is 01:30 on 3 March in Moscow
    assert callers(client.get("/admin/voicemail/?flt0_1=2026-03-03").get_data(as_text=True)) == {"+79990000002"}
    assert callers(client.get("/admin/voicemail/?flt0_1=2026-03-02").get_data(as_text=True)) == \
        {"+79990000001", "+79990000003", "+79990000004"}
    assert client.get("/admin/voicemail/?flt0_1=yesterday").status_code == 200  # not a date: no filter


def test_user_sees_the_list_but_hears_only_own_boxes(app: Flask, world: tuple) -> None:
    _, ids, _ = world
    maria = client_of(app, "maria")
    page = maria.get("/admin/voicemail/").get_data(as_text=True)
    assert callers(page) == {"+79990000001", "+79990000002", "+79990000003", "+79990000004"}
    assert "box owners and admins only" in page and "/admin/voicemail/recording/" not in page
    assert maria.get("/admin/voicemail/recording/?id=%d" % ids["m1"]).status_code == 403
    ivan = client_of(app, "ivan")
    assert ivan.get("/admin/voicemail/recording/?id=%d" % ids["m1"]).data == WAV + b"m1"  # his box
    assert ivan.get("/admin/voicemail/recording/?id=%d" % ids["m2"]).status_code == 403  # Support's


def test_restricted_sees_only_boxes_their_employee_owns(app: Flask, world: tuple) -> None:
    _, ids, _ = world
    olga = client_of(app, "olga")
    page = olga.get("/admin/voicemail/").get_data(as_text=True)
    assert callers(page) == {"+79990000002"}
    assert box_options(page) == {"Support voicemail"}
    assert olga.get("/admin/voicemail/details/?id=%d" % ids["m1"]).status_code == 404
    assert olga.get("/admin/voicemail/recording/?id=%d" % ids["m1"]).status_code == 404
    assert olga.get("/admin/voicemail/recording/?id=%d" % ids["m2"]).data == WAV + b"m2"
    assert callers(olga.get("/admin/voicemail/?flt0_0=%d" % ids["sales"]).get_data(as_text=True)) == set()
    alexey = client_of(app, "alexey")
    assert callers(alexey.get("/admin/voicemail/").get_data(as_text=True)) == set()


def test_operator_sees_every_tenant(app: Flask, world: tuple) -> None:
    _, ids, _ = world
    operator = client_of(app, "operator")
    page = operator.get("/admin/voicemail/").get_data(as_text=True)
    assert "+79167770001" in page and "Quixcorp" in page and "Quixbox" in page
    assert box_options(page) == {"Sales voicemail (Demo Trading LLC)", "Support voicemail (Demo Trading LLC)",
                                 "Quixbox (Quixcorp)"}
    # B's row names a path through A's folder that resolves inside B's own: B's file
    assert operator.get("/admin/voicemail/recording/?id=%d" % ids["quix"]).data == WAV + b"quix"
