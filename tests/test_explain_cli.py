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
    assert "voicemail: voicemail Sales voicemail" in text and "box e-mail: sales@demo.example" in text


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
