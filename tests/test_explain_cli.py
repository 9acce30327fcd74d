"""pbx-explain through main([...]) against the demo tenant in a real PostgreSQL database."""
from __future__ import annotations

import io
import json

import pytest

from orchestrator.explain_cli import main
from tests.pg_demo import DEMO_DOMAIN, ensure_demo_tenant


@pytest.fixture(autouse=True)
def database(pg_server_url: str, tmp_path, monkeypatch: pytest.MonkeyPatch) -> str:
    ensure_demo_tenant(pg_server_url)
    monkeypatch.setenv("DATABASE_URL", pg_server_url)
    monkeypatch.setenv("PBX_DATA_DIR", str(tmp_path))
    return pg_server_url


def run(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    return main(list(argv), out=out), out.getvalue()


def test_saturday_evening_goes_to_the_after_hours_voicemail() -> None:
    code, text = run("--tenant", DEMO_DOMAIN, "--from", "+78121234567", "--to", "+74950000003", "--at", "2026-11-28 21:00")
    assert code == 0, text
    assert "Saturday 2026-11-28 21:00 MSK" in text
    assert "closed: no work hours on Saturday" in text
    assert "number +74950000003: after hours (Office hours)" in text
    assert "voicemail: voicemail Sales voicemail" in text and "e-mailed to: sales@demo.example, ivan.petrov@demo.example" in text


def test_tuesday_morning_menu_as_json() -> None:
    code, text = run("--tenant", DEMO_DOMAIN.upper(), "--from", "+78121234567", "--to", "74950000003",
                     "--at", "2026-11-24 11:00", "--json")
    assert code == 0, text
    data = json.loads(text)
    assert data["target"] == "voice menu Main"
    (menu,) = data["steps"]
    assert [(o["key"], o["target"]) for o in menu["options"]] == [
        ("1", "department 200 (Sales)"), ("2", "department 300 (Support)"), ("no input", "department 200 (Sales)"),
    ]
    sales_ring = menu["options"][0]["steps"][0]
    assert [leg["who"] for leg in sales_ring["legs"]] == ["Ivan Petrov (101)", "Maria Ivanova (102)", "Sergey Smirnov (103)"]


def test_holiday_and_unknown_number() -> None:
    code, text = run("--tenant", DEMO_DOMAIN, "--to", "+74950000003", "--at", "2026-01-01 11:00")
    assert code == 0 and "closed all day: New Year" in text
    code, text = run("--tenant", DEMO_DOMAIN, "--to", "+74990000000", "--at", "2026-11-24 11:00")
    assert code == 0 and "number +74990000000 is not assigned" in text and "UNALLOCATED_NUMBER" in text


def test_errors_say_what_to_do(capsys: pytest.CaptureFixture[str]) -> None:
    assert run("--tenant", "nobody.example", "--to", "+74950000003")[0] == 1
    assert "no tenant with SIP domain nobody.example" in capsys.readouterr().err
    assert run("--tenant", DEMO_DOMAIN, "--to", "+74950000003", "--at", "Saturday")[0] == 2
    assert "--at must look like" in capsys.readouterr().err


def test_demo_caller_rules_block_list_and_foreign_callers() -> None:
    code, text = run("--tenant", DEMO_DOMAIN, "--from", "+79990000000", "--to", "+74950000001", "--at", "2026-11-24 11:00")
    assert code == 0, text
    assert "caller rule 1 'Block list' (list of 1 number, block): matches" in text
    assert "refused: caller blocked by rule 'Block list'" in text and "(CALL_REJECTED)" in text
    code, text = run("--tenant", DEMO_DOMAIN, "--from", "+493012345678", "--to", "+74950000001", "--at", "2026-11-24 11:00")
    assert code == 0 and "Germany (DE), Berlin" in text and "target: department 300 (Support)" in text


CRM_TENANT = """\
tenant: {name: CRM Co, sip_domain: crm-explain.example, timezone: Europe/Moscow}
employees:
  - {name: Anna, extension: "101"}
  - {name: Boris, extension: "102"}
  - {name: Vera, extension: "103"}
departments:
  - name: Managers
    extension: "400"
    members: [{employee: "101"}, {employee: "102"}, {employee: "103"}]
numbers:
  - {number: "+74957000001", work: {department: "400"}}
caller_rules:
  - {name: Last agent, match: last_agent, days: 30}
  - name: CRM
    match: crm
    crm: {url: "%s", timeout_ms: 300}
    target: {department: "400"}
"""


def test_lookups_ask_the_call_history_and_a_real_crm(pg_server_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The command asks what a live call would: the call history (nobody talked with the
    caller), then the CRM, here a real HTTP server on loopback that knows one caller and
    is slow for another (loopback: allowed as PBX_CRM_ALLOW_PRIVATE=1 allows it)."""
    monkeypatch.setenv("PBX_CRM_ALLOW_PRIVATE", "1")
    from datetime import datetime, timezone

    import gevent
    from gevent.pywsgi import WSGIServer
    from sqlalchemy import select

    from orchestrator.db.engine import make_engine, make_session_factory
    from orchestrator.db.models import Employee, Tenant
    from orchestrator.db.queries import record_call
    from orchestrator.tenant_doc import import_tenant

    def crm(environ, start_response):
        caller = environ.get("QUERY_STRING", "")
        if "79161112233" in caller:
            gevent.sleep(2)
        start_response("200 OK", [("Content-Type", "application/json")])
        return [b'{"extension": "103"}' if "78121234567" in caller else b"{}"]

    server = WSGIServer(("127.0.0.1", 0), crm, log=None, error_log=None)
    server.start()
    engine = make_engine(pg_server_url)
    try:
        with make_session_factory(engine).begin() as s:
            if s.scalar(select(Tenant.id).where(Tenant.sip_domain == "crm-explain.example")) is None:
                tid = import_tenant(s, CRM_TENANT % ("http://127.0.0.1:%d/who" % server.server_port))
                boris = s.scalar(select(Employee.id).where(Employee.tenant_id == tid, Employee.extension == "102"))
                record_call(s, tid, call_uuid="explain-history-1", direction="inbound", caller="+74991234567",
                            destination="+74957000001", started_at=datetime.now(timezone.utc), answered_by_employee_id=boris)
        code, text = run("--tenant", "crm-explain.example", "--from", "+78121234567", "--to", "+74957000001")
        assert code == 0, text
        assert "no answered call from this caller in 30 days; no fallback target, next rule" in text
        assert "CRM names extension 103, rings 103 (Vera) first" in text
        assert "target: employee 103 (Vera), then department 400 (Managers)" in text
        code, text = run("--tenant", "crm-explain.example", "--from", "+74991234567", "--to", "+74957000001")
        assert "last answered by employee #" in text and "target: employee 102 (Boris), then department 400" in text
        code, text = run("--tenant", "crm-explain.example", "--from", "+79161112233", "--to", "+74957000001")
        assert "CRM did not answer within 300 ms -> the rule's target" in text
        assert "1. ring: department 400 (Managers), ring all" in text  # unknown: every manager at once
        code, text = run("--tenant", "crm-explain.example", "--from", "+78121234567", "--to", "+74957000001",
                         "--no-lookups")
        assert "not looked up here" in text and "target: department 400 (Managers)" in text
    finally:
        engine.dispose()
        server.stop(timeout=1)
