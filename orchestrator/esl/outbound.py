"""The outbound-socket server FreeSWITCH's dialplan ``socket`` application connects to.

Accepts with ``gevent.server.StreamServer`` (greenswitch's own accept loop polls every
100 ms) and wraps each connection in our ``CallSession`` (a greenswitch
``OutboundSession``). One greenlet per call.
"""
from __future__ import annotations

import logging
import socket
from typing import Any, Callable

from gevent.server import StreamServer

from orchestrator.esl.session import CallSession

log = logging.getLogger(__name__)

CallFn = Callable[[CallSession], None]


class OutboundServer:
    def __init__(self, host: str, port: int, on_call: CallFn, command_timeout_s: float = 5.0, wanted_events: frozenset[str] | None = None,
                 unwatched_apps: frozenset[str] = frozenset()) -> None:
        self._on_call = on_call
        self._wanted = wanted_events
        self._unwatched = unwatched_apps
        self._timeout = command_timeout_s
        # A burst of calls must not overflow the accept queue (the default backlog is
        # 128; past it the kernel drops SYNs and FreeSWITCH's connect stalls ~1-3 s).
        self._server = StreamServer((host, port), self._handle, backlog=1024)
        self.active = 0

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._server.address[:2]
        return host, port

    def start(self) -> None:
        self._server.start()
        log.info("outbound socket server listening on %s:%d", *self.address)

    def serve_forever(self) -> None:
        self._server.serve_forever()

    def stop(self, timeout: float = 5.0) -> None:
        self._server.stop(timeout=timeout)

    def _handle(self, sock: Any, address: Any) -> None:
        # Commands are small writes answered at once: without TCP_NODELAY, Nagle's
        # algorithm meets the peer's delayed ACK and every reply costs ~40 ms.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.active += 1
        session = CallSession(address, sock, self._timeout, self._wanted, self._unwatched)
        try:
            self._on_call(session)
        finally:
            self.active -= 1
            session.close()


__all__ = ["OutboundServer"]
