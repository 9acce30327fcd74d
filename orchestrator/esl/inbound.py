"""Inbound event socket client: our side of FreeSWITCH's ``mod_event_socket`` listener.

Used for api / bgapi (originate, uuid_bridge, uuid_kill, uuid_break, uuid_transfer,
uuid_getvar / uuid_setvar, show channels) and for events. gevent based (gevent.socket,
no monkey patching here); one reader greenlet parses with :class:`wire.Parser`.

FreeSWITCH behaviour relied on (mod_event_socket.c, and the transcripts inbound_01..10,
P06, P09 recorded from FreeSWITCH 1.10.12):

* On connect FreeSWITCH sends ``Content-Type: auth/request``; ``auth <password>`` gets
  ``Reply-Text: +OK accepted`` or ``-ERR invalid`` followed by a disconnect notice and
  EOF (inbound_02). An address refused by ``apply-inbound-acl`` gets
  ``text/rude-rejection`` and EOF before any auth.
* Commands on one connection are answered strictly in order, one ``command/reply`` or
  ``api/response`` per command, events interleaved anywhere between them. So replies
  are matched to a FIFO of waiters.
* ``bgapi <cmd>`` with a ``Job-UUID: <id>`` header replies ``+OK Job-UUID: <id>`` at
  once; the result comes later as a BACKGROUND_JOB event (only when subscribed to it)
  whose ``Job-UUID`` is ours and whose body is the api output (``+OK <uuid>\\n`` /
  ``-ERR NO_ANSWER\\n`` for originate). Events belong to the connection: after a
  reconnect the results of earlier bgapi jobs never arrive, so their waiters fail.
* ``show channels as json``: ``{"row_count":N,"rows":[...]}`` or, with no channel,
  ``{"row_count": 0}\\n`` (P09). ``uuid_getvar`` of an unset variable: ``_undef_``.
* FreeSWITCH ticks originate timeouts on whole seconds (``originate_timeout=4`` fired
  after 3.75-3.86 s), so our own wait for an originate adds a margin.

Every read is bounded by the codec's ``wire.INBOUND_LIMITS`` (header line, header block
and count, body); anything over them or malformed is a :class:`ProtocolError`: one log
line, the connection is reset. Every wait has a timeout (:class:`EslTimeout`); a lost
connection fails every pending waiter at once (:class:`EslConnectionError`) and, unless
closed, the client reconnects with exponential backoff and jitter, re-subscribing its
events.
"""
from __future__ import annotations

import logging
import random
import socket as _stdsocket
import time
import uuid as _uuid
from collections import deque
from typing import Callable, Iterable, Mapping

import gevent
import gevent.event
import gevent.lock
import gevent.queue
from gevent import socket

from orchestrator.errors import EslAuthError, EslCommandError, EslConnectionError, EslError, EslTimeout, ProtocolError
from orchestrator.esl.event_stream import EventStream
from orchestrator.esl.commands import ORIGINATE_MARGIN_S, FreeSwitchApi, with_channel_variables
from orchestrator.esl.wire import INBOUND_LIMITS, Event, Message, Parser, encode_command, parse_event

log = logging.getLogger(__name__)

EventHandler = Callable[[Event], None]

AUTH_REFUSED = "FreeSWITCH refused the ESL password; check PBX_ESL_PASSWORD / event_socket.conf.xml"


def _no_hook(host: str, port: int, ok: bool) -> None:
    return None


# Called after every reconnect attempt of any client, (host, port, succeeded); an entry
# point sets it (orchestrator.metrics.esl_reconnect counts them). Process-wide.
on_reconnect: Callable[[str, int, bool], None] = _no_hook


class _Waiter:
    __slots__ = ("result", "what", "abandoned")

    def __init__(self, what: str) -> None:
        self.result: gevent.event.AsyncResult = gevent.event.AsyncResult()
        self.what = what
        self.abandoned = False


class InboundClient(FreeSwitchApi):
    """One authenticated connection to FreeSWITCH's event socket, kept alive.

    ``events``: event names to subscribe to besides BACKGROUND_JOB (which is always
    subscribed: bgapi needs it), in ``event_format`` ``plain`` or ``json``.
    Times are seconds. Nothing connects before :meth:`connect`.
    """

    def __init__(
        self,
        host: str,
        port: int,
        password: str,
        *,
        events: Iterable[str] = (),
        event_format: str = "plain",
        connect_timeout: float = 5.0,
        command_timeout: float = 5.0,
        reconnect: bool = True,
        backoff_initial: float = 0.2,
        backoff_max: float = 10.0,
        rng: Callable[[], float] = random.random,
    ) -> None:
        if event_format not in ("plain", "json"):
            raise ValueError("event_format must be plain or json")
        self.host, self.port = host, port
        self._password = password
        names = ["BACKGROUND_JOB"] + [e for e in events if e != "BACKGROUND_JOB"]
        self.events = tuple(dict.fromkeys(names))
        self.event_format = event_format
        self.connect_timeout = connect_timeout
        self.command_timeout = command_timeout
        self.reconnect = reconnect
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self._rng = rng
        self._sock: socket.socket | None = None
        self._gen = 0  # connection generation; stale readers are ignored
        self._send_lock = gevent.lock.Semaphore()
        self._replies: deque[_Waiter] = deque()
        self._jobs: dict[str, gevent.event.AsyncResult] = {}
        self._streams: list[EventStream] = []
        self._handlers: dict[EventStream, gevent.Greenlet] = {}
        self._reader: gevent.Greenlet | None = None
        self._supervisor: gevent.Greenlet | None = None
        self._connected = gevent.event.Event()
        self._closed = False
        self._log_extra = {"esl_host": host, "esl_port": port}

    @classmethod
    def from_settings(cls, settings, **kwargs) -> "InboundClient":  # noqa: ANN001 - config.Settings
        kwargs.setdefault("command_timeout", settings.esl_command_timeout_ms / 1000.0)
        return cls(settings.esl_host, settings.esl_port, settings.esl_password, **kwargs)

    # ------------------------------------------------------------ lifecycle

    def connect(self) -> "InboundClient":
        """Connect, authenticate and subscribe; raises instead of retrying."""
        if self._closed:
            raise EslConnectionError("this ESL client was closed")
        self._establish()
        return self

    def start(self) -> "InboundClient":
        """Like :meth:`connect`, but when FreeSWITCH is unreachable keep trying in the
        background (commands fail fast meanwhile). A refused password still raises."""
        try:
            return self.connect()
        except EslAuthError:
            raise
        except (EslError, ProtocolError) as exc:
            log.warning("esl not reachable yet; retrying in the background", extra={**self._log_extra, "error": str(exc)})
            if self._supervisor is None or self._supervisor.dead:
                self._supervisor = gevent.spawn(self._reconnect_loop)
            return self

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    def close(self) -> None:
        """Say ``exit``, close the socket, fail pending waiters, stop reconnecting."""
        if self._closed:
            return
        self._closed = True
        if self._supervisor is not None:
            self._supervisor.kill(block=False)
        if self._sock is not None:
            try:
                self.command("exit", timeout=1.0)
            except EslError:
                pass
            self._lost(self._gen, "closed by us")
        for greenlet in self._handlers.values():
            greenlet.kill(block=False)
        self._handlers.clear()
        self._streams.clear()

    def __enter__(self) -> "InboundClient":
        return self.connect()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------ commands

    def command(self, line: str, headers: Mapping[str, str] | None = None, timeout: float | None = None) -> str:
        """A plain ESL command; returns its ``Reply-Text``, raises on ``-ERR``."""
        reply = self._request(encode_command(line, headers or {}), line.split(" ", 1)[0], timeout)
        text = reply.get("Reply-Text", "") or ""
        if text.startswith("-ERR"):
            raise EslCommandError(line, text)
        return text

    def api(self, cmd: str, timeout: float | None = None, check: bool = False) -> str:
        """``api <cmd>``; the response body. With ``check``, ``-ERR``/``-USAGE`` raise."""
        reply = self._request(encode_command("api " + cmd), "api " + cmd.split(" ", 1)[0], timeout)
        body = reply.body.decode("utf-8", "replace")
        if check and (body.startswith("-ERR") or body.startswith("-USAGE")):
            raise EslCommandError(cmd, body)
        return body

    def bgapi(self, cmd: str, job_uuid: str | None = None, timeout: float | None = None, check: bool = False) -> str:
        """``bgapi <cmd>`` with our Job-UUID; waits for its BACKGROUND_JOB; the body."""
        job = job_uuid or str(_uuid.uuid4())
        total = self.command_timeout if timeout is None else timeout
        deadline = _now() + total
        result = gevent.event.AsyncResult()
        self._jobs[job] = result  # before sending: the event may beat the reply
        verb = cmd.split(" ", 1)[0]
        try:
            reply = self._request(encode_command("bgapi " + cmd, {"Job-UUID": job}), "bgapi " + verb, total)
            text = reply.get("Reply-Text", "") or ""
            if not text.startswith("+OK"):
                raise EslCommandError("bgapi " + cmd, text)
            try:
                body = result.get(timeout=max(0.0, deadline - _now()))
            except gevent.Timeout:
                raise EslTimeout(
                    "FreeSWITCH did not finish bgapi %s (Job-UUID %s) within %.1f s" % (verb, job, total)
                ) from None
        finally:
            self._jobs.pop(job, None)
        if check and body.startswith("-ERR"):
            raise EslCommandError(cmd, body)
        return body

    # ------------------------------------------------------------ events

    def events_stream(self, maxsize: int = 10000) -> EventStream:
        """A new subscriber queue receiving every event from now on."""
        stream = EventStream(self, maxsize)
        self._streams.append(stream)
        return stream

    def subscribe(self, handler: EventHandler, maxsize: int = 10000) -> Callable[[], None]:
        """Call ``handler(event)`` for every event, in order, in its own greenlet
        (a slow handler never blocks the reader). Returns the unsubscribe function."""
        stream = self.events_stream(maxsize)

        def run() -> None:
            while True:
                event = stream.queue.get()
                try:
                    handler(event)
                except Exception:  # a handler's bug must not stop the others
                    log.exception("esl event handler failed", extra={**self._log_extra, "event": event.name})

        self._handlers[stream] = gevent.spawn(run)
        return stream.close

    def _unsubscribe(self, stream: EventStream) -> None:
        if stream in self._streams:
            self._streams.remove(stream)
        greenlet = self._handlers.pop(stream, None)
        if greenlet is not None:
            greenlet.kill(block=False)

    # ------------------------------------------------------------ internals: requests

    def _request(self, raw: bytes, what: str, timeout: float | None) -> Message:
        wait = self.command_timeout if timeout is None else timeout
        waiter = _Waiter(what)
        with self._send_lock:
            sock, gen = self._sock, self._gen
            if sock is None:
                raise EslConnectionError(
                    "not connected to FreeSWITCH at %s:%d (%s)"
                    % (self.host, self.port, "closed" if self._closed else "reconnecting")
                )
            self._replies.append(waiter)
            try:
                with gevent.Timeout(wait, EslTimeout("sending %s to FreeSWITCH timed out" % what)):
                    sock.sendall(raw)
            except OSError as exc:
                self._lost(gen, "send failed: %s" % exc)
            except EslTimeout:
                # A half-sent command would corrupt the stream: start over.
                self._lost(gen, "sending %s timed out" % what)
                raise
        try:
            return waiter.result.get(timeout=wait)
        except gevent.Timeout:
            waiter.abandoned = True
            head = bool(self._replies) and self._replies[0] is waiter
            log.warning(
                "esl command timed out",
                extra={**self._log_extra, "command": what, "timeout_s": wait, "reset": head},
            )
            if head:
                # Nothing at all came back since: the connection (or FreeSWITCH's
                # listener thread) is stuck. Start over rather than wait forever.
                self._lost(gen, "no reply to %s within %.1f s" % (what, wait))
            raise EslTimeout("FreeSWITCH did not answer %s within %.1f s" % (what, wait)) from None

    # ------------------------------------------------------------ internals: connection

    def _establish(self) -> None:
        sock, parser, early = self._handshake()
        with self._send_lock:
            self._gen += 1
            gen = self._gen
            self._sock = sock
        self._reader = gevent.spawn(self._read_loop, sock, parser, gen, early)
        self._connected.set()
        log.info("esl connected", extra={**self._log_extra, "events": " ".join(self.events)})

    def _handshake(self) -> tuple[socket.socket, Parser, list[Message]]:
        where = "%s:%d" % (self.host, self.port)
        try:
            sock = socket.create_connection((self.host, self.port), timeout=self.connect_timeout)
            # Small commands answered at once: avoid Nagle + delayed-ACK stalls.
            sock.setsockopt(_stdsocket.IPPROTO_TCP, _stdsocket.TCP_NODELAY, 1)
        except _stdsocket.timeout:
            raise EslTimeout("connecting to FreeSWITCH's event socket at %s timed out" % where) from None
        except OSError as exc:
            raise EslConnectionError(
                "cannot connect to FreeSWITCH's event socket at %s (%s); is FreeSWITCH running and "
                "PBX_ESL_ADDRESS right?" % (where, exc.strerror or exc)
            ) from None
        parser = Parser(INBOUND_LIMITS)  # bounded: line, header block, header count, body
        early: list[Message] = []
        try:
            sock.setsockopt(_stdsocket.SOL_SOCKET, _stdsocket.SO_KEEPALIVE, 1)
            greeting = self._read_message(sock, parser, early)
            if greeting.content_type == "text/rude-rejection":
                raise EslConnectionError(
                    "FreeSWITCH at %s rejected this address (event_socket.conf.xml apply-inbound-acl; "
                    "acl.conf.xml list pbx_esl)" % where
                )
            if greeting.content_type != "auth/request":
                raise ProtocolError("expected auth/request from %s, got %r" % (where, greeting.content_type))
            sock.sendall(encode_command("auth " + self._password))
            reply = self._read_message(sock, parser, early)
            if reply.content_type == "text/disconnect-notice" or not (reply.get("Reply-Text") or "").startswith("+OK"):
                raise EslAuthError(AUTH_REFUSED)
            sock.sendall(encode_command("event %s %s" % (self.event_format, " ".join(self.events))))
            reply = self._read_message(sock, parser, early)
            if not (reply.get("Reply-Text") or "").startswith("+OK"):
                raise EslCommandError("event", reply.get("Reply-Text") or "")
            sock.settimeout(None)
        except _stdsocket.timeout:
            sock.close()
            raise EslTimeout("FreeSWITCH at %s did not complete the ESL handshake within %.1f s" % (where, self.connect_timeout)) from None
        except OSError as exc:
            sock.close()
            raise EslConnectionError("connection to FreeSWITCH at %s dropped during the handshake (%s)" % (where, exc)) from None
        except (EslError, ProtocolError):
            sock.close()
            raise
        return sock, parser, early

    @staticmethod
    def _read_message(sock: socket.socket, parser: Parser, early: list[Message]) -> Message:
        """The next reply-like message during the handshake; events are kept for later."""
        pending: deque[Message] = deque()
        while True:
            while pending:
                msg = pending.popleft()
                if msg.content_type.startswith("text/event-"):
                    early.append(msg)
                    continue
                early.extend(pending)  # pragma: no cover - FreeSWITCH sends one reply at a time
                return msg
            data = sock.recv(65536)
            if not data:
                raise EslConnectionError("FreeSWITCH closed the event socket during the handshake")
            pending.extend(parser.feed(data))

    def _read_loop(self, sock: socket.socket, parser: Parser, gen: int, early: list[Message]) -> None:
        reason = "FreeSWITCH closed the event socket"
        try:
            for msg in early:
                self._dispatch(msg)
            while True:
                data = sock.recv(65536)
                if not data:
                    break
                for msg in parser.feed(data):
                    self._dispatch(msg)
        except ProtocolError as exc:
            reason = "protocol error: %s" % exc
            log.error("esl protocol error; resetting the connection", extra={**self._log_extra, "error": str(exc)})
        except OSError as exc:
            reason = "socket error: %s" % exc
        finally:
            self._lost(gen, reason)

    def _dispatch(self, msg: Message) -> None:
        ctype = msg.content_type
        if ctype in ("command/reply", "api/response"):
            if not self._replies:
                log.warning("esl reply nobody waits for", extra={**self._log_extra, "content_type": ctype})
                return
            waiter = self._replies.popleft()
            if not waiter.abandoned:
                waiter.result.set(msg)
        elif ctype.startswith("text/event-"):
            event = parse_event(msg)
            if event.name == "BACKGROUND_JOB":
                result = self._jobs.pop(event.get("Job-UUID") or "", None)
                if result is not None:
                    result.set(event.body or "")
            for stream in list(self._streams):
                try:
                    stream.queue.put_nowait(event)
                except gevent.queue.Full:
                    log.warning("esl event dropped: subscriber queue full", extra={**self._log_extra, "event": event.name})
        elif ctype == "text/disconnect-notice":
            log.info("esl disconnect notice", extra=self._log_extra)
        elif ctype == "text/rude-rejection":
            raise ProtocolError("FreeSWITCH rejected this connection (rude-rejection)")
        else:
            log.warning("esl message of unknown type ignored", extra={**self._log_extra, "content_type": ctype})

    def _lost(self, gen: int, reason: str) -> None:
        """The connection of generation ``gen`` is gone: fail waiters, maybe reconnect."""
        if gen != self._gen or self._sock is None:
            return
        with_sock, self._sock = self._sock, None
        self._gen += 1
        self._connected.clear()
        try:
            with_sock.close()
        except OSError:
            pass
        error = EslConnectionError("lost the connection to FreeSWITCH at %s:%d: %s" % (self.host, self.port, reason))
        waiters, self._replies = list(self._replies), deque()
        for waiter in waiters:
            if not waiter.abandoned:
                waiter.result.set_exception(error)
        jobs, self._jobs = list(self._jobs.values()), {}
        for result in jobs:
            result.set_exception(error)
        if self._closed:
            log.info("esl closed", extra=self._log_extra)
            return
        log.warning("esl connection lost", extra={**self._log_extra, "reason": reason, "pending": len(waiters) + len(jobs)})
        if self.reconnect and (self._supervisor is None or self._supervisor.dead):
            self._supervisor = gevent.spawn(self._reconnect_loop)

    def _reconnect_loop(self) -> None:
        attempt = 0
        while not self._closed:
            delay = min(self.backoff_max, self.backoff_initial * (2**attempt))
            gevent.sleep(delay / 2 + self._rng() * delay / 2)  # "equal jitter"
            if self._closed:
                return
            try:
                self._establish()
                log.info("esl reconnected", extra={**self._log_extra, "attempts": attempt + 1})
                on_reconnect(self.host, self.port, True)
                return
            except EslAuthError as exc:
                log.error("esl reconnect refused", extra={**self._log_extra, "error": str(exc)})
            except (EslError, ProtocolError) as exc:
                log.warning("esl reconnect failed", extra={**self._log_extra, "error": str(exc), "attempt": attempt + 1})
            on_reconnect(self.host, self.port, False)
            attempt += 1


def _now() -> float:
    return time.monotonic()


__all__ = ["AUTH_REFUSED", "EventStream", "InboundClient", "ORIGINATE_MARGIN_S", "with_channel_variables"]
