"""A private, real FreeSWITCH for tests: find it, install our overlay into a copy of its
configuration with ``pbx-fs-install``, start it on free ports, watch its events over an
inbound event socket.

FreeSWITCH behaviour relied on (1.10.12; /work/shared/freeswitch-dist/README.md):
* ``-nf -nc -nonat``: foreground (the PID we started is FreeSWITCH), no console, no
  NAT/UPnP probing. ``-conf -log -run -db -recordings`` put everything of this instance
  in its own folder; ``PREFIX/bin/fs-run`` adds the prefix's module, sounds ... folders.
* The event socket accepts connections once mod_event_socket is loaded, which is before
  the SIP profiles start: readiness is ``api sofia status`` listing profile pbx RUNNING.
* ``event plain NAMES`` subscribes to events; each arrives as ``Content-Type:
  text/event-plain`` with ``Event-Date-Timestamp`` (microseconds since the epoch), the
  channel's ``Unique-ID``, ``Call-Direction``, ``Channel-Name``,
  ``Caller-Destination-Number`` and, on CHANNEL_HANGUP, ``Hangup-Cause``.
"""
from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from orchestrator.esl.wire import Parser, parse_event
from orchestrator.fs_install import main as fs_install_main

DEFAULT_PREFIXES = (Path("/opt/freeswitch"), Path("/usr"))


def find_prefix() -> tuple[Path | None, str]:
    """The FreeSWITCH install prefix to test against, or None and why not."""
    given = os.environ.get("FS_PREFIX")
    candidates = [Path(given)] if given else list(DEFAULT_PREFIXES)
    for prefix in candidates:
        if (prefix / "bin" / "freeswitch").is_file() and conf_of(prefix) is not None:
            if shutil.which("sipp") is None:
                return None, "sipp not found on PATH (Debian package sip-tester; freeswitch-dist/install.sh installs it)"
            return prefix, ""
    if given:
        return None, "FS_PREFIX=%s holds no bin/freeswitch with etc/freeswitch" % given
    return None, ("no FreeSWITCH found in /opt/freeswitch or /usr: install shared/freeswitch-dist "
                  "(install.sh /opt/freeswitch) or set FS_PREFIX to an install prefix")


def conf_of(prefix: Path) -> Path | None:
    for conf in (prefix / "etc" / "freeswitch", Path("/etc/freeswitch") if prefix == Path("/usr") else None):
        if conf is not None and (conf / "vars.xml").is_file():
            return conf
    return None


def free_port(kind: int = socket.SOCK_STREAM, also_udp: bool = False, host: str = "127.0.0.1") -> int:
    """A port the kernel says is free now (of ``kind``; ``also_udp``: of the other kind
    too, as sofia binds the SIP port for UDP and TCP: ``transport=udp,tcp``)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, kind) as s:
            s.bind((host, 0))
            port = s.getsockname()[1]
        if not also_udp:
            return port
        try:
            other = socket.SOCK_STREAM if kind == socket.SOCK_DGRAM else socket.SOCK_DGRAM
            with socket.socket(socket.AF_INET, other) as u:
                u.bind((host, port))
            return port
        except OSError:
            continue
    raise RuntimeError("no free port found")


def free_udp_port(host: str = "127.0.0.1") -> int:
    return free_port(socket.SOCK_DGRAM, host=host)


def wait_until(predicate: Callable[[], object], timeout: float, what: str, step: float = 0.05) -> object:
    """Poll ``predicate`` until it is true (bounded); for states no event announces."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %.0f s waiting for %s" % (timeout, what))
        time.sleep(step)


# ----------------------------------------------------------------- event socket


@dataclass
class Leg:
    """One channel as FreeSWITCH's events describe it (times in seconds since the epoch)."""

    uuid: str
    direction: str
    name: str
    destination: str
    created: float
    progress: float | None = None
    answered: float | None = None
    hungup: float | None = None
    cause: str | None = None
    context: str = ""
    events: list[str] = field(default_factory=list)


class EslEvents:
    """An inbound event socket connection: ``api`` commands and a record of channel events.

    One reader thread owns the socket; api replies and events are told apart by
    Content-Type. Waits are on a condition variable, signalled by every event."""

    EVENTS = "CHANNEL_CREATE CHANNEL_PROGRESS CHANNEL_PROGRESS_MEDIA CHANNEL_ANSWER CHANNEL_BRIDGE CHANNEL_HANGUP CHANNEL_EXECUTE"

    def __init__(self, port: int, password: str, timeout: float = 30.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.settimeout(None)
        self.parser = Parser()
        self.cond = threading.Condition()
        self.legs: dict[str, Leg] = {}
        self.order: list[tuple[str, str]] = []  # (event name, uuid) in arrival order
        self.apps: dict[str, list[str]] = {}  # uuid -> applications executed
        self.replies: list[tuple[str, str]] = []
        self.closed = False
        self._read_one_reply(timeout, "auth/request")
        self._send("auth %s" % password)
        ctype, body = self._read_one_reply(timeout, "command/reply")
        if "+OK" not in body:
            raise AssertionError("FreeSWITCH refused the ESL password: %s" % body)
        self._send("event plain %s" % self.EVENTS)
        self._read_one_reply(timeout, "command/reply")
        self.thread = threading.Thread(target=self._reader, daemon=True)
        self.thread.start()

    def _send(self, line: str) -> None:
        self.sock.sendall(line.encode() + b"\n\n")

    def _read_one_reply(self, timeout: float, ctype: str) -> tuple[str, str]:
        self.sock.settimeout(timeout)
        while True:
            for msg in self.parser.feed(self.sock.recv(65536)):
                if msg.content_type == ctype:
                    self.sock.settimeout(None)
                    return ctype, msg.get("Reply-Text", "") or msg.body.decode(errors="replace")

    def _reader(self) -> None:
        try:
            while True:
                data = self.sock.recv(65536)
                if not data:
                    break
                for msg in self.parser.feed(data):
                    with self.cond:
                        if msg.content_type == "text/event-plain":
                            self._on_event(parse_event(msg))
                        elif msg.content_type == "api/response":
                            self.replies.append((msg.content_type, msg.body.decode(errors="replace")))
                        self.cond.notify_all()
        except OSError:
            pass
        finally:
            with self.cond:
                self.closed = True
                self.cond.notify_all()

    def _on_event(self, ev) -> None:  # type: ignore[no-untyped-def]
        name, uuid = ev.name, ev.get("Unique-ID") or ""
        stamp = int(ev.get("Event-Date-Timestamp") or "0") / 1e6
        if name == "CHANNEL_CREATE":
            self.legs[uuid] = Leg(uuid, ev.get("Call-Direction") or "", ev.get("Channel-Name") or "",
                                  ev.get("Caller-Destination-Number") or "", stamp,
                                  context=ev.get("Caller-Context") or "")
        leg = self.legs.get(uuid)
        if leg is None:
            return
        self.order.append((name, uuid))
        leg.events.append(name)
        if name in ("CHANNEL_PROGRESS", "CHANNEL_PROGRESS_MEDIA") and leg.progress is None:
            leg.progress = stamp
        elif name == "CHANNEL_ANSWER":
            leg.answered = stamp
        elif name == "CHANNEL_HANGUP":
            leg.hungup, leg.cause = stamp, ev.get("Hangup-Cause")
        elif name == "CHANNEL_EXECUTE":
            self.apps.setdefault(uuid, []).append(ev.get("Application") or "")

    def api(self, command: str, timeout: float = 30.0) -> str:
        with self.cond:
            seen = len(self.replies)
            self._send("api %s" % command)
            if not self.cond.wait_for(lambda: len(self.replies) > seen or self.closed, timeout):
                raise AssertionError("FreeSWITCH did not answer api %s within %.0f s" % (command, timeout))
            if len(self.replies) <= seen:
                raise AssertionError("event socket closed during api %s" % command)
            return self.replies[seen][1]

    def wait_for(self, predicate: Callable[[], object], timeout: float, what: str) -> object:
        """Wait (on events, bounded) until ``predicate()`` holds; runs under the lock."""
        with self.cond:
            result = self.cond.wait_for(predicate, timeout)
        if not result:
            raise AssertionError("timed out after %.0f s waiting for %s; legs: %s" % (timeout, what, self.describe()))
        return result

    def legs_where(self, test: Callable[[Leg], bool]) -> list[Leg]:
        return sorted((leg for leg in self.legs.values() if test(leg)), key=lambda leg: leg.created)

    def describe(self) -> str:
        return "; ".join("%s %s %s answered=%s cause=%s" % (l.direction, l.name, l.destination, l.answered is not None, l.cause)
                         for l in sorted(self.legs.values(), key=lambda l: l.created))

    def clear(self) -> None:
        with self.cond:
            self.legs.clear()
            self.order.clear()
            self.apps.clear()

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


# ----------------------------------------------------------------- FreeSWITCH


class PrivateFreeSwitch:
    """FreeSWITCH from ``prefix`` with its own configuration copy, ports and folders."""

    def __init__(self, prefix: Path, workdir: Path) -> None:
        self.prefix = prefix
        self.workdir = workdir
        self.conf = workdir / "conf"
        self.esl_port = free_port()
        self.esl_password = "realfs-%s" % os.urandom(6).hex()
        self.sip_port = free_port(socket.SOCK_DGRAM, also_udp=True)
        self.recordings = workdir / "recordings"
        self.proc: subprocess.Popen[bytes] | None = None

    def install(self, orchestrator: str, directory_url: str, directory_credentials: str, carriers: Iterable[str]) -> None:
        """Copy the stock configuration and install our overlay with the install command."""
        source = conf_of(self.prefix)
        assert source is not None
        shutil.copytree(source, self.conf, symlinks=True)
        args = ["--conf", str(self.conf), "--esl-port", str(self.esl_port), "--esl-password", self.esl_password,
                "--orchestrator", orchestrator, "--directory-url", directory_url,
                "--directory-credentials", directory_credentials, "--sip-ip", "127.0.0.1",
                "--sip-port", str(self.sip_port)]
        for cidr in carriers:
            args += ["--carrier", cidr]
        assert fs_install_main(args) == 0
        # Own RTP range (switch.conf.xml rtp-start-port / rtp-end-port), away from other instances.
        switch_conf = self.conf / "autoload_configs" / "switch.conf.xml"
        start = 20000 + (os.getpid() % 200) * 100
        text = switch_conf.read_text(encoding="utf-8")
        switch_conf.write_text(text.replace("<settings>", '<settings>\n    <param name="rtp-start-port" value="%d"/>\n'
                                            '    <param name="rtp-end-port" value="%d"/>' % (start, start + 99), 1),
                               encoding="utf-8")

    def command(self) -> list[str]:
        dirs = []
        for flag in ("log", "run", "db", "recordings"):
            path = self.recordings if flag == "recordings" else self.workdir / flag
            path.mkdir(parents=True, exist_ok=True)
            dirs += ["-" + flag, str(path)]
        fs_run = self.prefix / "bin" / "fs-run"
        if fs_run.is_file():
            return [str(fs_run), "-nc", "-nf", "-nonat", "-conf", str(self.conf)] + dirs
        return [str(self.prefix / "bin" / "freeswitch"), "-nc", "-nf", "-nonat", "-conf", str(self.conf)] + dirs

    def start(self, timeout: float = 90.0) -> EslEvents:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PBX_")}  # pbx_vars.xml env-set lines
        self.out = open(self.workdir / "freeswitch.out", "wb")
        self.proc = subprocess.Popen(self.command(), env=env, stdout=self.out, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, cwd=self.workdir)

        def connected() -> EslEvents | None:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError("FreeSWITCH exited with %s: %s" % (self.proc.returncode, self.log_tail()))
            try:
                return EslEvents(self.esl_port, self.esl_password)
            except OSError:
                return None

        esl = wait_until(connected, timeout, "FreeSWITCH's event socket on %d" % self.esl_port, step=0.2)
        assert isinstance(esl, EslEvents)
        running = re.compile(r"^\s*pbx\s+profile\s.*\sRUNNING", re.M)
        wait_until(lambda: running.search(esl.api("sofia status")), timeout,
                   "SIP profile pbx RUNNING (log: %s)" % (self.workdir / "freeswitch.out"), step=0.2)
        return esl

    def log_tail(self, lines: int = 40) -> str:
        path = self.workdir / "freeswitch.out"
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
