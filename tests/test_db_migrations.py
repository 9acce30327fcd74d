"""Migrations apply to empty PostgreSQL and SQLite databases, match the models, and
downgrade to nothing."""
from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.exc import IntegrityError

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
    assert current(empty_url) == "0006"
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
    assert current(empty_url) == "0006"


def test_upgrade_accepts_an_engine(tmp_path) -> None:
    engine = make_engine("sqlite:///%s" % (tmp_path / "e.sqlite3"))
    upgrade(engine)
    assert "tenant" in inspect(engine).get_table_names()
    engine.dispose()


def test_0003_accepts_fax_targets_and_downgrade_clears_them(empty_url: str) -> None:
    """Route targets may name a fax box from 0003 on; going back to 0002 empties them
    (a menu option, whose target is required, goes) so the old constraints hold again."""
    upgrade(empty_url, "0002")
    engine = make_engine(empty_url)
    try:
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO tenant (id, name, sip_domain, timezone, enabled, max_concurrent_calls,"
                              " routing_version, created_at) VALUES (1, 'T', 't.example', 'UTC', true, 0, 1, CURRENT_TIMESTAMP)"))
            conn.execute(text("INSERT INTO voicemail_box (id, tenant_id, name, max_message_seconds) VALUES (5, 1, 'Box', 120)"))
            conn.execute(text("INSERT INTO voice_menu (id, tenant_id, name, timeout_seconds, max_invalid, direct_dial)"
                              " VALUES (7, 1, 'Main', 5, 3, true)"))
        with pytest.raises(IntegrityError):  # 0002: no such target kind
            with engine.begin() as conn:
                conn.execute(text("UPDATE voice_menu SET default_kind = 'fax', default_ref_id = 5 WHERE id = 7"))
        upgrade(empty_url)
        with engine.begin() as conn:
            conn.execute(text("UPDATE voice_menu SET default_kind = 'fax', default_ref_id = 5 WHERE id = 7"))
            conn.execute(text("INSERT INTO voice_menu_option (id, tenant_id, menu_id, digit, target_kind, target_ref_id)"
                              " VALUES (1, 1, 7, '1', 'fax', 5)"))
            conn.execute(text("INSERT INTO caller_rule (tenant_id, name, position, match_kind, match_values, negate, block,"
                              " numbers, days, crm_timeout_ms, target_kind, target_ref_id)"
                              " VALUES (1, 'VIP', 0, 'list', '+79161112233', false, false, '', 30, 1000, 'fax', 5)"))
        with pytest.raises(IntegrityError):  # the rule's own checks
            with engine.begin() as conn:
                conn.execute(text("UPDATE caller_rule SET crm_timeout_ms = 5000"))
        downgrade(empty_url, "0002")
        with engine.connect() as conn:
            assert conn.execute(text("SELECT default_kind FROM voice_menu WHERE id = 7")).scalar() is None
            assert conn.execute(text("SELECT count(*) FROM voice_menu_option")).scalar() == 0
        assert "caller_rule" not in inspect(engine).get_table_names()
    finally:
        engine.dispose()


def test_upgrading_keeps_every_row_of_tables_that_are_rebuilt(empty_url: str) -> None:
    """SQLite rebuilds a table to change its constraints (batch mode); with foreign keys
    enforced, dropping the old tenant/department/menu table would cascade to every row
    that references it. An upgrade from 0003 with data must keep all of it."""
    upgrade(empty_url, "0003")
    engine = make_engine(empty_url)
    try:
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO tenant (id, name, sip_domain, timezone, enabled, max_concurrent_calls,"
                              " routing_version, created_at) VALUES (1, 'T', 't.example', 'UTC', true, 0, 1, CURRENT_TIMESTAMP)"))
            conn.execute(text("INSERT INTO employee (id, tenant_id, name, extension, role, ring_seconds, logged_in,"
                              " sip_password) VALUES (3, 1, 'Anna', '101', 'user', 20, true, 'x')"))
            conn.execute(text("INSERT INTO department (id, tenant_id, name, extension, strategy, ring_seconds,"
                              " no_answer_timeout, wrapup_seconds, queue_announce_position, queue_max_wait,"
                              " queue_max_length, queue_callback_allowed, queue_callback_key)"
                              " VALUES (4, 1, 'Sales', '200', 'ring_all', 20, 60, 0, false, 300, 0, false, '1')"))
            conn.execute(text('INSERT INTO department_member (id, tenant_id, department_id, employee_id, "order",'
                              " weight, escalation_offset) VALUES (1, 1, 4, 3, 0, 5, 0)"))
            conn.execute(text("INSERT INTO voice_menu (id, tenant_id, name, timeout_seconds, max_invalid, direct_dial)"
                              " VALUES (7, 1, 'Main', 5, 3, true)"))
            conn.execute(text("INSERT INTO voice_menu_option (id, tenant_id, menu_id, digit, target_kind, target_ref_id)"
                              " VALUES (1, 1, 7, '1', 'department', 4)"))
            conn.execute(text("INSERT INTO phone_number (id, tenant_id, e164, mode, work_kind, work_ref_id)"
                              " VALUES (1, 1, '+74950000001', 'always', 'menu', 7)"))
        upgrade(empty_url)
        with engine.connect() as conn:
            for table in ("tenant", "employee", "department", "department_member", "voice_menu", "voice_menu_option",
                          "phone_number"):
                assert conn.execute(text("SELECT count(*) FROM %s" % table)).scalar() == 1, table
            assert conn.execute(text("SELECT forward_caller_id FROM tenant")).scalar() == "caller"
            assert conn.execute(text("SELECT queue_announce_every FROM department")).scalar() == 30
    finally:
        engine.dispose()
