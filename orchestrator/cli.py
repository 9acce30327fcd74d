"""``pbx-orchestrator``: the outbound-socket server FreeSWITCH hands every call to.

On SIGTERM (``docker stop``, a systemd restart) or SIGINT it drains: new calls are
refused at once (the listening socket is closed: "connection refused", so FreeSWITCH
continues their dialplan after ``socket`` to the fallback), the callback dispatcher and
the presence watchers stop, the running calls get ``--drain-seconds`` to end by
themselves (then the rest are cut and FreeSWITCH continues their dialplan the same
way), their history rows are written (``--history-flush-seconds``), then it exits 0.
"""
from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the entry point imports (and monkey-patches) before loading these
    from orchestrator.config import Settings
    from orchestrator.presence import PresenceWatcher
    from orchestrator.wiring import Orchestrator


def setup_logging(level: str = "INFO") -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # Migrations log every plugin they load at INFO; keep start-up output readable.
    logging.getLogger("alembic").setLevel(logging.WARNING)


def orchestrator_main(argv: list[str] | None = None) -> int:
    # Entry point only: make sockets, DNS and threads cooperative before anything else.
    from gevent import monkey

    monkey.patch_all()

    import gevent
    import gevent.event

    from orchestrator import config, wiring
    from orchestrator.call_handler import UNWATCHED_APPS, WANTED_EVENTS, CallHandler, _now_ms
    from orchestrator.db_recorder import DbRecorder
    from orchestrator.member_offers import MemberOffers
    from orchestrator.member_wakeups import Wakeups
    from orchestrator.errors import ConfigError
    from orchestrator.esl.outbound import OutboundServer

    parser = argparse.ArgumentParser(prog="pbx-orchestrator", description=__doc__.split("\n\n")[0])
    parser.add_argument("--listen", help="HOST:PORT for FreeSWITCH's socket application (env PBX_LISTEN)")
    parser.add_argument("--log-level", default=os.environ.get("PBX_LOG_LEVEL", "INFO"))
    parser.add_argument("--drain-seconds", type=float, default=30.0, help="on SIGTERM, how long running calls may finish")
    parser.add_argument("--history-flush-seconds", type=float, default=15.0,
                        help="then, how long queued call history rows may take to be written (a failing database is retried)")
    parser.add_argument("--history-max-delay-ms", type=int, default=int(os.environ.get("PBX_HISTORY_MAX_DELAY_MS", "150")),
                        help="how long a finished call's history row may wait for its batch (env PBX_HISTORY_MAX_DELAY_MS)")
    args = parser.parse_args(argv)
    setup_logging(args.log_level)
    log = logging.getLogger("orchestrator")
    env = dict(os.environ)
    if args.listen:
        env["PBX_LISTEN"] = args.listen
    try:
        settings = config.from_env(env).check()
        app = wiring.orchestrator(settings)
    except ConfigError as exc:
        log.error("%s", exc)
        return 2
    from orchestrator import metrics
    from orchestrator.esl import inbound

    metrics.count_redis_errors(app.redis)  # before the first call: the pool's connections count their errors
    metrics.count_database_errors(app.db.engine)
    inbound.on_reconnect = metrics.esl_reconnect
    recorder = DbRecorder(app.db.session_factory, wiring.run_in_threadpool, wiring.voicemail_notifier(settings, app.redis),
                          wiring.fax_notifier(settings, app.redis),
                          wiring.history_writer(app.db, max_delay_s=args.history_max_delay_ms / 1000.0))
    members = MemberOffers(app.agents, recorder, _now_ms, wiring.spawn_background, gevent.spawn_later)
    wakeups = Wakeups(app.redis)
    wakeups.start()
    from orchestrator.callback_dispatcher import CallbackDispatcher, CallbackSettings, LegChecker, rq_enqueue
    from orchestrator.store.callbacks import CallbackStore

    callback_settings = CallbackSettings()
    legs = LegChecker({"host": settings.esl_host, "port": settings.esl_port, "password": settings.esl_password})
    dispatcher = CallbackDispatcher(app.redis, app.cache.snapshot, app.policy, callback_settings,
                                    rq_enqueue(app.redis, callback_settings), legs, hang_up=legs.hang_up)
    dispatching = gevent.spawn(dispatcher.run)
    handler = CallHandler(app.cache, app.calls, recorder, app.policy, members, wakeups,
                          lookups=wiring.caller_lookups(app.db, allow_private=settings.crm_allow_private), callbacks=CallbackStore(app.redis))
    server = OutboundServer(settings.listen_host, settings.listen_port, handler, settings.esl_command_timeout_ms / 1000.0, WANTED_EVENTS, UNWATCHED_APPS)
    try:
        server.start()
    except OSError as exc:
        log.error("cannot listen on %s:%d: %s", settings.listen_host, settings.listen_port, exc)
        return 2
    # Warm the routing cache so the first call does not pay for it.
    try:
        app.cache.index()
    except Exception as exc:  # noqa: BLE001 - a cold cache is not fatal
        log.warning("could not warm the routing cache: %s", exc)
    freeze_startup_heap()
    watchers = start_presence_watchers(settings, app)
    metrics_server = None
    if settings.metrics_port is not None:
        registry = metrics.orchestrator_registry(handler.stats, lambda: server.active, wakeups, recorder.history, _now_ms,
                                                 settings.metrics_top_tenants)
        try:
            metrics_server = metrics.serve(registry, settings.metrics_host, settings.metrics_port)
        except OSError as exc:
            log.error("cannot serve metrics on %s:%d (PBX_METRICS_LISTEN): %s", settings.metrics_host, settings.metrics_port, exc)
            server.stop_accepting()
            return 2
        print("pbx-orchestrator metrics on http://%s:%d/metrics" % metrics_server.address[:2], flush=True)
    print("pbx-orchestrator listening on %s:%d" % server.address, flush=True)
    stopping = gevent.event.Event()
    gevent.signal_handler(signal.SIGTERM, stopping.set)
    gevent.signal_handler(signal.SIGINT, stopping.set)
    stopping.wait()
    server.stop_accepting()  # from now on a new call is refused and takes the fallback
    log.info("stopping: new calls are refused; %d running call(s) get %.0f s to finish", server.active, args.drain_seconds)
    dispatcher.stop()
    for watcher in watchers:
        watcher.stop()
    left = server.drain(args.drain_seconds)
    if left:
        log.warning("stopping: %d call(s) still running after %.0f s are cut (FreeSWITCH continues their dialplan "
                    "to the fallback); raise --drain-seconds to let them finish", left, args.drain_seconds)
        server.kill_calls()
    else:
        log.info("stopping: every call has ended")
    # Background greenlets: the dispatcher ends within its pass interval (2 s).
    dispatching.join(timeout=10)
    if not dispatching.dead:
        log.warning("stopping: the callback dispatcher did not end within 10 s; stopped")
        dispatching.kill(block=True, timeout=2)
    legs.close()
    wakeups.stop()
    # The calls have ended (or were cut): write their queued history rows before exiting.
    queued = recorder.history.queued
    if recorder.close(timeout=args.history_flush_seconds):
        log.info("call history flushed (%d row(s) were queued)", queued)
    if metrics_server is not None:
        metrics_server.stop(timeout=1)
    return 0


def freeze_startup_heap() -> None:
    """Keep the garbage collector off the objects every call shares.

    The process starts with ~180 MiB of long-lived objects (the phonenumbers geocoder's
    tables for the caller rules, SQLAlchemy's mappers, the routing cache, modules). Each
    full collection walked all of them: 130-160 ms with the hub stopped, every ~10 s at
    150 calls/s (calls leave reference cycles, so full collections keep coming), which
    was most of the routing p99. ``gc.freeze()`` (CPython >= 3.7) moves every object
    alive now to a permanent generation that collections skip; objects created later
    are collected as before.
    """
    import gc

    gc.collect()
    gc.freeze()
    # Young collections every 20,000 allocations instead of 700 (and older generations
    # 50x rarer than that): a call allocates thousands of short-lived objects that
    # reference counting frees anyway (per-call cycles are broken where they were made),
    # so frequent collections only burned CPU: ~0.7 ms per call at 150 calls/s and most
    # of the routing p99 tail (bench/results.md, session 9: p99 15-21 -> 4-8 ms).
    gc.set_threshold(20_000, 50, 50)
    logging.getLogger("orchestrator").info("%d start-up objects frozen out of garbage collection", gc.get_freeze_count())


def start_presence_watchers(settings: Settings, app: Orchestrator) -> list[PresenceWatcher]:
    """One presence watcher greenlet per PBX_PRESENCE_ESL server (none when it is empty)."""
    import gevent

    from orchestrator import presence
    from orchestrator.esl.inbound import InboundClient

    watchers = []
    for host, port in settings.presence_esl:
        client = InboundClient(host, port, settings.esl_password, events=presence.EVENTS, reconnect=False,
                               command_timeout=settings.esl_command_timeout_ms / 1000.0)
        watcher = presence.PresenceWatcher(client, app.agents, app.cache)
        gevent.spawn(watcher.run)
        watchers.append(watcher)
        logging.getLogger("orchestrator").info("presence watcher for FreeSWITCH at %s:%d", host, port)
    return watchers


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(orchestrator_main())
