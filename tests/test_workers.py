"""The callback job run by a real RQ worker against replays of FreeSWITCH 1.10.12.

The job is enqueued in a real Redis (``PBX_TEST_REDIS_URL``) as JSON and run by
``rq.SimpleWorker(...).work(burst=True)`` in this process (with the worker's
serializer); its ESL connection, to the address of the worker's own settings
(``PBX_ESL_ADDRESS``), talks to the replay server (tests/esl_replay.py) playing
transcripts P06 (agent answers, client answers, uuid_bridge) and P06b (the client never
answers), so the commands and the answers are the ones a real FreeSWITCH exchanged. The
recorded dial strings are replaced by the ones the job builds (FreeSWITCH's answers do
not depend on them).
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import redis
from rq import Queue

from orchestrator.store.embedded_redis import embedded_redis_url, stop_embedded_redis
from tests.rq_burst import work_burst
from tests.esl_replay import EVENT_PLAIN_OK, ReplayServer, Script, Step
from workers import CALLBACK_QUEUE, QUEUES, SERIALIZER
from workers.jobs import ring_agent_then_client


def _now_ms() -> int:
    """Now, in ms: a callback's place is when its caller joined the queue (it expires
    after the department's no-answer timeout)."""
    return int(__import__("time").time() * 1000)

SUBSCRIBE = b"event plain BACKGROUND_JOB\n\n"
RECORDED_AGENT = b"sofia/internal/agent@127.0.0.1:5171"
RECORDED_CLIENT = b"sofia/internal/client@127.0.0.1:5172"
AGENT = "user/310@cb.pbx.test"
CLIENT = "sofia/gateway/pstn/+79990000012"


def dialled_as(script: Script, *pairs: tuple[bytes, str]) -> Script:
    """The recorded script with the recorded dial strings replaced by ours."""
    from dataclasses import replace

    steps = []
    for step in script.steps:
        expect = step.expect
        for recorded, ours in pairs:
            expect = expect.replace(recorded, ours.encode()) if expect is not None else None
        steps.append(replace(step, expect=expect))
    return Script(steps, script.name)


def callback_job(**overrides) -> dict:
    job = {
        "tenant_id": "7",
        "callback_id": "cb42",
        "agent_extension": "310",
        "agent_domain": "cb.pbx.test",
        "client_number": "+79990000012",
        "caller_id_number": "+74952220070",
        "agent_timeout_s": 20,
        "client_timeout_s": 4,
    }
    job.update(overrides)
    return job


@pytest.fixture
def esl_at(monkeypatch):
    """Point the worker's own settings at a FreeSWITCH (here: a replay server)."""

    def point(port: int) -> None:
        monkeypatch.setenv("PBX_ESL_ADDRESS", "127.0.0.1:%d" % port)
        monkeypatch.setenv("PBX_ESL_PASSWORD", "ClueCon")
        monkeypatch.setenv("PBX_EXTERNAL_DIAL_TEMPLATE", "sofia/gateway/pstn/{number}")

    return point


def run_in_rq(redis_url: str, job_data: dict) -> dict:
    """Run the job in a real RQ worker, as attempt 1 of callback cb42 being dialled."""
    from orchestrator.store.callbacks import callback_key

    connection = redis.Redis.from_url(redis_url)
    connection.delete(callback_key(7, "cb42"))
    connection.hset(callback_key(7, "cb42"), mapping={"status": "dialing", "attempts": 1, "caller": "+79990000012"})
    job_data = dict(job_data, attempt=1)
    queue = Queue(CALLBACK_QUEUE, connection=connection, serializer=SERIALIZER)
    job = queue.enqueue(ring_agent_then_client, job_data, job_timeout=60)
    work_burst(connection, [CALLBACK_QUEUE])
    job.refresh()
    assert job.get_status() == "finished", job.latest_result()
    result = job.return_value()
    connection.close()
    assert isinstance(result, dict)
    return result


def _originations(server: ReplayServer) -> list[str]:
    out = []
    for command in server.received[0]:
        text = command.decode()
        if text.startswith("bgapi originate {origination_uuid="):
            out.append(text.split("origination_uuid=", 1)[1][:36])
    return out


def test_agent_then_client_then_bridge_p06(redis_url: str, esl_at) -> None:
    script = Script.from_transcript(
        "P06_callback_bgapi_originate_uuid_bridge.txt", subscribe=SUBSCRIBE, background_jobs_from_observer=True
    ).without("api uuid_kill")  # the recorder hung up after 3 s of talk; the job does not
    script = dialled_as(script, (RECORDED_AGENT, AGENT), (RECORDED_CLIENT, CLIENT))
    with ReplayServer(script, ignore_channel_vars=True) as server:
        esl_at(server.port)
        result = run_in_rq(redis_url, callback_job())
    assert server.errors == []
    agent_uuid, client_uuid = _originations(server)
    assert result == {
        "status": "bridged",
        "cause": None,
        "agent_uuid": agent_uuid,
        "client_uuid": client_uuid,
        "tenant_id": "7",
        "callback_id": "cb42",
    }
    commands = server.commands(0)
    assert commands[:2] == ["auth ClueCon", "event plain BACKGROUND_JOB"]
    assert commands[2].startswith("bgapi originate {origination_uuid=%s," % agent_uuid)
    assert "origination_caller_id_number=+74952220070,originate_timeout=20}" + AGENT + " &park()" in commands[2]
    assert commands[3].startswith("bgapi originate {origination_uuid=%s," % client_uuid)
    assert commands[3].endswith("originate_timeout=4}" + CLIENT + " &park()")
    assert commands[4:] == ["api uuid_bridge %s %s" % (agent_uuid, client_uuid), "exit"]


def test_client_no_answer_hangs_the_agent_up_p06b(redis_url: str, esl_at) -> None:
    script = Script.from_transcript(
        "P06b_callback_client_no_answer.txt", subscribe=SUBSCRIBE, background_jobs_from_observer=True
    )
    script = dialled_as(script, (RECORDED_AGENT, AGENT), (RECORDED_CLIENT, CLIENT))
    with ReplayServer(script, ignore_channel_vars=True) as server:
        esl_at(server.port)
        result = run_in_rq(redis_url, callback_job())
    assert server.errors == []
    agent_uuid, client_uuid = _originations(server)
    assert result["status"] == "client_no_answer"
    assert result["cause"] == "NO_ANSWER"
    assert result["agent_uuid"] == agent_uuid
    assert result["client_uuid"] is None
    commands = server.commands(0)
    assert [c.split(" {")[0] for c in commands[2:4]] == ["bgapi originate", "bgapi originate"]
    assert CLIENT in commands[3]
    assert commands[4:] == ["api uuid_kill %s" % agent_uuid, "exit"]


def test_agent_no_answer_rings_nobody_else(redis_url: str, esl_at) -> None:
    script = Script.from_transcript("inbound_09_originate_no_answer.txt").only("event plain", "bgapi originate")
    script.steps[2] = Step(SUBSCRIBE, [EVENT_PLAIN_OK])
    script = dialled_as(script, (b"sofia/internal/ring@127.0.0.1:5070", AGENT))
    with ReplayServer(script, ignore_channel_vars=True) as server:
        esl_at(server.port)
        result = run_in_rq(redis_url, callback_job(agent_timeout_s=4))
    assert server.errors == []
    assert result["status"] == "agent_no_answer" and result["cause"] == "NO_ANSWER"
    assert result["agent_uuid"] is None and result["client_uuid"] is None
    assert server.commands(0)[-1] == "exit" and len(server.commands(0)) == 4


def test_unreachable_freeswitch_is_a_failed_result(redis_url: str, esl_at) -> None:
    probe = ReplayServer(Script([Step(None)])).start()
    port = probe.port
    probe.stop()
    esl_at(port)
    result = run_in_rq(redis_url, callback_job())
    assert result["status"] == "failed"
    assert "PBX_ESL_ADDRESS" in result["cause"]


def test_a_job_run_by_rq_without_its_attempt_dials_nobody(redis_url: str, monkeypatch) -> None:
    """The attempt ties the job to the callback's current claim (at most one client call
    per attempt); a job without one (forged, or from an older release) is refused."""
    monkeypatch.setattr("workers.jobs.connect_esl", lambda call: pytest.fail("FreeSWITCH reached"))
    connection = redis.Redis.from_url(redis_url)
    queue = Queue(CALLBACK_QUEUE, connection=connection, serializer=SERIALIZER)
    job = queue.enqueue(ring_agent_then_client, callback_job(), job_timeout=60)
    work_burst(connection, [CALLBACK_QUEUE])
    job.refresh()
    assert job.return_value()["cause"] == "job refused: callback job without its attempt number"
    connection.close()


def test_job_data_is_checked() -> None:
    result = ring_agent_then_client({"tenant_id": "7"})
    assert result["status"] == "failed" and "lacks callback_id, agent_extension" in result["cause"]


def test_embedded_redis_lives_in_the_data_dir(tmp_path: Path) -> None:
    try:
        url = embedded_redis_url(tmp_path / "data")
        assert url == "unix://%s" % (tmp_path / "data" / "redis.sock")
        client = redis.Redis.from_url(url)
        assert client.ping()
        # A second process (here: a second call) finds the running server.
        assert embedded_redis_url(tmp_path / "data") == url
        client.close()
    finally:
        stop_embedded_redis()


def test_pbx_worker_starts_and_works_in_burst_mode(redis_url: str, tmp_path: Path) -> None:
    env = dict(os.environ, REDIS_URL=redis_url, PBX_ENV="test", PBX_DATA_DIR=str(tmp_path))
    proc = subprocess.run(
        [sys.executable, "-m", "workers.cli", "--burst"],
        env=env,
        cwd=Path(__file__).resolve().parent.parent,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "pbx-worker on queues %s" % ", ".join(QUEUES) in proc.stderr


# ------------------------------------------------------------------ jobs are JSON data


def test_a_callback_job_in_redis_is_json_and_holds_no_password(redis_url: str) -> None:
    """What the dispatcher queues: no FreeSWITCH address or password (the worker has its
    own), and JSON, not a pickle (RQ's default), in every field of the job's hash."""
    import json
    import zlib

    from orchestrator.callback_dispatcher import CallbackDispatcher, CallbackSettings, rq_enqueue
    from orchestrator.core.plan import Policy
    from orchestrator.store.callbacks import CallbackStore
    from test_callback_dispatcher import DEP, SNAP, T

    r = redis.Redis.from_url(redis_url)
    r.flushdb()
    CallbackStore(r).request(T, DEP, "c1", _now_ms(), "+78120000000", "+74950000001")
    settings = CallbackSettings()
    assert CallbackDispatcher(r, lambda t: SNAP, Policy(), settings, rq_enqueue(r, settings)).tick() == 1
    (job_id,) = [k.decode().split(":", 2)[2] for k in r.keys("rq:job:*")]
    raw = r.hgetall("rq:job:%s" % job_id)
    everything = b" ".join(raw.values())
    assert b"ClueCon" not in everything and b"password" not in everything and b"\x80\x05" not in everything
    func, instance, args, kwargs = json.loads(zlib.decompress(raw[b"data"]))
    assert func == "workers.jobs.ring_agent_then_client" and kwargs == {} and instance is None
    (data,) = args
    assert set(data) == {"tenant_id", "callback_id", "attempt", "agent_extension", "agent_domain", "client_number",
                         "caller_id_number", "agent_timeout_s", "client_timeout_s", "waited_s", "client_prompt"}
    assert json.loads(raw[b"meta"])["callback_id"] == data["callback_id"]
    r.close()


class _Planted:
    """A pickle that, when loaded, creates a file: what an attacker with write access to
    Redis would plant (with ``os.system`` instead)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204
        return (Path.touch, (self.marker,))


def test_a_pickle_planted_in_redis_is_not_executed_by_pbx_worker(redis_url: str, tmp_path: Path) -> None:
    import pickle
    import zlib

    r = redis.Redis.from_url(redis_url)
    r.flushdb()
    marker = tmp_path / "pwned"
    pickle.loads(pickle.dumps(_Planted(marker)))  # the payload works: loading it runs code
    assert marker.exists()
    marker.unlink()
    # A job of ours, queued the ordinary way, whose data is then replaced by the pickle.
    queue = Queue(CALLBACK_QUEUE, connection=r, serializer=SERIALIZER)
    job = queue.enqueue("workers.jobs.ring_agent_then_client", {"tenant_id": "7"})
    r.hset("rq:job:%s" % job.id, "data", zlib.compress(pickle.dumps(_Planted(marker))))
    env = dict(os.environ, REDIS_URL=redis_url, PBX_ENV="test", PBX_DATA_DIR=str(tmp_path), PYTHONPATH=str(Path(__file__).parent))
    proc = subprocess.run([sys.executable, "-m", "workers.cli", "--burst"], env=env, cwd=Path(__file__).resolve().parent.parent,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert not marker.exists(), "the planted pickle ran in the worker"
    assert queue.count == 0  # taken off the queue, and failed rather than run
    assert job.id in queue.failed_job_registry.get_job_ids()
    r.close()
