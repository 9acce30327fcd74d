"""One FreeSWITCH outbound-socket connection: greenswitch's OutboundSession, hardened.

greenswitch reads the socket, matches command replies and dispatches events; this
subclass fixes what a call centre cannot live with (see shared/STYLE.md):

* every command waits at most ``timeout_s`` (greenswitch's ``send`` waits forever);
* the read loop is ours: greenswitch stops its dispatcher at EOF and drops the events
  still queued (CHANNEL_HANGUP_COMPLETE among them); ours ends the stream with a marker
  that is dispatched after them;
* disconnect notices: a ``linger`` notice may come before the reply to an in-flight
  sendmsg (transcript outbound_sipp_builtin_uac_caller_hangup), so it does not fail
  pending commands as greenswitch does; only a real ``disconnect`` does;
* event bodies are parsed with our wire codec (greenswitch URL-decodes the whole body
  before splitting lines and loses repeated headers and inner bodies);
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
from typing import Any

import gevent
import gevent.event
import gevent.queue
from greenswitch.esl import ESLEvent, NotConnectedError, OutboundSession, OutboundSessionHasGoneAway

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


class _EndOfStream:
    """Dispatcher-queue marker: the socket reached EOF (or failed)."""

    headers = {"Event-Name": "PBX_END_OF_STREAM", "Content-Type": "pbx/eof"}


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
        super().__init__(client_address, sock)
        for name in ("*", "CHANNEL_HANGUP"):
            self.register_handle(name, self._enqueue)

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
                    event = ESLEvent(b"".join(buf).decode("utf-8", "replace"))
                    buf = []
                    self.handle_event(event)
                    continue
                buf.append(line)
        except (ProtocolError, KeyError, ValueError) as exc:
            log.error("malformed ESL message from FreeSWITCH, closing the call's socket: %s", exc)
        except OSError as exc:
            log.info("call socket error: %s", exc)
        finally:
            # Nothing more will come on this connection. The marker goes through the
            # dispatcher queue so that it arrives after every event read before it.
            self.connected = False
            self._fail_pending(CallGone("the call's socket closed"))
            self._esl_event_queue.put(_EndOfStream())

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
            # greenswitch's dispatcher only looks at these three; the call handler reads
            # the parsed event itself, so the ~150 headers are not copied again.
            event.headers = {
                "Content-Type": ctype,
                "Event-Name": parsed.headers.get("Event-Name", ""),
                "Event-Subclass": parsed.headers.get("Event-Subclass", ""),
            }
            event.parsed = parsed
            self._esl_event_queue.put(event)
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
        super().handle_event(event)

    def _enqueue(self, event: Any) -> None:
        if isinstance(event, _EndOfStream):
            self.events.put(DISCONNECTED)
            self._run = False
            return
        parsed = getattr(event, "parsed", None)
        if parsed is not None:
            self.events.put(parsed)

    def _fail_pending(self, exc: Exception) -> None:
        for pending in self._commands_sent:
            if not pending.ready():
                pending.set_exception(exc)

    # ---------------------------------------------------------------- writing

    def send(self, data: str) -> Any:
        if not self.connected:
            raise CallGone("the call's socket is closed")
        result = gevent.event.AsyncResult()
        self._commands_sent.append(result)
        try:
            self.sock.sendall((data + "\n\n").encode("utf-8"))
            return result.get(timeout=self.timeout_s)
        except gevent.Timeout:
            raise EslTimeout("FreeSWITCH did not answer %r within %.1f s" % (data.split("\n", 1)[0], self.timeout_s)) from None
        except (OSError, NotConnectedError, OutboundSessionHasGoneAway) as exc:
            raise CallGone("the call's socket went away: %s" % (exc or type(exc).__name__)) from None

    def execute(self, app: str, arg: str = "", app_id: str = "") -> None:
        """``sendmsg`` execute; the app runs asynchronously (reply ``+OK`` at once)."""
        raw = wire.encode_sendmsg_execute(app, arg, event_uuid=app_id or None)
        self.send(raw.decode("utf-8").rstrip("\n"))

    def hangup(self, cause: str = "NORMAL_CLEARING") -> None:  # type: ignore[override]
        self.send("sendmsg\ncall-command: hangup\nhangup-cause: %s" % cause)

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
            self.sock.close()
        except OSError:
            pass
        greenlets = [g for g in (self._receive_events_greenlet, self._process_events_greenlet) if g]
        gevent.joinall(greenlets, timeout=timeout_s)
        for g in greenlets:
            if not g.dead:
                g.kill(block=False)
