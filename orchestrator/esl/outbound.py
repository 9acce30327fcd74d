"""The outbound-socket server FreeSWITCH's dialplan ``socket`` application connects to.

Accepts with ``gevent.server.StreamServer`` (greenswitch's own accept loop polls every
100 ms) and wraps each connection in our ``CallSession`` (a greenswitch
``OutboundSession``). One greenlet per call.

Stopping (SIGTERM) drains: ``stop_accepting`` closes the listening socket, so a new
call's ``socket`` application gets "connection refused" and FreeSWITCH 1.10 continues
that call's dialplan after ``socket`` (to our ``pbx-fallback`` context; transcripts P08,
tests/test_drain.py); ``drain`` waits for the running calls to end by themselves; only
calls still running after that are cut (``kill_calls``: we send ``exit`` and close their
socket, FreeSWITCH continues their dialplan the same way, and the call handler ends
the call as a lost socket, SOCKET_GONE, writing its history row). gevent's ``StreamServer.stop`` waits
only for a pool's greenlets, and a server without one (ours) not at all, so the call
greenlets are tracked here.
"""
from __future__ import annotations

import logging
import socket
from typing import Any, Callable

import gevent
import gevent.event
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
        self._calls: dict[gevent.Greenlet, CallSession] = {}
        self._idle = gevent.event.Event()
        self._idle.set()

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._server.address[:2]
        return host, port

    def start(self) -> None:
        self._server.start()
        log.info("outbound socket server listening on %s:%d", *self.address)

    def serve_forever(self) -> None:
        self._server.serve_forever()

    def stop_accepting(self) -> None:
        """Close the listening socket: new calls are refused from now on."""
        self._server.close()

    def drain(self, timeout: float) -> int:
        """Wait up to ``timeout`` s for the running calls to end; how many still run."""
        self._idle.wait(timeout=max(0.0, timeout))
        return self.active

    def kill_calls(self, timeout: float = 5.0) -> None:
        """Cut the calls still running: close their sockets (FreeSWITCH continues their
        dialplan after ``socket``); each call's handler then sees its socket gone and
        ends the call (history row included). Calls not ended within ``timeout`` s are
        killed."""
        closers = [gevent.spawn(session.close) for session in list(self._calls.values())]
        self._idle.wait(timeout=timeout)
        gevent.killall(closers, block=False)
        if self._calls:
            gevent.killall(list(self._calls), block=True, timeout=1)

    def stop(self, timeout: float = 5.0) -> int:
        """Refuse new calls, let running ones finish for ``timeout`` s, cut the rest;
        how many were cut."""
        self.stop_accepting()
        left = self.drain(timeout)
        if left:
            self.kill_calls()
        return left

    def _handle(self, sock: Any, address: Any) -> None:
        # Commands are small writes answered at once: without TCP_NODELAY, Nagle's
        # algorithm meets the peer's delayed ACK and every reply costs ~40 ms.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.active += 1
        me = gevent.getcurrent()
        self._idle.clear()
        try:
            session = CallSession(address, sock, self._timeout, self._wanted, self._unwatched)
            self._calls[me] = session  # type: ignore[index]
            try:
                self._on_call(session)
            finally:
                session.close()
        finally:
            self._calls.pop(me, None)  # type: ignore[call-overload]
            self.active -= 1
            if not self.active:
                self._idle.set()


__all__ = ["OutboundServer"]
