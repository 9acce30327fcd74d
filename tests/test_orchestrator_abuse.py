"""A real ``pbx-orchestrator`` process against broken and hostile peers on its
outbound-socket port, while good calls (the FreeSWITCH simulator) go on.

Each bad peer plays FreeSWITCH's side: it reads our ``connect`` / ``myevents`` /
``linger`` and answers with garbage, the rude-rejection body cut short by EOF (which
froze the whole process), a huge Content-Length, a 200 MB line, a connect reply that
trickles in a byte at a time, one without Unique-ID; and 2,000 connections that never
answer at all. The orchestrator must close every one of them (within its command
timeout for the silent ones), log one line for each, keep its memory bounded and
route good calls during and after the abuse.
"""
from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Callable, Iterator

import gevent
import gevent.socket
import pytest

from orchestrator.esl import wire_fs
from simulator import Answer
from tests.test_e2e_calls import (  # noqa: F401 - fixtures
    DOMAIN,
    Orchestrator,
    e2e_db,
    e2e_redis,
    make_sim,
    records_for,
    wait_until,
)

TIMEOUT_MS = 2000  # PBX_ESL_TIMEOUT_MS of this orchestrator: the deadline of a silent peer
UUID = "0b7e8a7c-5b52-4a4e-9d8a-3f1f3f9b2c11"
IDLE = 2000


def rss_kib(pid: int) -> int:
    for line in Path("/proc/%d/status" % pid).read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS for %d" % pid)


@pytest.fixture(scope="module")
def orch(e2e_db, e2e_redis, tmp_path_factory) -> Iterator[Orchestrator]:
    o = Orchestrator(e2e_db[0], e2e_redis, tmp_path_factory.mktemp("abuse") / "orchestrator.log",
                     PBX_ESL_TIMEOUT_MS=str(TIMEOUT_MS))
    yield o
    o.stop()


@pytest.fixture
def sim(orch):
    s = make_sim(orch.address)
    yield s
    s.stop()


def address(orch: Orchestrator) -> tuple[str, int]:
    host, port = orch.address.rsplit(":", 1)
    return host, int(port)


def good_call(sim, factory) -> None:
    """A call to employee 101 who answers: routed, answered, its history row written."""
    sim.add_user("101", DOMAIN, behavior=Answer(after=1, hangup_after=2))
    call = sim.place_call("+74951110001", caller_id="+78121234567").wait(timeout=60)
    assert call.answered and call.hangup_cause == "NORMAL_CLEARING"
    wait_until(lambda: records_for(factory, call.uuid), timeout=30, what="the good call's history row")


def read_commands(sock: gevent.socket.socket, count: int) -> bytes:
    """Our orchestrator's first ``count`` commands (connect, myevents, linger)."""
    buf = b""
    while buf.count(b"\n\n") < count:
        chunk = sock.recv(4096)
        if not chunk:
            raise AssertionError("the orchestrator closed before sending its commands: %r" % buf)
        buf += chunk
    return buf


def closed_by_peer(sock: gevent.socket.socket, timeout: float) -> float:
    """Seconds until the orchestrator closed ``sock`` (reads and drops what it says)."""
    started = time.monotonic()
    with gevent.Timeout(timeout, AssertionError("the orchestrator kept a bad peer's socket %.0f s" % timeout)):
        while True:
            try:
                if not sock.recv(65536):
                    break
            except OSError:  # reset: closed with our bytes unread
                break
    return time.monotonic() - started


def send_until_closed(sock: gevent.socket.socket, chunk: bytes, total: int) -> int:
    sent = 0
    try:
        while sent < total:
            sock.sendall(chunk)
            sent += len(chunk)
    except OSError:
        pass
    return sent


def connect_reply(unique_id: str | None) -> bytes:
    data = [("Event-Name", "CHANNEL_DATA"), ("Caller-Destination-Number", "+74951110001"),
            ("variable_pbx_entry", "public"), ("variable_pbx_dialed", "+74951110001")]
    if unique_id is not None:
        data.insert(1, ("Unique-ID", unique_id))
    return wire_fs.encode_connect_reply(data)


# Each bad peer: connected and past our commands, it misbehaves; returns a note.
def garbage(sock) -> str:
    sock.sendall(random.Random(5).randbytes(3000) + b"\n\n")
    return "garbage"


def rude_rejection(sock) -> str:
    sock.sendall(b"Content-Type: text/rude-rejection\nContent-Length: 100\n\nabc")
    sock.shutdown(gevent.socket.SHUT_WR)  # EOF inside the body
    return "rude-rejection cut short"


def api_response_cut_short(sock) -> str:
    sock.sendall(b"Content-Type: api/response\nContent-Length: 100\n\nabc")
    sock.shutdown(gevent.socket.SHUT_WR)
    return "api/response cut short"


def huge_content_length(sock) -> str:
    sock.sendall(b"Content-Type: text/event-plain\nContent-Length: 400000000\n\n")
    sent = send_until_closed(sock, b"x" * 65536, 400_000_000)
    assert sent < 64 * 1024 * 1024, "the orchestrator read %d bytes of a 400 MB body" % sent
    return "huge Content-Length"


def long_line(sock) -> str:
    sock.sendall(b"Content-Type: command/reply\nReply-Text: ")
    sent = send_until_closed(sock, b"a" * 65536, 200 * 1024 * 1024)
    assert sent < 64 * 1024 * 1024, "the orchestrator read %d bytes of one line" % sent
    return "200 MB line"


def no_unique_id(sock) -> str:
    sock.sendall(connect_reply(None) + wire_fs.encode_reply("+OK Events Enabled") + wire_fs.encode_reply("+OK will linger"))
    return "no Unique-ID"


def bad_unique_id(sock) -> str:
    sock.sendall(connect_reply("x y ${system(id)}") + wire_fs.encode_reply("+OK Events Enabled")
                 + wire_fs.encode_reply("+OK will linger"))
    return "unusable Unique-ID"


def slowloris(sock) -> str:
    reply = connect_reply(UUID)
    try:
        for i in range(len(reply)):
            sock.sendall(reply[i:i + 1])
            gevent.sleep(0.2)
    except OSError:
        pass
    return "slowloris"


BAD_PEERS: list[Callable] = [garbage, rude_rejection, api_response_cut_short, huge_content_length, long_line,
                             no_unique_id, bad_unique_id, slowloris]


def bad_peer(orch: Orchestrator, behave: Callable) -> float:
    sock = gevent.socket.create_connection(address(orch), timeout=30)
    sock.settimeout(None)
    try:
        read_commands(sock, 3)
        worker = gevent.spawn(behave, sock)
        took = closed_by_peer(sock, TIMEOUT_MS / 1000.0 + 20)
        worker.join(timeout=30)
        if worker.exception is not None:
            raise worker.exception
        return took
    finally:
        sock.close()


def log_lines(orch: Orchestrator, *needles: str) -> list[str]:
    return [line for line in orch.log().splitlines() if any(n in line for n in needles)]


def test_bad_peers_are_closed_with_one_line_each_while_a_good_call_succeeds(orch, sim, e2e_db) -> None:
    _, factory, _ = e2e_db
    good_call(sim, factory)  # warm: the tenant's routing data is cached
    before_lines = len(log_lines(orch, "malformed ESL message", "refused the call socket"))
    rss_before = rss_kib(orch.proc.pid)

    peers = [gevent.spawn(bad_peer, orch, behave) for behave in BAD_PEERS]
    good_call(sim, factory)  # during the abuse (the slowloris lasts the whole timeout)
    gevent.joinall(peers, timeout=120, raise_error=True)
    took = {b.__name__: p.value for b, p in zip(BAD_PEERS, peers)}
    good_call(sim, factory)  # and after it

    assert took["slowloris"] < TIMEOUT_MS / 1000.0 + 5  # the deadline is not extended by trickling bytes
    assert all(t < TIMEOUT_MS / 1000.0 + 5 for t in took.values()), took
    assert orch.proc.poll() is None
    lines = log_lines(orch, "malformed ESL message", "refused the call socket")[before_lines:]
    assert len(lines) == len(BAD_PEERS), "\n".join(lines)
    text = orch.log()
    assert "Traceback" not in text and "another greenlet" not in text and "Consider increasing" not in text
    assert any("Unique-ID" in line for line in lines) and any("text/rude-rejection" in line for line in lines), lines
    assert rss_kib(orch.proc.pid) - rss_before < 64 * 1024  # the 400 MB body and the 200 MB line were not read


def test_two_thousand_idle_connections_are_cheap_and_dropped_at_the_deadline(orch, sim, e2e_db) -> None:
    _, factory, _ = e2e_db
    good_call(sim, factory)
    rss_before = rss_kib(orch.proc.pid)
    peak = [rss_before]
    sampling = gevent.spawn(lambda: [(peak.append(rss_kib(orch.proc.pid)), gevent.sleep(0.05)) for _ in range(100000)])
    socks = []
    try:
        for _ in range(IDLE):
            socks.append(gevent.socket.create_connection(address(orch), timeout=30))
        opened = time.monotonic()
        good_call(sim, factory)  # while they are all open
        for s in socks:
            s.settimeout(None)
        closers = [gevent.spawn(closed_by_peer, s, TIMEOUT_MS / 1000.0 + 60) for s in socks]
        gevent.joinall(closers, timeout=TIMEOUT_MS / 1000.0 + 90, raise_error=True)
        all_closed = time.monotonic() - opened
    finally:
        sampling.kill()
        for s in socks:
            s.close()
    good_call(sim, factory)
    assert all_closed < TIMEOUT_MS / 1000.0 + 60
    per_connection_kib = (max(peak) - rss_before) / IDLE
    assert per_connection_kib < 64, "%.1f KiB per idle connection" % per_connection_kib
    assert orch.proc.poll() is None
    refused = log_lines(orch, "no reply to connect within")
    assert len(refused) >= IDLE
    print("idle connections: %d, RSS %d -> peak %d KiB (%.1f KiB each), all closed %.1f s after opening" % (
        IDLE, rss_before, max(peak), per_connection_kib, all_closed))
