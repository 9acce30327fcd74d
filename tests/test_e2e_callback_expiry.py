"""The expired callback end to end: simulated FreeSWITCH (our dialplan, the ESL wire,
its inbound event socket) -> a real ``pbx-orchestrator`` (call handler, callback
dispatcher) -> real PostgreSQL and Redis -> a real RQ worker (burst, in this process)
running ``workers.apology.apologise_and_record`` against the simulator's inbound ESL.

A caller asks for a callback while the only member talks; the department's no-answer
timeout (3 s, counted from the moment the caller joined the queue) runs out; the client
is called back, hears the apology, the greeting and the beep, and leaves a message that
is stored in the department's no-answer voicemail box, linked to the original call.
"""
from __future__ import annotations

from typing import Iterator

import pytest
import redis
from sqlalchemy import select

from orchestrator.db.engine import make_engine, make_session_factory
from orchestrator.db.migrate import upgrade
from orchestrator.db.history import VoicemailMessage
from orchestrator.db.models import Department, Tenant, VoicemailBox
from orchestrator.store.agents import AgentStore
from orchestrator.store.callbacks import CallbackStore
from orchestrator.tenant_doc import import_tenant
from simulator import Answer, FreeSwitchSim
from simulator.api import run_api
from test_e2e_calls import Orchestrator, make_sim, wait_until
from tests.rq_burst import work_burst
from workers import CALLBACK_QUEUE

DOMAIN = "cbx.pbx.test"
NUMBER = "+74952229080"
TENANT_YAML = """
tenant:
  name: Expiring Callbacks
  sip_domain: cbx.pbx.test
  timezone: Europe/Moscow
employees:
  - {name: Agent Twenty, extension: "320"}
voicemail_boxes:
  - {name: Missed callbacks, extension: "892", owners: ["320"]}
departments:
  - name: Short queue
    extension: "480"
    strategy: ring_all
    ring_seconds: 10
    no_answer_timeout: 3
    no_answer: {voicemail: Missed callbacks}
    queue: {music: "local_stream://moh", max_wait: 600, callback_allowed: true, callback_key: "1",
            callback_apology: "tenant:sorry.wav", callback_attempts: 2, callback_retry_delay: 0}
    members:
      - {employee: "320"}
numbers:
  - {number: "+74952229080", mode: always, work: {department: "480"}}
"""


@pytest.fixture(scope="module")
def x_redis() -> Iterator[str]:
    from tests.conftest import REDIS_URL

    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    yield REDIS_URL
    client.flushdb()


@pytest.fixture(scope="module")
def x_db(pg_server_url) -> Iterator[tuple[object, int]]:
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
def sim_orch(pg_server_url, x_db, x_redis, tmp_path) -> Iterator[tuple[FreeSwitchSim, Orchestrator]]:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        listen = "127.0.0.1:%d" % probe.getsockname()[1]
    sim = make_sim(listen)
    orch = Orchestrator(pg_server_url, x_redis, tmp_path / "orchestrator.log", listen=listen,
                        PBX_ESL_ADDRESS="127.0.0.1:%d" % sim.esl_port)
    yield sim, orch
    orch.stop()
    sim.stop()


def _job_queued(r: redis.Redis) -> bool:
    """A job is in the callback queue (the dispatcher claims the callback, then queues it)."""
    from rq import Queue

    from workers import SERIALIZER

    return Queue(CALLBACK_QUEUE, connection=r, serializer=SERIALIZER).count > 0


def _callback_requested(sim: FreeSwitchSim, orch: Orchestrator, tenant_id: int, dep: int, r: redis.Redis, caller: str):
    agents, callbacks = AgentStore(r), CallbackStore(r)
    b = sim.place_call(NUMBER, caller_id=caller, hangup_after=600)
    wait_until(lambda: any(uuid == b.uuid for uuid, _ in agents.queue(tenant_id, dep))
               and ("playback", "local_stream://moh") in [(n, d) for _, n, d in b.apps], timeout=20, what="B on hold")
    b.send_dtmf("1")
    wait_until(lambda: [c for c in callbacks.open(tenant_id) if c.caller == caller], timeout=20, what="callback requested")
    (cb,) = [c for c in callbacks.open(tenant_id) if c.caller == caller]
    return b, cb


def test_an_expired_callback_calls_the_client_apologises_and_takes_a_voicemail(sim_orch, x_db, x_redis, monkeypatch,
                                                                                  pg_server_url):
    sim, orch = sim_orch
    for key, value in {"PBX_ESL_ADDRESS": "127.0.0.1:%d" % sim.esl_port, "PBX_RECORDINGS_DIR": "/rec",
                       "DATABASE_URL": pg_server_url, "PBX_SMTP_HOST": ""}.items():
        monkeypatch.setenv(key, value)  # the worker's own settings
    factory, tenant_id = x_db
    with factory() as session:
        dep = session.scalar(select(Department.id).where(Department.tenant_id == tenant_id, Department.extension == "480"))
        box = session.scalar(select(VoicemailBox.id).where(VoicemailBox.tenant_id == tenant_id, VoicemailBox.extension == "892"))
    r = redis.Redis.from_url(x_redis)
    callbacks = CallbackStore(r)
    gone: list = []
    destroyed = sim.channel_destroyed
    sim.channel_destroyed = lambda ch: (gone.append(ch), destroyed(ch))  # keep the finished channels' apps
    twenty = sim.add_user("320", DOMAIN, behavior=Answer(after=1, hangup_after=100000))  # busy all along
    client = sim.add_external("+79990000022", Answer(after=1, hangup_after=100))  # answers, talks 2 s real
    a = sim.place_call(NUMBER, caller_id="+79990000021")
    wait_until(lambda: twenty.legs and twenty.legs[0].answered_at is not None, what="A answered")
    b, cb = _callback_requested(sim, orch, tenant_id, dep, r, "+79990000022")
    b.wait(timeout=30)
    assert cb.call_uuid == b.uuid

    # 3 s after B joined the queue, with the only member still busy, the callback expires.
    wait_until(lambda: callbacks.get(tenant_id, cb.id).mode == "apology" and _job_queued(r), timeout=30,
               what="callback expired")
    got = callbacks.get(tenant_id, cb.id)
    assert got.status == "dialing"
    assert [u for u, _ in AgentStore(r).queue(tenant_id, dep)] == []  # it left the queue for good
    work_burst(r, [CALLBACK_QUEUE])

    got = callbacks.get(tenant_id, cb.id)
    assert got.status == "expired" and "voicemail" in got.result and "recorded" in got.result, (got, orch.log()[-2000:])
    assert callbacks.open(tenant_id) == []
    (leg,) = client.legs
    assert leg.answered_at is not None and leg.caller_id == NUMBER
    (ch,) = [c for c in gone if c.uuid == leg.leg_uuid]
    apps = [(n, d) for _, n, d in ch.apps_log]
    assert ("playback", "file_string:///rec/%d/sounds/sorry.wav!voicemail/vm-record_message.wav!tone_stream://%%(250,0,1000)"
            % tenant_id) in apps
    path = "/rec/vm-%d-%d-%s.wav" % (tenant_id, box, leg.leg_uuid)
    assert ("record", "%s 120 200 3" % path) in apps
    with factory() as session:
        (msg,) = session.scalars(select(VoicemailMessage).where(VoicemailMessage.tenant_id == tenant_id)).all()
    assert (msg.box_id, msg.call_uuid, msg.caller, msg.recording_path) == (box, b.uuid, "+79990000022", path)
    assert msg.duration_ms > 0 and str(msg.id) in got.result
    run_api(sim, "hupall")
    a.wait(timeout=30)


def test_an_expired_callback_whose_client_does_not_answer_is_recorded_as_such(sim_orch, x_db, x_redis, monkeypatch,
                                                                              pg_server_url):
    """callback_attempts 2: the apology call is tried twice (no delay), then the callback
    is failed with the reason; no voicemail is stored."""
    sim, orch = sim_orch
    for key, value in {"PBX_ESL_ADDRESS": "127.0.0.1:%d" % sim.esl_port, "PBX_RECORDINGS_DIR": "/rec",
                       "DATABASE_URL": pg_server_url, "PBX_SMTP_HOST": ""}.items():
        monkeypatch.setenv(key, value)
    factory, tenant_id = x_db
    with factory() as session:
        dep = session.scalar(select(Department.id).where(Department.tenant_id == tenant_id, Department.extension == "480"))
        before = len(session.scalars(select(VoicemailMessage.id).where(VoicemailMessage.tenant_id == tenant_id)).all())
    r = redis.Redis.from_url(x_redis)
    callbacks = CallbackStore(r)
    twenty = sim.add_user("320", DOMAIN, behavior=Answer(after=1, hangup_after=100000))
    from simulator.endpoints import NoAnswer

    client = sim.add_external("+79990000023", NoAnswer())
    a = sim.place_call(NUMBER, caller_id="+79990000021")
    wait_until(lambda: twenty.legs and twenty.legs[0].answered_at is not None, what="A answered")
    b, cb = _callback_requested(sim, orch, tenant_id, dep, r, "+79990000023")
    b.wait(timeout=30)
    # No retry delay: the second call may be queued while the first burst still runs
    # (it then runs in that burst); work until the callback is settled.
    for _ in range(3):
        wait_until(lambda: _job_queued(r) or callbacks.get(tenant_id, cb.id).status == "failed", timeout=30,
                   what="an apology call queued")
        if callbacks.get(tenant_id, cb.id).status == "failed":
            break
        work_burst(r, [CALLBACK_QUEUE])
    got = callbacks.get(tenant_id, cb.id)
    assert got.status == "failed" and "the client did not answer 2 calls" in got.result, got
    assert len(client.legs) == 2 and all(leg.answered_at is None for leg in client.legs)
    with factory() as session:
        after = len(session.scalars(select(VoicemailMessage.id).where(VoicemailMessage.tenant_id == tenant_id)).all())
    assert after == before
    run_api(sim, "hupall")
    a.wait(timeout=30)
