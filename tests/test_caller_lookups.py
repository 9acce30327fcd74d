"""The caller-lookup adapter against real things: a CRM served by a real HTTP server on
loopback (gevent's WSGI server) that answers, answers slowly, fails; the call history
in a real PostgreSQL database; and the core driven with the adapter's answers."""
from __future__ import annotations

import itertools
import json
import time
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Iterator
from urllib.parse import parse_qs

import gevent
import pytest
from gevent.pywsgi import WSGIServer
from sqlalchemy.orm import sessionmaker

from orchestrator.caller_lookups import CallerLookups
from orchestrator.core import callflow
from orchestrator.core.actions import CallInfo, Execute, LookupCaller
from orchestrator.core.model import (
    CallerMatch,
    CallerRule,
    Department,
    Employee,
    Member,
    PhoneNumber,
    Target,
    TargetKind,
    TenantSnapshot,
)
from orchestrator.core.plan import Policy
from orchestrator.crm import CrmClient
from orchestrator.db import schema as db
from orchestrator.db.queries import record_call
from orchestrator.db_recorder import DbHistory
from member_fake import Members

SLOW_S = 3.0


class Crm:
    """A tiny CRM: the path says how it behaves; every request is remembered."""

    def __init__(self) -> None:
        self.requests: list[dict[str, list[str]]] = []

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        self.requests.append(parse_qs(environ.get("QUERY_STRING", "")))
        path = environ["PATH_INFO"]
        status, body = "200 OK", b""
        if path == "/known":
            body = json.dumps({"extension": "102", "name": "Boris"}).encode()
        elif path == "/unknown":
            status = "404 Not Found"
        elif path == "/empty":
            body = b'{"extension": null}'
        elif path == "/slow":
            gevent.sleep(SLOW_S)
            body = b'{"extension": "102"}'
        elif path == "/error":
            status, body = "500 Internal Server Error", b"boom"
        elif path == "/garbage":
            body = b"<html>not json</html>"
        start_response(status, [("Content-Type", "application/json")])
        return [body]


@pytest.fixture
def crm() -> Iterator[tuple[Crm, str]]:
    app = Crm()
    server = WSGIServer(("127.0.0.1", 0), app, log=None, error_log=None)
    server.start()
    try:
        yield app, "http://127.0.0.1:%d" % server.server_port
    finally:
        server.stop(timeout=1)


def ask(base: str, path: str, timeout_ms: int = 300) -> tuple[Any, float]:
    started = time.monotonic()
    # The test CRM listens on loopback: allowed here as PBX_CRM_ALLOW_PRIVATE=1 would.
    answer = CrmClient(allow_private=True).responsible(base + path, timeout_ms, "+78121234567", "+74950000001",
                                                      "demo.pbx.local")
    return answer, (time.monotonic() - started) * 1000


@pytest.mark.parametrize("path, extension, answered, note", [
    ("/known", "102", True, "CRM names extension 102"),
    ("/unknown", None, True, "CRM: unknown caller"),
    ("/empty", None, True, "CRM: unknown caller"),
    ("/error", None, False, "CRM failed: HTTP 500"),
    ("/garbage", None, False, "not the expected JSON"),
])
def test_crm_answers(crm, path, extension, answered, note) -> None:
    app, base = crm
    answer, _ = ask(base, path)
    assert (answer.extension, answer.answered) == (extension, answered)
    assert note in answer.note
    (query,) = app.requests
    assert query == {"caller": ["+78121234567"], "number": ["+74950000001"], "tenant": ["demo.pbx.local"]}


def test_slow_crm_is_given_up_at_its_timeout(crm) -> None:
    _, base = crm
    answer, took_ms = ask(base, "/slow", timeout_ms=300)
    assert answer.extension is None and not answer.answered
    assert answer.note == "CRM did not answer within 300 ms"
    assert 280 <= took_ms < 600, took_ms  # the call waited for the timeout, not for the CRM's 3 s


def test_unreachable_crm_is_no_answer() -> None:
    answer, took_ms = ask("http://127.0.0.1:9", "/who")
    assert not answer.answered and answer.note.startswith("CRM failed") and took_ms < 600


def test_url_with_its_own_query_keeps_it(crm) -> None:
    app, base = crm
    ask(base, "/known?key=s3cret")
    assert app.requests[0]["key"] == ["s3cret"] and app.requests[0]["caller"] == ["+78121234567"]


# ------------------------------------------------------------------ the call history


@pytest.fixture
def history(migrated_pg: sessionmaker) -> Iterator[tuple[sessionmaker, int, dict[str, int]]]:
    now = datetime.now(timezone.utc)
    with migrated_pg.begin() as s:
        tenant = db.Tenant(name="H", sip_domain="h.example", timezone="UTC")
        other = db.Tenant(name="O", sip_domain="o.example", timezone="UTC")
        s.add_all([tenant, other])
        s.flush()
        emp = {}
        for t, ext in ((tenant, "101"), (tenant, "102"), (other, "101")):
            e = db.Employee(tenant_id=t.id, name="E%s" % ext, extension=ext)
            s.add(e)
            s.flush()
            emp["%s/%s" % (t.sip_domain, ext)] = e.id

        def call(uuid: str, tenant_id: int, caller: str, days_ago: float, by: int | None) -> None:
            record_call(s, tenant_id, call_uuid=uuid, direction="inbound", caller=caller, destination="+74950000001",
                        started_at=now - timedelta(days=days_ago), answered_by_employee_id=by)

        call("h1", tenant.id, "+78121234567", 20, emp["h.example/101"])
        call("h2", tenant.id, "78121234567", 5, emp["h.example/102"])  # same caller, another form: latest
        call("h3", tenant.id, "+78121234567", 1, None)  # not answered: does not count
        call("h4", other.id, "+78121234567", 0.5, emp["o.example/101"])  # another tenant's
        tid = tenant.id
    yield migrated_pg, tid, emp


def lookup(source: str, days: int = 30, caller: str = "+78121234567") -> LookupCaller:
    return LookupCaller("r1", 1, source, caller, "+74950000001", days=days)


def test_last_agent_from_the_call_history(history) -> None:
    factory, tid, emp = history
    lookups = CallerLookups(DbHistory(factory, lambda fn, *a: fn(*a)), CrmClient(), lambda: int(time.time() * 1000))
    known = lookups.answer(tid, "h.example", "78121234567", lookup("last_agent"))
    assert known.employee_id == emp["h.example/102"] and "last answered by employee" in known.note
    known = lookups.answer(tid, "h.example", "+78121234567", lookup("last_agent", days=10))
    assert known.employee_id == emp["h.example/102"]  # the E.164 form finds the other form's row too
    known = lookups.answer(tid, "h.example", "+78121234567", lookup("last_agent", days=3))
    assert known.employee_id is None and known.note == "no answered call from this caller in 3 days"
    known = lookups.answer(tid, "h.example", "+79160000000", lookup("last_agent", caller="+79160000000"))
    assert known.employee_id is None


def test_slow_or_broken_history_is_an_unknown_caller() -> None:
    class Slow:
        def last_agent(self, *args: Any) -> tuple[int, int] | None:
            gevent.sleep(2)
            return 1, 0

    class Broken:
        def last_agent(self, *args: Any) -> tuple[int, int] | None:
            raise RuntimeError("database gone")

    started = time.monotonic()
    known = CallerLookups(Slow(), CrmClient(), lambda: 0, history_timeout_ms=200).answer(1, "x", "", lookup("last_agent"))
    assert known.employee_id is None and "did not answer in time" in known.note
    assert time.monotonic() - started < 0.6
    known = CallerLookups(Broken(), CrmClient(), lambda: 0).answer(1, "x", "", lookup("last_agent"))
    assert known.employee_id is None and known.note == "call history unavailable"


# ------------------------------------------------------------------ the core with the adapter


def managers_snapshot(url: str) -> TenantSnapshot:
    return TenantSnapshot(
        tenant_id=1, name="Demo", sip_domain="demo.pbx.local", timezone="UTC",
        employees={1: Employee(1, "Anna", "101"), 2: Employee(2, "Boris", "102"), 3: Employee(3, "Vera", "103")},
        departments={400: Department(400, "Managers", "400", members=(Member(1), Member(2), Member(3)))},
        numbers={"+74950000001": PhoneNumber("+74950000001", work_target=Target(TargetKind.DEPARTMENT, 400))},
        caller_rules=(CallerRule(1, "CRM", CallerMatch.CRM, crm_url=url, crm_timeout_ms=300,
                                 target=Target(TargetKind.DEPARTMENT, 400)),),
    )


@pytest.mark.parametrize("path, rung", [
    ("/known", ["102"]),  # the responsible employee first
    ("/unknown", ["101", "102", "103"]),  # the reference case: unknown to the CRM -> all managers at once
    ("/slow", ["101", "102", "103"]),  # the CRM times out -> the rule's target, after 300 ms, not 3 s
    ("/error", ["101", "102", "103"]),
])
def test_call_routed_with_the_crm_answer(crm, path, rung) -> None:
    _, base = crm
    counter = itertools.count(1)
    c = callflow.Context(managers_snapshot(base + path), Policy(), 0, lambda: "id%d" % next(counter))
    lookups = CallerLookups(None, CrmClient(allow_private=True), lambda: 0)
    started = time.monotonic()
    d = callflow.start(CallInfo("c1", "public", "+74950000001", "+78121234567"), c)
    (ask_,) = [a for a in d.actions if isinstance(a, LookupCaller)]
    d = Members().drive(callflow.handle(d.state, lookups.answer(1, "demo.pbx.local", "+78121234567", ask_), c), c)
    assert time.monotonic() - started < 0.6
    (bridge,) = [a for a in d.actions if isinstance(a, Execute) and a.wait]
    assert [p.split("user/")[1].split("@")[0] for p in bridge.arg.split(",") if "user/" in p] == rung


def test_last_agent_counts_an_answered_outbound_call_to_the_client(history) -> None:
    factory, tid, emp = history
    now = datetime.now(timezone.utc)
    with factory.begin() as s:
        # 101 called the client back 2 days ago (later than 102's answered call 5 days ago);
        # an unanswered outbound call yesterday does not count.
        record_call(s, tid, call_uuid="o1", direction="outbound", caller="101", destination="+78121234567",
                    started_at=now - timedelta(days=2), answered_by_employee_id=emp["h.example/101"])
        record_call(s, tid, call_uuid="o2", direction="outbound", caller="102", destination="+78121234567",
                    started_at=now - timedelta(days=1), answered_by_employee_id=None)
        # an internal call to an extension with the same digits is no client call
        record_call(s, tid, call_uuid="o3", direction="internal", caller="102", destination="+78121234567",
                    started_at=now - timedelta(hours=1), answered_by_employee_id=emp["h.example/102"])
    lookups = CallerLookups(DbHistory(factory, lambda fn, *a: fn(*a)), CrmClient(), lambda: int(time.time() * 1000))
    known = lookups.answer(tid, "h.example", "+78121234567", lookup("last_agent"))
    assert known.employee_id == emp["h.example/101"]
    known = lookups.answer(tid, "h.example", "+78121234567", lookup("last_agent", days=1))
    assert known.employee_id is None  # the only answered one inside a day was internal


# ------------------------------------------------------------------ private addresses


@pytest.mark.parametrize("address, public", [
    ("8.8.8.8", True), ("2a00:1450:4010:c0e::64", True),
    ("127.0.0.1", False), ("10.1.2.3", False), ("192.168.0.10", False), ("172.16.5.5", False),
    ("169.254.169.254", False),  # cloud metadata service
    ("100.64.0.1", False), ("0.0.0.0", False), ("224.0.0.1", False),
    ("::1", False), ("fd00::1", False), ("fe80::1%eth0", False), ("::ffff:127.0.0.1", False),
])
def test_only_public_addresses_count_as_public(address: str, public: bool) -> None:
    from orchestrator.crm import _public
    assert _public(address) is public


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::1]"])
def test_crm_on_a_local_address_is_refused_without_connecting(crm, host: str) -> None:
    app, base = crm
    port = base.rsplit(":", 1)[1]
    answer = CrmClient().responsible("http://%s:%s/known" % (host, port), 500, "+78121234567", "+74950000001", "d")
    assert not answer.answered and "private or local address" in answer.note and "PBX_CRM_ALLOW_PRIVATE" in answer.note
    assert app.requests == []  # nothing reached the server
