"""Caller rules and the fax target end to end: simulated FreeSWITCH (our dialplan, the ESL
wire protocol) -> a real ``pbx-orchestrator`` process -> real PostgreSQL and Redis, and a
real HTTP server on loopback playing the tenant's CRM.

The rules live in tests/data/e2e/tenant.yaml, each limited to its own number.
"""
from __future__ import annotations

import json
import time
from typing import Any, Callable, Iterator

import gevent
import pytest
from gevent.pywsgi import WSGIServer
from sqlalchemy import select

from orchestrator.db.history import FaxMessage
from orchestrator.db.models import CallerRule
from simulator import Answer, NoAnswer
from tests.test_e2e_calls import (  # noqa: F401 - fixtures
    DOMAIN,
    app_names,
    e2e_db,
    e2e_redis,
    editor,
    employee_id,
    members_start_free,
    orchestrator,
    records_for,
    sim,
    wait_until,
)

RULES_NUMBER, CRM_NUMBER, FAX_NUMBER = "+74951110008", "+74951110007", "+74951110009"


def route_of(factory, call) -> str:
    wait_until(lambda: records_for(factory, call.uuid), what="call history row")
    (row,) = records_for(factory, call.uuid)
    return row.route


def test_city_rule_sends_a_petersburg_caller_to_its_employee(sim, e2e_db):  # noqa: F811
    _, factory, tenant_id = e2e_db
    anna = sim.add_user("101", DOMAIN, behavior=Answer(after=1, hangup_after=2))
    boris = sim.add_user("102", DOMAIN, behavior=Answer(after=1))
    call = sim.place_call(RULES_NUMBER, caller_id="+78121234567").wait(timeout=20)
    assert call.answered and len(anna.legs) == 1 and boris.legs == []
    assert "caller rule 'Petersburg': city St Petersburg" in route_of(factory, call)
    (row,) = records_for(factory, call.uuid)
    assert row.answered_by_employee_id == employee_id(factory, tenant_id, "101")


def test_block_list_refuses_the_caller(sim, e2e_db, orchestrator):  # noqa: F811
    boris = sim.add_user("102", DOMAIN, behavior=Answer(after=1))
    call = sim.place_call(RULES_NUMBER, caller_id="+79990000000").wait(timeout=20)
    assert call.hangup_cause == "CALL_REJECTED"
    assert "bridge" not in app_names(call) and "answer" not in app_names(call)
    assert [d for _, n, d in call.apps if n == "playback"] == ["ivr/ivr-not_available.wav"]
    assert boris.legs == []
    wait_until(lambda: "caller blocked" in orchestrator.log(), what="logged refusal")


def test_last_agent_rings_first_on_the_next_call(sim, e2e_db):  # noqa: F811
    """No rule matches a new caller (no history): Sales rings all, Vera answers. The
    same caller's next call rings Vera alone first."""
    _, factory, tenant_id = e2e_db
    caller = "+7499%07d" % (int(time.time() * 1000) % 10_000_000)  # a caller with no history yet
    boris = sim.add_user("102", DOMAIN, behavior=NoAnswer())
    vera = sim.add_user("103", DOMAIN, behavior=Answer(after=2, hangup_after=2))
    first = sim.place_call(RULES_NUMBER, caller_id=caller).wait(timeout=20)
    assert first.answered and len(boris.legs) == 1 and len(vera.legs) == 1
    route = route_of(factory, first)
    assert route.startswith("number %s (24/7)" % RULES_NUMBER)
    second = sim.place_call(RULES_NUMBER, caller_id=caller).wait(timeout=20)
    assert second.answered and len(vera.legs) == 2 and len(boris.legs) == 1  # Vera alone
    route = route_of(factory, second)
    assert "caller rule 'Last agent': last answered by employee #%d" % employee_id(factory, tenant_id, "103") in route
    assert "employee 103 (Vera Sales), last talked with the caller" in route


class Crm:
    def __init__(self) -> None:
        self.extensions = {"+74991234567": "102"}
        self.slow: set[str] = set()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        caller = dict(p.split("=", 1) for p in environ.get("QUERY_STRING", "").split("&"))["caller"].replace("%2B", "+")
        if caller in self.slow:
            gevent.sleep(3)
        if caller not in self.extensions:
            start_response("404 Not Found", [])
            return [b""]
        start_response("200 OK", [("Content-Type", "application/json")])
        return [json.dumps({"extension": self.extensions[caller]}).encode()]


@pytest.fixture
def crm(editor) -> Iterator[Crm]:  # noqa: F811
    app = Crm()
    server = WSGIServer(("127.0.0.1", 0), app, log=None, error_log=None)
    server.start()

    def point_to(url: str) -> None:
        with editor() as session:
            session.scalars(select(CallerRule).where(CallerRule.name == "CRM")).one().crm_url = url
            session.commit()

    point_to("http://127.0.0.1:%d/pbx/responsible" % server.server_port)
    try:
        yield app
    finally:
        point_to("http://127.0.0.1:9/who")
        server.stop(timeout=1)


def test_crm_names_the_responsible_employee(sim, e2e_db, crm):  # noqa: F811
    _, factory, _ = e2e_db
    boris = sim.add_user("102", DOMAIN, behavior=Answer(after=1, hangup_after=1))
    vera = sim.add_user("103", DOMAIN, behavior=Answer(after=1))
    call = sim.place_call(CRM_NUMBER, caller_id="+74991234567").wait(timeout=20)
    assert call.answered and len(boris.legs) == 1 and vera.legs == []
    assert "caller rule 'CRM': CRM names extension 102 -> employee 102 first" in route_of(factory, call)


@pytest.mark.parametrize("slow", [False, True], ids=["unknown to the CRM", "the CRM times out"])
def test_caller_unknown_to_the_crm_rings_all_managers_at_once(sim, e2e_db, crm, slow):  # noqa: F811
    """The reference case, and the same when the CRM is too slow: after its 1000 ms, not
    its 3 s, every member of Sales rings at once."""
    _, factory, _ = e2e_db
    caller = "+74997654321"
    if slow:
        crm.slow.add(caller)
    boris = sim.add_user("102", DOMAIN, behavior=NoAnswer())
    vera = sim.add_user("103", DOMAIN, behavior=Answer(after=2, hangup_after=1))
    started = time.monotonic()
    call = sim.place_call(CRM_NUMBER, caller_id=caller)
    wait_until(lambda: boris.legs and vera.legs, what="Sales ringing")
    waited = time.monotonic() - started
    call.wait(timeout=20)
    assert abs(boris.legs[0].invited_at - vera.legs[0].invited_at) < 0.1  # at once
    route = route_of(factory, call)
    if slow:
        assert 0.9 <= waited < 2.5, waited
        assert "CRM did not answer within 1000 ms" in route
    else:
        assert "caller rule 'CRM': CRM: unknown caller" in route
    assert "department 200 (Sales), ring all" in route


def test_fax_is_received_stored_and_the_call_ends(sim, e2e_db):  # noqa: F811
    _, factory, tenant_id = e2e_db
    call = sim.place_call(FAX_NUMBER, caller_id="+78121234567").wait(timeout=20)
    names = app_names(call)
    assert names.index("answer") < names.index("rxfax")
    (fax,) = [r for r in call.recordings if r.get("kind") == "fax"]
    assert fax["path"] == "/rec/fax-%d-%s.tif" % (tenant_id, call.uuid)
    assert call.hangup_cause == "NORMAL_CLEARING"
    wait_until(lambda: records_for(factory, call.uuid), what="call history row")
    with factory() as session:
        (row,) = session.scalars(select(FaxMessage).where(FaxMessage.call_uuid == call.uuid))
        assert (row.document_path, row.pages, row.success, row.caller) == (fax["path"], 1, True, "+78121234567")
        assert row.remote_station == "SIM-FAX"
    assert "fax to Sales voicemail" in route_of(factory, call)


def test_fax_sender_gone_before_a_page_stores_nothing(sim, e2e_db, orchestrator):  # noqa: F811
    _, factory, _ = e2e_db
    sim.fax_duration = 600.0  # the document would take long: the sender hangs up first
    call = sim.place_call(FAX_NUMBER, caller_id="+78121234567")
    # Hang up once rxfax runs (not after a fixed time, which a loaded machine can outrun).
    wait_until(lambda: "rxfax" in app_names(call), what="rxfax started")
    call.hangup()
    call.wait(timeout=20)
    wait_until(lambda: records_for(factory, call.uuid), what="call history row")
    with factory() as session:
        assert session.scalars(select(FaxMessage).where(FaxMessage.call_uuid == call.uuid)).all() == []
    wait_until(lambda: "fax not received" in orchestrator.log(), what="logged failure")
