"""A fake FreeSWITCH inbound event socket that replays recorded transcripts.

The transcripts in ``tests/data/freeswitch-transcripts`` hold the exact bytes a real
FreeSWITCH 1.10.12 sent to a plain-socket recorder (``FS->CLIENT``) and what the
recorder sent (``CLIENT->FS``). A :class:`Script` turns them into steps: the command
the client must send, then the FreeSWITCH bytes that followed it, in order. The
:class:`ReplayServer` (a gevent ``StreamServer`` on loopback) plays one script per
accepted connection: for every client command it checks the bytes against the
recorded command and answers with the recorded records.

UUIDs are allowed to differ: the client chooses its own ``Job-UUID`` (a header the
recorder usually did not send) and its own ``origination_uuid``. The server pairs the
recorded UUIDs with the client's (positionally, consistently for the whole connection)
and rewrites every recorded UUID in the bytes it sends back. UUIDs have one length, so
``Content-Length`` stays right.

Mismatches never hang a test: they are appended to ``server.errors`` and the client is
disconnected. Typical use::

    script = Script.from_transcript("inbound_04_bgapi_originate_sipp_uas_answer.txt")
    with ReplayServer([script]) as server:
        client = InboundClient("127.0.0.1", server.port, "ClueCon", ...)
        ...
    assert server.errors == []
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Iterable, Sequence

import gevent
from gevent.server import StreamServer

from simulator.transcripts import Record, load

UUID_RE = re.compile(rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_JOB_HEADER = re.compile(rb"\nJob-UUID: ([^\n]*)")
_VARS_BLOCK = re.compile(rb"\{[^}]*\}")
_ORIGINATION = re.compile(rb"origination_uuid=(" + UUID_RE.pattern + rb")")
# The leg uuid FreeSWITCH reports in a successful originate's BACKGROUND_JOB.
_JOB_OK_UUID = re.compile(rb'(?:\n\n|"_body":")\+OK (' + UUID_RE.pattern + rb")")

# FreeSWITCH's answer to "event plain ..." (transcripts inbound_04, _07 ... byte for byte).
EVENT_PLAIN_OK = b"Content-Type: command/reply\nReply-Text: +OK event listener enabled plain\n\n"
EVENT_JSON_OK = b"Content-Type: command/reply\nReply-Text: +OK event listener enabled json\n\n"
BYE = b"Content-Type: command/reply\nReply-Text: +OK bye\n\n"


@dataclass
class Step:
    """``expect`` (a client command, None for what FreeSWITCH says first) and the
    FreeSWITCH records that answer it. ``close_after`` drops the connection after
    the replies (a crash, or the end of an inbound_02-style refusal)."""

    expect: bytes | None
    replies: list[bytes] = field(default_factory=list)
    close_after: bool = False

    @property
    def command_line(self) -> str:
        return (self.expect or b"").split(b"\n", 1)[0].decode("utf-8", "replace")


@dataclass
class Script:
    steps: list[Step]
    name: str = ""

    @classmethod
    def from_records(cls, records: Sequence[Record], name: str = "", client: str = "CLIENT") -> "Script":
        to_fs, from_fs = "%s->FS" % client, "FS->%s" % client
        steps: list[Step] = [Step(None)]
        for rec in records:
            if rec.direction == to_fs:
                steps.append(Step(rec.data))
            elif rec.direction == from_fs:
                steps[-1].replies.append(rec.data)
        return cls(steps, name)

    @classmethod
    def from_transcript(
        cls,
        name: str,
        *,
        subscribe: bytes | None = None,
        background_jobs_from_observer: bool = False,
    ) -> "Script":
        """Steps of the ``CLIENT`` connection of a transcript.

        ``subscribe``: a command the recorded client did not send (e.g.
        ``b"event plain BACKGROUND_JOB\\n\\n"``), inserted right after ``auth`` with
        FreeSWITCH's reply. ``background_jobs_from_observer``: the primitives'
        control client never subscribed to BACKGROUND_JOB, but their observer
        (``event plain ALL``) got the very bytes; append each BACKGROUND_JOB to the
        step whose bgapi reply carries its Job-UUID.
        """
        records = load(name)
        script = cls.from_records(records, name)
        if subscribe is not None:
            reply = EVENT_JSON_OK if b" json " in subscribe else EVENT_PLAIN_OK
            script = script.insert_after("auth ", Step(subscribe, [reply]))
        if background_jobs_from_observer:
            for rec in records:
                if rec.direction != "FS->OBSERVER" or b"Event-Name: BACKGROUND_JOB\n" not in rec.data:
                    continue
                job = re.search(rb"\nJob-UUID: ([^\n]*)", rec.data)
                assert job, "BACKGROUND_JOB without Job-UUID"
                for step in script.steps:
                    if any(b"Job-UUID: " + job.group(1) in r for r in step.replies):
                        step.replies.append(rec.data)
                        break
        return script

    # -- editing helpers (return new scripts) --------------------------------------

    def index(self, command_prefix: str) -> int:
        for i, step in enumerate(self.steps):
            if step.expect is not None and step.command_line.startswith(command_prefix):
                return i
        raise KeyError("no step starts with %r in %s" % (command_prefix, self.name))

    def insert_after(self, command_prefix: str, step: Step) -> "Script":
        i = self.index(command_prefix)
        return Script(self.steps[: i + 1] + [step] + self.steps[i + 1 :], self.name)

    def without(self, *command_prefixes: str) -> "Script":
        keep = [s for s in self.steps if s.expect is None or not any(s.command_line.startswith(p) for p in command_prefixes)]
        return Script(keep, self.name)

    def only(self, *command_prefixes: str) -> "Script":
        """The greeting, auth, and the steps whose command starts with one of these."""
        prefixes = ("auth ",) + command_prefixes
        keep = [s for s in self.steps if s.expect is None or any(s.command_line.startswith(p) for p in prefixes)]
        return Script(keep, self.name)

    def move_to(self, command_prefix: str, after: str) -> "Script":
        i = self.index(command_prefix)
        step = self.steps[i]
        rest = Script(self.steps[:i] + self.steps[i + 1 :], self.name)
        return rest.insert_after(after, step)

    def then(self, *steps: Step) -> "Script":
        return Script(self.steps + list(steps), self.name)

    def truncated_after(self, command_prefix: str, close: bool = True) -> "Script":
        i = self.index(command_prefix)
        steps = self.steps[: i + 1]
        steps[-1] = replace(steps[-1], close_after=close)
        return Script(steps, self.name)

    def commands(self) -> list[str]:
        return [s.command_line for s in self.steps if s.expect is not None]


# ----------------------------------------------------------------- matching


def normalize(command: bytes, ignore_channel_vars: bool = False) -> tuple[bytes, list[bytes], bytes | None, bytes | None]:
    """(command with UUIDs replaced by a placeholder and the Job-UUID header removed,
    the UUIDs in order, the Job-UUID header's value, the origination_uuid).

    With ``ignore_channel_vars`` the ``{...}`` block of a dial string is left out of
    the comparison and of the UUID list; its origination_uuid is returned apart."""
    job = None
    m = _JOB_HEADER.search(command)
    if m:
        job = m.group(1)
        command = command[: m.start()] + command[m.end() :]
    origination = None
    if ignore_channel_vars:
        o = _ORIGINATION.search(command)
        origination = o.group(1) if o else None
        command = _VARS_BLOCK.sub(b"", command)
    uuids = UUID_RE.findall(command)
    text = UUID_RE.sub(b"<uuid>", command)
    return text, uuids, job, origination


class ReplayServer:
    """Serve ``scripts`` to successive connections (the last one repeats)."""

    def __init__(
        self,
        scripts: Sequence[Script] | Script,
        *,
        port: int = 0,
        ignore_channel_vars: bool = False,
        pace: float = 0.0,
        read_timeout: float = 30.0,
    ) -> None:
        self.scripts = [scripts] if isinstance(scripts, Script) else list(scripts)
        self.ignore_channel_vars = ignore_channel_vars
        self.pace = pace
        self.read_timeout = read_timeout
        self.errors: list[str] = []
        # Every command received, per connection, as sent (bytes).
        self.received: list[list[bytes]] = []
        self.connections = 0
        self._server = StreamServer(("127.0.0.1", port), self._handle)
        self._sockets: list = []

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> "ReplayServer":
        self._server.start()
        return self

    @property
    def port(self) -> int:
        return self._server.server_port

    def stop(self) -> None:
        """Stop listening and drop every open connection (like a FreeSWITCH crash)."""
        self._server.close()
        for sock in list(self._sockets):
            try:
                sock.close()
            except OSError:
                pass
        self._server.stop(timeout=1)

    def __enter__(self) -> "ReplayServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def commands(self, connection: int = -1) -> list[str]:
        """First lines of the commands received on one connection."""
        return [c.split(b"\n", 1)[0].decode() for c in self.received[connection]]

    # -- one connection --------------------------------------------------------------

    def _handle(self, sock, address) -> None:  # noqa: ANN001 - gevent socket
        index = min(self.connections, len(self.scripts) - 1)
        self.connections += 1
        script = self.scripts[index]
        received: list[bytes] = []
        self.received.append(received)
        self._sockets.append(sock)
        conn = _Connection(self, sock, script, received)
        try:
            conn.run()
        except (OSError, gevent.Timeout) as exc:  # client went away or stalled
            if not conn.finished:
                self.errors.append("%s: connection ended early: %r" % (script.name, exc))
        finally:
            self._sockets.remove(sock)
            try:
                sock.close()
            except OSError:
                pass


class _Connection:
    def __init__(self, server: ReplayServer, sock, script: Script, received: list[bytes]) -> None:  # noqa: ANN001
        self.server = server
        self.sock = sock
        self.script = script
        self.received = received
        self.buf = b""
        self.rec_to_client: dict[bytes, bytes] = {}
        self.client_to_rec: dict[bytes, bytes] = {}
        self.finished = False

    def run(self) -> None:
        for step in self.script.steps:
            if step.expect is not None:
                command = self.read_command()
                if command is None:
                    self.server.errors.append("%s: client closed before %r" % (self.script.name, step.command_line))
                    return
                problem = self.match(step.expect, command, step)
                if problem:
                    self.server.errors.append("%s: %s" % (self.script.name, problem))
                    return
            for data in step.replies:
                if self.server.pace:
                    gevent.sleep(self.server.pace)
                self.sock.sendall(self.rewrite(data))
                if b"Content-Type: text/disconnect-notice" in data.split(b"\n\n", 1)[0]:
                    self.finished = True
                    return
            if step.close_after:
                self.finished = True
                return
        self.finished = True
        # Script done: answer a closing "exit" politely, anything else is an error.
        while True:
            command = self.read_command()
            if command is None:
                return
            if command.startswith(b"exit\n"):
                self.sock.sendall(BYE)
                return
            self.server.errors.append("%s: unexpected command after the script: %r" % (self.script.name, command))
            self.sock.sendall(b"Content-Type: command/reply\nReply-Text: -ERR replay script exhausted\n\n")

    def read_command(self) -> bytes | None:
        while b"\n\n" not in self.buf:
            with gevent.Timeout(self.server.read_timeout):
                data = self.sock.recv(65536)
            if not data:
                return None
            self.buf += data
        command, _, self.buf = self.buf.partition(b"\n\n")
        command += b"\n\n"
        self.received.append(command)
        return command

    def match(self, expected: bytes, actual: bytes, step: Step) -> str | None:
        ignore = self.server.ignore_channel_vars
        exp_text, exp_uuids, exp_job, exp_orig = normalize(expected, ignore)
        act_text, act_uuids, act_job, act_orig = normalize(actual, ignore)
        if exp_text != act_text or len(exp_uuids) != len(act_uuids):
            return "expected %r, got %r" % (expected, actual)
        for rec, got in zip(exp_uuids, act_uuids, strict=True):
            if not self.pair(rec, got):
                return "UUID %s of %r does not match the recorded %s" % (got.decode(), actual, rec.decode())
        if act_orig is not None:
            # The client chose the leg's uuid; FreeSWITCH would have used it.
            recorded_leg = exp_orig
            if recorded_leg is None:
                for data in step.replies:
                    if b"BACKGROUND_JOB" in data:
                        m = _JOB_OK_UUID.search(data)
                        if m:
                            recorded_leg = m.group(1)
            if recorded_leg is not None and not self.pair(recorded_leg, act_orig):
                return "origination_uuid %r does not match the recorded leg" % act_orig
        if act_job is not None:
            recorded_job = exp_job
            if recorded_job is None:
                for data in step.replies:
                    m = _JOB_HEADER.search(data)
                    if m:
                        recorded_job = m.group(1)
                        break
            if recorded_job is None or not self.pair(recorded_job, act_job):
                return "cannot map Job-UUID %r of %r" % (act_job, actual)
        return None

    def pair(self, recorded: bytes, client: bytes) -> bool:
        if self.rec_to_client.get(recorded, client) != client:
            return False
        if self.client_to_rec.get(client, recorded) != recorded:
            return False
        self.rec_to_client[recorded] = client
        self.client_to_rec[client] = recorded
        return True

    def rewrite(self, data: bytes) -> bytes:
        if not self.rec_to_client:
            return data
        return UUID_RE.sub(lambda m: self.rec_to_client.get(m.group(0), m.group(0)), data)


def first_lines(commands: Iterable[bytes]) -> list[str]:
    return [c.split(b"\n", 1)[0].decode() for c in commands]


__all__ = [
    "BYE",
    "EVENT_JSON_OK",
    "EVENT_PLAIN_OK",
    "ReplayServer",
    "Script",
    "Step",
    "first_lines",
    "normalize",
]
