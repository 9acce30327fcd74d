"""The batching call history writer on real databases (PostgreSQL and SQLite).

Rows queued by ``HistoryWriter.add`` end up in ``call_record`` in batches; a row of a
deleted tenant or one the database refuses does not hold up the others; rows survive
the database being unavailable and are written once it is back; ``close`` writes what is
queued (and a real ``pbx-orchestrator`` does so on SIGTERM).
"""
from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Iterator

import gevent
import pytest
from sqlalchemy import delete, select

from orchestrator.db.engine import make_engine, make_session_factory
from orchestrator.db.history import CallRecord
from orchestrator.db.migrate import upgrade
from orchestrator.db.models import Department, Employee, Tenant
from orchestrator.db.queries import Miss, MissedOffers
from orchestrator.history_writer import HistoryWriter
from orchestrator.wiring import run_in_threadpool
from simulator import Answer
from test_e2e_calls import DOMAIN, Orchestrator, e2e_db, e2e_redis, make_sim, records_for  # noqa: F401 - fixtures
from tests.conftest import _pg_admin_connect

T0 = datetime(2026, 11, 24, 9, 0, tzinfo=timezone.utc)


in_threadpool = run_in_threadpool  # what the orchestrator passes as run_blocking


def wait_until(predicate: Callable[[], object], timeout: float = 10.0, what: str = "condition") -> None:
    """Yield to the writer greenlet until ``predicate()`` holds (bounded)."""
    with gevent.Timeout(timeout, AssertionError("timed out waiting for %s" % what)):
        while not predicate():
            gevent.sleep(0.005)


def row(tenant_id: int, uuid: str, employee: int | None = None, caller: str = "+78121234567") -> dict[str, Any]:
    return {
        "tenant_id": tenant_id, "call_uuid": uuid, "direction": "inbound", "caller": caller,
        "destination": "+74950000001", "started_at": T0, "answered_at": T0 + timedelta(seconds=3),
        "ended_at": T0 + timedelta(seconds=60), "answered_by_employee_id": employee,
        "hangup_cause": "NORMAL_CLEARING", "route": "number -> employee 101",
    }


def new_tenant(factory: Any, name: str) -> tuple[int, int]:
    """A tenant with one employee: (tenant id, employee id)."""
    with factory() as s:
        tenant = Tenant(name=name, sip_domain="%s.hw.test" % name.lower())
        s.add(tenant)
        s.flush()
        emp = Employee(tenant_id=tenant.id, name="E " + name, extension="101", sip_password="x" * 16)
        s.add(emp)
        s.commit()
        return tenant.id, emp.id


def stored(factory: Any) -> dict[str, CallRecord]:
    with factory() as s:
        return {r.call_uuid: r for r in s.scalars(select(CallRecord))}


def test_rows_are_written_in_batches(migrated_any) -> None:
    factory = migrated_any
    a, emp_a = new_tenant(factory, "Alpha")
    b, emp_b = new_tenant(factory, "Beta")
    writer = HistoryWriter(factory, in_threadpool, batch_rows=200)
    for i in range(449):
        writer.add(row(a, "call-%03d" % i, employee=emp_a if i % 2 else None))
    writer.add(row(a, "foreign-employee", employee=emp_b))  # not attached: another tenant's
    assert writer.queued == 450 and stored(factory) == {}  # add() only queues
    assert writer.flush(timeout=20)
    rows = stored(factory)
    assert len(rows) == 450
    assert rows["call-001"].answered_by_employee_id == emp_a and rows["call-002"].answered_by_employee_id is None
    assert rows["foreign-employee"].answered_by_employee_id is None
    answered = rows["call-007"].answered_at
    answered = answered if answered.tzinfo else answered.replace(tzinfo=timezone.utc)  # SQLite keeps no zone
    assert (rows["call-007"].direction, rows["call-007"].route, answered) == ("inbound", "number -> employee 101", T0 + timedelta(seconds=3))
    # 450 rows queued before the writer ran: batches of 200, 200 and 50.
    assert writer.stats == {"written": 450, "batches": 3, "refused": 0, "not_kept": 0, "failures": 0}
    assert writer.close(timeout=5)


def test_a_row_of_a_deleted_tenant_does_not_break_its_batch(migrated_any, caplog) -> None:
    factory = migrated_any
    keep, emp = new_tenant(factory, "Keep")
    gone, _ = new_tenant(factory, "Gone")
    writer = HistoryWriter(factory, in_threadpool)
    writer.add(row(keep, "keep-1", employee=emp))
    writer.add(row(gone, "gone-1"))
    writer.add(row(keep, "keep-2"))
    with factory() as s:  # the tenant is deleted while its call's row waits in the queue
        s.execute(delete(Tenant).where(Tenant.id == gone))
        s.commit()
    with caplog.at_level(logging.WARNING, logger="orchestrator.history_writer"):
        assert writer.flush(timeout=10)
    assert sorted(stored(factory)) == ["keep-1", "keep-2"]
    assert stored(factory)["keep-1"].answered_by_employee_id == emp
    assert writer.stats["written"] == 2 and writer.stats["refused"] == 1 and writer.stats["batches"] == 1
    assert "NOT STORED (tenant gone)" in caplog.text and "call_uuid=gone-1" in caplog.text
    writer.close(timeout=5)


def test_a_row_the_database_refuses_is_dropped_and_the_rest_written(migrated_pg, caplog) -> None:
    """PostgreSQL refuses a missed offer whose ring time overflows its column: the batch
    fails as a whole, then its items are written one by one and only that one is left out."""
    factory = migrated_pg
    tenant, emp = new_tenant(factory, "Long")
    with factory() as s:
        dept = Department(tenant_id=tenant, name="D", extension="200")
        s.add(dept)
        s.commit()
        dept_id = dept.id
    writer = HistoryWriter(factory, in_threadpool)
    writer.add(row(tenant, "ok-1"))
    writer.add(MissedOffers(tenant, dept_id, "too-long", T0, (Miss(emp, "no_answer", 2 ** 40),)))
    writer.add(row(tenant, "ok-2"))
    with caplog.at_level(logging.WARNING, logger="orchestrator.history_writer"):
        assert writer.flush(timeout=10)
    assert sorted(stored(factory)) == ["ok-1", "ok-2"]
    assert writer.stats["refused"] == 1 and writer.stats["written"] == 2
    assert "writing them one by one" in caplog.text
    assert "NOT STORED (refused by the database: NumericValueOutOfRange" in caplog.text
    assert "call_uuid=too-long" in caplog.text
    writer.close(timeout=5)


def test_a_caller_id_of_any_length_or_bytes_keeps_the_call_in_the_history(migrated_any) -> None:
    """A caller ID is whatever the caller's SIP From said: 80 characters (the column holds
    64) and a NUL character (psycopg2 refuses it with a ValueError, which the writer took
    for a database outage and retried for ever) are stored, cut to the column."""
    factory = migrated_any
    tenant, _ = new_tenant(factory, "Hostile")
    writer = HistoryWriter(factory, in_threadpool)
    writer.add(row(tenant, "long-caller", caller="9" * 80))
    writer.add(row(tenant, "nul-caller", caller="+7916\x00123"))
    writer.add(row(tenant, "ok"))
    assert writer.flush(timeout=10)
    rows = stored(factory)
    assert sorted(rows) == ["long-caller", "nul-caller", "ok"]
    assert rows["long-caller"].caller == "9" * 64
    assert rows["nul-caller"].caller == "+7916123"
    assert writer.stats == {"written": 3, "batches": 1, "refused": 0, "not_kept": 0, "failures": 0}
    writer.close(timeout=5)


def test_a_retried_batch_does_not_store_a_call_twice(migrated_any) -> None:
    factory = migrated_any
    tenant, _ = new_tenant(factory, "Twice")
    writer = HistoryWriter(factory, in_threadpool)
    writer.add(row(tenant, "once"))
    assert writer.flush(timeout=10)
    writer.add(row(tenant, "once"))  # e.g. a batch whose commit went through but whose answer was lost
    writer.add(row(tenant, "other"))
    assert writer.flush(timeout=10)
    assert sorted(stored(factory)) == ["once", "other"]
    assert writer.stats["refused"] == 0
    writer.close(timeout=5)


def test_a_bad_direction_is_refused_when_queued(migrated_any) -> None:
    writer = HistoryWriter(migrated_any, in_threadpool)
    with pytest.raises(ValueError):
        writer.add(dict(row(1, "x"), direction="sideways"))
    assert writer.queued == 0


def test_missed_offers_share_the_batches(migrated_any, caplog) -> None:
    """A department call's missed offers are queued like call records and written in the
    same transaction; a miss of another tenant's employee is skipped; a group whose
    department was deleted meanwhile is refused by the database alone."""
    from orchestrator.db.history import MissedOffer
    from orchestrator.db.models import Department
    from orchestrator.db.queries import Miss, MissedOffers

    factory = migrated_any
    tenant, emp = new_tenant(factory, "Miss")
    other, foreign = new_tenant(factory, "Other")
    with factory() as s:
        sales = Department(tenant_id=tenant, name="Sales", extension="200")
        old = Department(tenant_id=tenant, name="Old", extension="201")
        s.add_all([sales, old])
        s.commit()
        sales_id, old_id = sales.id, old.id
    writer = HistoryWriter(factory, in_threadpool)
    writer.add(row(tenant, "m-call"))
    writer.add(MissedOffers(tenant, sales_id, "m-call", T0, (Miss(emp, "no_answer", 15000), Miss(foreign, "busy", 10, True))))
    writer.add(MissedOffers(tenant, old_id, "m-old", T0, (Miss(emp, "rejected", 500),)))
    with pytest.raises(ValueError):
        writer.add(MissedOffers(tenant, sales_id, "m-bad", T0, (Miss(emp, "bored", 1),)))
    with factory() as s:
        s.execute(delete(Department).where(Department.id == old_id))
        s.commit()
    with caplog.at_level(logging.WARNING, logger="orchestrator.history_writer"):
        assert writer.flush(timeout=10)
    with factory() as s:
        misses = [(m.employee_id, m.department_id, m.call_uuid, m.result, m.rang_ms)
                  for m in s.scalars(select(MissedOffer).order_by(MissedOffer.id))]
    assert misses == [(emp, sales_id, "m-call", "no_answer", 15000)]
    assert sorted(stored(factory)) == ["m-call"]
    assert writer.stats["refused"] == 1 and writer.stats["written"] == 2
    assert "NOT STORED (refused by the database: " in caplog.text
    assert "missed offers: tenant_id=%d department_id=%d call_uuid=m-old" % (tenant, old_id) in caplog.text
    writer.close(timeout=5)


# ----------------------------------------------------------------- database unavailable


@pytest.fixture
def switchable_pg(fresh_pg_url: str) -> Iterator[tuple[Any, Callable[[bool], None]]]:
    """A migrated PostgreSQL database that the test can make refuse every connection
    (``ALTER DATABASE .. ALLOW_CONNECTIONS false`` and its open sessions terminated:
    what the orchestrator sees while the server restarts) and allow again."""
    upgrade(fresh_pg_url)
    engine = make_engine(fresh_pg_url)
    name = fresh_pg_url.rsplit("/", 1)[1]
    admin = _pg_admin_connect()

    def available(up: bool) -> None:
        with admin.cursor() as cur:
            cur.execute('ALTER DATABASE "%s" WITH ALLOW_CONNECTIONS %s' % (name, "true" if up else "false"))
            if not up:
                cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))

    try:
        yield make_session_factory(engine), available
    finally:
        available(True)
        admin.close()
        engine.dispose()


def test_rows_are_kept_while_the_database_is_down_and_written_when_it_is_back(switchable_pg, caplog, capfd) -> None:
    """... with one log line for the outage and one for the recovery: no traceback per
    retry (gevent's thread pool printed one for every exception raised in its threads)."""
    factory, available = switchable_pg
    tenant, emp = new_tenant(factory, "Outage")
    writer = HistoryWriter(factory, in_threadpool, retry_base_s=0.02, retry_cap_s=0.2)
    writer.add(row(tenant, "before"))
    assert writer.flush(timeout=10)
    available(False)
    with caplog.at_level(logging.WARNING, logger="orchestrator.history_writer"):
        for i in range(30):
            writer.add(row(tenant, "during-%d" % i, employee=emp))
        wait_until(lambda: writer.stats["failures"] >= 3, what="the writer to retry")
        assert writer.queued == 30  # nothing dropped while the database refuses connections
        assert "cannot write 30 queued row(s), retrying with backoff" in caplog.text
        available(True)
        assert writer.flush(timeout=20)
    rows = stored(factory)
    assert len(rows) == 31 and rows["during-29"].answered_by_employee_id == emp
    assert writer.stats["written"] == 31 and writer.stats["not_kept"] == 0
    assert "call history written again after" in caplog.text
    writer.close(timeout=5)
    assert "Traceback" not in capfd.readouterr().err


def test_past_the_bound_rows_are_logged_in_full_not_kept(switchable_pg, caplog) -> None:
    factory, available = switchable_pg
    tenant, _ = new_tenant(factory, "Bound")
    writer = HistoryWriter(factory, in_threadpool, max_rows=5, retry_base_s=0.02, retry_cap_s=0.2)
    available(False)
    with caplog.at_level(logging.ERROR, logger="orchestrator.history_writer"):
        for i in range(7):
            writer.add(row(tenant, "b-%d" % i))
    assert writer.queued == 5 and writer.stats["not_kept"] == 2
    assert caplog.text.count("call history queue full") == 1
    assert "NOT STORED (the queue is full): tenant_id=%d call_uuid=b-5 " % tenant in caplog.text
    assert "call_uuid=b-6 " in caplog.text
    available(True)
    assert writer.flush(timeout=20)
    assert sorted(stored(factory)) == ["b-%d" % i for i in range(5)]
    writer.close(timeout=5)


# ----------------------------------------------------------------- shutdown


def test_close_writes_what_is_queued(migrated_any, caplog) -> None:
    factory = migrated_any
    tenant, _ = new_tenant(factory, "Close")
    writer = HistoryWriter(factory, in_threadpool, max_delay_s=600.0)  # rows would wait for 10 minutes
    for i in range(3):
        writer.add(row(tenant, "c-%d" % i))
    assert writer.close(timeout=10)
    assert sorted(stored(factory)) == ["c-0", "c-1", "c-2"]
    with caplog.at_level(logging.ERROR, logger="orchestrator.history_writer"):
        writer.add(row(tenant, "late"))  # after close: logged, not silently lost
    assert "NOT STORED (the history writer is closed)" in caplog.text and "call_uuid=late" in caplog.text


def test_close_with_the_database_down_logs_every_unwritten_row(switchable_pg, caplog) -> None:
    factory, available = switchable_pg
    tenant, _ = new_tenant(factory, "Down")
    writer = HistoryWriter(factory, in_threadpool, retry_base_s=0.02, retry_cap_s=0.1)
    available(False)
    writer.add(row(tenant, "d-1"))
    writer.add(row(tenant, "d-2"))
    with caplog.at_level(logging.ERROR, logger="orchestrator.history_writer"):
        assert not writer.close(timeout=0.5)
    assert "shutting down with 2 call history row(s) not confirmed written" in caplog.text
    assert "NOT STORED (shutdown): tenant_id=%d call_uuid=d-1 " % tenant in caplog.text
    assert "call_uuid=d-2 " in caplog.text


def test_orchestrator_writes_queued_history_on_sigterm(e2e_db, e2e_redis, tmp_path) -> None:
    """A real pbx-orchestrator whose rows would wait 10 minutes for their batch: the
    call's row is not in the database after the call, and is once SIGTERM was handled."""
    url, factory, _ = e2e_db
    orch = Orchestrator(url, e2e_redis, tmp_path / "orchestrator.log", PBX_HISTORY_MAX_DELAY_MS="600000")
    sim = make_sim(orch.address)
    try:
        sim.add_user("101", DOMAIN, behavior=Answer(after=1, hangup_after=2))
        call = sim.place_call("+74951110001", caller_id="+78121234567").wait(timeout=20)
        assert call.answered
        wait_until(lambda: any("call finished" in line and call.uuid in line for line in orch.log().splitlines()),
                   what="the orchestrator to finish the call")
        assert records_for(factory, call.uuid) == []  # queued: its batch would wait 10 minutes
        orch.stop()
        assert orch.proc.returncode == 0
    finally:
        sim.stop()
        orch.stop()
    (record,) = records_for(factory, call.uuid)
    assert record.direction == "inbound" and record.caller == "+78121234567"
    assert "call history flushed (1 row(s) were queued)" in orch.log()
