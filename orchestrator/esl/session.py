"""One FreeSWITCH outbound-socket connection: greenswitch's OutboundSession, hardened.

greenswitch reads the socket, matches command replies and dispatches events; this
subclass fixes what a call centre cannot live with (see shared/STYLE.md):

* every command waits at most ``timeout_s`` (greenswitch's ``send`` waits forever);
* the read loop is ours, and so is every read: greenswitch stops its dispatcher at EOF
  and drops the events still queued (CHANNEL_HANGUP_COMPLETE among them), and its
  ``_read_socket`` spins for ever on a body cut short by EOF (one such peer stopped
  every call of the process). Ours reads lines, header blocks and bodies under the
  codec's ``wire.CALL_LIMITS``, ends the stream with a marker put after the events,
  and answers a broken peer with one log line and a closed socket;
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
import re
import socket
from typing import Any, NoReturn

import gevent
import gevent.event
import gevent.queue
from greenswitch.esl import NotConnectedError, OutboundSession, OutboundSessionHasGoneAway

from orchestrator.errors import CallGone, CallRefused, EslTimeout, ProtocolError
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


def _peer(address: Any) -> str:
    """``host:port`` of the peer, for log lines."""
    try:
        return "%s:%s" % (address[0], address[1])
    except (TypeError, IndexError, KeyError):
        return str(address)


# What a Unique-ID may be before it is routed and written into api commands
# (``uuid_break <uuid> all``, ``uuid_kill``): FreeSWITCH makes it with
# switch_uuid_str() (36 characters, hex and '-'); ``origination_uuid`` lets a dialplan
# or an originate choose another, so any token of letters, digits, '-', '_' and '.'
# up to 64 characters is taken; never a blank, '$', '{', ';' or a newline.
_UNIQUE_ID = re.compile(r"[0-9A-Za-z][0-9A-Za-z_.-]{0,63}\Z")


def valid_unique_id(value: str | None) -> bool:
    return bool(value) and _UNIQUE_ID.match(value) is not None  # type: ignore[arg-type]


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
        self.limits = wire.CALL_LIMITS
        self.peer = _peer(client_address)
        self._failure = ""  # why we closed the socket on a bad peer (logged once)
        self._closing = False
        self._timed_out = False  # a command went unanswered: do not wait for 'exit' too
        super().__init__(client_address, sock)

    def start_event_handlers(self) -> None:
        """The reader greenlet only (greenswitch's ``__init__`` calls this): events are
        put on ``events`` as they are read, in order; no dispatcher greenlet."""
        self._receive_events_greenlet = gevent.spawn(self.receive_events)
        self._process_events_greenlet = None

    # ---------------------------------------------------------------- reading

    def receive_events(self) -> None:
        """Read framed messages until EOF (replaces greenswitch's loop, which stops the
        dispatcher at EOF and drops events still queued, e.g. CHANNEL_HANGUP_COMPLETE).

        Every byte of the connection is read here, under ``self.limits`` (the codec's
        ``wire.CALL_LIMITS``): a line of at most ``line_bytes``, a header block of at
        most ``header_bytes`` and ``headers`` lines, a body of at most ``body_bytes``,
        read only once its whole length is known to be within the cap. Nothing is
        handed to greenswitch's reader (its ``_read_socket`` spins for ever at EOF)."""
        f = self.sock_file
        peek, read = f.peek, f.read
        try:
            while True:
                # The fast path: the whole header block is in the reader's buffer (8 KiB:
                # within every limit); one read instead of a readline per header (the
                # connect reply has ~150). Otherwise line by line, under the limits.
                buffered = peek(1)
                if not buffered:
                    break  # EOF between messages
                if buffered[:1] == b"\n":
                    read(1)  # a stray blank line between messages
                    continue
                end = buffered.find(b"\n\n")
                block = read(end + 2)[:-2] if end >= 0 else self._read_head_lines()
                self._dispatch(block.decode("utf-8", "replace"))
        except ProtocolError as exc:
            self._bad_peer(str(exc))
        except RecursionError:  # pragma: no cover - wire.parse_event turns these into ProtocolError
            self._bad_peer("message nested too deeply")
        except OSError as exc:
            if self._closing:
                log.debug("call socket from %s closed by us: %s", self.peer, exc)
            else:
                log.info("call socket from %s failed: %s", self.peer, exc)
        finally:
            # Nothing more will come on this connection; the marker comes after every
            # event read before it (the same queue).
            self.connected = False
            self._run = False
            self._fail_pending(CallRefused(self._failure) if self._failure else CallGone("the call's socket closed"))
            self.events.put(DISCONNECTED)

    def _read_head_lines(self) -> bytes:
        """One header block read line by line, its final blank line dropped; a line of
        more than ``limits.line_bytes`` or a block of more than ``header_bytes`` is a
        ProtocolError as soon as it is seen (never buffered whole)."""
        readline = self.sock_file.readline
        max_line = self.limits.line_bytes
        max_head = self.limits.header_bytes
        buf: list[bytes] = []
        size = 0
        while True:
            line = readline(max_line)
            if line[-1:] != b"\n":  # readline(n) stops short of "\n" at n bytes or at EOF
                if len(line) >= max_line:
                    raise ProtocolError("header line longer than %d bytes" % max_line)
                raise ProtocolError("connection closed inside a message's headers")
            if line == b"\n":
                return b"".join(buf)[:-1]
            size += len(line)
            if size > max_head:
                raise ProtocolError("header block longer than %d bytes" % max_head)
            buf.append(line)

    def _bad_peer(self, reason: str) -> None:
        """The one log line for a peer that broke the protocol; the socket then closes
        (FreeSWITCH continues its dialplan after ``socket``: P08a-d)."""
        if self._closing:  # we closed it: cut short, not the peer's fault
            log.debug("call socket from %s closed by us mid-message: %s", self.peer, reason)
            return
        self._failure = "malformed ESL message from %s: %s" % (self.peer, reason)
        log.warning("malformed ESL message from %s, closing the call's socket: %s", self.peer, reason,
                    extra={"peer": self.peer, "reason": reason})
        try:
            # Wake any writer and tell the peer at once; close() releases the rest.
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _read_exact(self, length: int) -> bytes:
        """``length`` body bytes (already checked against the limit)."""
        data = self.sock_file.read(length)
        if len(data) < length:  # BufferedReader.read(n) is short only at EOF
            raise ProtocolError("connection closed inside a message body (%d of %d bytes)" % (len(data), length))
        return data

    def _dispatch(self, block: str) -> None:
        """One message: its header block read; its body (if any) is read here."""
        if block.count("\n") >= self.limits.headers:
            raise ProtocolError("more than %d header lines" % self.limits.headers)
        event = _Reply(block)
        headers = event.headers
        ctype = headers.get("Content-Type")
        if ctype is None:
            raise ProtocolError("ESL message without Content-Type (first line %r)" % block.split("\n", 1)[0][:80])
        length_text = headers.get("Content-Length")
        length = wire.content_length(length_text, self.limits.body_bytes) if length_text is not None else 0
        if ctype in ("text/event-plain", "text/event-json"):
            body = self._read_exact(length)
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
        if ctype == "text/rude-rejection":
            # FreeSWITCH sends it only to an inbound client its ACL refuses; on a call
            # socket the peer is not a FreeSWITCH handing us a call: no use reading on.
            raise ProtocolError("text/rude-rejection on a call socket")
        body = self._read_exact(length) if length else b""
        if ctype == "command/reply" or ctype == "api/response":
            # mod_event_socket answers each command, in order, with exactly one of these.
            if not self._commands_sent:
                raise ProtocolError("%s that answers no command (Reply-Text %r)" % (ctype, (headers.get("Reply-Text") or "")[:80]))
            event.data = headers.get("Reply-Text") if ctype == "command/reply" else body.decode("utf-8", "replace")
            self._commands_sent.pop(0).set(event)
            return
        if ctype == "text/disconnect-notice":
            if headers.get("Content-Disposition") == "linger":
                self._lingering = True
                self.events.put(LINGERING)
            else:
                self.connected = False
                self._fail_pending(CallGone("FreeSWITCH closed the call's socket"))
            return
        # Nothing here asks for anything else (auth/request is the inbound greeting,
        # log/data comes only after 'log'): its body was read past; drop it.
        log.debug("ignored ESL message of type %s from %s", ctype, self.peer)

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
            self._timed_out = True
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
        """``connect``, ``myevents`` and ``linger`` in one round trip; the channel's data.

        Raises :class:`CallRefused` (after one log line saying why) when the peer does
        not answer them within ``timeout_s`` (an idle or slowloris connection holds
        nothing longer than that), closes, breaks the protocol, or its ``connect``
        reply has no usable ``Unique-ID`` (without one two calls would share a lease
        key and a history row; it is written into api commands such as
        ``uuid_break``). The caller just closes the session: FreeSWITCH then
        continues its dialplan after ``socket`` (P08a-d), i.e. our fallback."""
        if self._outbound_connected:
            return self.session_data  # type: ignore[has-type]  # greenswitch's attribute
        try:
            data: Any = self.send_many(["connect", "myevents", "linger"])[0].headers
        except CallRefused:
            raise  # the reader logged why
        except EslTimeout:
            self._refuse(logging.WARNING, "no reply to connect within %.1f s" % self.timeout_s)
        except CallGone as exc:
            # Our write may fail (EPIPE) before the reader has seen why the peer went:
            # let it finish the bytes already here, so that the one line says why.
            reader = self._receive_events_greenlet
            if reader is not None:
                reader.join(timeout=min(1.0, self.timeout_s))
            if self._failure:
                raise CallRefused(self._failure) from None
            self._refuse(logging.INFO, "closed before the connect reply (%s)" % exc)
        unique_id = data.get("Unique-ID")
        if not valid_unique_id(unique_id):
            self._refuse(logging.WARNING, "connect reply without a usable Unique-ID (%s)"
                         % ("none" if unique_id is None else repr(unique_id[:80])))
        self.session_data = data
        self._outbound_connected = True
        return data

    def _refuse(self, level: int, reason: str) -> NoReturn:
        # close() then just closes: no 'exit' (an abrupt close hands the channel back
        # to the dialplan as well, P08a/b; a refused peer is not waited for again).
        self._failure = reason
        log.log(level, "refused the call socket from %s: %s; FreeSWITCH continues its dialplan", self.peer, reason,
                extra={"peer": self.peer, "reason": reason})
        raise CallRefused("call socket from %s refused: %s" % (self.peer, reason))

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
        """Say ``exit`` (needed with infinite linger), then close, never waiting long.

        No ``exit`` to a peer that let a command time out (an idle or slowloris
        connection would hold us ``timeout_s`` more) or that we refused for a protocol
        error."""
        self._closing = True
        if self.connected and not self._timed_out and not self._failure:
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
        # The reader ends on that EOF; closing the socket under a reader still waiting
        # on it would wake it with gevent's "File descriptor was closed in another
        # greenlet" instead.
        greenlets = [g for g in (self._receive_events_greenlet, self._process_events_greenlet) if g]
        gevent.joinall(greenlets, timeout=timeout_s)
        for g in greenlets:
            if not g.dead:
                g.kill(block=False)
        try:
            self.sock.close()
        except OSError:
            pass
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
