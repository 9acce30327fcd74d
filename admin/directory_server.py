"""FreeSWITCH's SIP directory (mod_xml_curl) in a process of its own.

A panel page can keep the panel's process busy for seconds (a CPU-bound render, or a
database wait: psycopg2 blocks the whole gevent hub), and every phone of every tenant
registers through the directory. So ``pbx-admin`` starts this process next to the panel,
listening on ``PBX_DIRECTORY_LISTEN`` (127.0.0.1:8081), and restarts it if it exits; it
exits itself when ``pbx-admin`` goes (its standard input, a pipe from ``pbx-admin``,
reaches end of file). It serves only ``/freeswitch/directory`` (``admin.directory``):
no sessions, no panel pages.

    python -m admin.directory_server      # what pbx-admin runs; same environment
"""
from __future__ import annotations

import logging
import sys
from typing import Sequence

from flask import Flask
from sqlalchemy.orm import scoped_session, sessionmaker

from admin.directory import make_directory_blueprint
from orchestrator.config import Settings


def create_directory_app(settings: Settings, session_factory: sessionmaker) -> Flask:
    """The directory alone, as a WSGI app."""
    app = Flask("pbx-directory")
    db = scoped_session(session_factory)
    app.register_blueprint(make_directory_blueprint(settings, db))

    @app.teardown_appcontext
    def _remove_session(exc: BaseException | None) -> None:
        db.remove()

    return app


def _exit_with_parent(server: object) -> None:
    """Stop ``server`` when standard input (the pipe from pbx-admin) is closed."""
    import gevent
    from gevent.os import tp_read

    def watch() -> None:
        try:
            while tp_read(sys.stdin.fileno(), 1024):
                pass
        except OSError:
            pass
        logging.getLogger("pbx-directory").info("pbx-admin is gone: stopping")
        server.stop(timeout=2)  # type: ignore[attr-defined]

    gevent.spawn(watch)


def main(argv: Sequence[str] | None = None) -> int:
    from gevent import monkey

    monkey.patch_all()  # only here, in the entry point

    from gevent.pywsgi import WSGIServer

    from orchestrator import wiring
    from orchestrator.config import from_env
    from orchestrator.errors import PbxError

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log = logging.getLogger("pbx-directory")
    try:
        settings = from_env().check()
        db = wiring.database(settings, seed_demo=False)  # pbx-admin migrated and seeded it already
    except PbxError as exc:
        print("pbx-directory: %s" % exc, file=sys.stderr)
        return 1
    app = create_directory_app(settings, db.session_factory)
    try:
        server = WSGIServer((settings.directory_host, settings.directory_port), app, log=None)
        server.init_socket()
    except OSError as exc:
        print("pbx-directory: cannot listen on %s:%d (PBX_DIRECTORY_LISTEN): %s"
              % (settings.directory_host, settings.directory_port, exc.strerror), file=sys.stderr)
        return 1
    if argv is None or "--no-parent" not in argv:
        _exit_with_parent(server)
    log.info("SIP directory on http://%s:%d/freeswitch/directory", settings.directory_host, settings.directory_port)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        server.stop(timeout=2)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
