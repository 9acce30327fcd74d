"""The FreeSWITCH Event Socket wire format: framing, parsing and encoding.

Pure functions and a byte-fed parser, no sockets. Shared by the inbound ESL client,
the outbound session adapter and the FreeSWITCH simulator, so that both sides of every
test speak exactly the same bytes.

FreeSWITCH behaviour relied on (mod_event_socket.c, confirmed by the transcripts in
``shared/freeswitch``):

* A message is header lines ``Name: value\\n``, a blank line, then a body only when
  ``Content-Length`` is present (exactly that many bytes, no terminator).
* Content-Types: ``auth/request``, ``command/reply``, ``api/response``,
  ``text/event-plain``, ``text/event-json``, ``text/disconnect-notice``,
  ``text/rude-rejection``.
* ``command/reply`` never has a body. The outbound ``connect`` reply is a
  ``command/reply`` carrying the CHANNEL_DATA headers URL-encoded, including
  ``Reply-Text: %2BOK%0A``; other replies are not encoded (``+OK accepted``).
* A plain event body is URL-encoded ``Name: value`` lines and one blank line. An event
  with its own body (BACKGROUND_JOB) ends its headers with ``Content-Length: M``, a blank
  line and M bytes. A JSON event is one object of string values; its body is ``_body``.
* Commands sent to FreeSWITCH end with a blank line (``\\n\\n``).
"""
from __future__ import annotations

import binascii
import json
import re
from dataclasses import dataclass
from typing import Iterable, Iterator, Mapping
from urllib.parse import unquote

from orchestrator.errors import ProtocolError

# switch_url_encode() in FreeSWITCH's switch_utils.c: a byte is encoded as %XX (upper
# case hex) when it is below ' ', above '~', or one of these; everything else, '/' ','
# '(' '!' included, is sent as it is.
_FS_URL_UNSAFE = frozenset("\r\n \"#%&+:;<=>?@[\\]^`{|}")

_BLANK_LINE = re.compile("\n\n")

# Limits on what one peer may make us hold (shared/STYLE.md: bounded parsers). Every
# reader of ESL bytes applies them: :class:`Parser` (inbound client, simulator, tests)
# and the call socket's reader (``esl.session``). Largest seen from FreeSWITCH 1.10.12
# (every recorded transcript): a header block of 5.5 KB (the outbound ``connect`` reply,
# 147 CHANNEL_DATA headers), a line of 705 bytes, an event body of 11.9 KB (288 lines);
# URL-encoding (an SDP, a long SIP header) can make one value several KB.
MAX_LINE_BYTES = 32 * 1024  # one header line, its "\n" included
MAX_HEADER_BYTES = 64 * 1024  # one message's header block
MAX_HEADERS = 4096  # header lines of one message, or of one event body
MAX_BODY_BYTES = 16 * 1024 * 1024  # inbound client: ``show channels as json`` grows with the calls
MAX_CALL_BODY_BYTES = 1024 * 1024  # a call's socket: events of one channel (~12 KB seen)
_MAX_LENGTH_DIGITS = 9  # Content-Length: FreeSWITCH writes "%ld"; 9 digits exceed every cap


@dataclass(frozen=True)
class Limits:
    """What one message may be: exceeding any limit is a :class:`ProtocolError`."""

    line_bytes: int = MAX_LINE_BYTES
    header_bytes: int = MAX_HEADER_BYTES
    headers: int = MAX_HEADERS
    body_bytes: int = MAX_BODY_BYTES


INBOUND_LIMITS = Limits()
CALL_LIMITS = Limits(body_bytes=MAX_CALL_BODY_BYTES)


def content_length(text: str | None, limit: int) -> int:
    """A ``Content-Length`` value: decimal digits only (``int()`` would also take
    ``+5``, `` 5``, ``5_0`` and 4,300-digit numbers), at most ``limit``. Absent: 0."""
    if text is None:
        return 0
    if not text or len(text) > _MAX_LENGTH_DIGITS or not (text.isascii() and text.isdigit()):
        raise ProtocolError("bad Content-Length %r" % text[:40])
    length = int(text)
    if length > limit:
        raise ProtocolError("Content-Length %d exceeds the limit of %d bytes" % (length, limit))
    return length


def check_header_block(block: str, limits: Limits) -> None:
    """Raise :class:`ProtocolError` when a header block breaks ``limits`` (its size is
    the reader's to check as it reads)."""
    lines = block.count("\n") + 1
    if lines > limits.headers:
        raise ProtocolError("ESL message has %d header lines, more than %d" % (lines, limits.headers))
    if len(block) >= limits.line_bytes and max(map(len, block.split("\n"))) >= limits.line_bytes:
        raise ProtocolError("ESL header line longer than %d bytes" % limits.line_bytes)


@dataclass
class Message:
    """One framed ESL message as read off the wire (header values still raw)."""

    headers: list[tuple[str, str]]
    body: bytes = b""

    def get(self, name: str, default: str | None = None) -> str | None:
        for key, value in self.headers:
            if key == name:
                return value
        return default

    @property
    def content_type(self) -> str:
        return self.get("Content-Type", "") or ""

    def decoded_headers(self) -> dict[str, str]:
        """Header values URL-decoded (right for the outbound ``connect`` reply)."""
        return {k: unquote(v) if "%" in v else v for k, v in self.headers}

    def to_bytes(self) -> bytes:
        return encode_message(self.headers, self.body)


class Event:
    """A parsed FreeSWITCH event: decoded headers and an optional body.

    ``headers`` maps each name to its last value (a plain event's are a
    :class:`PlainHeaders`, decoded on demand); ``items`` is every header in wire order,
    duplicates kept (CODEC and CHANNEL_HANGUP_COMPLETE repeat some names).
    """

    __slots__ = ("headers", "body", "fmt", "_items")

    def __init__(self, headers: Mapping[str, str], body: str | None = None, fmt: str = "plain",
                 items: tuple[tuple[str, str], ...] | None = None) -> None:
        self.headers = headers
        self.body = body
        self.fmt = fmt
        self._items = items

    @property
    def items(self) -> tuple[tuple[str, str], ...]:
        if self._items is None:
            headers = self.headers
            self._items = headers.pairs() if isinstance(headers, PlainHeaders) else ()
        return self._items

    @property
    def name(self) -> str:
        return self.headers.get("Event-Name", "")

    def get(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name, default)

    def var(self, name: str, default: str | None = None) -> str | None:
        """A channel variable carried by the event (``variable_<name>``)."""
        return self.headers.get("variable_" + name, default)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Event):
            return NotImplemented
        return (dict(self.headers) == dict(other.headers) and self.body == other.body and self.fmt == other.fmt
                and self.items == other.items)

    __hash__ = None  # type: ignore[assignment]  # mutable, like the dataclass it replaced

    def __repr__(self) -> str:
        return "Event(%r, fmt=%r, %d headers, body=%s)" % (
            self.name, self.fmt, len(self.headers), "None" if self.body is None else "%d chars" % len(self.body))


class PlainHeaders(Mapping[str, str]):
    """The headers of a ``text/event-plain`` event, URL-decoded only when read.

    A call's events carry ~150 headers each and the call handler reads two or three of
    most of them, so a single lookup finds the header's line in the raw text instead of
    splitting and unquoting every line (the hot path: ~20 events per call). Reading the
    headers in full (iteration, ``items()``, ``len``) parses them all once, exactly as
    :func:`parse_header_lines` does, with ``unquote`` on every value that has a ``%``.

    Why a lookup in the raw text is exact (FreeSWITCH's ``switch_event_serialize``
    writes ``Name: <switch_url_encode(value)>\n`` per header): a value's own newlines
    are sent as ``%0A``, so every ``\n`` in the text ends a line, and the line of a
    header ``Name`` is the one starting with ``Name: `` (its name is what precedes the
    first ``": "``), or ``Name:`` alone for an empty value. The last such line wins, as
    in the dict the eager parser built. A malformed line (neither ``": "`` nor a final
    ``:``) raises :class:`ProtocolError` when the headers are read in full; single
    lookups do not look at the other lines.
    """

    __slots__ = ("_text", "_all", "_pairs")

    def __init__(self, head: str) -> None:
        self._text = "\n" + head + "\n"
        self._all: dict[str, str] | None = None
        self._pairs: tuple[tuple[str, str], ...] | None = None

    def _raw(self, name: str) -> str | None:
        """The undecoded value of the last header ``name``, or None."""
        text = self._text
        prefix = "\n" + name + ":"
        end = len(text)
        while True:
            at = text.rfind(prefix, 0, end)
            if at < 0:
                return None
            start = at + len(prefix)
            after = text[start]  # the text ends with "\n": there is always one more
            if after == " ":
                return text[start + 1:text.index("\n", start)]
            if after == "\n":
                return ""
            end = start - 1  # another name ("Name:x..."): look further back

    def _lookup(self, name: str) -> str | None:
        if self._all is not None:
            return self._all.get(name)
        if "\n" in name or ": " in name:  # no header line can have such a name
            return self._full().get(name)
        raw = self._raw(name)
        if raw is None:
            return None
        return unquote(raw) if "%" in raw else raw

    def __getitem__(self, name: str) -> str:
        value = self._lookup(name)
        if value is None:
            raise KeyError(name)
        return value

    def get(self, name: str, default: str | None = None) -> str | None:  # type: ignore[override]
        value = self._lookup(name)
        return default if value is None else value

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self._lookup(name) is not None

    def pairs(self) -> tuple[tuple[str, str], ...]:
        """Every header in wire order, duplicates kept, values decoded."""
        if self._pairs is None:
            split = parse_header_lines(self._text)
            values = unquote_lines("\n".join([v for _, v in split]))
            if values is None:
                self._pairs = tuple([(k, unquote(v) if "%" in v else v) for k, v in split])
            else:
                self._pairs = tuple(zip([k for k, _ in split], values))
        return self._pairs

    def _full(self) -> dict[str, str]:
        if self._all is None:
            self._all = dict(self.pairs())
        return self._all

    def __iter__(self) -> Iterator[str]:
        return iter(self._full())

    def __len__(self) -> int:
        return len(self._full())

    def __bool__(self) -> bool:
        # Without it, ``headers or {}`` would call __len__ and decode every header.
        return self._all is not None and bool(self._all) or self._text.strip("\n") != ""

    def items(self):  # type: ignore[no-untyped-def, override]  # dict's view: fast to iterate
        return self._full().items()

    def keys(self):  # type: ignore[no-untyped-def, override]
        return self._full().keys()

    def values(self):  # type: ignore[no-untyped-def, override]
        return self._full().values()

    def __repr__(self) -> str:
        return "PlainHeaders(%r)" % (self._full(),)


class Parser:
    """Incremental parser: feed bytes, get whole messages.

    Raises :class:`ProtocolError` on input that cannot be ESL (a header line without
    ``": "``, a bad Content-Length, a header block or body over ``limits``) so that
    the caller can drop the connection with a clear log line instead of hanging. It
    holds at most one header block (``limits.header_bytes``) or one body
    (``limits.body_bytes``) plus one ``feed``'s data.
    """

    def __init__(self, limits: Limits = INBOUND_LIMITS) -> None:
        self._buf = bytearray()
        self._pending: Message | None = None
        self._need = 0
        self._scanned = 0  # bytes of _buf already searched for the blank line
        self.limits = limits

    def feed(self, data: bytes) -> list[Message]:
        self._buf += data
        out: list[Message] = []
        while True:
            msg = self._next()
            if msg is None:
                return out
            out.append(msg)

    def _next(self) -> Message | None:
        if self._pending is not None:
            if len(self._buf) < self._need:
                return None
            body = bytes(self._buf[: self._need])
            del self._buf[: self._need]
            msg, self._pending = self._pending, None
            msg.body = body
            return msg
        # Skip stray blank lines between messages (FreeSWITCH never sends them, but
        # a hand-typed client might): they would otherwise read as an empty message.
        if self._buf[:1] == b"\n":
            skip = len(self._buf) - len(self._buf.lstrip(b"\n"))
            del self._buf[:skip]
            self._scanned = 0
        # Search only the new bytes (one byte back: the blank line may straddle feeds),
        # so that a peer sending a byte at a time costs linear, not quadratic, time.
        end = self._buf.find(b"\n\n", max(0, self._scanned - 1))
        if end < 0:
            self._scanned = len(self._buf)
            if len(self._buf) > self.limits.header_bytes:
                raise ProtocolError("ESL header block exceeds %d bytes" % self.limits.header_bytes)
            return None
        self._scanned = 0
        if end > self.limits.header_bytes:
            raise ProtocolError("ESL header block exceeds %d bytes" % self.limits.header_bytes)
        block = bytes(self._buf[:end]).decode("utf-8", "replace")
        del self._buf[: end + 2]
        check_header_block(block, self.limits)
        headers = parse_header_lines(block)
        length_text = _first(headers, "Content-Length")
        if length_text is None:
            return Message(headers)
        self._pending = Message(headers)
        self._need = content_length(length_text, self.limits.body_bytes)
        return self._next()


def _first(headers: Iterable[tuple[str, str]], name: str) -> str | None:
    for key, value in headers:
        if key == name:
            return value
    return None


def parse_header_lines(block: str) -> list[tuple[str, str]]:
    headers: list[tuple[str, str]] = []
    for line in block.split("\n"):
        if not line:
            continue
        key, sep, value = line.partition(": ")
        if not sep:
            # "Name:" with an empty value is legal (FreeSWITCH writes "Name: " then).
            if line.endswith(":"):
                headers.append((line[:-1], ""))
                continue
            raise ProtocolError("malformed ESL header line %r" % line[:80])
        headers.append((key, value))
    return headers


_LONE_PERCENT = re.compile("%(?![0-9A-Fa-f]{2})")


def unquote_lines(joined: str) -> list[str] | None:
    """``[unquote(v) for v in joined.split("\\n")]`` in one C call, or None when the fast
    path cannot promise the same result (the caller then unquotes value by value).

    ``binascii.a2b_qp`` decodes ``=XX`` (either case) and copies every other byte; with
    '%' turned into '=' it is ``unquote_to_bytes`` as long as: there was no '=' (it would
    be read as an escape), every '%' starts an escape (a lone '=' followed by a newline
    is a soft line break, '==' is one '='), the text is ASCII (so that decoding the whole
    as UTF-8 equals decoding each value: a newline ends any unfinished sequence either
    way), and no escape decodes to a newline (``%0A`` is carried through as NUL, so there
    must be no NUL or ``%00`` already). FreeSWITCH's encoding satisfies all of these.
    """
    if "%" not in joined:
        return joined.split("\n")
    if not joined.isascii() or "=" in joined or "\x00" in joined or "%00" in joined or _LONE_PERCENT.search(joined):
        return None
    text = binascii.a2b_qp(joined.replace("%0A", "\x00").replace("%0a", "\x00").replace("%", "=")).decode("utf-8", "replace")
    values = text.split("\n")
    if "\x00" in text:
        values = [v.replace("\x00", "\n") for v in values]
    return values


def encode_message(headers: Iterable[tuple[str, str]], body: bytes = b"") -> bytes:
    """Frame a message as FreeSWITCH does: headers, blank line, body."""
    head = "".join("%s: %s\n" % (k, v) for k, v in headers)
    return head.encode("utf-8") + b"\n" + body


def fs_quote(value: str) -> str:
    """URL-encode a header value exactly as FreeSWITCH's switch_url_encode() does."""
    out: list[str] = []
    for byte in value.encode("utf-8"):
        char = chr(byte)
        if byte < 0x20 or byte > 0x7E or char in _FS_URL_UNSAFE:
            out.append("%%%02X" % byte)
        else:
            out.append(char)
    return "".join(out)


# ----------------------------------------------------------------- events


def parse_event(msg: Message) -> Event:
    """Parse a ``text/event-plain`` or ``text/event-json`` message."""
    ctype = msg.content_type
    if ctype == "text/event-plain":
        return parse_event_plain(msg.body)
    if ctype == "text/event-json":
        return parse_event_json(msg.body)
    raise ProtocolError("not an event message: Content-Type %r" % ctype)


def parse_event_plain(body: bytes) -> Event:
    """Parse a plain event body; header values are decoded when read (``PlainHeaders``)."""
    text = body.decode("utf-8", "replace")
    # The first blank line ends the headers. re's search finds it with memchr, about 3x
    # faster than str.partition's two-character search on a 7 KB event.
    blank = _BLANK_LINE.search(text)
    head, rest = (text[:blank.start()], text[blank.end():]) if blank else (text, "")
    # Malformed input fails here, not later in the caller. Every line FreeSWITCH writes
    # has exactly one ": " (values are URL-encoded, ':' and ' ' included), so an event
    # with at least as many ": " as lines is taken as it is (two C-level counts, ~9 us
    # for 190 headers); any other is checked line by line, which raises on a line that
    # has neither ": " nor a final ':'. What the counts cannot see (a bad line made up
    # for by a value with an unencoded ": ", which FreeSWITCH never sends) raises when
    # the headers are read in full; a single lookup is exact for the header it reads.
    lines = head.count("\n") + 1
    if lines > MAX_HEADERS:  # bounds what reading the headers in full may build
        raise ProtocolError("event has %d header lines, more than %d" % (lines, MAX_HEADERS))
    if head.count(": ") < lines:
        parse_header_lines(head)
    headers = PlainHeaders(head)
    event_body: str | None = None
    length_text = headers.get("Content-Length")
    if length_text is not None:
        # Never more than the body we have: the message's own length is capped.
        length = content_length(length_text, len(body))
        raw = rest.encode("utf-8")[:length]
        event_body = raw.decode("utf-8", "replace")
    return Event(headers, event_body, "plain")


def parse_event_json(body: bytes) -> Event:
    """Parse a JSON event.

    FreeSWITCH's JSON serializer (cJSON) writes a repeated header twice under the same
    key (CHANNEL_HANGUP_COMPLETE carries ``Hangup-Cause`` twice), so the pairs are read
    in order with duplicates kept in ``items``; ``headers`` keeps the last value. A
    multi-value header (``switch_event_add_header`` with an index) arrives as a JSON
    array and is turned into FreeSWITCH's plain form ``ARRAY::a|:b``.
    """
    # Hostile JSON fails here as ProtocolError, nothing else: deep nesting raises
    # RecursionError (in json and in _json_value), a 4,300-digit integer ValueError.
    # FreeSWITCH's events are one flat object of strings (arrays for multi-value
    # headers), so integers and floats are parsed as text (no int() or float() at all).
    try:
        pairs = json.loads(body.decode("utf-8"), object_pairs_hook=_Pairs, parse_int=str, parse_float=str,
                           parse_constant=str)
        if not isinstance(pairs, _Pairs):
            raise ProtocolError("JSON event is not an object")
        if len(pairs) > MAX_HEADERS:
            raise ProtocolError("JSON event has %d headers, more than %d" % (len(pairs), MAX_HEADERS))
        items: list[tuple[str, str]] = []
        event_body: str | None = None
        for key, value in pairs:
            if key == "_body":
                event_body = value if isinstance(value, str) else _json_value(value)
                continue
            items.append((str(key), _json_value(value)))
    except (UnicodeDecodeError, ValueError) as exc:  # json.JSONDecodeError is a ValueError
        raise ProtocolError("bad JSON event: %s" % str(exc)[:200]) from None
    except RecursionError:
        raise ProtocolError("bad JSON event: nested too deeply") from None
    return Event(dict(items), event_body, "json", tuple(items))


class _Pairs(list):  # type: ignore[type-arg]
    """A JSON object as its ordered (key, value) pairs, duplicates kept."""


def _json_value(value: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, _Pairs):  # before list: _Pairs is one
        return json.dumps(dict(value))
    if isinstance(value, list):
        return "ARRAY::" + "|:".join(_json_value(v) for v in value)
    return json.dumps(value)


def encode_event_plain(headers: Iterable[tuple[str, str]], body: str | None = None) -> bytes:
    """The full ESL message for a plain event (outer Content-Length included).

    ``headers`` may already end with the inner ``Content-Length`` (as parsed events
    do); otherwise it is added when there is a body.
    """
    items = list(headers)
    if body is not None:
        raw = body.encode("utf-8")
        if not items or items[-1][0] != "Content-Length":
            items = [kv for kv in items if kv[0] != "Content-Length"]
            items.append(("Content-Length", str(len(raw))))
        lines = "".join("%s: %s\n" % (k, fs_quote(v)) for k, v in items)
        payload = (lines + "\n").encode("utf-8") + raw
    else:
        lines = "".join("%s: %s\n" % (k, fs_quote(v)) for k, v in items)
        payload = (lines + "\n").encode("utf-8")
    return encode_message(
        [("Content-Length", str(len(payload))), ("Content-Type", "text/event-plain")], payload
    )


def encode_event_json(headers: Iterable[tuple[str, str]] | Mapping[str, str], body: str | None = None) -> bytes:
    """The full ESL message for a JSON event, byte-compatible with FreeSWITCH (cJSON).

    ``headers`` is a mapping or an ordered sequence of pairs; repeated names are
    written repeatedly (as FreeSWITCH does). The body goes under ``_body`` after an
    inner ``Content-Length`` header.
    """
    items = list(headers.items()) if isinstance(headers, Mapping) else list(headers)
    if body is not None and not any(k == "Content-Length" for k, _ in items):
        items.append(("Content-Length", str(len(body.encode("utf-8")))))
    parts = [_json_str(k) + ":" + _json_str(v) for k, v in items]
    if body is not None:
        parts.append('"_body":' + _json_str(body))
    payload = ("{" + ",".join(parts) + "}").encode("utf-8")
    return encode_message(
        [("Content-Length", str(len(payload))), ("Content-Type", "text/event-json")], payload
    )


def _json_str(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)


# ----------------------------------------------------------------- commands


def encode_command(line: str, headers: Mapping[str, str] | Iterable[tuple[str, str]] = (), body: str | None = None) -> bytes:
    """A command as a client sends it: ``line``, optional header lines, blank line."""
    items = list(headers.items()) if isinstance(headers, Mapping) else list(headers)
    if "\n" in line:
        raise ValueError("ESL command line must not contain a newline")
    parts = [line]
    for key, value in items:
        if "\n" in key or "\n" in str(value):
            raise ValueError("ESL header %r must not contain a newline" % key)
        parts.append("%s: %s" % (key, value))
    raw = ("\n".join(parts) + "\n\n").encode("utf-8")
    if body is not None:
        raise ValueError("use sendmsg headers, not a body, for commands")
    return raw


def encode_sendmsg_execute(app: str, arg: str | None = None, event_uuid: str | None = None, uuid: str | None = None, event_lock: bool = False) -> bytes:
    """``sendmsg [uuid]`` executing a dialplan application.

    ``Event-UUID`` comes back as ``Application-UUID`` on CHANNEL_EXECUTE and
    CHANNEL_EXECUTE_COMPLETE (transcripts outbound_*): correlate on it, not on the
    application name.
    """
    headers: list[tuple[str, str]] = [("call-command", "execute"), ("execute-app-name", app)]
    if arg is not None and arg != "":
        headers.append(("execute-app-arg", arg))
    if event_lock:
        headers.append(("event-lock", "true"))
    if event_uuid:
        headers.append(("Event-UUID", event_uuid))
    return encode_command("sendmsg %s" % uuid if uuid else "sendmsg", headers)


def iter_messages(data: bytes) -> Iterator[Message]:
    """All whole messages in a byte string (for transcripts)."""
    parser = Parser()
    yield from parser.feed(data)


def reply_ok(reply: str) -> bool:
    return reply.startswith("+OK")


__all__ = [
    "CALL_LIMITS",
    "INBOUND_LIMITS",
    "Limits",
    "content_length",
    "Event",
    "Message",
    "PlainHeaders",
    "Parser",
    "encode_command",
    "encode_event_json",
    "encode_event_plain",
    "encode_message",
    "encode_sendmsg_execute",
    "fs_quote",
    "iter_messages",
    "parse_event",
    "parse_event_json",
    "parse_event_plain",
    "reply_ok",
]
