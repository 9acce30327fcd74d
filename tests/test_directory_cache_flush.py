"""A routing change clears FreeSWITCH's directory cache (the directory answers users as
``cacheable``: without the flush a changed SIP password or a removed employee kept
working in FreeSWITCH for minutes). Real SQLite database, the simulator's inbound ESL."""
from __future__ import annotations

import logging
from typing import Callable

import gevent

from orchestrator import wiring
from orchestrator.config import from_env
from orchestrator.db.engine import make_engine, make_session_factory
from orchestrator.db.migrate import upgrade
from orchestrator.db.models import Employee, Tenant
from simulator import FreeSwitchSim


def wait_until(predicate: Callable[[], object], timeout: float = 10.0) -> None:
    with gevent.Timeout(timeout, AssertionError("timed out")):
        while not predicate():
            gevent.sleep(0.01)


def _db(tmp_path) -> wiring.Database:
    url = "sqlite:///%s" % (tmp_path / "pbx.sqlite3")
    upgrade(url)
    engine = make_engine(url)
    return wiring.Database(engine, make_session_factory(engine))


def _tenant(db: wiring.Database) -> int:
    with db.session_factory() as s:
        tenant = Tenant(name="Flush", sip_domain="flush.test")
        s.add(tenant)
        s.flush()
        s.add(Employee(tenant_id=tenant.id, name="E", extension="101", sip_password="x" * 16))
        s.commit()
        return tenant.id


def test_a_changed_sip_password_flushes_every_freeswitchs_directory_cache(tmp_path) -> None:
    sims = [FreeSwitchSim(esl_password="flush-pw").start() for _ in range(2)]
    try:
        settings = from_env({"PBX_ESL_ADDRESS": "127.0.0.1:%d" % sims[0].esl_port, "PBX_ESL_PASSWORD": "flush-pw",
                             "PBX_PRESENCE_ESL": "127.0.0.1:%d" % sims[1].esl_port, "PBX_DATA_DIR": str(tmp_path)})
        db = _db(tmp_path)
        tenant_id = _tenant(db)
        wiring.attach_directory_cache_flush(db, settings)
        with db.session_factory() as s:
            emp = s.query(Employee).filter_by(tenant_id=tenant_id, extension="101").one()
            emp.sip_password = "y" * 16
            s.commit()
        wait_until(lambda: all(sim.directory_flushes for sim in sims))
        assert [sim.directory_flushes for sim in sims] == [[""], [""]]  # the whole cache, once each
    finally:
        for sim in sims:
            sim.stop()


def test_an_unreachable_freeswitch_is_one_warning_and_the_save_stands(tmp_path, caplog) -> None:
    settings = from_env({"PBX_ESL_ADDRESS": "127.0.0.1:1", "PBX_ESL_PASSWORD": "x", "PBX_DATA_DIR": str(tmp_path)})
    db = _db(tmp_path)
    done: list[bool] = []

    def run_now(fn: Callable[[], None]) -> None:
        fn()
        done.append(True)

    wiring.attach_directory_cache_flush(db, settings, spawn=run_now)
    with caplog.at_level(logging.WARNING, logger="orchestrator.wiring"):
        tenant_id = _tenant(db)
    assert done and tenant_id
    assert "directory cache not flushed" in caplog.text and "xml_flush_cache" in caplog.text
    assert "Traceback" not in caplog.text
