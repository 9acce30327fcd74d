"""Import/export of tenant documents: the demo imports, round-trips, replaces in place;
numbers of other tenants and duplicate tenants are refused (SQLite and PostgreSQL)."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest
import yaml
from sqlalchemy import func, select
from sqlalchemy.orm import sessionmaker

from orchestrator.db import schema as db
from orchestrator.db.engine import make_engine, make_session_factory
from orchestrator.db.migrate import upgrade
from orchestrator.errors import TenantDataError
from orchestrator.tenant_doc import export_tenant, import_tenant, validate
from orchestrator.tenant_doc.source import parse

DEMO_PATH = Path(__file__).resolve().parents[1] / "orchestrator" / "demo" / "demo-tenant.yaml"
DEMO = DEMO_PATH.read_text()
OTHER = """\
tenant:
  name: Other LLC
  sip_domain: other.example
employees:
  - {name: Solo, extension: "101"}
numbers:
  - number: "+74950000002"
    work: {employee: "101"}
"""


@pytest.fixture(params=["sqlite", "postgresql"])
def factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sessionmaker]:
    url = (
        "sqlite:///%s" % (tmp_path / "d.sqlite3") if request.param == "sqlite"
        else request.getfixturevalue("fresh_pg_url")
    )
    upgrade(url)
    engine = make_engine(url)
    yield make_session_factory(engine)
    engine.dispose()


def _import(factory: sessionmaker, text: str, **kw: bool) -> int:
    with factory.begin() as s:
        return import_tenant(s, text, **kw)


def _export(factory: sessionmaker, tid: int, **kw: bool) -> str:
    with factory() as s:
        return export_tenant(s, tid, **kw)


def test_demo_document_is_valid() -> None:
    assert validate(parse(DEMO)) == []


def test_demo_imports_and_round_trips(factory: sessionmaker) -> None:
    tid = _import(factory, DEMO)
    first = _export(factory, tid)
    data = yaml.safe_load(first)
    assert data["tenant"]["sip_domain"] == "demo.pbx.local"
    assert [e["extension"] for e in data["employees"]] == ["101", "102", "103", "104", "105"]
    assert data["numbers"][2] == {"number": "+74950000003", "mode": "schedule", "work": {"menu": "Main"},
                                  "after_hours": {"voicemail": "Sales voicemail"}}
    assert "sip_password" not in first  # secrets only when asked
    assert validate(parse(first)) == []
    # export(import(x)) is stable: replacing with the export changes nothing
    _import(factory, first, replace=True)
    assert _export(factory, tid) == first
    # and into a brand-new tenant it reads back the same
    other_domain = first.replace("demo.pbx.local", "copy.pbx.local")
    other_domain = other_domain.replace("+7495000000", "+7495111000")
    copy = _import(factory, other_domain)
    assert _export(factory, copy) == other_domain


def test_passwords_generated_on_import_and_exported_only_with_secrets(factory: sessionmaker) -> None:
    tid = _import(factory, DEMO)
    with factory() as s:
        passwords = [e.sip_password for e in s.scalars(select(db.Employee).order_by(db.Employee.extension))]
    assert len(set(passwords)) == 5 and all(len(p) >= 20 for p in passwords)
    secret = _export(factory, tid, with_secrets=True)
    assert [e["sip_password"] for e in yaml.safe_load(secret)["employees"]] == passwords
    # re-import of the secret export keeps them; import without passwords keeps the existing ones
    _import(factory, secret, replace=True)
    _import(factory, DEMO, replace=True)
    with factory() as s:
        assert [e.sip_password for e in s.scalars(select(db.Employee).order_by(db.Employee.extension))] == passwords


def test_replace_updates_in_place_keeping_ids(factory: sessionmaker) -> None:
    tid = _import(factory, DEMO)
    with factory() as s:
        ids = {e.extension: e.id for e in s.scalars(select(db.Employee))}
        version = s.get(db.Tenant, tid).routing_version
    changed = (DEMO.replace("Maria Ivanova", "Maria Sidorova")
               .replace('  - name: Alexey Popov\n    extension: "105"\n    email: alexey.popov@demo.example\n'
                        '    role: restricted\n', '')
               .replace('      - employee: "105"\n', '')
               .replace('"2": {department: "300"}', '"2": {department: "300"}\n      "0": {employee: "102"}')
               .replace("name: Sales\n", "name: Sales team\n"))
    assert _import(factory, changed, replace=True) == tid
    with factory() as s:
        now = {e.extension: (e.id, e.name) for e in s.scalars(select(db.Employee))}
        assert now == {x: (ids[x], n) for x, n in [("101", "Ivan Petrov"), ("102", "Maria Sidorova"),
                                                   ("103", "Sergey Smirnov"), ("104", "Olga Kuznetsova")]}
        assert s.get(db.Tenant, tid).routing_version > version
        assert s.scalar(select(func.count()).select_from(db.Tenant)) == 1
    out = yaml.safe_load(_export(factory, tid))
    assert out["menus"][0]["options"] == {"0": {"employee": "102"}, "1": {"department": "200"},
                                          "2": {"department": "300"}}
    assert out["departments"][0]["name"] == "Sales team"


def test_number_owned_by_another_tenant_is_refused_with_its_line(factory: sessionmaker) -> None:
    _import(factory, DEMO)
    with pytest.raises(TenantDataError) as info:
        _import(factory, OTHER)
    (error,) = info.value.errors
    assert error.field == "numbers[0].number"
    assert error.line == 7
    assert "another tenant (demo.pbx.local)" in error.message
    with factory() as s:  # nothing of the refused tenant was written
        assert s.scalar(select(func.count()).select_from(db.Tenant)) == 1


def test_existing_tenant_needs_replace_and_replace_needs_a_tenant(factory: sessionmaker) -> None:
    _import(factory, DEMO)
    with pytest.raises(TenantDataError, match="already exists"):
        _import(factory, DEMO)
    with pytest.raises(TenantDataError, match="no tenant other.example to replace"):
        _import(factory, OTHER.replace("+74950000002", "+74950000009"), replace=True)


def test_invalid_document_is_not_imported(factory: sessionmaker) -> None:
    with pytest.raises(TenantDataError) as info:
        _import(factory, DEMO.replace('      - employee: "103"', '      - employee: "109"'))
    assert [(e.field, e.line) for e in info.value.errors] == [("departments[0].members[2].employee", 45)]
    assert DEMO.splitlines()[44].strip() == '- employee: "103"'


def test_queue_announcements_round_trip(factory: sessionmaker) -> None:
    text = OTHER + """\
departments:
  - name: Desk
    extension: "200"
    queue: {music: local_stream://moh, announcement: ivr/ivr-hold_connect_call.wav, announce_position: true,
            announce_every: 45}
    members:
      - {employee: "101"}
"""
    tid = _import(factory, text)
    (dep,) = yaml.safe_load(_export(factory, tid))["departments"]
    assert dep["queue"] == {"music": "local_stream://moh", "announcement": "ivr/ivr-hold_connect_call.wav",
                            "announce_position": True, "announce_every": 45}
    _import(factory, text.replace("announce_every: 45", "announce_every: 30"), replace=True)
    (dep,) = yaml.safe_load(_export(factory, tid))["departments"]
    assert "announce_every" not in dep["queue"]  # the default is left out, like the other fields
