"""The ESL edge against a broken or hostile peer: bounded reads, one ProtocolError (and
one log line) per malformed input, never a loop, a traceback or unbounded memory.

The peer is the other end of a socketpair (or a tiny TCP server for the inbound
client); what it sends is written out in each test.
"""
from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import gevent
import gevent.socket
import pytest
from gevent.server import StreamServer

from orchestrator.errors import CallGone, CallRefused, EslTimeout, ProtocolError
from orchestrator.esl import wire, wire_fs
from orchestrator.esl.inbound import InboundClient
from orchestrator.esl.session import DISCONNECTED, CallSession, valid_unique_id
from simulator import transcripts

ROOT = Path(__file__).resolve().parent.parent
UUID = "6cd5456b-0703-433b-b46e-472ef36f70c1"


def connect_reply(unique_id: str | None = UUID) -> bytes:
    data = [("Event-Name", "CHANNEL_DATA"), ("Caller-Destination-Number", "7000")]
    if unique_id is not None:
        data.insert(1, ("Unique-ID", unique_id))
    return wire_fs.encode_connect_reply(data)


OK = wire_fs.encode_reply("+OK")


def session_pair(timeout_s: float = 5.0) -> tuple[CallSession, gevent.socket.socket]:
    mine, theirs = gevent.socket.socketpair()
    session = CallSession(("10.0.0.9", 4242), mine, timeout_s=timeout_s)
    session.test_reader = session._receive_events_greenlet  # close() lets go of it
    return session, theirs


def wait_disconnected(session: CallSession, timeout: float = 10.0) -> list:
    items = []
    with gevent.Timeout(timeout, AssertionError("the session did not end")):
        while True:
            item = session.events.get()
            items.append(item)
            if item == DISCONNECTED:
                return items


def session_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name.startswith("orchestrator") and r.levelno >= logging.INFO]


def assert_reader_ended_cleanly(session: CallSession) -> None:
    reader = session.test_reader
    reader.join(timeout=5)
    assert reader.dead and reader.exception is None  # no traceback from the reader


# ----------------------------------------------------------------- item 3: the freeze

FREEZE_SCRIPT = textwrap.dedent("""
    import gevent, gevent.socket, sys
    from orchestrator.esl.session import CallSession, DISCONNECTED
    from orchestrator.errors import CallGone
    mine, theirs = gevent.socket.socketpair()
    session = CallSession(("10.0.0.9", 4242), mine, timeout_s=2)
    ticks = []
    ticker = gevent.spawn(lambda: [ticks.append(gevent.sleep(0.01)) for _ in range(20)])
    pending = session._write(["api status"]) if sys.argv[1] == "api/response" else []
    if pending:
        theirs.recv(65536)  # read like FreeSWITCH (closing with it unread would reset the connection)
    theirs.sendall(b"Content-Type: " + sys.argv[1].encode() + b"\\nContent-Length: 100\\n\\nabc")
    theirs.close()
    with gevent.Timeout(5):
        while session.events.get() != DISCONNECTED:
            pass
    for p in pending:
        try:
            p.get(timeout=1)
        except CallGone:
            pass
    ticker.join(timeout=5)
    print("ended", len(ticks))
""")


@pytest.mark.parametrize("ctype", ["text/rude-rejection", "api/response"])
def test_a_body_cut_short_by_eof_ends_the_session_and_never_stops_the_hub(ctype: str, tmp_path: Path) -> None:
    """Content-Length 100, three bytes, EOF: greenswitch's _read_socket looped for ever
    without yielding (every call of the process stopped, ~8 MB/s of warnings). Run in a
    child process so that a regression fails this test instead of freezing the suite."""
    err_path = tmp_path / "stderr"
    with open(err_path, "wb") as err:
        try:
            proc = subprocess.run([sys.executable, "-c", FREEZE_SCRIPT, ctype], cwd=ROOT, stdout=subprocess.PIPE,
                                  stderr=err, text=True, timeout=60)
        except subprocess.TimeoutExpired:
            pytest.fail("the session reader spun at EOF (%d bytes of log)" % err_path.stat().st_size)
    stderr = err_path.read_text(errors="replace")
    assert proc.returncode == 0, stderr[-2000:]
    assert proc.stdout.strip() == "ended 20"
    assert "Consider increasing" not in stderr  # greenswitch's warning, once per spin
    assert stderr.count("\n") <= 2, stderr[-2000:]


def test_rude_rejection_on_a_call_socket_is_one_log_line(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    session, peer = session_pair()
    peer.sendall(b"Content-Type: text/rude-rejection\nContent-Length: 100\n\nabc")
    peer.close()
    with pytest.raises(CallRefused):
        session.open()
    session.close()
    assert_reader_ended_cleanly(session)
    (line,) = session_lines(caplog)
    assert "10.0.0.9:4242" in line and "text/rude-rejection on a call socket" in line


# ----------------------------------------------------------------- item 4: bounded reads


def _send_forever(peer: gevent.socket.socket, chunk: bytes, total: int) -> int:
    """Send up to ``total`` bytes of ``chunk``s; how many went before the reader hung up."""
    sent = 0
    try:
        while sent < total:
            peer.sendall(chunk)
            sent += len(chunk)
    except OSError:
        pass
    return sent


@pytest.mark.parametrize("head, reason", [
    (b"Content-Type: command/reply\nReply-Text: " , "header line longer than"),  # a 200 MB line
    (b"Content-Type: command/reply\n" + b"X-Pad: 0123456789\n" * 5000, "header block longer than"),
])
def test_a_huge_header_is_cut_at_the_limit_not_buffered(head: bytes, reason: str, caplog) -> None:
    session, peer = session_pair()
    pending = session._write(["connect"])[0]
    sender = gevent.spawn(_send_forever, peer, head + b"a" * 65536, 200 * 1024 * 1024)
    wait_disconnected(session)
    sent = sender.get(timeout=30)
    # The reader stopped after the limit: the peer could not push its 200 MB.
    assert sent < 16 * 1024 * 1024
    with pytest.raises(CallRefused):
        pending.get(timeout=1)
    assert reason in caplog.text
    session.close()
    assert_reader_ended_cleanly(session)


def test_too_many_header_lines_is_refused(caplog) -> None:
    session, peer = session_pair()
    peer.sendall(b"Content-Type: command/reply\n" + b"A: b\n" * (wire.MAX_HEADERS + 1) + b"\n")
    wait_disconnected(session)
    assert "more than %d header lines" % wire.MAX_HEADERS in caplog.text
    session.close()


@pytest.mark.parametrize("length", [
    "400000000",  # 400 MB: was read into memory as it came
    "100000000000000000000",  # OverflowError in read()
    "9" * 5000,  # ValueError: int() refuses 4,300+ digits
    "-1", "+5", " 5", "5_0", "0x10", "",
])
def test_bad_or_huge_content_length_is_refused_before_reading(length: str, caplog) -> None:
    session, peer = session_pair()
    peer.sendall(b"Content-Type: text/event-plain\nContent-Length: " + length.encode() + b"\n\n" + b"x" * 1000)
    wait_disconnected(session)  # without waiting for the promised body
    assert "Content-Length" in caplog.text
    session.close()
    assert_reader_ended_cleanly(session)


def test_a_body_at_the_call_limit_is_read_and_one_past_it_refused(caplog) -> None:
    session, peer = session_pair()
    limit = wire.CALL_LIMITS.body_bytes
    body = b"Event-Name: CUSTOM\n\n".ljust(limit, b"x")
    peer.sendall(b"Content-Type: text/event-plain\nContent-Length: %d\n\n" % limit + body)
    peer.sendall(b"Content-Type: text/event-plain\nContent-Length: %d\n\n" % (limit + 1))
    items = wait_disconnected(session)
    assert [i.name for i in items[:-1]] == ["CUSTOM"]
    assert "exceeds the limit of %d bytes" % limit in caplog.text
    session.close()


# ----------------------------------------------------------------- item 5: no escaping exceptions


def test_more_replies_than_commands_is_a_protocol_error(caplog) -> None:
    """greenswitch popped an empty list (IndexError, a traceback from the reader)."""
    caplog.set_level(logging.INFO)
    session, peer = session_pair()
    peer.sendall(b"Content-Type: api/response\nContent-Length: 3\n\n+OK")
    wait_disconnected(session)
    assert_reader_ended_cleanly(session)
    (line,) = session_lines(caplog)
    assert "answers no command" in line
    session.close()


@pytest.mark.parametrize("body", [
    b'{"Event-Name":"CUSTOM","x":' + b"[" * 100000 + b"]" * 100000 + b"}",  # RecursionError
    b'{"Event-Name":"CUSTOM","x":' + b'{"a":' * 5000 + b"1" + b"}" * 5000 + b"}",
    b'["not", "an", "object"]',
    b'{"Event-Name":"CUSTOM", "_body": ' + b"[" * 3000 + b"]" * 3000 + b"}",
    b"\xff\xfe not utf-8",
])
def test_hostile_json_events_are_protocol_errors(body: bytes) -> None:
    with pytest.raises(ProtocolError):
        wire.parse_event_json(body)


def test_hostile_json_event_ends_the_session_with_one_line(caplog) -> None:
    caplog.set_level(logging.INFO)
    session, peer = session_pair()
    body = b'{"Event-Name":"DTMF","x":' + b"[" * 100000 + b"]" * 100000 + b"}"
    peer.sendall(b"Content-Type: text/event-json\nContent-Length: %d\n\n" % len(body) + body)
    wait_disconnected(session)
    assert_reader_ended_cleanly(session)
    (line,) = session_lines(caplog)
    assert "nested too deeply" in line
    session.close()


def test_plain_event_with_too_many_lines_or_a_bad_inner_length() -> None:
    with pytest.raises(ProtocolError):
        wire.parse_event_plain(b"Event-Name: CUSTOM\n" + b"A: b\n" * wire.MAX_HEADERS)
    with pytest.raises(ProtocolError):
        wire.parse_event_plain(b"Event-Name: BACKGROUND_JOB\nContent-Length: 99999\n\n+OK")
    with pytest.raises(ProtocolError):
        wire.parse_event_plain(b"Event-Name: BACKGROUND_JOB\nContent-Length: -3\n\n+OK")


# ----------------------------------------------------------------- codec limits (inbound client)


@pytest.mark.parametrize("data, reason", [
    (b"Content-Type: api/response\nX: " + b"a" * wire.MAX_LINE_BYTES + b"\n\n", "line longer"),
    (b"Content-Type: api/response\n" + b"A:\n" * wire.MAX_HEADERS + b"\n", "header lines"),
    (b"Content-Type: api/response\nContent-Length: 400000000\n\n", "exceeds the limit"),
    (b"Content-Type: api/response\nContent-Length: " + b"9" * 5000 + b"\n\n", "bad Content-Length"),
    (b"Content-Type: api/response\nContent-Length: +5\n\n", "bad Content-Length"),
])
def test_parser_limits(data: bytes, reason: str) -> None:
    with pytest.raises(ProtocolError, match=reason):
        wire.Parser().feed(data)


def test_parser_fed_a_byte_at_a_time_keeps_up() -> None:
    """A peer sending one byte per packet: every feed searched the whole buffer again
    (quadratic); now only the new bytes. 60 KB of header in single bytes."""
    parser = wire.Parser()
    data = b"Content-Type: command/reply\n" + b"X-Pad: abcdefghij\n" * 3300 + b"\n"
    started = time.process_time()
    out = []
    for i in range(len(data)):
        out += parser.feed(data[i:i + 1])
    assert len(out) == 1 and len(out[0].headers) == 3301
    assert time.process_time() - started < 5.0  # ~0.1 s linear; the quadratic scan took far longer


def test_inbound_client_refuses_a_greeting_over_the_limits() -> None:
    def handle(sock, address) -> None:
        try:
            sock.sendall(b"Content-Type: auth/request\nX: " + b"a" * (2 * wire.MAX_HEADER_BYTES))
            sock.recv(10)
        except OSError:
            pass

    server = StreamServer(("127.0.0.1", 0), handle)
    server.start()
    try:
        client = InboundClient("127.0.0.1", server.address[1], "ClueCon", connect_timeout=5, reconnect=False)
        with pytest.raises(ProtocolError, match="header block exceeds"):
            client.connect()
    finally:
        server.stop()


def test_show_channels_json_that_is_not_freeswitch_shape_is_a_protocol_error() -> None:
    from orchestrator.esl.commands import FreeSwitchApi

    class Canned(FreeSwitchApi):
        def __init__(self, body: str) -> None:
            self.body = body

        def api(self, cmd: str, timeout: float | None = None, check: bool = False) -> str:
            return self.body

    for body in ["[" * 100000 + "]" * 100000, '{"row_count": %s}' % ("9" * 5000), "[1, 2]", '{"rows": 5}',
                 '{"row_count": "x", "rows": []}']:
        with pytest.raises(ProtocolError):
            Canned(body).show_channels()
    assert Canned('{"row_count": 0}\n').show_channels() == []


# ----------------------------------------------------------------- item 6: Unique-ID


@pytest.mark.parametrize("unique_id", [None, "", "abc def", "${system(rm -rf /)}", "a;b", "x" * 65, "-leading",
                                       UUID + "%0Auuid_kill"])
def test_a_connect_reply_without_a_usable_unique_id_is_refused(unique_id, caplog) -> None:
    caplog.set_level(logging.INFO)
    session, peer = session_pair()
    reply = connect_reply(unique_id)
    peer.sendall(reply + OK + OK)
    with pytest.raises(CallRefused):
        session.open()
    session.close()
    lines = session_lines(caplog)
    assert len(lines) == 1 and "Unique-ID" in lines[0] and "10.0.0.9:4242" in lines[0]
    assert peer.recv(65536).startswith(b"connect\n\n")  # then the socket closed: FreeSWITCH goes on
    assert_reader_ended_cleanly(session)


@pytest.mark.parametrize("unique_id", [UUID, "my-origination_uuid.1", "A" * 64])
def test_plausible_unique_ids_are_taken(unique_id: str) -> None:
    assert valid_unique_id(unique_id)
    session, peer = session_pair()
    peer.sendall(connect_reply(unique_id) + OK + OK)
    assert session.open()["Unique-ID"] == unique_id
    peer.close()
    session.close()


# ----------------------------------------------------------------- slowloris, idle peers


def test_a_slowloris_connect_reply_is_refused_at_the_command_timeout(caplog) -> None:
    """The deadline covers the whole reply: bytes trickling in do not extend it; and no
    ``exit`` is awaited after it (that held an idle connection a second timeout)."""
    caplog.set_level(logging.INFO)
    session, peer = session_pair(timeout_s=1.0)
    reply = connect_reply()

    def trickle() -> None:
        try:
            for i in range(len(reply)):
                peer.sendall(reply[i:i + 1])
                gevent.sleep(0.05)
        except OSError:
            pass

    g = gevent.spawn(trickle)
    started = time.monotonic()
    with pytest.raises(CallRefused):
        session.open()
    refused = time.monotonic()
    session.close()
    closed = time.monotonic()
    assert 0.9 <= refused - started < 4.0
    assert closed - refused < 0.9  # no second wait for 'exit'
    lines = session_lines(caplog)
    assert len(lines) == 1 and "no reply to connect within 1.0 s" in lines[0]
    g.kill()
    assert_reader_ended_cleanly(session)


def test_closing_a_session_under_its_reader_logs_nothing(caplog) -> None:
    """Closing woke the waiting reader with gevent's "File descriptor was closed in
    another greenlet", logged at INFO for every such call: now a debug line at most."""
    caplog.set_level(logging.DEBUG)
    session, peer = session_pair(timeout_s=0.3)
    with pytest.raises(CallRefused):
        session.open()
    session.close()
    assert_reader_ended_cleanly(session)
    (line,) = session_lines(caplog)  # INFO and above: the refusal only
    assert "no reply to connect" in line


# ----------------------------------------------------------------- the good path still works


def test_recorded_outbound_call_still_reads_as_before() -> None:
    records = transcripts.load("outbound_loopback_plain.txt")
    mine, theirs = gevent.socket.socketpair()
    session = CallSession(("127.0.0.1", 0), mine, timeout_s=5)
    session.test_reader = session._receive_events_greenlet
    data = transcripts.stream(records, "FS->SERVER")
    replies = sum(1 for m in wire.iter_messages(data) if m.content_type in ("command/reply", "api/response"))
    slots = session._write(["x"] * replies)
    theirs.sendall(data)
    theirs.close()
    items = wait_disconnected(session)
    assert len([i for i in items if isinstance(i, wire.Event)]) > 10
    assert slots[0].get(timeout=1).headers["Unique-ID"] == UUID
    assert all(slot.successful() for slot in slots)
    assert_reader_ended_cleanly(session)
    session.close()


def test_json_numbers_are_kept_as_written() -> None:
    """No int() on the peer's digits: a 4,400-digit number (ValueError in int()) is text."""
    event = wire.parse_event_json(json.dumps({"Event-Name": "X"}).encode()[:-1] + b', "n": 12, "f": 1.5, "b": true, "big": '
                                  + b"9" * 4400 + b"}")
    assert (event.get("n"), event.get("f"), event.get("b"), event.get("big")) == ("12", "1.5", "true", "9" * 4400)
