"""Operators' metrics: ``/metrics`` in Prometheus' text format (``prometheus_client``).

Three processes expose them: ``pbx-orchestrator`` and ``pbx-worker`` on an address of
their own (``PBX_METRICS_LISTEN``, e.g. ``127.0.0.1:9101`` / ``127.0.0.1:9102``; empty:
off), served by ``gevent.pywsgi`` with ``prometheus_client.make_wsgi_app`` (the
orchestrator's on its hub, so that a scrape never blocks the calls; the worker's from a
thread of its own, ``serve_in_thread``); the panel at its own ``/metrics`` (operators' sessions, or
HTTP basic auth with ``PBX_METRICS_USER`` / ``PBX_METRICS_PASSWORD``; never a tenant's
accounts).

The call path only adds to plain integers (``Tally``, ``LatencyHistogram``: 50-250 ns an
update, no lock, no I/O; the call and failure counts are the handler's own ``stats``,
the calls in progress the server's ``active``). Everything that costs more is computed
when Prometheus scrapes, by collectors with a bound on what they read:

==========================================  =========================================================
orchestrator
``pbx_calls_total``                          calls FreeSWITCH handed us (``rate()``: calls per second)
``pbx_calls_in_progress``                    call sockets open now
``pbx_call_failures_total``                  calls whose handler failed (a bug; FreeSWITCH took the fallback)
``pbx_routing_seconds``                      histogram: call socket accepted -> our first ``sendmsg`` written
``pbx_reoffer_seconds``                      histogram: free-member notice received -> the waiting caller's
                                             ``bridge`` written (the re-offer from the queue)
``pbx_offers_total``                         members offered a call (each ringing member once)
``pbx_queue_waiting_callers``                callers on hold in this process (all tenants)
``pbx_queue_longest_wait_seconds``           the longest of their waits
``pbx_tenant_queue_waiting_callers``         per tenant, the ``PBX_METRICS_TOP_TENANTS`` (20) tenants with
                                             the most callers on hold only (label ``tenant``: its id)
``pbx_tenant_queue_longest_wait_seconds``    per tenant, the 20 tenants with the longest wait only
``pbx_history_rows_queued``                  call history rows waiting for the database (HistoryWriter)
``pbx_history_rows_written_total``           ... written; ``pbx_history_rows_not_stored_total``: lost;
                                             ``pbx_history_write_failures_total``: failed batch attempts
``pbx_esl_reconnects_total``                 inbound event socket reconnect attempts, ``result`` ok | failed
worker
``pbx_worker_queue_jobs``                    RQ jobs waiting, per queue (``queue``: pbx-callbacks, pbx-default)
``pbx_worker_failed_jobs``                   jobs in the queues' failed registries
``pbx_worker_jobs_total``                    jobs this worker ran, ``outcome`` succeeded | failed
worker and panel (read from Redis on scrape)
``pbx_callbacks_pending``                    open callbacks (pending or being dialled), all tenants
``pbx_tenant_callbacks_pending``             per tenant, the 20 tenants with the most only
panel
``pbx_live_calls``                           calls in progress in every orchestrator (Redis call leases)
``pbx_tenant_live_calls``                    per tenant, the 20 tenants with the most only
``pbx_panel_requests_total``                 panel responses, ``status`` 2xx | 3xx | 4xx | 5xx
``pbx_panel_request_seconds``                histogram of their durations
every process
``pbx_redis_errors_total``                   Redis commands that failed (connection, timeout, script error)
``pbx_database_errors_total``                PostgreSQL (or development SQLite) statements that failed
``process_*``, ``python_*``                  prometheus_client's own: CPU, memory, open files, GC
==========================================  =========================================================

Labels are bounded: ``tenant`` appears only on the top-N gauges (N tenants at most per
scrape, whatever the number of tenants or callers), the Redis collectors read at most
``MAX_TENANTS_READ`` tenants per scrape (one pipelined round trip), and no metric has a
label per call, caller or member.
"""
from __future__ import annotations

import heapq
import hmac
import logging
import time
from bisect import bisect_left
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Mapping, Sequence

from prometheus_client import CollectorRegistry, Counter, Histogram, make_wsgi_app
from prometheus_client import GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

if TYPE_CHECKING:
    import redis
    from gevent.pywsgi import WSGIServer

log = logging.getLogger("orchestrator.metrics")

TOP_TENANTS = 20  # tenants with a label of their own per top-N gauge
MAX_TENANTS_READ = 2000  # tenants a Redis collector reads per scrape, at most
# Routing is milliseconds; a re-offer includes a Redis round trip or two.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
PANEL_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

# ---------------------------------------------------------------- the hot path's metrics
# Made once per process, registered in no registry here: each process's registry
# (``orchestrator_registry`` ...) takes the ones it exposes, so tests can build several.
class Tally:
    """A counter updated by the orchestrator's greenlets: a plain integer (~50 ns; a
    ``prometheus_client.Counter`` takes a lock, ~600 ns here). Greenlets switch only at
    blocking calls, so ``+=`` is never interleaved; never update one from a thread."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0

    def inc(self, amount: int = 1) -> None:
        self.value += amount


class LatencyHistogram:
    """A histogram for the greenlets' hot path (see ``Tally``): ``observe`` is one
    ``bisect`` and two additions (~250 ns against ~1.3 us for prometheus_client's)."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: Sequence[float] = LATENCY_BUCKETS) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)  # the last: above every bound (+Inf)
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(self.bounds, seconds)] += 1  # bounds[i] >= seconds: Prometheus' "le"
        self.sum += seconds

    def family(self, name: str, doc: str) -> HistogramMetricFamily:
        buckets, total = [], 0
        for bound, n in zip((*self.bounds, float("inf")), self.counts):
            total += n
            buckets.append(("+Inf" if bound == float("inf") else floatToGoString(bound), total))
        return HistogramMetricFamily(name, doc, buckets=buckets, sum_value=self.sum)


ROUTING = LatencyHistogram()  # call socket accepted -> first sendmsg written
REOFFER = LatencyHistogram()  # free-member notice received -> the waiting caller's bridge written
OFFERS = Tally()  # members offered a call
ESL_RECONNECTS = Counter("pbx_esl_reconnects", "Reconnect attempts of the inbound event socket clients", ["result"],
                         registry=None)
REDIS_ERRORS = Counter("pbx_redis_errors", "Redis commands that failed (connection, timeout, script or command error)",
                       registry=None)
DATABASE_ERRORS = Counter("pbx_database_errors", "Database (PostgreSQL; SQLite in development) statements that failed",
                          registry=None)
PANEL_REQUESTS = Counter("pbx_panel_requests", "Panel responses by status class", ["status"], registry=None)
PANEL_SECONDS = Histogram("pbx_panel_request_seconds", "Panel response time", buckets=PANEL_BUCKETS, registry=None)

_ESL_OK = ESL_RECONNECTS.labels("ok")
_ESL_FAILED = ESL_RECONNECTS.labels("failed")
_PANEL_STATUS = {n: PANEL_REQUESTS.labels("%dxx" % n) for n in range(1, 6)}


def esl_reconnect(host: str, port: int, ok: bool) -> None:
    """The inbound client's reconnect hook (``orchestrator.esl.inbound.on_reconnect``)."""
    (_ESL_OK if ok else _ESL_FAILED).inc()


def panel_response(status: int, seconds: float) -> None:
    child = _PANEL_STATUS.get(status // 100)
    if child is not None:
        child.inc()
    PANEL_SECONDS.observe(seconds)


# ---------------------------------------------------------------- collectors (run on scrape)


def top(values: Mapping[int, float], n: int) -> list[tuple[int, float]]:
    """The ``n`` largest ``(tenant, value)`` pairs, largest first (ties: lower id first)."""
    return heapq.nsmallest(n, values.items(), key=lambda kv: (-kv[1], kv[0]))


def _tenant_family(name: str, doc: str, values: Mapping[int, float], n: int) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, doc, labels=["tenant"])
    for tenant, value in top(values, n):
        family.add_metric([str(tenant)], value)
    return family


class CallFigures(Collector):
    """The orchestrator's call counters: the handler's ``stats`` (calls, errors), the
    server's open call sockets, and the hot path's ``ROUTING`` / ``REOFFER`` / ``OFFERS``."""

    def __init__(self, stats: Mapping[str, int], in_progress: Callable[[], int]) -> None:
        self._stats, self._in_progress = stats, in_progress

    def collect(self) -> Iterator[Metric]:
        yield CounterMetricFamily("pbx_calls", "Calls FreeSWITCH handed to this orchestrator (rate(): calls per second)",
                                  value=self._stats.get("calls", 0))
        yield GaugeMetricFamily("pbx_calls_in_progress", "Call sockets open in this orchestrator now", value=self._in_progress())
        yield CounterMetricFamily("pbx_call_failures", "Calls whose handler failed (a bug; FreeSWITCH continued with the fallback)",
                                  value=self._stats.get("errors", 0))
        yield ROUTING.family("pbx_routing_seconds", "Call socket accepted -> first sendmsg written (routing latency)")
        yield REOFFER.family("pbx_reoffer_seconds",
                             "Free-member notice received -> the waiting caller's bridge written (re-offer latency)")
        yield CounterMetricFamily("pbx_offers", "Members offered a call (one per ringing member)", value=OFFERS.value)


class WaitingCallers(Collector):
    """Callers on hold in this process, from the wake-up listener's registrations
    (``Wakeups.waiting()``: tenant -> (callers, earliest place ms)); no Redis."""

    def __init__(self, waiting: Callable[[], Mapping[int, tuple[int, int]]], clock_ms: Callable[[], int],
                 top_tenants: int = TOP_TENANTS) -> None:
        self._waiting, self._clock, self._top = waiting, clock_ms, top_tenants

    def collect(self) -> Iterator[Metric]:
        now = self._clock()
        counts: dict[int, float] = {}
        waits: dict[int, float] = {}
        for tenant, (callers, since_ms) in self._waiting().items():
            counts[tenant] = callers
            waits[tenant] = max(0, now - since_ms) / 1000.0
        yield GaugeMetricFamily("pbx_queue_waiting_callers", "Callers on hold in this orchestrator", value=sum(counts.values()))
        yield GaugeMetricFamily("pbx_queue_longest_wait_seconds", "Longest wait of a caller on hold in this orchestrator",
                                value=max(waits.values(), default=0.0))
        yield _tenant_family("pbx_tenant_queue_waiting_callers",
                             "Callers on hold in this orchestrator, for the %d tenants with the most" % self._top, counts, self._top)
        yield _tenant_family("pbx_tenant_queue_longest_wait_seconds",
                             "Longest wait on hold in this orchestrator, for the %d tenants with the longest" % self._top, waits, self._top)


class HistoryQueue(Collector):
    """The call history writer's queue and counters (``HistoryWriter.queued`` / ``stats``)."""

    def __init__(self, writer: Any) -> None:
        self._writer = writer

    def collect(self) -> Iterator[Metric]:
        stats = self._writer.stats
        yield GaugeMetricFamily("pbx_history_rows_queued", "Call history rows waiting to be written to the database",
                                value=self._writer.queued)
        yield CounterMetricFamily("pbx_history_rows_written", "Call history rows written", value=stats.get("written", 0))
        yield CounterMetricFamily("pbx_history_rows_not_stored",
                                  "Call history rows NOT stored (queue full, refused, or unwritten at shutdown; each logged in full)",
                                  value=stats.get("not_kept", 0) + stats.get("refused", 0))
        yield CounterMetricFamily("pbx_history_write_failures", "Failed attempts to write a batch (database unavailable)",
                                  value=stats.get("failures", 0))


def _redis_ms(pipe_or_client: Any) -> int:
    sec, usec = pipe_or_client.time()
    return int(sec) * 1000 + int(usec) // 1000


class RedisLive(Collector):
    """Cluster-wide live figures read from Redis on scrape, bounded: callbacks pending
    (``pbx:callback-tenants``) and, with ``calls=True``, calls in progress (the call
    leases of the ``MAX_TENANTS_READ`` tenants with the latest calls). One pipelined
    round trip per figure; a Redis failure is counted and the figures are left out."""

    def __init__(self, client: redis.Redis, *, calls: bool = False, top_tenants: int = TOP_TENANTS,
                 max_tenants: int = MAX_TENANTS_READ) -> None:
        self._r, self._calls, self._top, self._max = client, calls, top_tenants, max_tenants

    def collect(self) -> Iterator[Metric]:
        import redis

        from orchestrator.store import callbacks, redis_store

        try:
            pending = self._counts(sorted(int(t) for t in self._r.smembers(callbacks.TENANTS_KEY))[: self._max],  # type: ignore[union-attr]
                                   lambda pipe, t: pipe.zcard(callbacks.index_key(t)))
            live: dict[int, float] = {}
            if self._calls:
                now = _redis_ms(self._r)
                newest = self._r.zrevrange(redis_store.ACTIVE_TENANTS_KEY, 0, self._max - 1)
                recent = [int(t) for t in newest]  # type: ignore[union-attr,arg-type]
                live = self._counts(recent, lambda pipe, t: pipe.zcount(redis_store.calls_key(t), now, "+inf"))
        except (redis.RedisError, ValueError) as exc:
            log.warning("metrics: Redis figures left out of this scrape: %s", exc)
            return
        yield GaugeMetricFamily("pbx_callbacks_pending", "Open callbacks (pending or being dialled), all tenants",
                                value=sum(pending.values()))
        yield _tenant_family("pbx_tenant_callbacks_pending", "Open callbacks, for the %d tenants with the most" % self._top,
                             pending, self._top)
        if self._calls:
            yield GaugeMetricFamily("pbx_live_calls", "Calls in progress in every orchestrator (Redis call leases)",
                                    value=sum(live.values()))
            yield _tenant_family("pbx_tenant_live_calls", "Calls in progress, for the %d tenants with the most" % self._top,
                                 live, self._top)

    def _counts(self, tenants: Sequence[int], command: Callable[[Any, int], Any]) -> dict[int, float]:
        if not tenants:
            return {}
        pipe = self._r.pipeline(transaction=False)
        for t in tenants:
            command(pipe, t)
        return {t: float(n) for t, n in zip(tenants, pipe.execute()) if n}


class WorkerJobs(Collector):
    """The RQ queues' lengths and failed registries, and this worker's job counts (RQ
    keeps them in the worker's hash: the jobs run in forked work horses)."""

    def __init__(self, client: redis.Redis, queue_names: Sequence[str], worker_key: str | None = None) -> None:
        from rq import Queue

        from workers import SERIALIZER

        self._r, self._worker_key = client, worker_key
        self._queues = [Queue(name, connection=client, serializer=SERIALIZER) for name in queue_names]

    def collect(self) -> Iterator[Metric]:
        import redis

        try:
            waiting = [(q.name, q.count) for q in self._queues]
            failed = [(q.name, q.failed_job_registry.count) for q in self._queues]
            done = None
            if self._worker_key is not None:
                done = self._r.hmget(self._worker_key, ["successful_job_count", "failed_job_count"])
        except redis.RedisError as exc:
            log.warning("metrics: RQ figures left out of this scrape: %s", exc)
            return
        jobs = GaugeMetricFamily("pbx_worker_queue_jobs", "RQ jobs waiting, per queue", labels=["queue"])
        for name, n in waiting:
            jobs.add_metric([name], n)
        yield jobs
        failures = GaugeMetricFamily("pbx_worker_failed_jobs", "Jobs in the queue's failed job registry", labels=["queue"])
        for name, n in failed:
            failures.add_metric([name], n)
        yield failures
        if done is not None:
            ran = CounterMetricFamily("pbx_worker_jobs", "Jobs this worker ran, by outcome", labels=["outcome"])
            ran.add_metric(["succeeded"], int(done[0] or 0))
            ran.add_metric(["failed"], int(done[1] or 0))
            yield ran


# ---------------------------------------------------------------- error counters at the adapters


def count_redis_errors(client: redis.Redis) -> None:
    """Count every failed command of ``client`` in ``pbx_redis_errors_total``: its pool
    makes connections of a subclass whose connect / send / read count a ``RedisError``
    and re-raise it (one try block per command; pipelines and pub/sub included). Call
    it before the client is used concurrently: the pool's idle connections are closed."""
    import redis as redislib

    pool = client.connection_pool
    base = pool.connection_class
    if getattr(base, "_pbx_counted", False):
        return

    def counted(name: str) -> Callable[..., Any]:
        method = getattr(base, name)
        connecting = name == "connect"

        def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
            if connecting:
                self._pbx_connecting = True
            try:
                return method(self, *args, **kwargs)
            except redislib.RedisError:
                # The handshake's own replies (CLIENT SETINFO ... on an older server)
                # may be refused and ignored by redis-py: only what connect raises counts.
                if connecting or not self._pbx_connecting:
                    REDIS_ERRORS.inc()
                raise
            finally:
                if connecting:
                    self._pbx_connecting = False

        wrapper.__name__ = name
        return wrapper

    pool.connection_class = type("Counted" + base.__name__, (base,), {
        "_pbx_counted": True, "_pbx_connecting": False,
        **{name: counted(name) for name in ("connect", "send_packed_command", "read_response")}})
    pool.disconnect()
    pool.reset()


def count_database_errors(engine: Any) -> None:
    """Count every failed statement of ``engine`` (SQLAlchemy's ``handle_error`` event)."""
    from sqlalchemy import event

    if getattr(engine, "_pbx_counted", False):
        return
    event.listen(engine, "handle_error", lambda context: DATABASE_ERRORS.inc())
    engine._pbx_counted = True


# ---------------------------------------------------------------- registries and serving


def _base_registry(metrics: Iterable[Collector]) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=True)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    for metric in (*metrics, REDIS_ERRORS, DATABASE_ERRORS):
        registry.register(metric)
    return registry


def orchestrator_registry(stats: Mapping[str, int], in_progress: Callable[[], int], wakeups: Any, history: Any,
                          clock_ms: Callable[[], int], top_tenants: int = TOP_TENANTS) -> CollectorRegistry:
    """``stats``: the call handler's; ``in_progress``: the server's open call sockets;
    ``wakeups``: the free-member listener (callers on hold); ``history``: the writer."""
    return _base_registry([CallFigures(stats, in_progress), ESL_RECONNECTS,
                           WaitingCallers(wakeups.waiting, clock_ms, top_tenants), HistoryQueue(history)])


def worker_registry(client: redis.Redis, queue_names: Sequence[str], worker_key: str | None = None,
                    top_tenants: int = TOP_TENANTS) -> CollectorRegistry:
    return _base_registry([ESL_RECONNECTS, WorkerJobs(client, queue_names, worker_key),
                           RedisLive(client, top_tenants=top_tenants)])


def panel_registry(client: redis.Redis | None, top_tenants: int = TOP_TENANTS) -> CollectorRegistry:
    extra: list[Collector] = [RedisLive(client, calls=True, top_tenants=top_tenants)] if client is not None else []
    return _base_registry([PANEL_REQUESTS, PANEL_SECONDS, *extra])


def exposition(registry: CollectorRegistry, accept: str | None) -> tuple[bytes, str]:
    """The registry in the format the scraper asked for (``Accept``): body, content type."""
    encoder, content_type = choose_encoder(accept or "")
    return encoder(registry), content_type


def basic_auth_ok(authorization: Any, user: str, password: str) -> bool:
    """Werkzeug's ``request.authorization`` against the metrics credentials (none set:
    never)."""
    if not password or authorization is None or getattr(authorization, "type", "") != "basic":
        return False
    return hmac.compare_digest((authorization.username or "").encode(), user.encode()) and \
        hmac.compare_digest((authorization.password or "").encode(), password.encode())


def serve(registry: CollectorRegistry, host: str, port: int) -> WSGIServer:
    """Serve ``/metrics`` on ``host:port`` from a gevent WSGI server (started, not
    blocking); raises OSError when the address cannot be bound. Other paths: 404."""
    from gevent.pywsgi import WSGIServer

    metrics_app = make_wsgi_app(registry)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") not in ("/metrics", "/"):
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"only /metrics here\n"]
        return metrics_app(environ, start_response)

    server = WSGIServer((host, port), app, log=None)
    server.start()
    return server


def serve_in_thread(make_registry: Callable[[], CollectorRegistry], host: str, port: int,
                    timeout_s: float = 10.0) -> tuple[str, int]:
    """``serve`` from a native thread with a gevent hub of its own; the bound address.

    For ``pbx-worker``: RQ's parent waits for each job's forked work horse in a blocking
    ``os.wait4`` (the whole job, minutes for a callback), which would hold a server on
    the main hub unanswered. ``make_registry`` runs in that thread (give it a Redis
    client of its own: gevent sockets belong to the hub that made them). A forked work
    horse has no copy of the thread, so only the worker itself answers scrapes."""
    from gevent import monkey

    start_new_thread = monkey.get_original("_thread", "start_new_thread")
    ready = monkey.get_original("_thread", "allocate_lock")()
    ready.acquire()
    result: dict[str, Any] = {}

    def run() -> None:
        try:
            server = serve(make_registry(), host, port)
            result["address"] = server.address[:2]
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            result["error"] = exc
            return
        finally:
            ready.release()
        server.serve_forever()

    start_new_thread(run, ())
    if not ready.acquire(True, timeout_s):
        raise OSError("the metrics server did not start within %.0f s" % timeout_s)
    if "error" in result:
        raise result["error"]
    return result["address"]


def now_ms() -> int:
    return int(time.time() * 1000)


__all__ = [
    "OFFERS", "REOFFER", "ROUTING", "LatencyHistogram", "Tally", "basic_auth_ok",
    "count_database_errors", "count_redis_errors", "esl_reconnect", "exposition", "orchestrator_registry",
    "panel_registry", "panel_response", "serve", "worker_registry",
]
