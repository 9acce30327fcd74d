"""A light FreeSWITCH for load tests: FreeSWITCH's side of the outbound event socket, byte
for byte, one gevent socket per call, and nothing else.

Each call connects to the orchestrator as ``socket ... async full`` does and answers what it
is told: ``connect`` (the CHANNEL_DATA reply), ``myevents``, ``linger``, ``sendmsg`` (``+OK``,
then CHANNEL_EXECUTE / _COMPLETE with ``Application-UUID`` = the ``Event-UUID``), ``hangup``,
``api uuid_break`` and ``exit``. A ``bridge`` is decided here: per leg of the dial string the
member's :class:`Behaviour` says whether and when they answer; the winner gets CHANNEL_ANSWER
(the caller) and CHANNEL_BRIDGE (``Other-Leg-Unique-ID`` = the leg's ``origination_uuid``) and
hangs up after the talk time (CHANNEL_UNBRIDGE, then with ``hangup_after_bridge`` the caller's
hangup sequence, transcript P01c); with no winner the bridge completes after ``leg_timeout``
with ``originate_causes`` ``<uuid>;ALLOTTED_TIMEOUT`` (``ARRAY::..|:..`` for several legs).
``playback`` completes after ``playback_ms``; hold music (``local_stream://``) plays until
``api uuid_break <uuid> all`` (P07c: ``+OK``, then EXECUTE_COMPLETE ``FILE PLAYED``, which
FreeSWITCH sends ~20 ms later and this sends at once).

A member *becomes free* when they hang up or let a leg ring out while some call is on hold;
the time from then to the next ``bridge`` naming them on a call that was on hold is kept in
``LoadGen.freed_to_offer_ms`` (the department queue's re-offer).

Events are the recorded ones (shared/freeswitch transcript P01, 4-12 KB each), URL-encoded
once; per event only the uuid and a few headers change. Times are ``time.perf_counter`` when
bytes are read or written.

    python bench/loadgen.py --address 127.0.0.1:8084 --number +74950010220 --rate 50 --duration 10
"""
from __future__ import annotations

import argparse
import heapq
import itertools
import random
import re
import sys
import time
import uuid as uuidlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import gevent
import gevent.pool
from gevent import socket

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from orchestrator.esl.wire_fs import Command, CommandParser, encode_api_response, encode_disconnect_notice, encode_reply  # noqa: E402
from simulator.transcripts import load  # noqa: E402

# switch_url_encode(): these bytes and everything outside ' '..'~' become %XX.
_UNSAFE = frozenset(b"\r\n \"#%&+:;<=>?@[\\]^`{|}")
_QUOTE = [("%%%02X" % b) if b < 0x20 or b > 0x7E or b in _UNSAFE else chr(b) for b in range(256)]
# Headers set per event; removed from the recorded templates.
_DYNAMIC = frozenset("""Application Application-Data Application-Response Application-UUID Other-Leg-Unique-ID
    Bridge-A-Unique-ID Bridge-B-Unique-ID Hangup-Cause variable_originate_disposition variable_originate_causes
    variable_originate_failed_cause variable_DIALSTATUS variable_originated_legs variable_last_bridge_to variable_bridge_uuid
    variable_bridge_to variable_bridge_hangup_cause variable_last_bridge_hangup_cause variable_current_application
    variable_current_application_data variable_current_application_response variable_hangup_cause variable_signal_bond
    variable_originate_signal_bond variable_last_bridge_role variable_bridge_channel
    variable_last_bridge_proto_specific_hangup_cause""".split())


def fs_quote(value: str) -> str:
    """Same bytes as ``orchestrator.esl.wire.fs_quote``, by table."""
    return "".join([_QUOTE[b] for b in value.encode("utf-8")])


class Templates:
    """Recorded CHANNEL_DATA and events with the caller's uuid as a placeholder."""

    def __init__(self) -> None:
        p01 = load("P01_bridge_ring_all_a1_answers.txt")
        data = next(r.data for r in p01 if r.direction == "FS->SERVER" and b"CHANNEL_DATA" in r.data)
        self.old_uuid = data.split(b"\nUnique-ID: ", 1)[1].split(b"\n", 1)[0]
        head, _, tail = data.partition(b"Content-Type: command/reply\n")
        head = head.replace(b"Destination-Number: 7000\n", b"Destination-Number: @@DEST@@\n")
        head += b"variable_pbx_entry: public\nvariable_pbx_dialed: @@DEST@@\n"
        self.connect = head + b"Content-Type: command/reply\n" + tail
        self.events: dict[str, bytes] = {}
        for rec in p01:
            if rec.direction != "FS->SERVER" or b"text/event-plain" not in rec.data[:80]:
                continue
            body = rec.data.split(b"\n\n", 1)[1]
            name = body.split(b"\n", 1)[0].split(b": ", 1)[1].decode()
            if name in self.events and not (name == "CHANNEL_EXECUTE_COMPLETE" and b"Application: bridge" in body):
                continue
            lines = [ln for ln in body.split(b"\n") if ln and ln.split(b": ", 1)[0].decode() not in _DYNAMIC]
            self.events[name] = b"\n".join(lines) + b"\n"
        self.linger = encode_disconnect_notice(self.old_uuid.decode(), "linger", "sofia/internal/sipp@127.0.0.1:5175", -1)
        self.goodbye = encode_reply("+OK bye") + encode_disconnect_notice(self.old_uuid.decode(), "disconnect")

    def connect_reply(self, uuid: bytes, dest: str) -> bytes:
        return self.connect.replace(self.old_uuid, uuid).replace(b"@@DEST@@", fs_quote(dest).encode())


@dataclass(frozen=True)
class Behaviour:
    """How a member's phone reacts to one leg of a bridge."""

    answer_ms: float = 100.0  # after the leg starts ringing
    talk_ms: float = 1000.0  # then the member hangs up
    no_answer: float = 0.0  # probability that this leg is not answered at all
    ring_scale: float = 1.0  # a leg that is not answered ends after leg_timeout * ring_scale


@dataclass
class CallRecord:
    number: str
    uuid: str
    t_open: float = 0.0  # before connect()
    t_connect: float = 0.0  # our "connect" command read (the orchestrator accepted and started the call)
    t_first_cmd: float = 0.0  # first sendmsg read
    t_first_bridge: float = 0.0  # first "execute bridge" read
    held_ms: float = 0.0  # time on hold music (department queue)
    reoffers_ms: list[float] = field(default_factory=list)  # failed bridge's EXECUTE_COMPLETE sent -> next bridge read
    apps: list[str] = field(default_factory=list)
    answered_by: str = ""
    bridged: bool = False
    t_end: float = 0.0  # socket closed
    error: str = ""


@dataclass
class _Leg:
    uuid: str
    ext: str
    timeout_s: int
    delay_s: int


def parse_dial(dial: str) -> list[_Leg]:
    """``{g=..}[origination_uuid=U,leg_timeout=T,leg_delay_start=D]user/EXT@dom,[..]..``"""
    glob: dict[str, str] = {}
    if dial.startswith("{"):
        end = dial.index("}")
        glob = dict(kv.split("=", 1) for kv in dial[1:end].split(",") if "=" in kv)
        dial = dial[end + 1:]
    legs = []
    for part in re.split(r",(?![^\[]*\])", dial):  # commas between legs, not inside [..]
        local: dict[str, str] = {}
        if part.startswith("["):
            end = part.index("]")
            local = dict(kv.split("=", 1) for kv in part[1:end].split(",") if "=" in kv)
            part = part[end + 1:]
        ext = part.split("/", 1)[-1].split("@", 1)[0]
        timeout = local.get("leg_timeout") or glob.get("leg_timeout") or glob.get("call_timeout") or "60"
        legs.append(_Leg(local.get("origination_uuid") or str(uuidlib.uuid4()), ext, int(timeout), int(local.get("leg_delay_start", "0"))))
    return legs


class _Call:
    """One call's connection, driven from one greenlet (timers included: no locks)."""

    def __init__(self, gen: LoadGen, rec: CallRecord) -> None:
        self.gen, self.rec, self.t = gen, rec, gen.templates
        self.ubytes = rec.uuid.encode()
        self.vars: dict[str, str] = {}  # channel variables set so far, sent with every event
        self.var_bytes = b""
        self.timers: list[tuple[float, int, Callable[[], object]]] = []
        self.seq = itertools.count()
        self.linger = self.hung_up = self.answered = self.early = self.done = self.was_held = False
        self.hold_since = self.failed_at = 0.0  # hold music playing since; a bridge failed at
        self.running: tuple[str, str, str] | None = None  # blocking app: (name, arg, app uuid)
        self.sock: socket.socket

    # ------------------------------------------------------------ wire

    def event(self, name: str, extra: Sequence[tuple[str, str]] = ()) -> bytes:
        dyn = "".join("%s: %s\n" % (k, fs_quote(v)) for k, v in extra).encode()
        body = self.t.events[name].replace(self.t.old_uuid, self.ubytes) + dyn + self.var_bytes + b"\n"
        return b"Content-Length: %d\nContent-Type: text/event-plain\n\n%s" % (len(body), body)

    def set_vars(self, **values: str) -> None:
        self.vars.update(values)
        self.var_bytes = "".join("variable_%s: %s\n" % (k, fs_quote(v)) for k, v in self.vars.items()).encode()

    def app_event(self, name: str, app: str, arg: str, app_uuid: str, response: str | None = None) -> bytes:
        extra = [("Application", app), ("Application-Data", arg)]
        if response is not None:
            extra.append(("Application-Response", response))
        return self.event(name, extra + [("Application-UUID", app_uuid)])

    def later(self, ms: float, fn: Callable[[], object]) -> None:
        heapq.heappush(self.timers, (time.perf_counter() + ms / 1000.0, next(self.seq), fn))

    # ------------------------------------------------------------ run

    def run(self) -> None:
        rec = self.rec
        rec.t_open = time.perf_counter()
        try:
            self.sock = socket.create_connection(self.gen.address, timeout=10)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            parser = CommandParser()
            while not self.done:
                wait = self.timers[0][0] - time.perf_counter() if self.timers else self.gen.idle_timeout_s
                if wait <= 0:
                    heapq.heappop(self.timers)[2]()
                    continue
                self.sock.settimeout(wait)
                try:
                    data = self.sock.recv(65536)
                except socket.timeout:
                    if not self.timers:
                        raise TimeoutError("no command for %.0f s" % self.gen.idle_timeout_s) from None
                    continue
                if not data:
                    break
                for cmd in parser.feed(data):
                    self.command(cmd)
        except (OSError, TimeoutError, ValueError) as exc:
            rec.error = "%s: %s" % (type(exc).__name__, exc)
        finally:
            rec.t_end = time.perf_counter()
            try:
                self.sock.close()
            except (AttributeError, OSError):
                pass

    def command(self, cmd: Command) -> None:
        line, t, send = cmd.line, self.t, self.sock.sendall
        if line == "connect":
            self.rec.t_connect = time.perf_counter()
            send(t.connect_reply(self.ubytes, self.rec.number))
        elif line == "myevents":
            send(encode_reply("+OK Events Enabled") + self.event("CHANNEL_PARK"))
        elif line.startswith("linger"):
            self.linger = True
            send(encode_reply("+OK will linger"))
        elif line == "exit":
            send(t.goodbye.replace(t.old_uuid, self.ubytes))
            self.done = True
        elif line.startswith("api "):
            self.api(line[4:].split())
        elif line.startswith("sendmsg"):
            if not self.rec.t_first_cmd:
                self.rec.t_first_cmd = time.perf_counter()
            what = (cmd.get("call-command") or "").lower()
            if what == "hangup":
                send(encode_reply("+OK"))
                self.hangup(cmd.get("hangup-cause") or "NORMAL_CLEARING")
            elif what == "execute":
                self.execute(cmd.get("execute-app-name") or "", cmd.get("execute-app-arg") or "", cmd.get("Event-UUID") or str(uuidlib.uuid4()))
            else:
                send(encode_reply("-ERR unsupported call-command"))
        else:
            send(encode_reply("-ERR command not found"))

    def api(self, argv: list[str]) -> None:
        if argv[:1] == ["uuid_break"] and argv[1:2] == [self.rec.uuid]:
            self.sock.sendall(encode_api_response("+OK\n"))
            self.complete_running("FILE PLAYED")
        else:
            self.sock.sendall(encode_api_response("-ERR %s Command not found!\n" % (argv[:1] or [""])[0]))

    def hold_ended(self) -> None:
        if self.hold_since:
            self.rec.held_ms += (time.perf_counter() - self.hold_since) * 1000.0
            self.hold_since, self.was_held, self.gen.holding = 0.0, True, self.gen.holding - 1

    def freed(self, ext: str) -> None:
        """A member is free again; remembered only while somebody waits on hold."""
        if self.gen.holding > 0:
            self.gen.freed_at[ext] = time.perf_counter()

    def execute(self, app: str, arg: str, app_uuid: str) -> None:
        self.rec.apps.append(app)
        out = [encode_reply("+OK"), self.app_event("CHANNEL_EXECUTE", app, arg, app_uuid)]
        if app == "bridge":
            now = time.perf_counter()
            if not self.rec.t_first_bridge:
                self.rec.t_first_bridge = now
            if self.failed_at:
                self.rec.reoffers_ms.append((now - self.failed_at) * 1000.0)
                self.failed_at = 0.0
            self.running = (app, arg, app_uuid)
            legs = parse_dial(arg)
            for leg in legs:
                freed = self.gen.freed_at.pop(leg.ext, 0.0)
                if freed and self.was_held:
                    self.gen.freed_to_offer_ms.append((now - freed) * 1000.0)
            self.was_held = False
            self.bridge(legs)
        elif app in ("playback", "record", "play_and_get_digits"):
            if not self.answered and not self.early:  # media on a ringing channel pre-answers it (P08c)
                self.early = True
                out.append(self.event("CHANNEL_PROGRESS_MEDIA"))
            self.running = (app, arg, app_uuid)
            if arg.startswith("local_stream://"):  # hold music: until uuid_break
                self.hold_since = time.perf_counter()
                self.gen.holding += 1
                self.gen.max_holding = max(self.gen.max_holding, self.gen.holding)
            else:
                self.later(self.gen.playback_ms, lambda: self.complete_running("FILE PLAYED"))
        else:
            if app in ("set", "export") and "=" in arg:
                name, value = arg.split("=", 1)
                self.set_vars(**{name: value})
            elif app == "multiset":  # mod_dptools: space-separated (or ^^<delim>) name=value pairs
                sep, data = (arg[2], arg[3:]) if arg.startswith("^^") else (" ", arg)
                self.set_vars(**dict(p.split("=", 1) for p in data.split(sep) if "=" in p))
            elif app == "unset":
                self.vars.pop(arg, None)
                self.set_vars()
            elif app == "answer" and not self.answered:
                self.answered = True
                out.append(self.event("CHANNEL_ANSWER"))
            out.append(self.app_event("CHANNEL_EXECUTE_COMPLETE", app, arg, app_uuid, "_none_"))
        self.sock.sendall(b"".join(out))

    def complete_running(self, response: str, send: bool = True) -> bytes:
        """EXECUTE_COMPLETE of the blocking app in progress (sent, or returned to send later)."""
        if self.running is None or self.done:
            return b""
        (app, arg, app_uuid), self.running = self.running, None
        self.hold_ended()
        out = self.app_event("CHANNEL_EXECUTE_COMPLETE", app, arg, app_uuid, response)
        if send:
            self.sock.sendall(out)
        return out

    # ------------------------------------------------------------ bridge outcome

    def bridge(self, legs: list[_Leg]) -> None:
        rng, best = self.gen.rng, None
        for leg in legs:
            b = self.gen.behaviour(leg.ext)
            if rng.random() < b.no_answer:
                continue
            at = leg.delay_s * 1000.0 + b.answer_ms
            if at < leg.timeout_s * 1000.0 and (best is None or at < best[0]):
                best = (at, leg, b)
        legs_v = "|:".join("%s;Outbound Call;%s" % (leg.uuid, leg.ext) for leg in legs)
        if best is None:
            scale = min(self.gen.behaviour(leg.ext).ring_scale for leg in legs)
            causes = "|:".join("%s;ALLOTTED_TIMEOUT" % leg.uuid for leg in legs)
            self.set_vars(originated_legs=("ARRAY::" if len(legs) > 1 else "") + legs_v,
                          originate_causes=("ARRAY::" if len(legs) > 1 else "") + causes,
                          originate_disposition="ALLOTTED_TIMEOUT", originate_failed_cause="ALLOTTED_TIMEOUT",
                          DIALSTATUS="NOANSWER")
            self.later(max(leg.timeout_s for leg in legs) * 1000.0 * scale, lambda: self.bridge_failed(legs))
            return
        at, winner, b = best
        causes = "|:".join("%s;%s" % (leg.uuid, "NONE" if leg is winner else "LOSE_RACE") for leg in legs)
        self.later(at, lambda: self.bridged(winner, ("ARRAY::" if len(legs) > 1 else "") + causes, legs_v))
        self.later(at + b.talk_ms, lambda: self.member_hangup(winner.ext))

    def bridge_failed(self, legs: list[_Leg]) -> None:
        self.complete_running("_none_")
        self.failed_at = time.perf_counter()
        for leg in legs:
            self.freed(leg.ext)

    def bridged(self, leg: _Leg, causes: str, legs_v: str) -> None:
        self.rec.bridged, self.rec.answered_by = True, leg.ext
        self.set_vars(originate_disposition="SUCCESS", DIALSTATUS="SUCCESS", originate_causes=causes,
                      originated_legs=legs_v, last_bridge_to=leg.uuid, bridge_uuid=leg.uuid)
        self.vars.pop("originate_failed_cause", None)
        answer = b"" if self.answered else self.event("CHANNEL_ANSWER")  # the caller is answered by the bridge
        self.answered = True
        self.sock.sendall(answer + self.event("CHANNEL_BRIDGE", [("Bridge-A-Unique-ID", self.rec.uuid), ("Bridge-B-Unique-ID", leg.uuid), ("Other-Leg-Unique-ID", leg.uuid)]))

    def member_hangup(self, ext: str) -> None:
        if self.done or self.running is None:
            return
        self.freed(ext)
        other = self.vars.get("bridge_uuid", "")
        self.set_vars(bridge_hangup_cause="NORMAL_CLEARING")
        self.sock.sendall(self.event("CHANNEL_UNBRIDGE", [("Other-Leg-Unique-ID", other)]))
        if self.vars.get("hangup_after_bridge") == "true":
            self.hangup("NORMAL_CLEARING")
        else:
            self.complete_running("_none_")

    def hangup(self, cause: str) -> None:
        """The caller's channel ends (P01c order); the socket stays until ``exit``."""
        if self.done or self.hung_up:
            return
        self.hung_up = True
        sock_app = str(uuidlib.UUID(int=self.gen.rng.getrandbits(128)))
        out = [self.event("CHANNEL_HANGUP", [("Hangup-Cause", cause)]), self.complete_running("_none_", send=False),
                self.event("CHANNEL_UNPARK"),
                self.app_event("CHANNEL_EXECUTE_COMPLETE", "socket", "127.0.0.1:8084 async full", sock_app, "_none_"),
                self.event("CHANNEL_STATE"), self.event("CHANNEL_STATE"),
                self.event("CHANNEL_HANGUP_COMPLETE", [("Hangup-Cause", cause)])]
        if self.linger:
            out.append(self.t.linger.replace(self.t.old_uuid, self.ubytes))
        self.timers.clear()
        self.sock.sendall(b"".join(out))


class LoadGen:
    def __init__(self, address: tuple[str, int], behaviour: Callable[[str], Behaviour], *, seed: int = 1,
                 playback_ms: float = 200.0, idle_timeout_s: float = 60.0) -> None:
        self.address, self.behaviour, self.rng = address, behaviour, random.Random(seed)
        self.playback_ms, self.idle_timeout_s = playback_ms, idle_timeout_s
        self.templates = Templates()
        self.active = self.holding = self.max_holding = 0  # calls running; on hold music now; most on hold at once
        self.freed_at: dict[str, float] = {}
        self.freed_to_offer_ms: list[float] = []

    def new_record(self, number: str) -> CallRecord:
        return CallRecord(number, str(uuidlib.uuid4()))

    def call(self, rec: CallRecord) -> CallRecord:
        """One call, run to its end in the current greenlet."""
        self.active += 1
        try:
            _Call(self, rec).run()
        finally:
            self.active -= 1
        return rec

    def run(self, mix: Sequence[tuple[str, float]], rate: float, duration_s: float, drain_s: float = 120.0) -> list[CallRecord]:
        """Open calls at ``rate`` per second for ``duration_s``, numbers drawn from ``mix``
        (number, weight); returns every call's record once all have ended."""
        numbers, weights = [m[0] for m in mix], [m[1] for m in mix]
        pool = gevent.pool.Group()
        records = []
        start = time.perf_counter()
        for n in range(int(rate * duration_s)):
            delay = start + n / rate - time.perf_counter()
            if delay > 0:
                gevent.sleep(delay)
            records.append(self.new_record(self.rng.choices(numbers, weights)[0]))
            pool.spawn(self.call, records[-1])
        pool.join(timeout=drain_s)
        for rec in records:
            if not rec.t_end:
                rec.error = rec.error or "still running after the drain time"
        pool.kill(block=False)
        return records


def percentile(values: Sequence[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(round(p / 100.0 * (len(ordered) - 1)))))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--address", default="127.0.0.1:8084")
    parser.add_argument("--number", action="append", required=True, help="dialled number (repeat for a mix)")
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--answer-ms", type=float, default=100.0)
    parser.add_argument("--talk-ms", type=float, default=1000.0)
    parser.add_argument("--no-answer", type=float, default=0.0, help="probability a leg is not answered")
    args = parser.parse_args()
    host, port = args.address.rsplit(":", 1)
    b = Behaviour(args.answer_ms, args.talk_ms, args.no_answer)
    gen = LoadGen((host, int(port)), lambda ext: b)
    recs = gen.run([(n, 1.0) for n in args.number], args.rate, args.duration)
    for what, values in (("open -> first sendmsg", [(r.t_first_cmd - r.t_open) * 1000 for r in recs if r.t_first_cmd]),
                         ("failed bridge -> next bridge", [x for r in recs for x in r.reoffers_ms]),
                         ("member free -> next offer", gen.freed_to_offer_ms)):
        print("%s: n %d, p50 %.1f ms, p99 %.1f ms" % (what, len(values), percentile(values, 50), percentile(values, 99)))
    print("calls %d, bridged %d, failed %d" % (len(recs), sum(r.bridged for r in recs), sum(bool(r.error) for r in recs)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
