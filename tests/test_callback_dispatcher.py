"""The callback dispatcher against a real Redis, and its end-of-job callbacks run by a
real RQ worker (SimpleWorker, burst)."""
from __future__ import annotations

import pytest
import redis

from orchestrator.callback_dispatcher import CallbackDispatcher, CallbackSettings, LegChecker, job_finished, rq_enqueue
from orchestrator.core.model import Department, Employee, Member, QueueSettings, Strategy, TenantSnapshot
from orchestrator.core.plan import Policy
from orchestrator.store.agents import AgentStore, agent_key
from orchestrator.store.callbacks import CallbackStore, Talk, member
from tests.rq_burst import work_burst
from workers import CALLBACK_QUEUE


def _now_ms() -> int:
    """Now, in ms: a callback's place is when its caller joined the queue (it expires
    after the department's no-answer timeout)."""
    return int(__import__("time").time() * 1000)

T, DEP = 7, 10
SNAP = TenantSnapshot(
    T, "Demo", "demo.pbx.local",
    employees={1: Employee(1, "E1", "101"), 2: Employee(2, "E2", "102")},
    departments={DEP: Department(DEP, "Sales", "200", Strategy.ONE_BY_ONE, wrapup_seconds=5, members=(Member(1, order=1), Member(2, order=2)),
                                 queue=QueueSettings(music="local_stream://moh", callback_allowed=True))},
)
SETTINGS = CallbackSettings(agent_timeout_s=5, client_timeout_s=5, margin_s=5)


class Job:
    def __init__(self, meta: dict) -> None:
        self.meta = meta


@pytest.fixture
def r(redis_url: str) -> redis.Redis:
    return redis.Redis.from_url(redis_url)


def dispatcher(r, jobs: list) -> CallbackDispatcher:
    return CallbackDispatcher(r, lambda t: SNAP if t == T else None, Policy(external_dial_template="sofia/gateway/pstn/{number}"),
                              SETTINGS, lambda data, meta: jobs.append((data, meta)))


def test_head_callback_takes_a_free_member_and_the_job_end_releases_it(r):
    agents, callbacks = AgentStore(r), CallbackStore(r)
    agents.channel_up(T, 1, "chan-1", 60_000)  # member 1 is on a call
    cb = callbacks.request(T, DEP, "c1", _now_ms(), "+78120000000", "+74950000001")
    jobs: list = []
    d = dispatcher(r, jobs)
    assert d.tick() == 1 and d.tick() == 0  # once only
    (data, meta), = jobs
    assert data == {"tenant_id": str(T), "callback_id": cb, "attempt": 1, "agent_extension": "102", "agent_domain": "demo.pbx.local",
                    "client_number": "+78120000000", "caller_id_number": "+74950000001", "agent_timeout_s": 5, "client_timeout_s": 5,
                    "waited_s": data["waited_s"], "client_prompt": "ivr/ivr-thank_you.wav"}  # whispers (stock prompt)
    assert 0 <= data["waited_s"] < 60
    assert meta["employee_id"] == 2
    assert callbacks.get(T, cb).status == "dialing" and agents.queue(T, DEP) == []
    # Nobody else is offered member 2 meanwhile, for the whole job (long lease).
    assert agents.reserve(T, "other-call", DEP, [2], 1)[1] == {2: "offered_elsewhere"}
    sec, usec = r.time()
    assert int(r.hget(agent_key(T, 2), "offer_until")) - (sec * 1000 + usec // 1000) > SETTINGS.lease_ms - 1000
    # The agent did not answer: a missed offer, the callback back at its place.
    job_finished(Job(meta), r, {"status": "agent_no_answer", "cause": "NO_ANSWER"})
    got = callbacks.get(T, cb)
    assert got.status == "pending" and got.attempts == 1 and [u for u, _ in agents.queue(T, DEP)] == [member(cb)]
    assert agents.states(T, [2])[2].missed == 1 and agents.states(T, [2])[2].offer == ""
    assert d.tick() == 1
    (data, meta) = jobs[-1]
    job_finished(Job(meta), r, {"status": "bridged", "cause": None})
    assert callbacks.get(T, cb).status == "done" and callbacks.open(T) == []
    state = agents.states(T, [2], [__import__("time").strftime("%Y%m%d", __import__("time").gmtime())])[2]
    assert state.offer == "" and state.wrapup_until_ms > 0 and state.calls_today == 1


def test_a_bridged_callback_keeps_its_member_busy_until_their_leg_is_gone(r):
    """The job returns at the bridge; the member talks on. Their offer is kept (and its
    lease renewed while FreeSWITCH still has the leg); when the leg is gone the offer
    ends like an answered call's: wrap-up from then, the talk time counted."""
    agents, callbacks = AgentStore(r), CallbackStore(r)
    cb = callbacks.request(T, DEP, "c1", _now_ms(), "+78120000000", "+74950000001")
    jobs: list = []
    legs = {"agent-leg": True}
    now = {"ms": 0}
    asked: list[str] = []

    def leg_exists(uuid: str):
        asked.append(uuid)
        return legs.get(uuid)

    d = CallbackDispatcher(r, lambda t: SNAP if t == T else None, Policy(), SETTINGS, lambda data, meta: jobs.append((data, meta)),
                           leg_exists, clock=lambda: now["ms"], talk_check_ms=0)
    assert d.tick() == 1
    (_, meta), = jobs
    emp = meta["employee_id"]
    job_finished(Job(meta), r, {"status": "bridged", "cause": None, "agent_uuid": "agent-leg"})
    assert callbacks.get(T, cb).status == "done" and callbacks.open(T) == []
    (talk,) = callbacks.talks(T)
    assert (talk.agent_uuid, talk.employee_id, talk.department_id, talk.wrapup_ms) == ("agent-leg", emp, DEP, 5000)
    assert agents.states(T, [emp])[emp].offer == member(cb)  # still theirs: not offered to anyone
    assert agents.reserve(T, "next-caller", DEP, [emp], 1)[1] == {emp: "offered_elsewhere"}
    # The leg lives: the lease is renewed (it was shortened here to see the renewal).
    r.hset(agent_key(T, emp), "offer_until", 1)
    assert d.tick() == 0 and asked == ["agent-leg"]
    assert int(r.hget(agent_key(T, emp), "offer_until")) > 1 and callbacks.talks(T) != []
    # FreeSWITCH cannot be asked: nothing changes (no renewal, no release).
    legs["agent-leg"] = None
    r.hset(agent_key(T, emp), "offer_until", 1)
    assert d.tick() == 0 and int(r.hget(agent_key(T, emp), "offer_until")) == 1 and callbacks.talks(T) != []
    # The leg is gone: the offer ends now, with the wrap-up and the talk time.
    legs["agent-leg"] = False
    now["ms"] = talk.since_ms + 42_000
    d.tick()
    day = __import__("time").strftime("%Y%m%d", __import__("time").gmtime())
    state = agents.states(T, [emp], [day])[emp]
    assert state.offer == "" and state.calls_today == 1 and state.talk_ms_today == 42_000
    sec, usec = r.time()
    assert state.wrapup_until_ms - (sec * 1000 + usec // 1000) > 4000  # 5 s wrap-up, from now
    assert callbacks.talks(T) == [] and T not in callbacks.tenants()
    # A second dispatcher that saw the same talk does not count it again.
    assert callbacks.end_talk(T, cb) is False


def test_talking_callbacks_are_looked_at_once_per_interval_however_many_passes(r):
    callbacks = CallbackStore(r)
    asked: list[str] = []
    d = CallbackDispatcher(r, lambda t: SNAP, Policy(), SETTINGS, lambda data, meta: None,
                           lambda uuid: asked.append(uuid) or True, talk_check_ms=60_000)
    callbacks.talking(T, Talk("cb1", "leg-1", 1, DEP, 0, 0))
    for _ in range(5):  # five members-free notices in a row
        d.tick()
    assert asked == ["leg-1"]
    d.talk_check_ms = 0
    d.tick()
    assert asked == ["leg-1", "leg-1"]


def test_leg_checker_asks_freeswitch_over_its_event_socket():
    """``uuid_exists`` on the simulated FreeSWITCH's inbound socket: a live channel is
    there, an unknown one is not; FreeSWITCH unreachable is "cannot tell" (None)."""
    from simulator import Answer
    from test_e2e_calls import make_sim

    sim = make_sim("127.0.0.1:1")
    try:
        sim.add_user("101", "demo.pbx.local", behavior=Answer(after=1, hangup_after=500))
        checker = LegChecker({"host": "127.0.0.1", "port": sim.esl_port, "password": "ClueCon"})
        agent = checker._connect().api("originate user/101@demo.pbx.local &park()").split()[-1]
        assert checker(agent) is True
        assert checker("00000000-0000-0000-0000-000000000000") is False
        checker._client.api("uuid_kill %s" % agent)
        assert checker(agent) is False
        checker.close()
        # Only a uuid reaches FreeSWITCH (the talk's uuid is read from Redis): anything
        # else is a talk that cannot be checked, ended at once without a question.
        assert checker("x;uuid_kill all") is False and checker._client is None
        ANY_LEG = "00000000-0000-0000-0000-00000000000a"
        down = LegChecker({"host": "127.0.0.1", "port": 1, "password": "ClueCon"}, timeout_s=0.5)
        assert down(ANY_LEG) is None
        # FreeSWITCH answers again, but the next try waits for retry_after_s (10 s).
        down.esl = checker.esl
        assert down(ANY_LEG) is None and down._client is None
        down._down_until = 0.0
        assert down(ANY_LEG) is False
        down.close()
    finally:
        sim.stop()


def test_a_job_that_outlived_its_claim_leaves_the_newer_attempt_alone(r):
    """Attempt 1's job ran past its leases: the callback went back to its place and
    attempt 2 took it (the same offer id cb:<id>, here the same member). Attempt 1's late
    end must not end attempt 2's offer nor settle the callback."""
    from orchestrator.store.callbacks import callback_key

    agents, callbacks = AgentStore(r), CallbackStore(r)
    cb = callbacks.request(T, DEP, "c1", _now_ms(), "+78120000000", "+74950000001")
    jobs: list = []
    d = dispatcher(r, jobs)
    assert d.tick() == 1
    first = jobs[0][1]
    assert first["attempt"] == 1
    r.hset(callback_key(T, cb), "until", 1)  # both leases ran out
    r.hset(agent_key(T, first["employee_id"]), "offer_until", 1)
    assert d.tick() == 1
    second = jobs[1][1]
    assert second["attempt"] == 2 and second["employee_id"] == first["employee_id"]
    emp = second["employee_id"]
    job_finished(Job(first), r, {"status": "agent_no_answer", "cause": "NO_ANSWER"})
    got, state = callbacks.get(T, cb), agents.states(T, [emp])[emp]
    assert (got.status, got.attempts, state.offer, state.missed) == ("dialing", 2, member(cb), 0)
    job_finished(Job(second), r, {"status": "bridged", "cause": None})
    assert callbacks.get(T, cb).status == "done" and agents.states(T, [emp])[emp].offer == ""


def test_not_its_turn_and_nobody_free(r):
    agents, callbacks = AgentStore(r), CallbackStore(r)
    agents.join_queue(T, DEP, "earlier-caller", 500)
    cb = callbacks.request(T, DEP, "c1", _now_ms(), "+78120000000", "+74950000001")
    jobs: list = []
    d = dispatcher(r, jobs)
    assert d.tick() == 0 and callbacks.get(T, cb).status == "pending"  # a caller ahead
    agents.leave_queue(T, DEP, "earlier-caller")
    agents.channel_up(T, 1, "chan-1", 60_000)
    agents.channel_up(T, 2, "chan-2", 60_000)
    assert d.tick() == 0
    got = callbacks.get(T, cb)
    assert got.status == "pending" and got.attempts == 0 and [u for u, _ in agents.queue(T, DEP)] == [member(cb)]


def test_real_rq_worker_runs_the_job_and_its_end_callback_frees_the_member(r, redis_url, monkeypatch):
    monkeypatch.setenv("PBX_ESL_ADDRESS", "127.0.0.1:1")  # the worker's own setting: nothing listens there
    agents, callbacks = AgentStore(r), CallbackStore(r)
    cb = callbacks.request(T, DEP, "c1", _now_ms(), "+78120000000", "+74950000001")
    d = CallbackDispatcher(r, lambda t: SNAP, Policy(), SETTINGS, rq_enqueue(r, SETTINGS))
    assert d.tick() == 1
    # ESL unreachable (port 1): the job reports "failed"; the member is free, no retry.
    work_burst(r, [CALLBACK_QUEUE])
    got = callbacks.get(T, cb)
    assert got.status == "failed" and got.result.startswith("failed")
    assert agents.states(T, [1])[1].offer == "" and agents.live_offers(T) == {}


def test_pbx_inspect_callbacks(r):
    import io

    from orchestrator.inspect_cli import main

    CallbackStore(r).request(T, DEP, "c1", _now_ms(), "+78120000000", "+74950000001")
    out = io.StringIO()
    assert main(["callbacks", "--tenant", str(T)], out, r) == 0
    assert "+78120000000" in out.getvalue() and "pending" in out.getvalue()
    out = io.StringIO()
    assert main(["callbacks", "--tenant", str(T + 1)], out, r) == 0
    assert "no open callbacks" in out.getvalue()
