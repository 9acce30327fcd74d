"""The ESL codec against every FreeSWITCH message recorded in the transcripts.

Every FS->* message must parse and re-encode to exactly the recorded bytes (events in
plain and json, api responses, command replies, the outbound connect reply, disconnect
notices); malformed input must raise ProtocolError instead of hanging or guessing.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.errors import ProtocolError
from orchestrator.esl import wire, wire_fs
from simulator import transcripts

TDIR = transcripts.transcripts_dir()
FILES = sorted(TDIR.glob("*.txt")) + sorted((TDIR / "primitives").glob("P*.txt"))

pytestmark = pytest.mark.skipif(not FILES, reason="transcripts not available")


def _fs_messages(path: Path) -> list[wire.Message]:
    out: list[wire.Message] = []
    for record in transcripts.load(str(path)):
        if record.direction.startswith("FS->"):
            parser = wire.Parser()
            msgs = parser.feed(record.data)
            assert len(msgs) == 1, (path.name, record.n)
            assert msgs[0].to_bytes() == record.data
            out.append(msgs[0])
    return out


def _reencode(msg: wire.Message) -> bytes:
    ctype = msg.content_type
    if ctype == "text/event-plain":
        ev = wire.parse_event(msg)
        return wire.encode_event_plain(ev.items, ev.body)
    if ctype == "text/event-json":
        ev = wire.parse_event(msg)
        return wire.encode_event_json(ev.items, ev.body)
    if ctype == "api/response":
        return wire_fs.encode_api_response(msg.body.decode("utf-8"))
    if ctype == "auth/request":
        return wire_fs.encode_auth_request()
    if ctype == "text/disconnect-notice":
        linger = msg.get("Linger-Time")
        return wire_fs.encode_disconnect_notice(
            msg.get("Controlled-Session-UUID"),
            msg.get("Content-Disposition"),
            msg.get("Channel-Name"),
            int(linger) if linger is not None else None,
        )
    if ctype == "command/reply" and msg.get("Event-Name") == "CHANNEL_DATA":
        data = [(k, v) for k, v in msg.decoded_headers().items()]
        data = data[: [k for k, _ in data].index("Content-Type")]
        return wire_fs.encode_connect_reply(data)
    if ctype == "command/reply":
        extra = [(k, v) for k, v in msg.headers if k not in ("Content-Type", "Reply-Text")]
        return wire_fs.encode_reply(msg.get("Reply-Text") or "", extra)
    raise AssertionError("unexpected content type %r" % ctype)


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_every_fs_message_reencodes_to_the_same_bytes(path: Path) -> None:
    msgs = _fs_messages(path)
    assert msgs
    for msg in msgs:
        assert _reencode(msg) == msg.to_bytes(), (path.name, msg.headers[:3])


def test_raw_streams_split_into_the_recorded_messages() -> None:
    raw = (TDIR / "raw" / "outbound_loopback_plain.from_fs.raw").read_bytes()
    records = [r.data for r in transcripts.load("outbound_loopback_plain.txt") if r.direction == "FS->SERVER"]
    parser = wire.Parser()
    msgs = []
    for i in range(0, len(raw), 7):  # byte-dribbled, as TCP may deliver it
        msgs.extend(parser.feed(raw[i : i + 7]))
    assert [m.to_bytes() for m in msgs] == records


def test_json_event_keeps_repeated_headers() -> None:
    msgs = _fs_messages(TDIR / "outbound_loopback_json.txt")
    hc = [wire.parse_event(m) for m in msgs if m.content_type == "text/event-json"]
    complete = [e for e in hc if e.name == "CHANNEL_HANGUP_COMPLETE"][0]
    assert [k for k, _ in complete.items].count("Hangup-Cause") == 2
    assert complete.get("Hangup-Cause") == "NORMAL_CLEARING"


def test_json_array_header_becomes_fs_array_form() -> None:
    body = b'{"Event-Name":"CUSTOM","x":["a","b"],"_body":"hi"}'
    ev = wire.parse_event_json(body)
    assert ev.get("x") == "ARRAY::a|:b"
    assert ev.body == "hi"


def test_background_job_plain_body() -> None:
    msgs = _fs_messages(TDIR / "inbound_07_originate_user_not_registered.txt")
    jobs = [wire.parse_event(m) for m in msgs if m.content_type == "text/event-plain"]
    assert jobs[0].name == "BACKGROUND_JOB"
    assert jobs[0].body == "-ERR USER_NOT_REGISTERED\n"
    assert jobs[0].get("Job-Command-Arg") == "user/1001 &park()"


def test_fs_quote_matches_switch_url_encode() -> None:
    assert wire.fs_quote("+OK\n") == "%2BOK%0A"
    assert wire.fs_quote("tone_stream://%(1000,0,440);loops=2") == "tone_stream%3A//%25(1000,0,440)%3Bloops%3D2"
    assert wire.fs_quote("fd00::2") == "fd00%3A%3A2"


@pytest.mark.parametrize(
    "data",
    [
        b"Content-Type command/reply\n\n",
        b"Content-Type: api/response\nContent-Length: abc\n\n",
        b"Content-Type: api/response\nContent-Length: -5\n\n",
    ],
)
def test_malformed_input_raises(data: bytes) -> None:
    with pytest.raises(ProtocolError):
        wire.Parser().feed(data)


def test_oversized_header_block_raises() -> None:
    with pytest.raises(ProtocolError):
        wire.Parser().feed(b"X: " + b"a" * (wire.MAX_HEADER_BYTES + 10))


def test_bad_json_event_raises() -> None:
    with pytest.raises(ProtocolError):
        wire.parse_event_json(b"{not json")
    with pytest.raises(ProtocolError):
        wire.parse_event_json(b"[1,2]")
    msg = wire.Message([("Content-Type", "command/reply")])
    with pytest.raises(ProtocolError):
        wire.parse_event(msg)


# ----------------------------------------------------------------- plain events decoded on demand


def _eager(body: bytes) -> list[tuple[str, str]]:
    """What parse_event_plain returned before it decoded lazily: every line split and
    unquoted at once (the reference for the lazy headers)."""
    from urllib.parse import unquote

    head = body.decode("utf-8", "replace").partition("\n\n")[0]
    return [(k, unquote(v) if "%" in v else v) for k, v in wire.parse_header_lines(head)]


def _plain_event_bodies() -> list[bytes]:
    return [m.body for path in FILES for m in _fs_messages(path) if m.content_type == "text/event-plain"]


def test_lazy_headers_read_as_the_eager_parse_on_every_recorded_event() -> None:
    bodies = _plain_event_bodies()
    assert len(bodies) > 100
    for body in bodies:
        expected = _eager(body)
        last = dict(expected)
        lookups = wire.parse_event_plain(body)  # single lookups only, nothing parsed in full
        for name, value in last.items():
            assert lookups.get(name) == value and lookups.headers[name] == value and name in lookups.headers
        assert lookups.get("No-Such-Header") is None and "No-Such-Header" not in lookups.headers
        full = wire.parse_event_plain(body)
        assert list(full.items) == expected  # wire order, duplicates kept
        assert dict(full.headers.items()) == last and len(full.headers) == len(last) and list(full.headers) == list(last)


def test_lazy_headers_escaped_repeated_and_empty_values() -> None:
    head = [
        ("Event-Name", "CUSTOM"),
        ("Caller-Caller-ID-Name", "Ivan Petrov: sales\n+7 (495) 100%"),  # ': ' and a newline, encoded
        ("variable_sip_h_X-Note", "a=b;c&d #1 ü€"),
        ("Hangup-Cause", "NORMAL_CLEARING"),
        ("variable_empty", ""),
        ("Hangup-Cause", "USER_BUSY"),  # repeated: the last one wins in headers
        ("variable_dial", "{a=b}[x=y]user/101@demo,user/102@demo"),
    ]
    body = "".join("%s: %s\n" % (k, wire.fs_quote(v)) for k, v in head).encode() + b"\n"
    ev = wire.parse_event_plain(body)
    assert ev.get("Caller-Caller-ID-Name") == "Ivan Petrov: sales\n+7 (495) 100%"
    assert ev.var("sip_h_X-Note") == "a=b;c&d #1 ü€"
    assert ev.get("Hangup-Cause") == "USER_BUSY"
    assert ev.var("empty") == "" and ev.get("Caller-Caller-ID") is None  # a prefix of a name is not that name
    assert ev.var("dial") == "{a=b}[x=y]user/101@demo,user/102@demo"
    assert list(ev.items) == head
    assert ev.body is None
    # "Name:" with no space is an empty value too (parse_header_lines' rule), and a
    # longer name starting with "Name:" is another header.
    odd = wire.parse_event_plain(b"Event-Name: X\nA:\nA:: colon-named\nB: 1\n\n")
    assert odd.get("A") == "" and odd.get("A:") == "colon-named" and odd.get("B") == "1"
    assert list(odd.items) == [("Event-Name", "X"), ("A", ""), ("A:", "colon-named"), ("B", "1")]


def test_lazy_headers_with_an_inner_body() -> None:
    text = "ok: the job's output\n\nwith a blank line and %41 not decoded\n"
    raw = wire.encode_event_plain([("Event-Name", "BACKGROUND_JOB"), ("Job-UUID", "j-1")], text)
    msg = wire.Parser().feed(raw)[0]
    ev = wire.parse_event(msg)
    assert ev.body == text and ev.get("Content-Length") == str(len(text.encode()))
    assert ev.get("Job-UUID") == "j-1" and [k for k, _ in ev.items] == ["Event-Name", "Job-UUID", "Content-Length"]
    assert wire.encode_event_plain(ev.items, ev.body) == raw


def test_a_malformed_event_line_raises_at_parse_time() -> None:
    with pytest.raises(ProtocolError):
        wire.parse_event_plain(b"not-an-event")
    with pytest.raises(ProtocolError):
        wire.parse_event_plain(b"Event-Name: X\ngarbage line\nB: 1\n\n")
    with pytest.raises(ProtocolError):
        wire.parse_event_plain(b"Event-Name: X\nContent-Length: many\n\nbody")


def test_unquote_lines_is_unquote_of_each_value() -> None:
    """The one-call decoding of all values (a2b_qp) against urllib's unquote, value by
    value, on FreeSWITCH's encoding of awkward values and on raw text it does not cover."""
    import random
    from urllib.parse import unquote

    atoms = ["%", "=", "0", "A", "a", "F", "9", "G", "\r", " ", "_", "x", "é", "%C3%A9", "%0A", "%0a", "%00", "%E2%82",
             "%20", "%2", "%%", "%3D", "%3d", "%C3", "%A9", "%FF", "%0D", "%%41", "=41", "%e2%82%ac", "\x00", "%80"]
    rng = random.Random(20261124)
    fast = 0
    for _ in range(20000):
        values = ["".join(rng.choice(atoms) for _ in range(rng.randint(0, 8))) for _ in range(rng.randint(1, 4))]
        got = wire.unquote_lines("\n".join(values))
        if got is not None:
            fast += 1
            assert got == [unquote(v) for v in values], values
    assert fast > 2000  # the fast path was exercised, not only the fallback
    encoded = [wire.fs_quote(v) for v in ("a: b\nc", "100%", "x=y&z", "ü€😀", "", "tone_stream://%(1000,0,440)")]
    assert wire.unquote_lines("\n".join(encoded)) == [unquote(v) for v in encoded]


def test_lazy_headers_truthiness_does_not_decode_them() -> None:
    ev = wire.parse_event_plain(b"Event-Name: X\nA: %41\n\n")
    assert ev.headers and not wire.PlainHeaders("") and not wire.PlainHeaders("\n")
    assert ev.headers._all is None  # still nothing decoded in full
