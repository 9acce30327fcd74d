"""Shared fixtures: a real PostgreSQL database and a real Redis, fresh for the tests.

PostgreSQL: ``PBX_TEST_PG_URL`` (default ``postgresql://postgres@127.0.0.1:5432/postgres``)
is the maintenance connection; each test session creates its own database
``pbx_test_<pid>`` and drops it at the end. Redis: ``PBX_TEST_REDIS_URL`` (default
``redis://127.0.0.1:6379/15``), flushed around every test that uses it.
``.ci/run`` installs and starts both when the machine lacks them.
"""
from __future__ import annotations

import contextlib
import os
import uuid
from typing import Iterator

import pytest

PG_ADMIN_URL = os.environ.get("PBX_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("PBX_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def _pg_admin_connect():
    import psycopg2

    try:
        conn = psycopg2.connect(PG_ADMIN_URL, connect_timeout=5)
    except psycopg2.OperationalError as exc:  # pragma: no cover - environment problem
        pytest.exit(
            "PostgreSQL is not reachable at %s (%s). Start it (.ci/run does) or set "
            "PBX_TEST_PG_URL." % (PG_ADMIN_URL, str(exc).strip()),
            returncode=3,
        )
    conn.autocommit = True
    return conn


def _with_db(url: str, dbname: str) -> str:
    base, _, _ = url.rpartition("/")
    return "%s/%s" % (base, dbname)


@contextlib.contextmanager
def _new_database(prefix: str) -> Iterator[str]:
    """Create an empty database, yield its URL, drop it afterwards."""
    name = "%s_%d_%s" % (prefix, os.getpid(), uuid.uuid4().hex[:8])
    conn = _pg_admin_connect()
    with conn.cursor() as cur:
        cur.execute('CREATE DATABASE "%s"' % name)
    try:
        yield _with_db(PG_ADMIN_URL, name)
    finally:
        with conn.cursor() as cur:
            cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
            cur.execute('DROP DATABASE IF EXISTS "%s"' % name)
        conn.close()


@pytest.fixture(scope="session")
def pg_server_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for this test session (URL)."""
    with _new_database("pbx_test") as url:
        yield url


@pytest.fixture
def fresh_pg_url() -> Iterator[str]:
    """A brand-new empty PostgreSQL database for one test (e.g. migrations)."""
    with _new_database("pbx_t") as url:
        yield url


@pytest.fixture
def redis_url() -> Iterator[str]:
    """URL of a real Redis database, flushed before and after the test."""
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_timeout=5)
    try:
        client.ping()
    except redis.RedisError as exc:  # pragma: no cover - environment problem
        pytest.exit(
            "Redis is not reachable at %s (%s). Start it (.ci/run does) or set "
            "PBX_TEST_REDIS_URL." % (REDIS_URL, exc),
            returncode=3,
        )
    client.flushdb()
    try:
        yield REDIS_URL
    finally:
        client.flushdb()
        client.close()


@pytest.fixture
def redis_client(redis_url: str):
    import redis

    client = redis.Redis.from_url(redis_url, socket_timeout=5, decode_responses=True)
    yield client
    client.close()


def pytest_sessionstart(session: pytest.Session) -> None:
    """The recorded FreeSWITCH transcripts are test data many tests replay: say clearly
    where they are expected instead of failing dozens of tests one by one."""
    from simulator.transcripts import transcripts_dir

    where = transcripts_dir()
    if not (where / "primitives").is_dir():
        pytest.exit(
            "FreeSWITCH transcripts not found at %s: they are part of the repository "
            "(tests/data/freeswitch-transcripts); restore them or set PBX_TRANSCRIPTS." % where,
            returncode=3,
        )


def pytest_collection_finish(session: pytest.Session) -> None:
    """Keep the garbage collector off the modules and test data loaded by collection, and
    collect as rarely as the product does (``orchestrator.cli.freeze_startup_heap``).

    The in-process orchestrator and simulator share this process: a full collection
    walking every imported module (the geocoder's tables, SQLAlchemy's mappers...) took
    ~90 ms with the hub stopped, which once landed between an answer and the LOSE_RACE
    of the other legs and failed a timing assertion of a test that was right."""
    from orchestrator.cli import freeze_startup_heap

    freeze_startup_heap()


@pytest.fixture
def migrated_pg(fresh_pg_url: str):
    """A session factory on a fresh PostgreSQL database migrated to the latest schema."""
    from orchestrator.db.engine import make_engine, make_session_factory
    from orchestrator.db.migrate import upgrade

    upgrade(fresh_pg_url)
    engine = make_engine(fresh_pg_url)
    yield make_session_factory(engine)
    engine.dispose()


@pytest.fixture(params=["postgresql", "sqlite"])
def empty_db_url(request: pytest.FixtureRequest, tmp_path) -> str:
    """URL of an empty database, once on PostgreSQL and once on a SQLite file."""
    if request.param == "sqlite":
        return "sqlite:///%s" % (tmp_path / "pbx.sqlite3")
    return request.getfixturevalue("fresh_pg_url")


@pytest.fixture
def migrated_any(empty_db_url: str):
    """A session factory on ``empty_db_url`` migrated to the latest schema."""
    from orchestrator.db.engine import make_engine, make_session_factory
    from orchestrator.db.migrate import upgrade

    upgrade(empty_db_url)
    engine = make_engine(empty_db_url)
    yield make_session_factory(engine)
    engine.dispose()
