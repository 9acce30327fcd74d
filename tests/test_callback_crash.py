"""A callback worker killed (kill -9) between the member's leg and the client's.

Real processes and servers: ``pbx-worker`` (RQ's forking worker: the worker and its
work horse, both killed with SIGKILL, as when a container or a machine dies), a real
Redis, and the FreeSWITCH simulator's inbound event socket; the dispatcher runs here.

What must hold: the attempt the worker died in leaves nothing behind once its lease is
over (its member's leg, parked, and the client's, ringing, are hung up: the job records
each leg's uuid before originating it); the callback is tried again at its place; a job
of the lost attempt run again (as RQ may re-run an abandoned job) dials nobody; the
client is dialled once per attempt; the callback ends settled (done).

The leases are a job's whole time (2 x (agent + client ring + margin), minutes); the
test ends them by writing their expiry in Redis, as time would.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest
import redis

from orchestrator.callback_dispatcher import CallbackDispatcher, CallbackSettings, LegChecker, rq_enqueue
from orchestrator.core.plan import Policy
from orchestrator.store.agents import AgentStore, agent_key
from orchestrator.store.callbacks import CallbackStore, callback_key
from simulator import Answer
from test_callback_dispatcher import DEP, SNAP, T
from test_e2e_calls import make_sim, wait_until


def _now_ms() -> int:
    """Now, in ms: a callback's place is when its caller joined the queue (it expires
    after the department's no-answer timeout)."""
    return int(__import__("time").time() * 1000)

ROOT = Path(__file__).resolve().parent.parent
# Simulated seconds (x 0.02 real): the member answers at once; the client rings 100 s
# (2 s real) before answering, so the worker can be killed while the client rings.
SETTINGS = CallbackSettings(agent_timeout_s=50, client_timeout_s=400, margin_s=5)


def start_worker(redis_url: str, esl_port: int, tmp_path: Path, *args: str) -> subprocess.Popen:
    env = dict(os.environ, REDIS_URL=redis_url, PBX_ENV="test", PBX_DATA_DIR=str(tmp_path),
               PBX_ESL_ADDRESS="127.0.0.1:%d" % esl_port, PBX_ESL_PASSWORD="ClueCon",
               PBX_EXTERNAL_DIAL_TEMPLATE="sofia/gateway/pstn/{number}")
    log = open(tmp_path / ("worker-%d.log" % len(list(tmp_path.glob("worker-*.log")))), "wb")
    return subprocess.Popen([sys.executable, "-m", "workers.cli", *args], env=env, cwd=ROOT, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)


def children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path("/proc/%d/task/%d/children" % (pid, pid)).read_text().split()]
    except OSError:
        return []


def kill_9(proc: subprocess.Popen) -> None:
    """SIGKILL the worker and its work horse (RQ puts the horse in its own process group)."""
    horses = children(proc.pid)
    proc.send_signal(signal.SIGKILL)
    for pid in horses:
        os.kill(pid, signal.SIGKILL)
    proc.wait(timeout=10)


@pytest.fixture
def r(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


def test_worker_killed_while_the_client_rings(r, redis_url, tmp_path):
    agents, callbacks = AgentStore(r), CallbackStore(r)
    sim = make_sim("127.0.0.1:1")
    workers: list[subprocess.Popen] = []
    legs = LegChecker({"host": "127.0.0.1", "port": sim.esl_port, "password": "ClueCon"})
    try:
        member = sim.add_user("101", "demo.pbx.local", behavior=Answer(after=1, hangup_after=100_000))
        client = sim.add_external("+78120000000", behavior=Answer(after=100, hangup_after=100_000))
        agents.channel_up(T, 2, "chan-2", 600_000)  # only member 1 (101) is free
        cb = callbacks.request(T, DEP, "c1", _now_ms(), "+78120000000", "+74950000001")
        sent: list[tuple[dict, dict]] = []
        enqueue = rq_enqueue(r, SETTINGS)
        d = CallbackDispatcher(r, lambda t: SNAP, Policy(external_dial_template="sofia/gateway/pstn/{number}"), SETTINGS,
                               lambda data, meta: (sent.append((data, meta)), enqueue(data, meta))[1], legs,
                               hang_up=legs.hang_up)
        assert d.tick() == 1

        workers.append(start_worker(redis_url, sim.esl_port, tmp_path))
        wait_until(lambda: client.legs, timeout=60, what="the client's phone ringing")
        kill_9(workers[0])
        (agent_leg,) = member.legs
        (client_leg,) = client.legs
        assert agent_leg.answered_at is not None and agent_leg.ended_at is None  # parked, waiting
        lost = callbacks.get(T, cb)
        assert (lost.status, lost.attempts) == ("dialing", 1)
        assert set(lost.legs) == {agent_leg.leg_uuid, client_leg.leg_uuid}  # recorded before originating

        # The lease runs out: the callback goes back to its place, the lost legs are hung
        # up, and (the member being free again) attempt 2 is queued in the same pass.
        r.hset(callback_key(T, cb), "until", 1)
        r.hset(agent_key(T, 1), "offer_until", 1)
        assert d.tick() == 1
        wait_until(lambda: agent_leg.ended_at is not None and client_leg.ended_at is not None, timeout=30,
                   what="the lost attempt's legs hung up")
        assert callbacks.get(T, cb).attempts == 2 and [m["attempt"] for _, m in sent] == [1, 2]
        # RQ re-running the lost attempt's job: it dials nobody and settles nothing.
        enqueue(*sent[0])

        workers.append(start_worker(redis_url, sim.esl_port, tmp_path, "--burst"))
        # Waited for cooperatively: the simulator serves the worker from this process.
        wait_until(lambda: workers[1].poll() is not None, timeout=120, what="the second worker's burst")
        assert workers[1].returncode == 0, _logs(tmp_path)
        got = callbacks.get(T, cb)
        assert got.status == "done" and got.result == "bridged" and got.attempts == 2, (got, _logs(tmp_path))
        assert len(member.legs) == 2 and len(client.legs) == 2  # one client call per attempt
        assert member.legs[1].answered_at is not None and client.legs[1].answered_at is not None
        assert "attempt 1 is no longer current" in _logs(tmp_path)
        assert callbacks.open(T) == [] and [t.agent_uuid for t in callbacks.talks(T)] == [member.legs[1].leg_uuid]
    finally:
        for proc in workers:
            if proc.poll() is None:
                kill_9(proc)
        legs.close()
        sim.stop()


def test_the_client_is_dialled_once_per_attempt(r):
    """The check the job makes before each originate (``CallbackStore.leg``)."""
    callbacks = CallbackStore(r)
    cb = callbacks.request(T, DEP, "c1", _now_ms(), "+78120000000", "+74950000001")
    uuids = ["00000000-0000-4000-8000-00000000000%d" % i for i in range(6)]
    assert not callbacks.leg(T, cb, 1, "agent", uuids[0])  # not claimed yet
    assert callbacks.claim(T, cb, 60_000) == 1
    assert callbacks.leg(T, cb, 1, "agent", uuids[0]) and callbacks.leg(T, cb, 1, "client", uuids[1])
    assert not callbacks.leg(T, cb, 1, "client", uuids[2])  # a second client call in attempt 1
    assert callbacks.get(T, cb).legs == (uuids[0], uuids[1])
    assert callbacks.settle(T, callbacks.get(T, cb), "pending", "agent_no_answer")
    assert callbacks.claim(T, cb, 60_000) == 2
    assert callbacks.get(T, cb).legs == ()
    assert not callbacks.leg(T, cb, 1, "agent", uuids[3])  # attempt 1 is over
    assert callbacks.leg(T, cb, 2, "agent", uuids[3]) and callbacks.leg(T, cb, 2, "client", uuids[4])
    with pytest.raises(ValueError):
        callbacks.leg(T, cb, 2, "agent", "x all")


def _logs(tmp_path: Path) -> str:
    return "\n".join(p.read_text(errors="replace") for p in sorted(tmp_path.glob("worker-*.log")))

