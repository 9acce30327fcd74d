"""The callback job run by a real RQ worker against replays of FreeSWITCH 1.10.12.

The job is enqueued in a real Redis (``PBX_TEST_REDIS_URL``) and run by
``rq.SimpleWorker(...).work(burst=True)`` in this process; its ESL connection talks to
the replay server (tests/esl_replay.py) playing transcripts P06 (agent answers, client
answers, uuid_bridge) and P06b (the client never answers), so the commands and the
answers are the ones a real FreeSWITCH exchanged.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import redis
from rq import Queue, SimpleWorker

from orchestrator.store.embedded_redis import embedded_redis_url, stop_embedded_redis
from tests.esl_replay import EVENT_PLAIN_OK, ReplayServer, Script, Step
from workers import CALLBACK_QUEUE, QUEUES
from workers.jobs import ring_agent_then_client

SUBSCRIBE = b"event plain BACKGROUND_JOB\n\n"
AGENT = "sofia/internal/agent@127.0.0.1:5171"
CLIENT = "sofia/internal/client@127.0.0.1:5172"


def callback_job(port: int, **overrides) -> dict:
    job = {
        "tenant_id": "t-acme",
        "callback_id": "cb-42",
        "agent_dial": AGENT,
        "client_dial": CLIENT,
        "caller_id_number": "5551000",
        "agent_timeout_s": 20,
        "client_timeout_s": 4,
        "esl": {"host": "127.0.0.1", "port": port, "password": "ClueCon"},
    }
    job.update(overrides)
    return job


def run_in_rq(redis_url: str, job_data: dict) -> dict:
    connection = redis.Redis.from_url(redis_url)
    queue = Queue(CALLBACK_QUEUE, connection=connection)
    job = queue.enqueue(ring_agent_then_client, job_data, job_timeout=60)
    SimpleWorker([queue], connection=connection).work(burst=True)
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


def test_agent_then_client_then_bridge_p06(redis_url: str) -> None:
    script = Script.from_transcript(
        "P06_callback_bgapi_originate_uuid_bridge.txt", subscribe=SUBSCRIBE, background_jobs_from_observer=True
    ).without("api uuid_kill")  # the recorder hung up after 3 s of talk; the job does not
    with ReplayServer(script, ignore_channel_vars=True) as server:
        result = run_in_rq(redis_url, callback_job(server.port))
    assert server.errors == []
    agent_uuid, client_uuid = _originations(server)
    assert result == {
        "status": "bridged",
        "cause": None,
        "agent_uuid": agent_uuid,
        "client_uuid": client_uuid,
        "tenant_id": "t-acme",
        "callback_id": "cb-42",
    }
    commands = server.commands(0)
    assert commands[:2] == ["auth ClueCon", "event plain BACKGROUND_JOB"]
    assert commands[2].startswith("bgapi originate {origination_uuid=%s," % agent_uuid)
    assert "origination_caller_id_number=5551000,originate_timeout=20}" + AGENT + " &park()" in commands[2]
    assert commands[3].startswith("bgapi originate {origination_uuid=%s," % client_uuid)
    assert commands[3].endswith("originate_timeout=4}" + CLIENT + " &park()")
    assert commands[4:] == ["api uuid_bridge %s %s" % (agent_uuid, client_uuid), "exit"]


def test_client_no_answer_hangs_the_agent_up_p06b(redis_url: str) -> None:
    script = Script.from_transcript(
        "P06b_callback_client_no_answer.txt", subscribe=SUBSCRIBE, background_jobs_from_observer=True
    )
    with ReplayServer(script, ignore_channel_vars=True) as server:
        result = run_in_rq(redis_url, callback_job(server.port))
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


def test_agent_no_answer_rings_nobody_else(redis_url: str) -> None:
    script = Script.from_transcript("inbound_09_originate_no_answer.txt").only("event plain", "bgapi originate")
    script.steps[2] = Step(SUBSCRIBE, [EVENT_PLAIN_OK])
    with ReplayServer(script, ignore_channel_vars=True) as server:
        result = run_in_rq(
            redis_url, callback_job(server.port, agent_dial="sofia/internal/ring@127.0.0.1:5070", agent_timeout_s=4)
        )
    assert server.errors == []
    assert result["status"] == "agent_no_answer" and result["cause"] == "NO_ANSWER"
    assert result["agent_uuid"] is None and result["client_uuid"] is None
    assert server.commands(0)[-1] == "exit" and len(server.commands(0)) == 4


def test_unreachable_freeswitch_is_a_failed_result(redis_url: str) -> None:
    probe = ReplayServer(Script([Step(None)])).start()
    port = probe.port
    probe.stop()
    result = run_in_rq(redis_url, callback_job(port))
    assert result["status"] == "failed"
    assert "PBX_ESL_ADDRESS" in result["cause"]


def test_job_data_is_checked() -> None:
    with pytest.raises(ValueError):
        ring_agent_then_client({"tenant_id": "t"})


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
