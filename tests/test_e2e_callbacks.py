"""Callback from the queue end to end: simulated FreeSWITCH (our dialplan, the ESL wire,
its inbound event socket) -> a real ``pbx-orchestrator`` process (call handler and
callback dispatcher) -> real PostgreSQL and Redis -> a real RQ worker (SimpleWorker,
burst, in this process) running ``workers.jobs.ring_agent_then_client`` against the
simulator's inbound ESL.
"""
from __future__ import annotations

from typing import Iterator

import pytest
import redis
from sqlalchemy import select

from orchestrator.db.engine import make_engine, make_session_factory
from orchestrator.db.migrate import upgrade
from orchestrator.db.models import Department, Employee, Tenant
from orchestrator.store.agents import AgentStore
from orchestrator.store.callbacks import CallbackStore, member
from orchestrator.tenant_doc import import_tenant
from simulator import Answer, FreeSwitchSim
from test_e2e_calls import TIME_SCALE, Orchestrator, make_sim, wait_until
from tests.rq_burst import work_burst
from workers import CALLBACK_QUEUE

DOMAIN = "cb.pbx.test"
NUMBER = "+74952220070"
TENANT_YAML = """
tenant:
  name: Callback Company
  sip_domain: cb.pbx.test
  timezone: Europe/Moscow
employees:
  - {name: Agent Ten, extension: "310"}
voicemail_boxes:
  - {name: Cb voicemail, extension: "891", owners: ["310"]}
departments:
  - name: Callback queue
    extension: "470"
    strategy: ring_all
    ring_seconds: 10
    no_answer_timeout: 20
    no_answer: {voicemail: Cb voicemail}
    queue: {music: "local_stream://moh", max_wait: 600, callback_allowed: true, callback_key: "1"}
    members:
      - {employee: "310"}
numbers:
  - {number: "+74952220070", mode: always, work: {department: "470"}}
"""


@pytest.fixture(scope="module")
def cb_redis() -> Iterator[str]:
    from tests.conftest import REDIS_URL

    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    yield REDIS_URL
    client.flushdb()


@pytest.fixture(scope="module")
def cb_db(pg_server_url) -> Iterator[tuple[object, int]]:
    engine = make_engine(pg_server_url)
    upgrade(engine)
    factory = make_session_factory(engine)
    with factory() as session:
        existing = session.scalar(select(Tenant.id).where(Tenant.sip_domain == DOMAIN))
        tenant_id = existing or import_tenant(session, TENANT_YAML)
        session.commit()
    yield factory, tenant_id
    engine.dispose()


@pytest.fixture
def sim_and_orchestrator(pg_server_url, cb_db, cb_redis, tmp_path) -> Iterator[tuple[FreeSwitchSim, Orchestrator]]:
    import socket

    with socket.socket() as probe:  # the orchestrator needs the simulator's ESL port, and
        probe.bind(("127.0.0.1", 0))  # the simulator's dialplan the orchestrator's address
        listen = "127.0.0.1:%d" % probe.getsockname()[1]
    sim = make_sim(listen)
    orch = Orchestrator(pg_server_url, cb_redis, tmp_path / "orchestrator.log", listen=listen,
                        PBX_ESL_ADDRESS="127.0.0.1:%d" % sim.esl_port)
    yield sim, orch
    orch.stop()
    sim.stop()


def test_callback_keeps_the_place_then_rings_the_member_first_then_the_client(sim_and_orchestrator, cb_db, cb_redis, monkeypatch):
    sim, orch = sim_and_orchestrator
    monkeypatch.setenv("PBX_ESL_ADDRESS", "127.0.0.1:%d" % sim.esl_port)  # the worker's own settings
    factory, tenant_id = cb_db
    with factory() as session:
        dep = session.scalar(select(Department.id).where(Department.tenant_id == tenant_id, Department.extension == "470"))
        emp = session.scalar(select(Employee.id).where(Employee.tenant_id == tenant_id, Employee.extension == "310"))
    r = redis.Redis.from_url(cb_redis)
    agents, callbacks = AgentStore(r), CallbackStore(r)
    ten = sim.add_user("310", DOMAIN, behavior=Answer(after=1, hangup_after=100))  # 2 s real: B has time to ask
    client_phone = sim.add_external("+79990000012", Answer(after=2, hangup_after=50))  # talks 1 s real
    gone: list = []
    destroyed = sim.channel_destroyed
    sim.channel_destroyed = lambda ch: (gone.append(ch), destroyed(ch))  # keep the finished channels' apps

    a = sim.place_call(NUMBER, caller_id="+79990000011")  # the only member talks to A
    wait_until(lambda: ten.legs and ten.legs[0].answered_at is not None, what="A answered")
    b = sim.place_call(NUMBER, caller_id="+79990000012")
    # Press the key once B is on hold (not at a fixed time a loaded machine can outrun).
    wait_until(lambda: any(uuid == b.uuid for uuid, _ in agents.queue(tenant_id, dep))
               and ("playback", "local_stream://moh") in [(n, d) for _, n, d in b.apps], timeout=20, what="B on hold")
    b.send_dtmf("1")
    wait_until(lambda: callbacks.open(tenant_id), timeout=20, what="callback requested")
    (cb,) = callbacks.open(tenant_id)
    b.wait(timeout=30)
    names = [(n, d) for _, n, d in b.apps]
    assert ("playback", "local_stream://moh") in names and ("playback", "ivr/ivr-thank_you.wav") in names
    assert ("bridge" not in [n for n, _ in names]) and cb.caller == "+79990000012" and cb.dialed == NUMBER
    assert [u for u, _ in agents.queue(tenant_id, dep)] == [member(cb.id)]  # B's place, kept by the callback

    a.wait(timeout=60)  # 310 becomes free: the dispatcher takes them for the callback
    wait_until(lambda: callbacks.get(tenant_id, cb.id).status == "dialing", timeout=20, what="callback dialing")
    assert agents.states(tenant_id, [emp])[emp].offer == member(cb.id)
    assert agents.reserve(tenant_id, "someone-else", dep, [emp], 1)[1] == {emp: "offered_elsewhere"}

    work_burst(r, [CALLBACK_QUEUE])  # the worker's own settings: PBX_ESL_ADDRESS (the simulator)
    got = callbacks.get(tenant_id, cb.id)
    assert got.status == "done" and got.result == "bridged", (got, orch.log()[-3000:])
    assert len(ten.legs) == 2 and len(client_phone.legs) == 1
    agent_leg, client_leg = ten.legs[1], client_phone.legs[0]
    assert agent_leg.answered_at is not None and client_leg.invited_at >= agent_leg.answered_at  # the member first
    assert callbacks.open(tenant_id) == [] and agents.queue(tenant_id, dep) == []
    # The job ended at the bridge, the member talks on: still theirs, offered to nobody,
    # until the orchestrator's dispatcher finds their leg gone (the client hangs up 50 s
    # after answering; uuid_bridge'd legs hang up together, P06).
    (talk,) = callbacks.talks(tenant_id)
    assert talk.agent_uuid == agent_leg.leg_uuid and talk.employee_id == emp
    assert agents.states(tenant_id, [emp])[emp].offer == member(cb.id) and client_leg.ended_at is None
    assert agents.reserve(tenant_id, "someone-else", dep, [emp], 1)[1] == {emp: "offered_elsewhere"}
    wait_until(lambda: agents.states(tenant_id, [emp])[emp].offer == "", timeout=20, what="the callback's offer ended")
    assert agent_leg.ended_at is not None and client_leg.ended_at is not None
    # Whispers: the member heard the client's number and the minute waited (stock
    # prompts) before the client was dialled; the client heard the callback prompt.
    wait_until(lambda: {agent_leg.leg_uuid, client_leg.leg_uuid} <= {c.uuid for c in gone}, what="legs destroyed")
    (agent_ch,) = [c for c in gone if c.uuid == agent_leg.leg_uuid]
    (client_ch,) = [c for c in gone if c.uuid == client_leg.leg_uuid]
    whisper = "file_string://" + "!".join(["digits/%s.wav" % d for d in "79990000012"]
                                          + ["silence_stream://400", "digits/1.wav", "time/minute.wav"])
    (whispered_at,) = [t for t, n, d in agent_ch.apps_log if (n, d) == ("playback", whisper)]
    assert client_leg.invited_at > whispered_at
    assert ("playback", "ivr/ivr-thank_you.wav") in [(n, d) for _, n, d in client_ch.apps_log]
    day = __import__("time").strftime("%Y%m%d", __import__("time").gmtime())
    state = agents.states(tenant_id, [emp], [day])[emp]
    assert state.missed == 0 and callbacks.talks(tenant_id) == []
    assert state.calls_today >= 2 and state.talk_ms_today > 0  # A's call and the callback's
    assert "finished the call" in orch.log()


def test_an_anonymous_caller_pressing_the_callback_key_keeps_the_place(sim_and_orchestrator, cb_db, cb_redis):
    """Only a number we can dial back becomes a callback: an anonymous (or malformed)
    Caller-ID presses the key and stays in the queue, with a log line saying why."""
    sim, orch = sim_and_orchestrator
    factory, tenant_id = cb_db
    with factory() as session:
        dep = session.scalar(select(Department.id).where(Department.tenant_id == tenant_id, Department.extension == "470"))
    r = redis.Redis.from_url(cb_redis)
    agents, callbacks = AgentStore(r), CallbackStore(r)
    ten = sim.add_user("310", DOMAIN, behavior=Answer(after=1, hangup_after=100))
    a = sim.place_call(NUMBER, caller_id="+79990000011")  # the only member talks to A
    wait_until(lambda: ten.legs and ten.legs[0].answered_at is not None, what="A answered")
    b = sim.place_call(NUMBER, caller_id="anonymous", hangup_after=60)
    wait_until(lambda: any(uuid == b.uuid for uuid, _ in agents.queue(tenant_id, dep))
               and ("playback", "local_stream://moh") in [(n, d) for _, n, d in b.apps], timeout=20, what="B on hold")
    b.send_dtmf("1")
    wait_until(lambda: "callback key refused" in orch.log(), timeout=20, what="the refusal logged")
    assert callbacks.open(tenant_id) == []
    assert any(uuid == b.uuid for uuid, _ in agents.queue(tenant_id, dep))  # still waiting at its place
    assert ("playback", "ivr/ivr-thank_you.wav") not in [(n, d) for _, n, d in b.apps]
    a.wait(timeout=60)
    b.wait(timeout=60)
