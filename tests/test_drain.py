"""SIGTERM drains a real ``pbx-orchestrator`` process instead of cutting its calls.

Simulated FreeSWITCH (our dialplan, the ESL wire) -> a real ``pbx-orchestrator`` ->
real PostgreSQL and Redis. Before the fix, SIGTERM closed the listener and returned at
once (gevent's ``StreamServer.stop(timeout)`` waits only for a pool, and the server
had none): every running call was cut and its history row never written, whatever
``--drain-seconds`` said.

FreeSWITCH behaviour relied on (transcripts P08, P08c; tests/test_e2e_calls.py): when
the ``socket`` application cannot connect (connection refused), or the connection
closes mid-call, FreeSWITCH continues the dialplan after ``socket``, which transfers to
the ``pbx-fallback`` context.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import gevent
import pytest

from simulator import Answer, FreeSwitchSim
from test_e2e_calls import DOMAIN, e2e_db, e2e_redis, make_sim, records_for, wait_until  # noqa: F401 - fixtures

ROOT = Path(__file__).resolve().parent.parent


class Process:
    """A real pbx-orchestrator with our command-line arguments."""

    def __init__(self, db_url: str, redis_url: str, log_path: Path, listen: str, *args: str) -> None:
        env = dict(os.environ, DATABASE_URL=db_url, REDIS_URL=redis_url, PBX_ENV="test", PBX_DATA_DIR=str(log_path.parent),
                   PBX_RECORDINGS_DIR="/rec")
        self.log_path = log_path
        self.address = listen
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "import sys; from orchestrator.cli import orchestrator_main; sys.exit(orchestrator_main())",
             "--listen", listen, *args],
            env=env, stdout=subprocess.PIPE, stderr=open(log_path, "wb"), text=True, cwd=ROOT,
        )
        line = ""
        with gevent.Timeout(60, AssertionError("orchestrator did not start; log: %s" % log_path)):
            while "listening on" not in line:
                line = gevent.get_hub().threadpool.apply(self.proc.stdout.readline)
                if not line and self.proc.poll() is not None:
                    raise AssertionError("orchestrator exited: %s" % log_path.read_text())

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def exited(self) -> bool:
        return self.proc.poll() is not None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


def free_address() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return "127.0.0.1:%d" % probe.getsockname()[1]


def refused(address: str) -> bool:
    host, port = address.rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


@pytest.fixture
def started(e2e_db, e2e_redis, tmp_path) -> Iterator:
    made: list = []

    def start(*args: str) -> tuple[FreeSwitchSim, Process]:
        listen = free_address()
        orch = Process(e2e_db[0], e2e_redis, tmp_path / "orchestrator.log", listen, *args)
        sim = make_sim(listen)
        made.append((sim, orch))
        return sim, orch

    yield start
    for sim, orch in made:
        sim.stop()
        orch.stop()


def fallback_taken(call) -> bool:
    return ("transfer", "fallback XML pbx-fallback") in [(n, d) for _, n, d in call.apps]


def test_sigterm_lets_a_running_call_finish_refuses_new_ones_and_writes_history(started, e2e_db):
    _, factory, _ = e2e_db
    sim, orch = started("--drain-seconds", "120")
    # Anna answers after 1 s and talks 400 s (8 s real at the simulator's time scale).
    desk = sim.add_user("101", DOMAIN, behavior=Answer(after=1, hangup_after=400))
    talking = sim.place_call("+74951110001", caller_id="+78121234567")
    wait_until(lambda: desk.legs and desk.legs[0].answered_at is not None, timeout=30, what="the call answered")

    orch.proc.send_signal(signal.SIGTERM)
    wait_until(lambda: "new calls are refused" in orch.log(), timeout=30, what="the drain begun")
    assert refused(orch.address)  # "connection refused", not a hang
    # A new call now: its socket is refused, FreeSWITCH goes on to the fallback.
    late = sim.place_call("+74951110002", caller_id="+78127654321", hangup_after=20).wait(timeout=60)
    names = [n for _, n, _ in late.apps]
    assert "socket" in names and names[names.index("socket") + 1] == "transfer" and fallback_taken(late)
    assert not orch.exited() and talking.hangup_cause is None  # the first call still talks, still ours

    talking.wait(timeout=60)
    assert talking.answered and talking.hangup_cause == "NORMAL_CLEARING" and not fallback_taken(talking)
    with gevent.Timeout(60, AssertionError("the orchestrator did not exit after its calls ended: %s" % orch.log()[-3000:])):
        while not orch.exited():
            gevent.sleep(0.05)
    assert orch.proc.returncode == 0, orch.log()[-3000:]
    # Its history row was written before the process exited.
    (row,) = records_for(factory, talking.uuid)
    assert row.answered_by_employee_id is not None and "answered by employee" in row.route
    assert records_for(factory, late.uuid) == []  # never reached us
    log = orch.log()
    assert "every call has ended" in log and "Traceback" not in log and "did not end within" not in log


def test_calls_still_running_when_the_drain_time_is_up_are_cut_to_the_fallback_with_history(started, e2e_db):
    _, factory, _ = e2e_db
    sim, orch = started("--drain-seconds", "1")
    desk = sim.add_user("101", DOMAIN, behavior=Answer(after=1, hangup_after=100_000))
    talking = sim.place_call("+74951110001", caller_id="+78121234567", hangup_after=100_000)
    wait_until(lambda: desk.legs and desk.legs[0].answered_at is not None, timeout=30, what="the call answered")
    orch.proc.send_signal(signal.SIGTERM)
    with gevent.Timeout(60, AssertionError("the orchestrator did not exit: %s" % orch.log()[-3000:])):
        while not orch.exited():
            gevent.sleep(0.05)
    assert orch.proc.returncode == 0, orch.log()[-3000:]
    assert "1 call(s) still running after 1 s are cut" in orch.log()
    (row,) = records_for(factory, talking.uuid)  # written before the exit
    assert row.hangup_cause == "SOCKET_GONE" and row.answered_by_employee_id is not None
    # The call itself lives on in FreeSWITCH: the bridge runs; after it, the fallback.
    assert talking.hangup_cause is None
