"""A seeded mutation fuzzer for our ESL readers, over the bytes a real FreeSWITCH sent.

Seeds are the recorded transcripts (``simulator.transcripts``): every FreeSWITCH ->
us stream, cut into windows of one to a few messages. A mutation flips, inserts,
deletes, duplicates or splices bytes, rewrites a ``Content-Length``, cuts the input
short or plants something hostile (a JSON nesting bomb, a 5,000-digit number, a long
line). Two targets, each must turn every input into messages or a ``ProtocolError``,
never another exception, a hang, or more memory than the limits allow:

* ``codec``: :class:`wire.Parser` fed in random chunks (what the inbound client does),
  every event parsed with :func:`wire.parse_event` and its headers read in full;
  :class:`wire_fs.CommandParser` (the simulator's side) on the same bytes;
* ``session``: the call socket's reader (:class:`CallSession`) over a socket whose
  ``makefile`` is the input (a small real fake: reads never block, writes vanish).
  The reader must end (its greenlet dead, no exception) and put ``DISCONNECTED``.

Used by ``tests/test_esl_fuzz.py`` (a few thousand inputs) and
``bench/fuzz_bench.py`` (a million and more).
"""
from __future__ import annotations

import io
import random
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import gevent

from orchestrator.errors import ProtocolError
from orchestrator.esl import wire, wire_fs
from orchestrator.esl.session import DISCONNECTED, CallSession
from simulator import transcripts

MAX_INPUT = 256 * 1024  # mutated inputs are cut to this (the limits are what is tested)


def seeds() -> list[bytes]:
    """Windows of 1-4 consecutive FreeSWITCH messages from every recorded stream."""
    base = transcripts.transcripts_dir()
    out: list[bytes] = []
    for path in sorted(list(base.glob("*.txt")) + list((base / "primitives").glob("*.txt"))):
        records = transcripts.load(str(path))
        for direction in sorted({r.direction for r in records if r.direction.startswith("FS->")}):
            raw = [m.to_bytes() for m in wire.iter_messages(transcripts.stream(records, direction))]
            for size in (1, 2, 4):
                out += [b"".join(raw[i:i + size]) for i in range(0, len(raw), size)]
    return out


_TOKENS = [
    b"\n", b"\n\n", b": ", b":", b"%", b"%0A", b"%00", b"%ZZ", b"\r\n", b"\x00", b"\xff\xfe", b"\xc3",
    b"Content-Length: ", b"Content-Type: ", b"text/event-plain", b"text/event-json", b"api/response",
    b"command/reply", b"text/rude-rejection", b"text/disconnect-notice", b"auth/request", b"log/data",
    b"Content-Disposition: linger", b"Event-Name: ", b"Unique-ID: ", b"0", b"-1", b"+5", b" 5", b"5_0",
    b"99999999999999999999", b"400000000", b"1048577", b"9" * 5000, b"{", b"}", b"[", b"]", b'"', b"\\",
    b'"_body":', b"ARRAY::", b"=", b"==",
]


def _content_length(rng: random.Random, data: bytes) -> bytes:
    at = data.find(b"Content-Length: ")
    if at < 0:
        return data
    if rng.random() < 0.5:  # maybe a later one (an inner length)
        later = data.find(b"Content-Length: ", at + 1)
        at = later if later >= 0 else at
    end = data.find(b"\n", at)
    end = len(data) if end < 0 else end
    value = rng.choice([b"0", b"1", b"3", b"100", b"-1", b"+12", b" 7", b"1_0", b"0x10", b"400000000",
                        b"99999999999999999999", b"9" * 5000, b"", b"1048576", b"1048577",
                        str(rng.randrange(0, 4 * len(data) + 2)).encode()])
    return data[:at + 16] + value + data[end:]


def _bomb(rng: random.Random, data: bytes) -> bytes:
    depth = rng.choice([50, 900, 1100, 5000, 100000])
    kind = rng.choice([b"[", b'{"a":'])
    close = b"]" if kind == b"[" else b"}"
    bomb = kind * depth + b"1" + close * depth
    head = b'{"Event-Name":"DTMF","x":' + bomb + b"}"
    if rng.random() < 0.5:
        return b"Content-Type: text/event-json\nContent-Length: %d\n\n" % len(head) + head
    at = rng.randrange(len(data) + 1)
    return data[:at] + bomb + data[at:]


def mutate(rng: random.Random, data: bytes, corpus: list[bytes]) -> bytes:
    """One to four mutations of ``data``."""
    for _ in range(rng.randint(1, 4)):
        n = len(data)
        op = rng.randrange(11)
        if op == 0 and n:  # flip bytes
            buf = bytearray(data)
            for _ in range(rng.randint(1, 8)):
                buf[rng.randrange(n)] ^= 1 << rng.randrange(8)
            data = bytes(buf)
        elif op == 1:  # insert a token
            at = rng.randrange(n + 1)
            data = data[:at] + rng.choice(_TOKENS) + data[at:]
        elif op == 2 and n:  # delete a range
            at = rng.randrange(n)
            data = data[:at] + data[at + rng.randint(1, min(64, n - at)):]
        elif op == 3 and n:  # duplicate a range
            at = rng.randrange(n)
            piece = data[at:at + rng.randint(1, 512)]
            data = data[:at] + piece * rng.randint(2, 8) + data[at:]
        elif op == 4 and n:  # cut short
            data = data[:rng.randrange(n)]
        elif op == 5:
            data = _content_length(rng, data)
        elif op == 6:  # splice with another seed
            other = rng.choice(corpus)
            data = data[:rng.randrange(n + 1)] + other[rng.randrange(len(other) + 1):]
        elif op == 7 and n:  # random bytes
            at = rng.randrange(n + 1)
            data = data[:at] + rng.randbytes(rng.randint(1, 64)) + data[at:]
        elif op == 8:
            data = _bomb(rng, data)
        elif op == 9:  # a long line or many short ones, at a line start
            at = data.find(b"\n", rng.randrange(n + 1)) + 1
            piece = b"X: " + b"a" * rng.choice([100, 40000, 70000]) + b"\n" if rng.random() < 0.5 else b"A: b\n" * rng.choice([10, 5000])
            data = data[:at] + piece + data[at:]
        elif op == 10 and n:  # swap two newline-separated lines
            lines = data.split(b"\n")
            if len(lines) > 2:
                i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
                lines[i], lines[j] = lines[j], lines[i]
                data = b"\n".join(lines)
    return data[:MAX_INPUT]


# ----------------------------------------------------------------- targets


def _touch(event: wire.Event) -> None:
    """Read an event the ways the call handler and the inbound client may."""
    event.name
    event.get("Unique-ID")
    event.var("pbx_fallback_dial")
    event.body
    event.items  # every header, decoded: may raise ProtocolError (lazy full read)
    dict(event.headers)


def codec_target(data: bytes, rng: random.Random) -> None:
    parser = wire.Parser()
    pos = 0
    while pos < len(data):
        step = rng.choice([1, 7, 64, 1500, 65536, len(data)])
        for msg in parser.feed(data[pos:pos + step]):
            msg.content_type
            msg.decoded_headers()
            if msg.content_type.startswith("text/event-"):
                _touch(wire.parse_event(msg))
        pos += step
    commands = wire_fs.CommandParser()
    commands.feed(data)


class _InputSocket:
    """A socket whose reads come from ``data``; writes vanish."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    def makefile(self, mode: str) -> io.BufferedReader:
        return io.BufferedReader(io.BytesIO(self._data))

    def sendall(self, data: bytes) -> None:
        pass

    def shutdown(self, how: int) -> None:
        pass

    def close(self) -> None:
        pass


def session_target(data: bytes, rng: random.Random) -> None:
    """Raises AssertionError (a finding) when the reader does not end cleanly."""
    session = CallSession(("fuzz", 0), _InputSocket(data), timeout_s=1.0)
    reader = session._receive_events_greenlet
    session._write(["x"] * rng.randint(0, 12))  # reply slots: some inputs bring more replies
    reader.join(timeout=10)
    if not reader.dead:
        reader.kill()
        raise AssertionError("the session reader did not end on a finite input")
    if reader.exception is not None:
        raise reader.exception
    items = []
    while not session.events.empty():
        items.append(session.events.get_nowait())
    if not items or items[-1] != DISCONNECTED:
        raise AssertionError("no DISCONNECTED after the last item")
    for item in items:
        if isinstance(item, wire.Event):
            try:
                _touch(item)
            except ProtocolError:
                pass  # a lazy full read of a malformed line: an error the caller sees as such
    for slot in session._commands_sent:
        if slot.ready() and not slot.successful() and not isinstance(slot.exception, Exception):
            raise AssertionError("reply slot failed with %r" % slot.exception)
    session.event_handlers.clear()


TARGETS: dict[str, Callable[[bytes, random.Random], None]] = {"codec": codec_target, "session": session_target}


@dataclass
class Finding:
    target: str
    error: str
    data: bytes

    def key(self) -> str:
        return "%s: %s" % (self.target, self.error.split(":", 1)[0])


@dataclass
class Run:
    inputs: int = 0
    per_target: dict[str, int] = field(default_factory=dict)
    protocol_errors: int = 0
    findings: list[Finding] = field(default_factory=list)


def fuzz(n: int, seed: int, targets: tuple[str, ...] = ("codec", "session"), corpus: list[bytes] | None = None,
         on_progress: Callable[[Run], Any] | None = None, keep: int = 20) -> Run:
    """``n`` mutated inputs, each through every target; reproducible from ``seed``."""
    corpus = corpus if corpus is not None else seeds()
    rng = random.Random(seed)
    run = Run(per_target={t: 0 for t in targets})
    seen: set[str] = set()
    for i in range(n):
        data = mutate(rng, rng.choice(corpus), corpus) if rng.random() < 0.97 else rng.choice(corpus)
        for name in targets:
            chunk_rng = random.Random(rng.random())
            try:
                TARGETS[name](data, chunk_rng)
            except ProtocolError:
                run.protocol_errors += 1
            except Exception as exc:  # noqa: BLE001 - that is what a finding is
                finding = Finding(name, "%s: %s" % (type(exc).__name__, str(exc)[:200]), data)
                if finding.key() not in seen and len(run.findings) < keep:
                    seen.add(finding.key())
                    finding.error += "\n" + "".join(traceback.format_exception(exc)[-3:])
                    run.findings.append(finding)
                elif finding.key() not in seen:
                    seen.add(finding.key())
            run.per_target[name] += 1
        run.inputs = i + 1
        if on_progress is not None and run.inputs % 10000 == 0:
            on_progress(run)
    return run


def save(findings: list[Finding], directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, f in enumerate(findings):
        path = directory / ("%s-%02d.bin" % (f.target, i))
        path.write_bytes(f.data)
        paths.append(path)
    return paths


__all__ = ["Finding", "Run", "TARGETS", "codec_target", "fuzz", "mutate", "save", "seeds", "session_target"]
