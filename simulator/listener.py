"""What both ESL connection kinds share (mod_event_socket's listener): the write queue,
event subscriptions and filters, api / bgapi, and the reply texts.

Reply texts as recorded: ``+OK event listener enabled plain|json``, ``+OK events
nixed``, ``+OK no longer listening for events``, ``+OK will linger``, ``+OK will not
linger``, ``+OK bye``, ``+OK filter added. [Name]=[value]``, ``-ERR command not found``;
bgapi: ``+OK Job-UUID: <id>`` plus a ``Job-UUID`` header; BACKGROUND_JOB carries
Job-UUID, Job-Command, Job-Command-Arg (when there is one) and the result as its body.
"""
from __future__ import annotations

import socket as _socket

import logging
import uuid as uuidlib
from typing import TYPE_CHECKING

from gevent import socket as gsocket
from gevent.event import Event as GEvent
from gevent.queue import Queue

from orchestrator.errors import ProtocolError
from orchestrator.esl import wire_fs
from simulator.events import SimEvent

if TYPE_CHECKING:
    from simulator.server import FreeSwitchSim

log = logging.getLogger(__name__)

ALL_EVENT_NAMES = "ALL"


class Listener:
    """One ESL connection on the FreeSWITCH side."""

    kind = "listener"

    def __init__(self, sim: FreeSwitchSim, sock: gsocket.socket) -> None:
        self.sim = sim
        self.sock = sock
        self.received: list[tuple[float, str]] = []
        # mod_event_socket's listener_run() sets TCP_NODELAY on every ESL socket,
        # inbound and outbound alike: replies and events go out without Nagle delays.
        sock.setsockopt(_socket.IPPROTO_TCP, _socket.TCP_NODELAY, 1)
        self.fmt = "plain"
        self.all_events = False
        self.names: set[str] = set()
        self.customs: set[str] = set()
        self.filters: list[tuple[str, str]] = []
        self.uuid_filter: str | None = None
        self.closed = GEvent()
        self._out: Queue[bytes | None] = Queue()
        self._parser = wire_fs.CommandParser()

    # ------------------------------------------------------------ plumbing
    def start(self) -> None:
        self.sim.bus.subscribe(self)
        self.sim.spawn(self._writer)
        self.sim.spawn(self._reader)

    def send(self, data: bytes) -> None:
        if not self.closed.is_set():
            self._out.put(data)

    def close(self) -> None:
        """Flush what is queued, then close."""
        if not self.closed.is_set():
            self._out.put(None)

    def _writer(self) -> None:
        try:
            while True:
                data = self._out.get()
                if data is None:
                    break
                self.sock.sendall(data)
        except OSError as exc:
            log.debug("%s write failed: %s", self.kind, exc)
        finally:
            self._shutdown()

    def _shutdown(self) -> None:
        if self.closed.is_set():
            return
        self.closed.set()
        self.sim.bus.unsubscribe(self)
        try:
            self.sock.close()
        except OSError:
            pass
        self.on_closed()

    def _reader(self) -> None:
        try:
            while not self.closed.is_set():
                data = self.sock.recv(65536)
                if not data:
                    break
                for cmd in self._parser.feed(data):
                    # Arrival time (simulated seconds) of every command, for benchmarks.
                    self.received.append((self.sim.clock.now(), cmd.line))
                    self.handle(cmd)
                    if self.closed.is_set():
                        return
        except (OSError, ProtocolError) as exc:
            log.debug("%s read ended: %s", self.kind, exc)
        self.on_peer_closed()

    def on_peer_closed(self) -> None:
        self._out.put(None)

    def on_closed(self) -> None:
        pass

    # ------------------------------------------------------------ events
    def wants(self, ev: SimEvent) -> bool:
        if not (self.all_events or ev.name in self.names or (ev.name == "CUSTOM" and ev.subclass in self.customs)):
            return False
        if self.uuid_filter is not None and ev.get("Unique-ID") != self.uuid_filter:
            return False
        if self.filters:
            return any(ev.get(k) == v for k, v in self.filters)
        return True

    def offer(self, ev: SimEvent) -> None:
        if not self.closed.is_set() and self.wants(ev):
            self.send(ev.encode(self.fmt))

    def subscribe(self, args: list[str]) -> None:
        fmt = "plain"
        if args and args[0].lower() in ("plain", "json", "xml"):
            fmt = args.pop(0).lower()
        self.fmt = "json" if fmt == "json" else "plain"
        custom = False
        for name in args:
            if custom:
                self.customs.add(name)
            elif name.upper() == "CUSTOM":
                custom = True
            elif name.upper() == ALL_EVENT_NAMES:
                self.all_events = True
            else:
                self.names.add(name.upper())
        self.reply("+OK event listener enabled %s" % fmt)

    # ------------------------------------------------------------ replies
    def reply(self, text: str, extra: list[tuple[str, str]] | None = None) -> None:
        self.send(wire_fs.encode_reply(text, extra or []))

    # ------------------------------------------------------------ commands
    def handle(self, cmd: wire_fs.Command) -> None:
        line = cmd.line
        word, _, rest = line.partition(" ")
        word = word.lower()
        if word == "api":
            # mod_event_socket runs a plain api in the listener's own thread
            # (parse_command -> api_exec(NULL, acs)) and reads the next command only once
            # it answered: commands written behind an api (e.g. a sendmsg behind
            # uuid_break) run after it, never before.
            self._api(rest)
        elif word == "bgapi":
            job = cmd.get("Job-UUID") or str(uuidlib.uuid4())
            self.reply("+OK Job-UUID: %s" % job, [("Job-UUID", job)])
            self.sim.spawn(self._bgapi, rest, job)
        elif word == "event":
            self.subscribe(rest.split())
        elif word == "nixevent":
            for name in rest.split():
                self.names.discard(name.upper())
                self.customs.discard(name)
                if name.upper() == ALL_EVENT_NAMES:
                    self.all_events = False
            self.reply("+OK events nixed")
        elif word == "noevents":
            self.all_events, self.names, self.customs = False, set(), set()
            self.reply("+OK no longer listening for events")
        elif word == "filter":
            self._filter(rest)
        elif word == "exit":
            self.reply("+OK bye")
            self.exit()
        elif word in ("log", "nolog"):
            self.reply("+OK log level %s [7]" % (rest or "debug") if word == "log" else "+OK no longer logging")
        elif not self.handle_more(word, rest, cmd):
            self.reply("-ERR command not found")

    def handle_more(self, word: str, rest: str, cmd: wire_fs.Command) -> bool:
        return False

    def exit(self) -> None:
        self.send(wire_fs.encode_disconnect_notice())
        self.close()

    def _filter(self, rest: str) -> None:
        parts = rest.split(None, 1)
        if parts and parts[0].lower() == "delete":
            args = parts[1].split(None, 1) if len(parts) > 1 else []
            if not args or args[0].lower() == "all":
                self.filters = []
            else:
                self.filters = [f for f in self.filters if not (f[0] == args[0] and (len(args) < 2 or f[1] == args[1]))]
            self.reply("+OK filter deleted. [%s][%s]" % (args[0] if args else "all", args[1] if len(args) > 1 else ""))
            return
        if len(parts) < 2:
            self.reply("-ERR invalid syntax")
            return
        self.filters.append((parts[0], parts[1]))
        self.reply("+OK filter added. [%s]=[%s]" % (parts[0], parts[1]))

    def _api(self, text: str) -> None:
        from simulator.api import run_api

        body = run_api(self.sim, text, listener=self)
        self.send(wire_fs.encode_api_response(body))

    def _bgapi(self, text: str, job: str) -> None:
        from simulator.api import run_api

        body = run_api(self.sim, text, listener=self)
        cmd, _, arg = text.strip().partition(" ")
        headers = [("Job-UUID", job), ("Job-Command", cmd)] + ([("Job-Command-Arg", arg)] if arg else [])
        self.sim.bus.fire_plain("BACKGROUND_JOB", headers, body)
