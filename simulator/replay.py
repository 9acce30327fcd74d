"""Replays a recorded transcript's client side against the simulator (for tests).

Every command the recording client sent is sent again, on the same connection kind
(SERVER = outbound socket, CLIENT / OBSERVER = inbound), once the simulator has given
that connection as many replies as FreeSWITCH had and once as much simulated time has
passed as had passed in the recording. Channel UUIDs are translated between the
recording and the simulation by aligning replies and events.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Callable

import gevent

from orchestrator.esl import wire
from simulator import FreeSwitchSim
from simulator.rawclient import RawConnection, RawOutboundServer, inbound_client
from simulator.transcripts import Record, load

UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
DEBUG = bool(os.environ.get("SIM_REPLAY_DEBUG"))
REPLY_TYPES = ("auth/request", "command/reply", "api/response")


def norm(text: str) -> str:
    return UUID_RE.sub("<uuid>", text)


def fs_messages(records: list[Record], conn: str) -> list[wire.Message]:
    out: list[wire.Message] = []
    for r in records:
        if r.direction == "FS->" + conn:
            out += wire.Parser().feed(r.data)
    return out


def kind(msg: wire.Message) -> str:
    if msg.content_type.startswith("text/event"):
        return "EV:" + wire.parse_event(msg).name
    if msg.content_type == "text/disconnect-notice":
        return "NOTICE:%s" % (msg.get("Content-Disposition") or "")
    return msg.content_type


@dataclass
class Replay:
    sim: FreeSwitchSim
    records: list[Record]
    server: RawOutboundServer
    conns: dict[str, RawConnection] = field(default_factory=dict)
    uuids: dict[str, str] = field(default_factory=dict)
    close_server_after: bool = False
    missing: dict[str, int] = field(default_factory=dict)  # recorded messages the simulation does not produce
    loose: set[str] = field(default_factory=lambda: {"OBSERVER"})  # only time-synchronised, not compared

    def translate(self, data: bytes) -> bytes:
        text = data.decode("utf-8")
        return UUID_RE.sub(lambda m: self.uuids.get(m.group(0), m.group(0)), text).encode("utf-8")

    def learn(self, conn: str) -> None:
        """Map recorded uuids to simulated ones by aligning messages of the same kind."""
        rec = fs_messages(self.records, conn)
        got = self.conns[conn].received
        ri = gi = 0
        while ri < len(rec) and gi < len(got):
            if kind(rec[ri]) != kind(got[gi]):
                gi += 1
                continue
            a, b = rec[ri], got[gi]
            if a.content_type.startswith("text/event") or a.get("Event-Name") == "CHANNEL_DATA":
                ua = (wire.parse_event(a).get("Unique-ID") if a.content_type.startswith("text/event")
                      else a.get("Unique-ID"))
                ub = (wire.parse_event(b).get("Unique-ID") if b.content_type.startswith("text/event")
                      else b.get("Unique-ID"))
                if ua and ub:
                    self.uuids.setdefault(ua, ub)
            else:
                for ua, ub in zip(UUID_RE.findall(a.to_bytes().decode()), UUID_RE.findall(b.to_bytes().decode())):
                    self.uuids.setdefault(ua, ub)
            ri += 1
            gi += 1

    def _conn(self, name: str) -> RawConnection:
        if name not in self.conns:
            if name == "SERVER":
                self.conns[name] = self.server.accept(timeout=10)
            else:
                self.conns[name] = inbound_client_raw(self.sim.esl_port)
        return self.conns[name]

    def _jobs_recorded_before(self, idx: int) -> int:
        jobs = set()
        for r in self.records[:idx]:
            if r.direction.startswith("FS->") and b"BACKGROUND_JOB" in r.data:
                for m in wire.Parser().feed(r.data):
                    if m.content_type.startswith("text/event"):
                        ev = wire.parse_event(m)
                        if ev.name == "BACKGROUND_JOB":
                            jobs.add(ev.get("Job-UUID"))
        return len(jobs)

    def run(self, timeout: float = 15.0) -> None:
        anchor: tuple[float, float] | None = None
        jobs = _JobCounter()
        self.sim.bus.subscribe(jobs)
        for idx, r in enumerate(self.records):
            if r.direction.startswith("FS->"):
                continue
            name = r.direction.split("->")[0]
            conn = self._conn(name)
            before = len(fs_messages(self.records[:idx], name)) - self.missing.get(name, 0)
            if name in self.loose:
                before = 0
            _wait(lambda: len(conn.received) >= before or conn.eof, timeout,
                  lambda: "%d messages on %s before record #%d (got %s)"
                  % (before, name, r.n, [kind(m) for m in conn.received]))
            # The recording clients waited for their background jobs (seen on any
            # connection) before going on; so does the replay.
            want_jobs = self._jobs_recorded_before(idx)
            _wait(lambda: jobs.count >= want_jobs, timeout,
                  lambda: "%d BACKGROUND_JOBs before record #%d" % (want_jobs, r.n))
            # At least the recorded gap since the previous command (not an absolute
            # schedule: a simulation running late must not have later commands catch up).
            if anchor is not None:
                due = anchor[1] + (r.t - anchor[0])
                if self.sim.now() < due:
                    self.sim.clock.sleep_until(due)
            anchor = (r.t, self.sim.now())
            self.learn(name)
            if not conn.eof:
                if DEBUG:
                    print("REPLAY SEND", name, r.n, self.translate(r.data)[:60])
                conn.sock.sendall(self.translate(r.data))
        for name, conn in self.conns.items():
            if name in self.loose:
                continue
            total = len(fs_messages(self.records, name)) - self.missing.get(name, 0)
            _wait(lambda: len(conn.received) >= total or conn.eof, timeout,
                  lambda: "all %d messages on %s (got %s)" % (total, name, [kind(m) for m in conn.received]))
            if name == "SERVER" and self.close_server_after:
                conn.close()
        for name in self.conns:
            self.learn(name)


class _JobCounter:
    def __init__(self) -> None:
        self.count = 0

    def offer(self, event: object) -> None:
        if getattr(event, "name", "") == "BACKGROUND_JOB":
            self.count += 1


def inbound_client_raw(port: int) -> RawConnection:
    from gevent import socket as gsocket

    conn = RawConnection(gsocket.create_connection(("127.0.0.1", port), timeout=5.0))
    conn.sock.settimeout(None)
    return conn


def _wait(pred: Callable[[], bool], timeout: float, what: Callable[[], str]) -> None:
    try:
        with gevent.Timeout(timeout):
            while not pred():
                gevent.sleep(0.002)
    except gevent.Timeout:
        raise TimeoutError("timed out waiting for " + what()) from None


def start(name: str, sim: FreeSwitchSim, server: RawOutboundServer) -> Replay:
    sim.orchestrator_address = server.address
    return Replay(sim, load(name), server)


__all__ = ["Replay", "fs_messages", "inbound_client", "kind", "norm", "start"]
