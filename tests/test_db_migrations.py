"""Migrations apply to empty PostgreSQL and SQLite databases, match the models, and
downgrade to nothing."""
from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text

from orchestrator.db.engine import make_engine
from orchestrator.db.migrate import current, downgrade, upgrade
from orchestrator.db.schema import metadata

TABLES = {
    "tenant", "employee", "department", "department_member", "phone_number", "schedule", "schedule_interval",
    "schedule_exception", "voice_menu", "voice_menu_option", "voicemail_box", "voicemail_box_owner",
    "voicemail_message", "call_record", "admin_user", "routing_meta",
}


@pytest.fixture
def empty_url(empty_db_url: str) -> str:
    """An empty PostgreSQL database, then an empty SQLite file (conftest)."""
    return empty_db_url


def test_upgrade_creates_every_table_and_seeds_index_version(empty_url: str) -> None:
    assert current(empty_url) is None
    upgrade(empty_url)
    assert current(empty_url) == "0002"
    engine = make_engine(empty_url)
    try:
        assert TABLES <= set(inspect(engine).get_table_names())
        with engine.connect() as conn:
            assert conn.execute(text("SELECT value FROM routing_meta WHERE key = 'index_version'")).scalar() == 1
            # the schema the migration builds is exactly the models' schema
            diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), metadata)
        assert diff == []
    finally:
        engine.dispose()


def test_upgrade_twice_is_a_no_op_and_downgrade_to_base_drops_everything(empty_url: str) -> None:
    upgrade(empty_url)
    upgrade(empty_url)
    downgrade(empty_url, "base")
    assert current(empty_url) is None
    engine = make_engine(empty_url)
    try:
        assert set(inspect(engine).get_table_names()) & TABLES == set()
    finally:
        engine.dispose()
    upgrade(empty_url)  # and back up again
    assert current(empty_url) == "0002"


def test_upgrade_accepts_an_engine(tmp_path) -> None:
    engine = make_engine("sqlite:///%s" % (tmp_path / "e.sqlite3"))
    upgrade(engine)
    assert "tenant" in inspect(engine).get_table_names()
    engine.dispose()
