"""``Settings.check()`` with PBX_ENV=production refuses unsafe settings with a message
naming the variable and what to do; ``repr(settings)`` never shows a secret."""
from __future__ import annotations

import secrets
from dataclasses import replace

import pytest

from orchestrator.config import Settings, from_env
from orchestrator.errors import ConfigError

GOOD = Settings(
    env="production",
    database_url="postgresql://pbx:db-password-1@db/pbx",
    redis_url="redis://redis:6379/0",
    esl_password="Esl-" + secrets.token_urlsafe(16),
    admin_secret_key=secrets.token_urlsafe(48),
    admin_password="a-long-operator-password",
    directory_password=secrets.token_urlsafe(24),
)


def test_good_production_settings_pass() -> None:
    assert GOOD.check() is GOOD


@pytest.mark.parametrize("changes, variable, hint", [
    ({"esl_password": ""}, "PBX_ESL_PASSWORD", "shorter than 12"),
    ({"esl_password": "short1"}, "PBX_ESL_PASSWORD", "shorter than 12"),
    ({"esl_password": "cluecon"}, "PBX_ESL_PASSWORD", "ClueCon"),
    ({"esl_password": "CLUECON"}, "PBX_ESL_PASSWORD", "ClueCon"),
    ({"esl_password": "ClueCon-2026-prod"}, "PBX_ESL_PASSWORD", "ClueCon"),
    ({"database_url": "sqlite:////var/lib/pbx/pbx.sqlite3"}, "DATABASE_URL", "PostgreSQL"),
    ({"database_url": "SQLite+pysqlite:///x.db"}, "DATABASE_URL", "PostgreSQL"),
    ({"admin_secret_key": "x" * 64}, "PBX_ADMIN_SECRET_KEY", "not random"),
    ({"admin_secret_key": "ab" * 32}, "PBX_ADMIN_SECRET_KEY", "not random"),
    ({"admin_secret_key": "abcdefghijklmnop" * 3}, "PBX_ADMIN_SECRET_KEY", "not random"),
    ({"admin_secret_key": "short"}, "PBX_ADMIN_SECRET_KEY", "at least 32"),
])
def test_production_refuses(changes: dict[str, str], variable: str, hint: str) -> None:
    with pytest.raises(ConfigError) as refused:
        replace(GOOD, **changes).check()
    message = str(refused.value)
    assert variable in message and hint in message
    for secret in changes.values():
        if len(secret) > 6:
            assert secret not in message  # the message names the problem, not the value


def test_development_accepts_the_defaults() -> None:
    assert from_env({}).check().esl_password == "ClueCon"


def test_repr_hides_secrets_and_url_passwords() -> None:
    settings = replace(GOOD, smtp_password="smtp-secret-9")
    shown = repr(settings) + str(settings) + "%s" % (settings,)
    for secret in (settings.esl_password, settings.admin_secret_key, settings.admin_password,
                   settings.directory_password, "smtp-secret-9", "db-password-1"):
        assert secret not in shown
    assert "postgresql://pbx:***@db/pbx" in shown and "esl_password='***'" in shown
    assert "redis://redis:6379/0" in shown  # no password: shown as it is
