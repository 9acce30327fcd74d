"""/metrics of a real ``pbx-orchestrator`` process (PBX_METRICS_LISTEN) while the
FreeSWITCH simulator places calls: the exposition parses and the counters, the queue
gauges and the latency histograms move with the calls."""
from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Iterator

import gevent
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from orchestrator.store.agents import AgentStore
from simulator import Answer, FreeSwitchSim
from test_e2e_calls import Orchestrator, make_sim, members_start_free, wait_until  # noqa: F401 - fixture
from test_e2e_departments import DOMAIN, _department, dept_db, e2e_redis, settle  # noqa: F401 - fixtures


class MetricsOrchestrator(Orchestrator):
    """pbx-orchestrator with PBX_METRICS_LISTEN on an ephemeral port."""

    def __init__(self, db_url: str, redis_url: str, log_path: Path) -> None:  # noqa: D107 - see Orchestrator
        env = dict(os.environ, DATABASE_URL=db_url, REDIS_URL=redis_url, PBX_ENV="test", PBX_DATA_DIR=str(log_path.parent),
                   PBX_RECORDINGS_DIR="/rec", PBX_METRICS_LISTEN="127.0.0.1:0")
        self.log_path = log_path
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "import sys; from orchestrator.cli import orchestrator_main; sys.exit(orchestrator_main())",
             "--listen", "127.0.0.1:0"], env=env, stdout=subprocess.PIPE, stderr=open(log_path, "wb"), text=True)
        self.metrics_url = ""
        line = ""
        with gevent.Timeout(60, AssertionError("orchestrator did not start; log: %s" % log_path)):
            while "listening on" not in line:
                line = gevent.get_hub().threadpool.apply(self.proc.stdout.readline)
                if not line and self.proc.poll() is not None:
                    raise AssertionError("orchestrator exited: %s" % log_path.read_text())
                if "metrics on " in line:
                    self.metrics_url = line.strip().rsplit(" ", 1)[-1]
        self.address = line.strip().rsplit(" ", 1)[-1]
        assert self.metrics_url.startswith("http://127.0.0.1:")

    def scrape(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        body = gevent.get_hub().threadpool.apply(lambda: urllib.request.urlopen(self.metrics_url, timeout=10).read())
        out = {}
        for family in text_string_to_metric_families(body.decode("utf-8")):
            for s in family.samples:
                out[(s.name, tuple(sorted(s.labels.items())))] = s.value
        return out


@pytest.fixture(scope="module")
def orchestrator(pg_server_url, dept_db, e2e_redis, tmp_path_factory) -> Iterator[MetricsOrchestrator]:  # noqa: F811
    orch = MetricsOrchestrator(pg_server_url, e2e_redis, tmp_path_factory.mktemp("orch") / "orchestrator.log")
    yield orch
    orch.stop()


@pytest.fixture
def sim(orchestrator) -> Iterator[FreeSwitchSim]:
    s = make_sim(orchestrator.address)
    yield s
    s.stop()


def test_counters_move_with_calls_through_a_queue(orchestrator, sim, dept_db, e2e_redis) -> None:  # noqa: F811
    """Department 460 (one member, hold music): A talks to 307, B waits on hold (the
    queue gauges show it), and is offered 307 when A ends (a re-offer)."""
    factory, tenant_id = dept_db
    agents = AgentStore(redis.Redis.from_url(e2e_redis))
    before = orchestrator.scrape()
    seven = sim.add_user("307", DOMAIN, behavior=Answer(after=1, hangup_after=10))
    a = sim.place_call("+74952220060", caller_id="+79990000001")
    wait_until(lambda: seven.legs and seven.legs[0].answered_at is not None, what="A answered")
    b = sim.place_call("+74952220060", caller_id="+79990000002")
    dep = _department(factory, tenant_id, "460")
    wait_until(lambda: len(agents.queue(tenant_id, dep)) == 1, what="B queued")
    tenant = (("tenant", str(tenant_id)),)
    wait_until(lambda: orchestrator.scrape().get(("pbx_tenant_queue_waiting_callers", tenant)) == 1,
               timeout=20, what="B counted on hold")
    during = orchestrator.scrape()
    assert during[("pbx_queue_waiting_callers", ())] == 1
    assert during[("pbx_tenant_queue_longest_wait_seconds", tenant)] >= 0
    assert during[("pbx_calls_in_progress", ())] == 2
    for call in (a, b):
        call.wait(timeout=60)
    assert [leg.a_uuid for leg in seven.legs] == [a.uuid, b.uuid]

    def moved(name: str, labels: tuple[tuple[str, str], ...] = ()) -> float:
        return orchestrator.scrape().get((name, labels), 0.0) - before.get((name, labels), 0.0)

    wait_until(lambda: orchestrator.scrape()[("pbx_calls_in_progress", ())] == 0, timeout=20, what="both calls closed")
    assert moved("pbx_calls_total") == 2
    assert moved("pbx_offers_total") == 2  # 307 offered A, then B
    assert moved("pbx_routing_seconds_count") == 2
    assert moved("pbx_reoffer_seconds_count") == 1  # B: member freed -> bridge
    assert moved("pbx_reoffer_seconds_bucket", (("le", "+Inf"),)) == 1
    wait_until(lambda: moved("pbx_history_rows_written_total") >= 2, timeout=20, what="history rows written")
    after = orchestrator.scrape()
    assert after[("pbx_queue_waiting_callers", ())] == 0
    assert after[("pbx_history_rows_queued", ())] == 0
    assert after[("pbx_redis_errors_total", ())] == before[("pbx_redis_errors_total", ())]
    assert after[("pbx_database_errors_total", ())] == before[("pbx_database_errors_total", ())]
    settle(agents, tenant_id)


def test_worker_serves_metrics_from_its_own_thread(e2e_redis, tmp_path) -> None:  # noqa: F811
    """pbx-worker with PBX_METRICS_LISTEN: RQ queue lengths and the callbacks pending
    (read from Redis on scrape) parse and follow what is in Redis."""
    from orchestrator.store.callbacks import CallbackStore

    client = redis.Redis.from_url(e2e_redis)
    callback = CallbackStore(client).request(77, 5, "metrics-cb-call", 1000, "+79990000077", "+74950000000")
    env = dict(os.environ, REDIS_URL=e2e_redis, PBX_ENV="test", PBX_DATA_DIR=str(tmp_path), PBX_METRICS_LISTEN="127.0.0.1:0")
    log_path = tmp_path / "worker.log"
    proc = subprocess.Popen([sys.executable, "-c", "import sys; from workers.cli import main; sys.exit(main())"],
                            env=env, stdout=subprocess.PIPE, stderr=open(log_path, "wb"), text=True)
    try:
        with gevent.Timeout(60, AssertionError("worker did not serve metrics; log: %s" % log_path)):
            line = gevent.get_hub().threadpool.apply(proc.stdout.readline)  # type: ignore[union-attr]
        assert "metrics on " in line, log_path.read_text()
        url = line.strip().rsplit(" ", 1)[-1]
        body = gevent.get_hub().threadpool.apply(lambda: urllib.request.urlopen(url, timeout=10).read())
        got = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for f in text_string_to_metric_families(body.decode("utf-8")) for s in f.samples}
        assert got[("pbx_worker_queue_jobs", (("queue", "pbx-callbacks"),))] == 0
        assert got[("pbx_callbacks_pending", ())] >= 1
        assert got[("pbx_tenant_callbacks_pending", (("tenant", "77"),))] == 1
        assert ("pbx_worker_jobs_total", (("outcome", "succeeded"),)) in got
        # While a job runs in its work horse (RQ's parent then blocks in os.wait4), the
        # worker still answers scrapes, within 3 s, and counts the job once it is done.
        from rq import Queue

        from workers import DEFAULT_QUEUE, SERIALIZER

        job = Queue(DEFAULT_QUEUE, connection=client, serializer=SERIALIZER).enqueue("time.sleep", 4)
        wait_until(lambda: job.get_status(refresh=True) == "started", timeout=30, what="the job started")
        busy = gevent.get_hub().threadpool.apply(lambda: urllib.request.urlopen(url, timeout=3).read())
        assert b"pbx_worker_queue_jobs" in busy

        def succeeded() -> float:
            body = gevent.get_hub().threadpool.apply(lambda: urllib.request.urlopen(url, timeout=10).read())
            return {(s.name, tuple(sorted(s.labels.items()))): s.value for f in text_string_to_metric_families(body.decode())
                    for s in f.samples}[("pbx_worker_jobs_total", (("outcome", "succeeded"),))]

        wait_until(lambda: succeeded() >= 1, timeout=60, what="the job counted as succeeded")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        CallbackStore(client).cancel(77, callback)
