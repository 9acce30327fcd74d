"""One FreeSWITCH outbound-socket connection: greenswitch's OutboundSession, hardened.

greenswitch reads the socket, matches command replies and dispatches events; this
subclass fixes what a call centre cannot live with (see shared/STYLE.md):

* every command waits at most ``timeout_s`` (greenswitch's ``send`` waits forever);
* the read loop is ours: greenswitch stops its dispatcher at EOF and drops the events
  still queued (CHANNEL_HANGUP_COMPLETE among them); ours ends the stream with a marker
  put after them;
* no dispatcher greenlet: the reader puts each parsed event on ``events`` itself.
  greenswitch's dispatcher (``process_events``) costs a second greenlet per call, a
  queue hop and a 1 s timer per event, and a polling wake-up every second while the call
  lasts; its handlers (``on_event``: ``call_command(block=True)``'s expected events;
  ``on_hangup``: an INFO line on the root logger per call) are not used here;
* disconnect notices: a ``linger`` notice may come before the reply to an in-flight
  sendmsg (transcript outbound_sipp_builtin_uac_caller_hangup), so it does not fail
  pending commands as greenswitch does; only a real ``disconnect`` does;
* event bodies are parsed with our wire codec (greenswitch URL-decodes the whole body
  before splitting lines and loses repeated headers and inner bodies), and so are the
  messages' own header blocks (``_Reply`` instead of greenswitch's ``ESLEvent``): the
  ``connect`` reply's ~150 CHANNEL_DATA headers are URL-decoded one by one when read
  (``wire.PlainHeaders``), not all of them on the routing path. Unlike ``ESLEvent``, a
  value is exactly what was encoded (no strip(): ``Reply-Text`` of the connect reply is
  ``+OK\\n``, as sent), and a malformed line ends the session with a clear log line;
* the ``disconnect`` notice's body (FreeSWITCH's goodbye text) is consumed instead of
  being mistaken for the next message's headers;
* malformed bytes end the session with a clear log line instead of killing the reader
  greenlet silently; FreeSWITCH then continues the dialplan after ``socket`` (P08a-d),
  which is our fallback;
* applications are run with an ``Event-UUID`` so their EXECUTE_COMPLETE can be matched
  (FreeSWITCH echoes it as ``Application-UUID``).
"""
from __future__ import annotations

import logging
import socket
from typing import Any

import gevent
import gevent.event
import gevent.queue
from greenswitch.esl import NotConnectedError, OutboundSession, OutboundSessionHasGoneAway

from orchestrator.errors import CallGone, EslTimeout, ProtocolError
from orchestrator.esl import wire

log = logging.getLogger(__name__)

# Items put on CallSession.events besides wire.Event:
DISCONNECTED = "disconnected"  # the socket is closing (disconnect notice or EOF)
LINGERING = "lingering"  # the channel hung up; FreeSWITCH keeps the socket (linger)


def _header(body: bytes, name: bytes) -> bytes:
    """One header's raw value in a plain event body, without parsing the rest."""
    start = body.find(b"\n" + name + b": ")
    if start < 0:
        if not body.startswith(name + b": "):
            return b""
        start = -1
    start += len(name) + 3
    end = body.find(b"\n", start)
    return body[start:end if end >= 0 else None]


def _event_name(body: bytes) -> bytes:
    """The Event-Name of a plain event body, without parsing the rest."""
    return _header(body, b"Event-Name")


COMPLETE = b"CHANNEL_EXECUTE_COMPLETE"


def _name(command: str) -> str:
    """A command's first line, for error messages."""
    return command.split("\n", 1)[0]


def _gone(exc: BaseException) -> CallGone:
    return CallGone("the call's socket went away: %s" % (exc or type(exc).__name__))


class _Reply:
    """One ESL message's header block, in place of greenswitch's ``ESLEvent`` (the
    attributes its ``handle_event`` and ``connect`` use: ``headers``, ``data``)."""

    __slots__ = ("headers", "data")

    def __init__(self, block: str) -> None:
        # The same check as wire.parse_event_plain: raises ProtocolError on a line with
        # neither ": " nor a final ':' (only blocks that are not one ": " per line pay).
        if block.count(": ") < block.count("\n") + 1:
            wire.parse_header_lines(block)
        self.headers = wire.PlainHeaders(block)
        self.data: Any = None

# Messages greenswitch's handle_event answers (command replies, api responses, auth).
_REPLIES = frozenset({"command/reply", "api/response", "auth/request", "text/rude-rejection"})


class CallSession(OutboundSession):
    def __init__(self, client_address: Any, sock: Any, timeout_s: float = 5.0, wanted: frozenset[str] | None = None,
                 unwatched_apps: frozenset[str] = frozenset()) -> None:
        self.events: gevent.queue.Queue = gevent.queue.Queue()
        self.timeout_s = timeout_s
        # Event names worth parsing (None: all). A call gets ~20 events of ~150 headers;
        # those the caller never looks at (CHANNEL_STATE, CHANNEL_EXECUTE, PARK ...) are
        # recognised by name and dropped without decoding every header.
        self._wanted = {name.encode() for name in wanted} if wanted is not None else None
        # Applications whose CHANNEL_EXECUTE_COMPLETE nobody waits for (set, answer ...):
        # dropped by the Application header alone, like unwanted events.
        self._unwatched = {name.encode() for name in unwatched_apps}
        self._unchecked: list[tuple[str, gevent.event.AsyncResult]] = []  # posted, reply not looked at
        super().__init__(client_address, sock)

    def start_event_handlers(self) -> None:
        """The reader greenlet only (greenswitch's ``__init__`` calls this): events are
        put on ``events`` as they are read, in order; no dispatcher greenlet."""
        self._receive_events_greenlet = gevent.spawn(self.receive_events)
        self._process_events_greenlet = None

    # ---------------------------------------------------------------- reading

    def receive_events(self) -> None:
        """Read framed messages until EOF (replaces greenswitch's loop, which stops the
        dispatcher at EOF and drops events still queued, e.g. CHANNEL_HANGUP_COMPLETE)."""
        buf: list[bytes] = []
        try:
            while True:
                line = self.sock_file.readline()
                if not line:
                    break
                if line == b"\n":
                    if not buf:
                        continue
                    event = _Reply(b"".join(buf)[:-1].decode("utf-8", "replace"))
                    buf = []
                    self.handle_event(event)
                    continue
                buf.append(line)
        except (ProtocolError, KeyError, ValueError) as exc:
            log.error("malformed ESL message from FreeSWITCH, closing the call's socket: %s", exc)
        except OSError as exc:
            log.info("call socket error: %s", exc)
        finally:
            # Nothing more will come on this connection; the marker comes after every
            # event read before it (the same queue).
            self.connected = False
            self._run = False
            self._fail_pending(CallGone("the call's socket closed"))
            self.events.put(DISCONNECTED)

    def _read_exact(self, length: int) -> bytes:
        data = b""
        while len(data) < length:
            chunk = self.sock_file.read(length - len(data))
            if not chunk:
                raise ProtocolError("connection closed inside a message body")
            data += chunk
        return data

    def handle_event(self, event: Any) -> None:
        headers = event.headers
        ctype = headers.get("Content-Type")
        if ctype is None:
            raise ProtocolError("ESL message without Content-Type: %r" % sorted(headers)[:5])
        if ctype in ("text/event-plain", "text/event-json"):
            body = self._read_exact(int(headers["Content-Length"]))
            if ctype == "text/event-plain":
                name = _event_name(body)
                if self._wanted is not None and name not in self._wanted:
                    return
                if name == COMPLETE and self._unwatched and _header(body, b"Application") in self._unwatched:
                    return
            parsed = wire.parse_event(wire.Message([("Content-Type", ctype)], body))
            if parsed.name == "CHANNEL_HANGUP":
                self._outbound_connected = False  # what greenswitch's on_hangup did
            self.events.put(parsed)
            return
        if ctype == "text/disconnect-notice":
            length = int(headers.get("Content-Length", "0") or 0)
            if length:
                self._read_exact(length)
            if headers.get("Content-Disposition") == "linger":
                self._lingering = True
                self.events.put(LINGERING)
            else:
                self.connected = False
                self._fail_pending(CallGone("FreeSWITCH closed the call's socket"))
            return
        if ctype == "command/reply" and not self._commands_sent:
            log.warning("unexpected command/reply from FreeSWITCH: %s", headers.get("Reply-Text"))
            return
        if ctype not in _REPLIES:
            # Nothing here asks for anything else (log/data comes only after 'log'): read
            # past its body and drop it, as the dispatcher's handlers did.
            length = int(headers.get("Content-Length", "0") or 0)
            if length:
                self._read_exact(length)
            log.debug("ignored ESL message of type %s", ctype)
            return
        super().handle_event(event)

    def _fail_pending(self, exc: Exception) -> None:
        for pending in self._commands_sent:
            if not pending.ready():
                pending.set_exception(exc)

    # ---------------------------------------------------------------- writing

    def _write(self, commands: list[str]) -> list[gevent.event.AsyncResult]:
        """Write ``commands`` together; a reply slot for each (``handle_event`` fills
        them in order)."""
        if not self.connected:
            raise CallGone("the call's socket is closed")
        results = [gevent.event.AsyncResult() for _ in commands]
        self._commands_sent.extend(results)
        try:
            self.sock.sendall("".join(c + "\n\n" for c in commands).encode("utf-8"))
        except OSError as exc:
            raise _gone(exc) from None
        return results

    def _replies(self, pending: list[tuple[str, gevent.event.AsyncResult]]) -> list[Any]:
        """The replies of ``(command name, slot)`` pairs, in order, waiting ``timeout_s``
        at most in all; ``EslTimeout`` names the command still unanswered."""
        waiting = pending[0][0] if pending else ""
        out = []
        try:
            with gevent.Timeout(self.timeout_s):
                for waiting, result in pending:
                    out.append(result.get())
        except gevent.Timeout:
            raise EslTimeout("FreeSWITCH did not answer %r within %.1f s" % (waiting, self.timeout_s)) from None
        except (OSError, NotConnectedError, OutboundSessionHasGoneAway) as exc:
            raise _gone(exc) from None
        return out

    def send(self, data: str) -> Any:
        return self._replies([(_name(data), self._write([data])[0])])[0]

    def send_many(self, commands: list[str]) -> list[Any]:
        """Send ``commands`` at once and wait for their replies, in order.

        mod_event_socket reads one command at a time from the socket (``read_packet``
        stops at the blank line) and answers each before reading the next, so commands
        written together are answered in order: one round trip instead of one each."""
        return self._replies(list(zip([_name(c) for c in commands], self._write(commands))))

    def post(self, data: str, what: str = "") -> gevent.event.AsyncResult:
        """Write a command without waiting for its reply (``wait_replies`` collects it).

        A call's commands are written as soon as the core decides them and their replies
        are collected once the decision is carried out: the ``+OK`` of a ``sendmsg`` says
        only that FreeSWITCH queued the application (mod_event_socket answers async
        sendmsg at once; what the application did comes as CHANNEL_EXECUTE_COMPLETE), so
        waiting for it before the next Redis request or command only added round trips
        on the routing path. Replies still match in order (one command read at a time,
        see ``send_many``)."""
        result = self._write([data])[0]
        self._unchecked.append((what or _name(data), result))
        return result

    def wait_replies(self) -> None:
        """Wait (``timeout_s`` at most in all) for the replies of the commands ``post``
        wrote; raises ``CallGone`` or ``EslTimeout`` as ``send`` does."""
        unchecked, self._unchecked = self._unchecked, []
        self._replies(unchecked)

    def open(self) -> Any:
        """``connect``, ``myevents`` and ``linger`` in one round trip; the channel's data."""
        if self._outbound_connected:
            return self.session_data  # type: ignore[has-type]  # greenswitch's attribute
        data: Any = self.send_many(["connect", "myevents", "linger"])[0].headers
        self.session_data = data
        self._outbound_connected = True
        return data

    def execute(self, app: str, arg: str = "", app_id: str = "", *, wait: bool = True) -> None:
        """``sendmsg`` execute; the app runs asynchronously (reply ``+OK`` at once).
        ``wait=False``: written now, its reply collected by ``wait_replies``."""
        raw = wire.encode_sendmsg_execute(app, arg, event_uuid=app_id or None).decode("utf-8").rstrip("\n")
        self._command(raw, app, wait)

    def hangup(self, cause: str = "NORMAL_CLEARING", *, wait: bool = True) -> None:  # type: ignore[override]
        self._command("sendmsg\ncall-command: hangup\nhangup-cause: %s" % cause, "hangup", wait)

    def _command(self, data: str, what: str, wait: bool) -> None:
        if wait:
            self.send(data)
        else:
            self.post(data, what)

    def close(self, timeout_s: float = 2.0) -> None:
        """Say ``exit`` (needed with infinite linger), then close, never waiting long."""
        if self.connected:
            try:
                self.send("exit")
            except (CallGone, EslTimeout):
                pass
        self._run = False
        self.connected = False
        try:
            # shutdown() wakes the reader at once (EOF); close() alone would not while
            # the makefile() reader holds the descriptor (see below).
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # already disconnected
        try:
            self.sock.close()
        except OSError:
            pass
        greenlets = [g for g in (self._receive_events_greenlet, self._process_events_greenlet) if g]
        gevent.joinall(greenlets, timeout=timeout_s)
        for g in greenlets:
            if not g.dead:
                g.kill(block=False)
        # socket.close() leaves the descriptor open while a makefile() reader exists
        # (the socket module counts them: _io_refs); greenswitch never closes its reader.
        try:
            self.sock_file.close()
        except (OSError, RuntimeError):
            pass  # a reader that did not stop in time still holds it: the collector closes it
        # greenswitch keeps bound methods of the session in event_handlers, and the
        # reader greenlet holds one too: reference cycles, so every finished call's
        # session (socket, buffers, queues) waited for a full garbage collection, which
        # then closed the sockets of ~10 s of calls with the hub stopped. Without the
        # cycles a session is freed as soon as its call's greenlet lets go of it.
        self.event_handlers.clear()
        self._receive_events_greenlet = self._process_events_greenlet = None
