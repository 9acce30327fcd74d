"""``pbx-worker``: the RQ worker process of the PBX.

Reads the settings from the environment (``orchestrator.config.from_env``), connects to
``REDIS_URL`` (or, when it is empty, the embedded Redis of ``PBX_DATA_DIR``) and works
the queues ``pbx-callbacks`` and ``pbx-default``. gevent's monkey patching happens here,
in the entry point, before anything else is imported; library code never patches.
"""
from __future__ import annotations

import argparse
import logging
import sys
from typing import Any


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="pbx-worker", description=__doc__.split("\n\n")[0])
    parser.add_argument("--burst", action="store_true", help="work until the queues are empty, then exit")
    parser.add_argument(
        "--simple",
        action="store_true",
        help="run jobs in this process instead of a forked work horse (debugging)",
    )
    parser.add_argument("--name", default=None, help="worker name (default: RQ's host.pid name)")
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING ... (default INFO)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    from gevent import monkey

    monkey.patch_all()

    args = _parse(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )
    log = logging.getLogger("workers")

    import redis
    from rq import Queue, SimpleWorker, Worker

    from orchestrator.config import from_env
    from orchestrator.errors import ConfigError
    from workers import QUEUES, SERIALIZER

    try:
        settings = from_env().check()
    except ConfigError as exc:
        log.error("refusing to start: %s", exc)
        return 2
    redis_url = settings.redis_url
    if not redis_url:
        from orchestrator.store.embedded_redis import embedded_redis_url

        redis_url = embedded_redis_url(settings.data_dir)
        log.warning("REDIS_URL is empty: using the embedded Redis of %s (development only)", settings.data_dir)
    connection = redis.Redis.from_url(redis_url)
    try:
        connection.ping()
    except redis.RedisError as exc:
        log.error("cannot reach Redis (REDIS_URL): %s", exc)
        return 3
    queues = [Queue(name, connection=connection, serializer=SERIALIZER) for name in QUEUES]
    worker_class = SimpleWorker if args.simple else Worker
    # JSON jobs only (workers.SERIALIZER): a pickled payload planted in Redis fails to
    # load instead of running. The ESL address and password come from this process's
    # own settings (PBX_ESL_ADDRESS / PBX_ESL_PASSWORD), never from a job.
    worker = worker_class(queues, connection=connection, name=args.name, serializer=SERIALIZER)
    if settings.metrics_port is not None:
        from orchestrator import metrics
        from orchestrator.esl import inbound

        metrics.count_redis_errors(connection)
        inbound.on_reconnect = metrics.esl_reconnect
        # A thread of its own (see metrics.serve_in_thread), with its own Redis client.
        def registry() -> Any:
            return metrics.worker_registry(redis.Redis.from_url(redis_url, socket_timeout=5), QUEUES, worker.key,
                                           settings.metrics_top_tenants)

        try:
            address = metrics.serve_in_thread(registry, settings.metrics_host, settings.metrics_port)
        except OSError as exc:
            log.error("cannot serve metrics on %s:%d (PBX_METRICS_LISTEN): %s", settings.metrics_host, settings.metrics_port, exc)
            return 2
        print("pbx-worker metrics on http://%s:%d/metrics" % address, flush=True)
    log.info("pbx-worker on queues %s", ", ".join(QUEUES))
    worker.work(burst=args.burst, logging_level=args.log_level.upper())
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
