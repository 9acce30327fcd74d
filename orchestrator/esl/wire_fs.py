"""The FreeSWITCH side of the Event Socket wire format: what FreeSWITCH writes
(auth request, replies, api responses, disconnect notices, the outbound connect reply)
and how it reads a client's commands. Used by the simulator and the tests' replay peers;
the product's own clients use :mod:`orchestrator.esl.wire`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from orchestrator.errors import ProtocolError
from orchestrator.esl.wire import (
    INBOUND_LIMITS,
    MAX_HEADER_BYTES,
    check_header_block,
    content_length,
    encode_message,
    fs_quote,
    parse_header_lines,
)


GOODBYE = "Disconnected, goodbye.\nSee you at ClueCon! http://www.cluecon.com/\n"


def encode_auth_request() -> bytes:
    return encode_message([("Content-Type", "auth/request")])


def encode_reply(reply_text: str, extra: Iterable[tuple[str, str]] = ()) -> bytes:
    """``command/reply``: never a body (``Reply-Text: +OK accepted``)."""
    return encode_message([("Content-Type", "command/reply"), ("Reply-Text", reply_text), *extra])


def encode_api_response(body: str) -> bytes:
    raw = body.encode("utf-8")
    return encode_message([("Content-Type", "api/response"), ("Content-Length", str(len(raw)))], raw)


def encode_disconnect_notice(
    session_uuid: str | None = None,
    disposition: str | None = None,
    channel_name: str | None = None,
    linger_time: int | None = None,
) -> bytes:
    """``text/disconnect-notice`` exactly as mod_event_socket writes it.

    Inbound connections get only the goodbye body; an outbound session gets
    ``Controlled-Session-UUID`` and ``Content-Disposition`` (``linger`` notices carry
    ``Channel-Name`` and ``Linger-Time`` and an empty body).
    """
    headers: list[tuple[str, str]] = [("Content-Type", "text/disconnect-notice")]
    if session_uuid is not None:
        headers.append(("Controlled-Session-UUID", session_uuid))
    if disposition is not None:
        headers.append(("Content-Disposition", disposition))
    if disposition == "linger":
        headers.append(("Channel-Name", channel_name or ""))
        headers.append(("Linger-Time", str(-1 if linger_time is None else linger_time)))
        headers.append(("Content-Length", "0"))
        return encode_message(headers)
    raw = GOODBYE.encode("utf-8")
    headers.append(("Content-Length", str(len(raw))))
    return encode_message(headers, raw)


def encode_connect_reply(channel_data: Iterable[tuple[str, str]]) -> bytes:
    """The outbound ``connect`` reply: CHANNEL_DATA headers URL-encoded, no body."""
    items = [(k, fs_quote(v)) for k, v in channel_data]
    items += [
        ("Content-Type", "command/reply"),
        ("Reply-Text", fs_quote("+OK\n")),
        ("Socket-Mode", "async"),
        ("Control", "full"),
    ]
    return encode_message(items)


@dataclass
class Command:
    """One command as FreeSWITCH reads it from a client: the command line, the header
    lines after it (sendmsg), and a body when a ``Content-Length`` header is given."""

    line: str
    headers: list[tuple[str, str]]
    body: bytes = b""

    def get(self, name: str, default: str | None = None) -> str | None:
        lname = name.lower()
        for key, value in self.headers:
            if key.lower() == lname:
                return value
        return default


class CommandParser:
    """The FreeSWITCH side of the protocol: byte-fed, yields whole commands.

    A command ends at a blank line; lines after the first are ``Name: value`` headers
    (a line without ``": "`` raises :class:`ProtocolError`); with ``Content-Length``
    exactly that many body bytes follow (mod_event_socket read_packet()).
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self._pending: Command | None = None
        self._need = 0

    def feed(self, data: bytes) -> list[Command]:
        self._buf += data
        out: list[Command] = []
        while True:
            if self._pending is not None:
                if len(self._buf) < self._need:
                    return out
                self._pending.body = bytes(self._buf[: self._need])
                del self._buf[: self._need]
                out.append(self._pending)
                self._pending = None
                continue
            while self._buf[:1] in (b"\n", b"\r"):
                del self._buf[:1]
            end = self._buf.find(b"\n\n")
            if end < 0:
                if len(self._buf) > MAX_HEADER_BYTES:
                    raise ProtocolError("ESL command exceeds %d bytes" % MAX_HEADER_BYTES)
                return out
            if end > MAX_HEADER_BYTES:
                raise ProtocolError("ESL command exceeds %d bytes" % MAX_HEADER_BYTES)
            block = bytes(self._buf[:end]).decode("utf-8", "replace").replace("\r", "")
            del self._buf[: end + 2]
            check_header_block(block, INBOUND_LIMITS)
            first, _, rest = block.partition("\n")
            cmd = Command(first.strip(), parse_header_lines(rest) if rest else [])
            length = cmd.get("Content-Length")
            if length is None:
                out.append(cmd)
                continue
            self._pending, self._need = cmd, content_length(length, INBOUND_LIMITS.body_bytes)


