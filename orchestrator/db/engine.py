"""Engines and session factories: the one place that knows driver options."""
from __future__ import annotations

from typing import Any

from sqlalchemy import URL, Engine, create_engine, event, make_url
from sqlalchemy.orm import sessionmaker

from orchestrator.db import versioning
from orchestrator.db.versioning import Publisher


def _sqlite_pragmas(dbapi_connection: Any, connection_record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


def normalize_url(url: str) -> URL:
    """``postgresql://`` means psycopg2 here (SQLAlchemy 2.1 would pick psycopg 3)."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg2")
    return parsed


def make_engine(url: str | URL, **kwargs: Any) -> Engine:
    """SQLite: foreign keys enforced on every connection. PostgreSQL (psycopg2): pre-ping
    pooled connections so a restarted server does not fail the first query."""
    url = normalize_url(str(url) if isinstance(url, str) else url.render_as_string(hide_password=False))
    if url.get_backend_name() == "sqlite":
        engine = create_engine(url, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(url, **kwargs)


def make_session_factory(engine: Engine) -> sessionmaker:
    """Sessions that bump routing versions on flush and publish them after commit."""
    factory = sessionmaker(bind=engine, expire_on_commit=False)
    versioning.install(factory)
    return factory


def add_change_publisher(session_factory: sessionmaker, fn: Publisher) -> None:
    """Call ``fn(changed: dict[tenant_id, new_version], index_version: int | None)`` after
    every commit that changed routing data."""
    versioning.add_change_publisher(session_factory, fn)
