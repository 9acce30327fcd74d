"""Plain-socket ESL peers for tests: an inbound client and an outbound-socket server.

Like the recorder that made the transcripts (no ESL library): they send the exact
command bytes and keep every framed message they receive, in order.
"""
from __future__ import annotations

from typing import Callable

import gevent
from gevent import socket as gsocket
from gevent.queue import Empty, Queue
from gevent.server import StreamServer

from orchestrator.esl import wire


class RawConnection:
    def __init__(self, sock: gsocket.socket) -> None:
        self.sock = sock
        self.received: list[wire.Message] = []
        self._queue: Queue[wire.Message | None] = Queue()
        self._parser = wire.Parser()
        self.eof = False
        self._skipped: list[wire.Message] = []  # read past by until(), still unclaimed
        self._reader = gevent.spawn(self._read)

    def _read(self) -> None:
        try:
            while True:
                data = self.sock.recv(65536)
                if not data:
                    break
                for msg in self._parser.feed(data):
                    self.received.append(msg)
                    self._queue.put(msg)
        except OSError:
            pass
        self.eof = True
        self._queue.put(None)

    def send(self, line: str, headers: list[tuple[str, str]] | None = None) -> None:
        self.sock.sendall(wire.encode_command(line, headers or []))

    def next(self, timeout: float = 5.0) -> wire.Message:
        try:
            msg = self._queue.get(timeout=timeout)
        except Empty:
            raise TimeoutError("no ESL message within %.1f s (received so far: %d)" % (timeout, len(self.received))) from None
        if msg is None:
            self._queue.put(None)
            raise EOFError("connection closed")
        return msg

    def until(self, pred: Callable[[wire.Message], bool], timeout: float = 5.0) -> wire.Message:
        """The first unclaimed message matching ``pred`` (earlier ones stay claimable)."""
        for i, msg in enumerate(self._skipped):
            if pred(msg):
                return self._skipped.pop(i)
        deadline = gevent.get_hub().loop.now() + timeout
        while True:
            left = deadline - gevent.get_hub().loop.now()
            if left <= 0:
                raise TimeoutError("expected ESL message not received within %.1f s" % timeout)
            msg = self.next(left)
            if pred(msg):
                return msg
            self._skipped.append(msg)

    def reply(self, timeout: float = 5.0) -> wire.Message:
        return self.until(lambda m: m.content_type in ("command/reply", "api/response"), timeout)

    def command(self, line: str, headers: list[tuple[str, str]] | None = None, timeout: float = 5.0) -> wire.Message:
        self.send(line, headers)
        return self.reply(timeout)

    def event(self, name: str, pred: Callable[[wire.Event], bool] | None = None, timeout: float = 5.0) -> wire.Event:
        def match(m: wire.Message) -> bool:
            if not m.content_type.startswith("text/event"):
                return False
            ev = wire.parse_event(m)
            return ev.name == name and (pred is None or pred(ev))

        return wire.parse_event(self.until(match, timeout))

    def wait_closed(self, timeout: float = 5.0) -> None:
        self._reader.join(timeout=timeout)
        if not self.eof:
            raise TimeoutError("connection still open after %.1f s" % timeout)

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass
        self._reader.join(timeout=1.0)

    def events(self) -> list[wire.Event]:
        return [wire.parse_event(m) for m in self.received if m.content_type.startswith("text/event")]


def inbound_client(port: int, password: str = "ClueCon", host: str = "127.0.0.1") -> RawConnection:
    conn = RawConnection(gsocket.create_connection((host, port), timeout=5.0))
    conn.sock.settimeout(None)
    first = conn.next()
    assert first.content_type == "auth/request", first.headers
    reply = conn.command("auth %s" % password)
    if reply.get("Reply-Text") != "+OK accepted":
        raise PermissionError(reply.get("Reply-Text"))
    return conn


class RawOutboundServer:
    """Accepts FreeSWITCH's outbound connections; each becomes a RawConnection."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._server = StreamServer((host, port), self._accept)
        self.connections: Queue[RawConnection] = Queue()
        self._open: list[RawConnection] = []

    def start(self) -> RawOutboundServer:
        self._server.start()
        return self

    @property
    def address(self) -> str:
        return "127.0.0.1:%d" % self._server.server_port

    def _accept(self, sock: gsocket.socket, addr: tuple[str, int]) -> None:
        conn = RawConnection(sock)
        self._open.append(conn)
        self.connections.put(conn)
        while not conn.eof:
            conn._reader.join(timeout=60.0)

    def accept(self, timeout: float = 5.0) -> RawConnection:
        try:
            return self.connections.get(timeout=timeout)
        except Empty:
            raise TimeoutError("FreeSWITCH did not connect within %.1f s" % timeout) from None

    def stop(self) -> None:
        for conn in self._open:
            conn.close()
        self._server.stop(timeout=1)
