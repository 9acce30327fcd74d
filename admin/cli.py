"""``pbx-admin``: the admin panel, and FreeSWITCH's directory in a process of its own.

Builds everything through ``orchestrator.wiring`` (migrations first; the default SQLite
database is seeded with the demo tenant when empty), publishes routing changes to
Redis so orchestrators reload, and serves the panel on ``PBX_ADMIN_LISTEN``
(127.0.0.1:8080). The SIP directory for mod_xml_curl runs in a child process on
``PBX_DIRECTORY_LISTEN`` (127.0.0.1:8081, ``admin.directory_server``), restarted when it
exits, so that no panel page can hold up phones' registrations.
"""
from __future__ import annotations

import logging
import sys
from typing import Any, Sequence

log = logging.getLogger("pbx-admin")
RESTART_DELAYS = (1, 2, 5, 10, 30)  # seconds before restarting the directory after its n-th exit in a row


def directory_command() -> list[str]:
    return [sys.executable, "-m", "admin.directory_server"]


def supervise_directory(stopping: Any) -> Any:
    """Run the directory process until ``stopping`` (a gevent Event) is set; restart it
    when it exits. Its standard input is a pipe from us: when this process ends, however
    it ends, the directory sees end of file and stops too."""
    import gevent
    from gevent import subprocess

    def run() -> None:
        failures = 0
        while not stopping.is_set():
            child = subprocess.Popen(directory_command(), stdin=subprocess.PIPE)
            log.info("directory process started (pid %d)", child.pid)
            waiter = gevent.spawn(child.wait)
            gevent.wait([waiter, stopping], count=1)
            if stopping.is_set():
                child.terminate()
                try:
                    child.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    child.kill()
                return
            failures += 1
            delay = RESTART_DELAYS[min(failures, len(RESTART_DELAYS)) - 1]
            log.warning("directory process exited with status %s; restarting in %d s", child.returncode, delay)
            stopping.wait(delay)

    return gevent.spawn(run)


def main(argv: Sequence[str] | None = None) -> int:
    from gevent import monkey

    monkey.patch_all()  # only here, in the entry point

    import signal

    import gevent
    from gevent.event import Event
    from gevent.pywsgi import WSGIServer

    from admin.app import create_app
    from orchestrator import wiring
    from orchestrator.config import from_env
    from orchestrator.errors import PbxError
    from orchestrator.store.redis_store import RoutingVersions

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = from_env().check()
        db = wiring.database(settings)
        client = wiring.redis_client(wiring.resolve_redis_url(settings))
        versions = RoutingVersions(client)
        wiring.attach_version_publisher(db, versions)
        # FreeSWITCH caches directory users (cacheable): a saved change clears the cache.
        wiring.attach_directory_cache_flush(db, settings)
        app = create_app(settings, db.session_factory, redis_client=client)
    except PbxError as exc:
        print("pbx-admin: %s" % exc, file=sys.stderr)
        return 1
    server = WSGIServer((settings.admin_host, settings.admin_port), app, log=None)
    stopping = Event()
    supervisor = supervise_directory(stopping) if settings.directory_port else None
    log.info("admin panel on http://%s:%d; SIP directory on %s", settings.admin_host, settings.admin_port,
             "http://%s:%d/freeswitch/directory" % (settings.directory_host, settings.directory_port)
             if settings.directory_port else "the panel's /freeswitch/directory (PBX_DIRECTORY_LISTEN=off)")
    gevent.signal_handler(signal.SIGTERM, stopping.set)
    gevent.spawn(lambda: (stopping.wait(), server.stop(timeout=5)))
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        server.stop(timeout=5)
    stopping.set()
    if supervisor is not None:
        supervisor.join(timeout=10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
