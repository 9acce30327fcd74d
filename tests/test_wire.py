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
