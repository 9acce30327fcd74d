"""``pbx-tenant export --with-secrets -o FILE`` creates a file only its owner can read,
in one step, and never writes over an existing file."""
from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import yaml

from orchestrator.tenant_cli import main

DEMO = Path(__file__).resolve().parents[1] / "orchestrator" / "demo" / "demo-tenant.yaml"


@pytest.fixture(autouse=True)
def database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "sqlite:///%s" % (tmp_path / "cli.sqlite3"))
    monkeypatch.setenv("PBX_DATA_DIR", str(tmp_path))
    assert main(["import", str(DEMO)]) == 0


def test_export_with_secrets_is_created_0600_even_with_a_permissive_umask(tmp_path: Path) -> None:
    out = tmp_path / "secrets.yaml"
    old = os.umask(0o000)  # a umask that would leave write_text's file 0666
    try:
        assert main(["export", "demo.pbx.local", "--with-secrets", "-o", str(out)]) == 0
    finally:
        os.umask(old)
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert all(e["sip_password"] for e in yaml.safe_load(out.read_text())["employees"])


def test_export_with_secrets_refuses_an_existing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "taken.yaml"
    out.write_text("keep me")
    out.chmod(0o644)
    assert main(["export", "demo.pbx.local", "--with-secrets", "-o", str(out)]) == 1
    assert "exists already" in capsys.readouterr().err
    assert out.read_text() == "keep me"
