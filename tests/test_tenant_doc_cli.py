"""pbx-tenant import / export / validate / list through main([...]) on a SQLite file."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from orchestrator.tenant_cli import main

DEMO = Path(__file__).resolve().parents[1] / "orchestrator" / "demo" / "demo-tenant.yaml"


@pytest.fixture(autouse=True)
def database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = "sqlite:///%s" % (tmp_path / "cli.sqlite3")
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("PBX_DATA_DIR", str(tmp_path))
    return url


def test_import_list_export_replace(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["import", str(DEMO)]) == 0
    assert "imported tenant demo.pbx.local" in capsys.readouterr().out
    assert main(["list"]) == 0
    listing = capsys.readouterr().out
    assert "demo.pbx.local\tDemo Trading LLC\tenabled" in listing and "5 employees\t3 numbers" in listing

    assert main(["export", "demo.pbx.local"]) == 0
    exported = capsys.readouterr().out
    assert yaml.safe_load(exported)["tenant"]["sip_domain"] == "demo.pbx.local"
    assert "sip_password" not in exported
    out = tmp_path / "secret.yaml"
    assert main(["export", "DEMO.pbx.local", "--with-secrets", "-o", str(out)]) == 0
    assert all(len(e["sip_password"]) >= 20 for e in yaml.safe_load(out.read_text())["employees"])

    assert main(["import", str(DEMO)]) == 1  # exists already
    assert "already exists" in capsys.readouterr().err
    assert main(["import", str(out), "--replace"]) == 0
    assert main(["export", "nowhere.example"]) == 1


def test_validate_prints_file_line_field_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(DEMO)]) == 0
    bad = tmp_path / "bad.yaml"
    bad.write_text(DEMO.read_text().replace("timezone: Europe/Moscow", "timezone: Europe/Mowcow")
                   .replace('number: "+74950000002"', 'number: "+7495"'))
    assert main(["validate", str(bad)]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == [
        "%s:7: tenant.timezone: unknown IANA time zone 'Europe/Mowcow' (e.g. Europe/Moscow, UTC)" % bad,
        "%s:97: numbers[1].number: '+7495' is not a valid phone number: write it in E.164 form, "
        "e.g. \"+74951234567\" (in quotes)" % bad,
    ]
    assert main(["import", str(bad)]) == 1  # the same errors, nothing imported
    capsys.readouterr()
    assert main(["list"]) == 0
    assert capsys.readouterr().out == ""
