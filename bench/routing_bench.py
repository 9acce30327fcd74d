"""Routing benchmark: calls per second through one orchestrator, and routing latency.

Starts a real ``pbx-orchestrator`` process (a SQLite file and embedded Redis holding
bench/bench-tenant.yaml, or DATABASE_URL / REDIS_URL when set) and the FreeSWITCH
simulator in this process, in real time (time scale 1). Places ``--calls`` calls to
+74950009999 at ``--rate`` calls per second; employee 101 answers at once and hangs up after
``--talk`` seconds. Measures, per call, on the wire as the simulated FreeSWITCH saw it:
the time from our ``connect`` command to our first ``sendmsg`` (myevents, linger, tenant
lookup, snapshot, admission in Redis, the decision).

    python bench/routing_bench.py --calls 600 --rate 150 [--results bench/results.md]

Results are appended to bench/results.md. Both processes share this machine's cores.
"""
from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import gevent

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from simulator import Answer, FreeSwitchSim  # noqa: E402


NUMBER = "+74950009999"
DOMAIN = "bench.pbx.test"


def start_orchestrator(data_dir: str) -> tuple[subprocess.Popen, str]:
    env = dict(os.environ, PBX_DATA_DIR=data_dir, PBX_LOG_LEVEL="WARNING")
    env.setdefault("DATABASE_URL", "sqlite:///%s/bench.sqlite3" % data_dir)
    subprocess.run(
        [sys.executable, "-c", "import sys; from orchestrator.tenant_cli import main; sys.exit(main())",
         "import", str(ROOT / "bench" / "bench-tenant.yaml")],
        env=env, check=True, stdout=subprocess.DEVNULL,
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", "import sys; from orchestrator.cli import orchestrator_main; sys.exit(orchestrator_main())", "--listen", "127.0.0.1:0"],
        env=env, stdout=subprocess.PIPE, text=True,
    )
    line = ""
    deadline = time.monotonic() + 60
    while "listening on" not in line:
        if time.monotonic() > deadline or proc.poll() is not None:
            raise SystemExit("orchestrator did not start")
        line = proc.stdout.readline()  # type: ignore[union-attr]
    return proc, line.strip().rsplit(" ", 1)[-1]


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, int(round(p / 100.0 * (len(ordered) - 1)))))
    return ordered[k]


def rss_kb(pid: int) -> int:
    try:
        for line in Path("/proc/%d/status" % pid).read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (Linux /proc)."""
    try:
        fields = Path("/proc/%d/stat" % pid).read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=600)
    parser.add_argument("--rate", type=float, default=150.0)
    parser.add_argument("--talk", type=float, default=1.0)
    parser.add_argument("--results", default=str(ROOT / "bench" / "results.md"))
    args = parser.parse_args()

    data_dir = tempfile.mkdtemp(prefix="pbx-bench-")
    proc, address = start_orchestrator(data_dir)
    sim = FreeSwitchSim(conf_dir=ROOT / "freeswitch-conf", globals={"pbx_orchestrator_socket": address}, time_scale=1.0)
    sim.start()
    sim.add_user("101", DOMAIN, behavior=Answer(after=0.0, hangup_after=args.talk))
    # Warm-up call: loads the snapshot into the orchestrator's cache.
    sim.place_call(NUMBER).wait(timeout=30)

    latencies: list[float] = []
    failures: list[str] = []
    peak_rss = [0]

    def one_call() -> None:
        call = sim.place_call(NUMBER)
        try:
            call.wait(timeout=60)
        except TimeoutError as exc:
            failures.append(str(exc)[:120])
            return
        names = [name for _, name, _ in call.apps]
        received = getattr(call.channel.socket_session, "received", [])
        connect = [t for t, line in received if line == "connect"]
        first = [t for t, line in received if line.startswith("sendmsg")]
        if "bridge" not in names or not connect or not first:
            failures.append("not routed: %s" % names)
            return
        latencies.append((first[0] - connect[0]) * 1000.0)

    def sample_rss() -> None:
        while True:
            peak_rss[0] = max(peak_rss[0], rss_kb(proc.pid))
            gevent.sleep(0.2)

    sampler = gevent.spawn(sample_rss)
    orch_cpu0, sim_cpu0 = cpu_seconds(proc.pid), cpu_seconds(os.getpid())
    start = time.monotonic()
    workers = []
    for n in range(args.calls):
        target = start + n / args.rate
        delay = target - time.monotonic()
        if delay > 0:
            gevent.sleep(delay)
        workers.append(gevent.spawn(one_call))
    offered_s = time.monotonic() - start
    gevent.joinall(workers, timeout=120)
    total_s = time.monotonic() - start
    orch_cpu, sim_cpu = cpu_seconds(proc.pid) - orch_cpu0, cpu_seconds(os.getpid()) - sim_cpu0
    sampler.kill()
    sim.stop()
    proc.terminate()
    proc.wait(timeout=30)

    ok = len(latencies)
    concurrent = args.rate * (args.talk + 0.1)
    lines = [
        "",
        "## %s routing_bench (%s, %d cores, Python %s)" % (datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), platform.machine(), os.cpu_count() or 0, platform.python_version()),
        "",
        "- offered: %d calls at %.0f calls/s over %.1f s (talk %.1f s, about %.0f concurrent calls)" % (args.calls, args.rate, offered_s, args.talk, concurrent),
        "- completed: %d routed, %d failed, in %.1f s" % (ok, len(failures), total_s),
        "- connect -> first sendmsg (routing latency): p50 %.1f ms, p99 %.1f ms, max %.1f ms" % (
            percentile(latencies, 50) if latencies else -1, percentile(latencies, 99) if latencies else -1, max(latencies) if latencies else -1),
        "- orchestrator peak RSS: %.1f MiB" % (peak_rss[0] / 1024.0),
        "- CPU over the run: orchestrator %.1f s (%.0f%% of one core), simulator %.1f s (%.0f%%)" % (
            orch_cpu, 100.0 * orch_cpu / total_s, sim_cpu, 100.0 * sim_cpu / total_s),
        "- store: %s, %s" % ("DATABASE_URL" if os.environ.get("DATABASE_URL") else "SQLite file",
                             "REDIS_URL" if os.environ.get("REDIS_URL") else "embedded Redis"),
    ]
    if failures:
        lines.append("- first failures: %s" % "; ".join(failures[:3]))
    text = "\n".join(lines) + "\n"
    print(text)
    results = Path(args.results)
    if not results.exists():
        results.write_text("# Benchmark results\n\nAppended by the scripts in bench/; newest last.\n", encoding="utf-8")
    with results.open("a", encoding="utf-8") as fh:
        fh.write(text)
    return 0 if not failures else 1


if __name__ == "__main__":
    raise SystemExit(main())
