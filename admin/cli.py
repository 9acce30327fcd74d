"""``pbx-admin``: the admin panel and FreeSWITCH's directory, served by gevent.

Builds everything through ``orchestrator.wiring`` (migrations first; the default SQLite
database is seeded with the demo tenant when empty), publishes routing changes to
Redis so orchestrators reload, and serves on ``PBX_ADMIN_LISTEN`` (127.0.0.1:8080).
"""
from __future__ import annotations

import logging
import sys
from typing import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    from gevent import monkey

    monkey.patch_all()  # only here, in the entry point

    from gevent.pywsgi import WSGIServer

    from admin.app import create_app
    from orchestrator import wiring
    from orchestrator.config import from_env
    from orchestrator.errors import PbxError
    from orchestrator.store.redis_store import RoutingVersions

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log = logging.getLogger("pbx-admin")
    try:
        settings = from_env().check()
        db = wiring.database(settings)
        client = wiring.redis_client(wiring.resolve_redis_url(settings))
        versions = RoutingVersions(client)
        wiring.attach_version_publisher(db, versions)
        app = create_app(settings, db.session_factory, redis_client=client)
    except PbxError as exc:
        print("pbx-admin: %s" % exc, file=sys.stderr)
        return 1
    server = WSGIServer((settings.admin_host, settings.admin_port), app, log=None)
    log.info("admin panel on http://%s:%d (directory: /freeswitch/directory)", settings.admin_host,
             settings.admin_port)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        server.stop(timeout=5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
