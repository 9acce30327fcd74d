"""Department benchmark: a real ``pbx-orchestrator`` process driven by bench/loadgen.py.

Creates a fresh PostgreSQL database (``--db-name``, dropped first), flushes the Redis
database of ``--redis-url`` (db 9 by default: keep it to this benchmark), imports
bench/bench-departments.yaml, then runs each measurement against a fresh orchestrator
subprocess (``PBX_ENV=test``, ``--listen 127.0.0.1:0``, logs in a temporary directory):

1. **rates** (``--rates``, ``--duration`` s each): calls over ring_all, escalation,
   one_by_one, longest_idle, the queued Hotline and one employee; members answer after
   100-400 ms and talk ``--talk-ms``; one_by_one / longest_idle members leave 30% / 10%
   of legs unanswered (a leg rings leg_timeout x 0.25). Reports TCP open -> our first
   ``sendmsg`` (routing) and -> first ``bridge``; the hunt re-offer (failed bridge's
   EXECUTE_COMPLETE sent -> next ``bridge`` read); CPU per call of the orchestrator, this
   process (the load generator), Redis and the PostgreSQL backends;
2. **queue** (``--queue-rate``): more callers than the Hotline's 20 members take; callers
   wait on hold; member free (hangs up) -> the next waiting caller's ``bridge`` to them;
3. **concurrency** (``--concurrent`` calls to the employee at ``--ramp-rate``, all talking
   ``--hold`` s more): the orchestrator's RSS per concurrent call, its CPU while they talk.

    .venv/bin/python bench/department_bench.py [--rates 50,100,150,200] [--nice -10] \\
        [--profile-rate 150] [--profile-queue] [--code DIR] [--no-write]

``--code DIR`` runs another source tree (e.g. ``git archive HEAD | tar -x -C DIR``);
``--profile-*`` runs py-spy (``pip install py-spy``) on the orchestrator. A section with the
table is appended to ``--results`` (bench/results.md).
"""
from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Sequence

import gevent
import psycopg2
import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from loadgen import Behaviour, CallRecord, LoadGen, percentile  # noqa: E402

TENANT = ROOT / "bench" / "bench-departments.yaml"
MIX = [("+74950010200", 0.1), ("+74950010210", 0.1), ("+74950010220", 0.3), ("+74950010230", 0.3), ("+74950010240", 0.1),
       ("+74950010901", 0.1)]
HOTLINE = "+74950010240"
HOLD_LINE = "+74950010901"
TENANT_ID = 1


def behaviours(talk_ms: float, hold_until: Callable[[], float] | None = None) -> Callable[[str], Behaviour]:
    """Members by extension: 11xx ring_all, 12xx escalation, 13xx one_by_one, 14xx
    longest_idle, 15xx longest_idle with a queue, 1901 the employee line."""
    table: dict[str, Behaviour] = {}

    def get(ext: str) -> Behaviour:
        if hold_until is not None:
            return Behaviour(50.0, max(0.0, hold_until() - time.perf_counter()) * 1000.0)
        if ext not in table:
            n = int(ext[2:]) if ext[2:].isdigit() else 0
            if ext.startswith("13"):
                table[ext] = Behaviour(100.0, talk_ms, no_answer=0.3, ring_scale=0.25)
            elif ext.startswith("14"):
                table[ext] = Behaviour(100.0, talk_ms, no_answer=0.1, ring_scale=0.25)
            else:
                table[ext] = Behaviour(100.0 + 50.0 * (n % 7), talk_ms)
        return table[ext]

    return get


# ------------------------------------------------------------------ processes and figures


def proc_cpu_s(pid: int) -> float:
    fields = Path("/proc/%d/stat" % pid).read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_rss_kb(pid: int) -> int:
    for line in Path("/proc/%d/status" % pid).read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def redis_cpu_s(client: redis.Redis) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def machine_busy() -> tuple[float, float]:
    """(busy jiffies, total jiffies) of the whole machine."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]
    return float(sum(fields) - idle), float(sum(fields))


def wait_quiet(max_wait_s: float, threshold_pct: float = 15.0) -> float:
    """Wait (at most ``max_wait_s``) until the machine is idle for one second; returns the
    busy share of that last second (other processes' load before a run)."""
    deadline = time.monotonic() + max_wait_s
    while True:
        b0, t0 = machine_busy()
        gevent.sleep(1.0)
        b1, t1 = machine_busy()
        busy = 100.0 * (b1 - b0) / max(1.0, t1 - t0)
        if busy < threshold_pct or time.monotonic() > deadline:
            return busy
        gevent.sleep(2.0)


def fresh_database(admin_url: str, name: str) -> str:
    conn = psycopg2.connect(admin_url)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("DROP DATABASE IF EXISTS %s" % name)
        cur.execute("CREATE DATABASE %s" % name)
    conn.close()
    return admin_url.rsplit("/", 1)[0] + "/" + name


class Orchestrator:
    """A fresh ``pbx-orchestrator`` process per run (its own log file)."""

    def __init__(self, env: dict[str, str], log_path: Path, code: Path) -> None:
        self.log_path = log_path
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "import sys; from orchestrator.cli import orchestrator_main; sys.exit(orchestrator_main())",
             "--listen", "127.0.0.1:0"], env=env, cwd=code, stdout=subprocess.PIPE, stderr=open(log_path, "wb"), text=True)
        line, deadline = "", time.monotonic() + 60
        while "listening on" not in line:
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise SystemExit("orchestrator did not start; see %s" % log_path)
            line = self.proc.stdout.readline()  # type: ignore[union-attr]
        host, port = line.strip().rsplit(" ", 1)[-1].rsplit(":", 1)
        self.address = (host, int(port))
        self.pid = self.proc.pid

    def warm_up(self, gen: LoadGen) -> None:
        """A few calls to every number: snapshot cached, Redis and database connections open."""
        for number, _ in MIX:
            gen.run([(number, 1.0)], 10.0, 0.5)

    def stop(self) -> int:
        """Stop it; returns the number of ERROR lines it logged."""
        self.proc.terminate()
        self.proc.wait(timeout=60)
        return sum(1 for line in self.log_path.read_text(errors="replace").splitlines() if " ERROR " in line)


def pg_sessions(admin_url: str, db_name: str) -> int:
    """Connections ever opened to ``db_name`` (a new connection forks a PostgreSQL backend)."""
    with psycopg2.connect(admin_url) as conn, conn.cursor() as cur:
        cur.execute("SELECT sessions FROM pg_stat_database WHERE datname = %s", (db_name,))
        row = cur.fetchone()
    return int(row[0]) if row else 0


@dataclass
class Usage:
    """CPU seconds and wall time of one run."""

    wall_s: float
    orch_s: float
    gen_s: float
    redis_s: float
    pg_sessions: int
    machine_pct: float
    peak_rss_kb: int


class Meter:
    def __init__(self, pid: int, client: redis.Redis, pg_admin_url: str, db_name: str) -> None:
        self.pid, self.client, self.pg, self.db_name, self.peak = pid, client, pg_admin_url, db_name, 0

    def _sample(self) -> None:
        while True:
            self.peak = max(self.peak, proc_rss_kb(self.pid))
            gevent.sleep(0.25)

    def start(self) -> None:
        self.peak = proc_rss_kb(self.pid)
        self.sampler = gevent.spawn(self._sample)
        self.t0 = (time.perf_counter(), proc_cpu_s(self.pid), proc_cpu_s(os.getpid()), redis_cpu_s(self.client),
                   pg_sessions(self.pg, self.db_name), machine_busy())

    def stop(self) -> Usage:
        t, o, g, r, pg, (b, tot) = self.t0
        b1, tot1 = machine_busy()
        self.sampler.kill()
        return Usage(time.perf_counter() - t, proc_cpu_s(self.pid) - o, proc_cpu_s(os.getpid()) - g, redis_cpu_s(self.client) - r,
                     pg_sessions(self.pg, self.db_name) - pg, 100.0 * (b1 - b) / max(1.0, tot1 - tot), self.peak)


def ms(values: Sequence[float]) -> str:
    return "%.1f / %.1f / %.1f" % (percentile(values, 50), percentile(values, 99), max(values)) if values else "-"


HEADER = ("| calls/s offered | calls | bridged / failed | open -> `connect` read p50 / p99 ms | open -> 1st sendmsg p50 / p99 / max ms "
          "| open -> 1st bridge p50 / p99 ms | re-offers n: p50 / p99 / max ms | orch. CPU ms/call | orch. % of a core "
          "| loadgen CPU ms/call (% of a core) | Redis CPU ms/call | new PG connections | machine busy before / during | orch. peak RSS MiB | live in Redis after |")


def rate_row(rate: float, recs: list[CallRecord], u: Usage, before: float, leftovers: str) -> str:
    def since_open(attr: str) -> list[float]:
        return [(getattr(r, attr) - r.t_open) * 1000.0 for r in recs if getattr(r, attr)]

    accept, routed, bridge = since_open("t_connect"), since_open("t_first_cmd"), since_open("t_first_bridge")
    reoffer = [x for r in recs for x in r.reoffers_ms]
    failed = [r for r in recs if r.error or not r.t_first_cmd]
    n = max(1, len(recs))

    def p(values: list[float]) -> str:
        return "%.1f / %.1f" % (percentile(values, 50), percentile(values, 99)) if values else "-"

    return "| %.0f | %d | %d / %d | %s | %s | %s | %d: %s | %.1f | %.0f%% | %.1f (%.0f%%) | %.1f | %d | %.0f%% / %.0f%% | %.0f | %s |" % (
        rate, len(recs), sum(r.bridged for r in recs), len(failed), p(accept), ms(routed), p(bridge), len(reoffer), ms(reoffer),
        1000.0 * u.orch_s / n, 100.0 * u.orch_s / u.wall_s, 1000.0 * u.gen_s / n, 100.0 * u.gen_s / u.wall_s,
        1000.0 * u.redis_s / n, u.pg_sessions, before, u.machine_pct, u.peak_rss_kb / 1024.0, leftovers)


def failures(recs: list[CallRecord]) -> str:
    kinds: dict[str, int] = {}
    for r in recs:
        if r.error or not r.t_first_cmd:
            key = (r.error or "no sendmsg")[:60]
            kinds[key] = kinds.get(key, 0) + 1
    return "; ".join("%d x %s" % (v, k) for k, v in sorted(kinds.items(), key=lambda kv: -kv[1])[:3])


def leftovers(client: redis.Redis) -> str:
    """Offers, call leases and queue places still live in Redis 2 s after every call ended."""
    gevent.sleep(2.0)
    sec, usec = client.time()  # type: ignore[misc]
    now = int(sec) * 1000 + int(usec) // 1000
    tag = "{t:%d}" % TENANT_ID
    queued = sum(client.zcard(k) for k in client.scan_iter(tag + ":queue:*") if not k.endswith(b":lease"))
    return "%d offers, %d leases, %d queued" % (client.zcount(tag + ":offers", "(%d" % now, "+inf"),
                                               client.zcount(tag + ":calls", "(%d" % now, "+inf"), queued)


def profile(pid: int, seconds: float, out: Path) -> subprocess.Popen | None:
    spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if spy is None:
        print("py-spy not found: no profile", file=sys.stderr)
        return None
    return subprocess.Popen([spy, "record", "--pid", str(pid), "--duration", str(int(seconds)), "--rate", "200",
                             "--format", "raw", "--output", str(out), "--nonblocking"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def top_functions(raw: Path, count: int = 12) -> list[str]:
    """Self and inclusive sample shares from py-spy's collapsed stacks."""
    own: dict[str, int] = {}
    incl: dict[str, int] = {}
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, n_text = line.rpartition(" ")
        n = int(n_text)
        frames = [f.split(" (")[0] + " (" + f.split(" (")[-1].split(":")[0].rsplit("/", 1)[-1] + ")" for f in stack.split(";")]
        total += n
        own[frames[-1]] = own.get(frames[-1], 0) + n
        for f in set(frames):
            incl[f] = incl.get(f, 0) + n
    rows = ["self %4.1f%%  %s" % (100.0 * v / total, k) for k, v in sorted(own.items(), key=lambda kv: -kv[1])[:count]]
    keep = [k for k, _ in sorted(incl.items(), key=lambda kv: -kv[1]) if any(w in k for w in ("orchestrator", "greenswitch", "redis", "logging", "sqlalchemy", "wire", "call_handler", "session"))]
    rows += ["incl %4.1f%%  %s" % (100.0 * incl[k] / total, k) for k in keep[:count]]
    return rows


# ------------------------------------------------------------------ main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rates", default="50,100,150,200")
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--talk-ms", type=float, default=300.0)
    parser.add_argument("--concurrent", type=int, default=2000)
    parser.add_argument("--ramp-rate", type=float, default=100.0)
    parser.add_argument("--hold", type=float, default=15.0)
    parser.add_argument("--log-level", default="INFO", help="the orchestrator's PBX_LOG_LEVEL")
    parser.add_argument("--profile-rate", type=float, default=0.0)
    parser.add_argument("--profile-queue", action="store_true", help="py-spy on the orchestrator during the queue run")
    parser.add_argument("--wait-quiet", type=float, default=120.0, help="before each run, wait up to this long for an idle machine")
    parser.add_argument("--pg-admin-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--db-name", default="pbx_bench_dept")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/9")
    parser.add_argument("--queue-rate", type=float, default=15.0, help="calls/s to the queued department (0: skip)")
    parser.add_argument("--queue-duration", type=float, default=30.0)
    parser.add_argument("--queue-talk-ms", type=float, default=1500.0)
    parser.add_argument("--code", default=str(ROOT), help="source tree of the orchestrator under test (e.g. a `git archive` export)")
    parser.add_argument("--results", default=str(ROOT / "bench" / "results.md"))
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--nice", type=int, default=0, help="niceness for this process and the orchestrator (e.g. -10 on a shared machine)")
    args = parser.parse_args()
    if args.nice:
        os.nice(args.nice)

    work = Path(tempfile.mkdtemp(prefix="pbx-dept-bench-"))
    args.work = str(work)
    code = Path(args.code).resolve()
    db_url = fresh_database(args.pg_admin_url, args.db_name)
    client = redis.Redis.from_url(args.redis_url)
    client.flushdb()
    env = dict(os.environ, DATABASE_URL=db_url, REDIS_URL=args.redis_url, PBX_ENV="test", PBX_DATA_DIR=str(work),
               PBX_LOG_LEVEL=args.log_level, PBX_RECORDINGS_DIR=str(work / "rec"))
    subprocess.run([sys.executable, "-c", "import sys; from orchestrator.tenant_cli import main; sys.exit(main())", "import", str(TENANT)],
                   env=env, cwd=code, check=True, stdout=subprocess.DEVNULL)
    out = [HEADER, "|" + "---|" * 15]
    notes: list[str] = []
    errors = 0
    for rate in [float(r) for r in args.rates.split(",") if r]:
        orch = Orchestrator(env, work / ("orchestrator-%.0f.log" % rate), code)
        try:
            gen = LoadGen(orch.address, behaviours(args.talk_ms))
            orch.warm_up(gen)
            before = wait_quiet(args.wait_quiet)
            spy = profile(orch.pid, args.duration, work / "profile.txt") if rate == args.profile_rate else None
            meter = Meter(orch.pid, client, args.pg_admin_url, args.db_name)
            meter.start()
            recs = gen.run(MIX, rate, args.duration)
            usage = meter.stop()
            out.append(rate_row(rate, recs, usage, before, leftovers(client)))
            print(out[-1], flush=True)
            if failures(recs):
                notes.append("- %.0f calls/s, failed calls: %s" % (rate, failures(recs)))
            if spy is not None:
                spy.wait(timeout=60)
                notes += ["", "py-spy on the orchestrator at %.0f calls/s (share of samples):" % rate, "", "```"]
                notes += top_functions(work / "profile.txt") + ["```"]
        finally:
            errors += orch.stop()
    if args.queue_rate > 0:
        orch = Orchestrator(env, work / "orchestrator-queue.log", code)
        try:
            out += queue(args, orch, client)
        finally:
            errors += orch.stop()
    if args.concurrent > 0:
        orch = Orchestrator(env, work / "orchestrator-concurrency.log", code)
        try:
            out += concurrency(args, orch, client)
        finally:
            errors += orch.stop()
    with psycopg2.connect(db_url) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM call_record")
        (history,) = cur.fetchone()
    out += notes
    out.append("- call history rows: %d; ERROR lines in the orchestrators' logs: %d (%s)" % (history, errors, work))
    write(args, out)
    return 0


def queue(args: argparse.Namespace, orch: Orchestrator, client: redis.Redis) -> list[str]:
    """More callers than the Hotline's 20 members can take: callers wait on hold; every
    member who hangs up is offered the next waiting caller."""
    orch.warm_up(LoadGen(orch.address, behaviours(args.talk_ms)))
    gen = LoadGen(orch.address, behaviours(args.queue_talk_ms))
    before = wait_quiet(args.wait_quiet)
    spy = profile(orch.pid, args.queue_duration, Path(args.work) / "profile-queue.txt") if args.profile_queue else None
    meter = Meter(orch.pid, client, args.pg_admin_url, args.db_name)
    meter.start()
    recs = gen.run([(HOTLINE, 1.0)], args.queue_rate, args.queue_duration, drain_s=300.0)
    u = meter.stop()
    notes: list[str] = []
    if spy is not None:
        spy.wait(timeout=60)
        notes = ["", "py-spy on the orchestrator during the queue run (share of samples):", "", "```"]
        notes += top_functions(Path(args.work) / "profile-queue.txt") + ["```"]
    held = [r.held_ms / 1000.0 for r in recs if r.held_ms]
    n = max(1, len(recs))
    row = ("- queue: %d calls to the Hotline (20 members, longest idle, talk %.1f s) at %.0f calls/s: %d bridged, %d failed; "
           "%d waited on hold (up to %d at once, wait p50 %.1f s, max %.1f s); member free -> next waiting caller's bridge: "
           "%d: p50 / p99 / max %s ms; orchestrator %.1f ms CPU/call (%.0f%% of a core), Redis %.1f ms/call; machine busy before %.0f%%, "
           "during %.0f%%; left in Redis: %s") % (
        len(recs), args.queue_talk_ms / 1000.0, args.queue_rate, sum(r.bridged for r in recs), sum(1 for r in recs if r.error),
        len(held), gen.max_holding, percentile(held, 50), max(held, default=0.0), len(gen.freed_to_offer_ms), ms(gen.freed_to_offer_ms),
        1000.0 * u.orch_s / n, 100.0 * u.orch_s / u.wall_s, 1000.0 * u.redis_s / n, before, u.machine_pct, leftovers(client))
    print(row, flush=True)
    return ["", row] + notes


def concurrency(args: argparse.Namespace, orch: Orchestrator, client: redis.Redis) -> list[str]:
    n, ramp_s, pid = args.concurrent, args.concurrent / args.ramp_rate, orch.pid
    end = [0.0]
    orch.warm_up(LoadGen(orch.address, behaviours(args.talk_ms)))
    gen = LoadGen(orch.address, behaviours(0.0, lambda: end[0]), idle_timeout_s=ramp_s + args.hold + 120)
    meter = Meter(pid, client, args.pg_admin_url, args.db_name)
    before = wait_quiet(args.wait_quiet)
    base_rss = proc_rss_kb(pid)
    end[0] = time.perf_counter() + ramp_s + 1.0 + args.hold
    meter.start()
    job = gevent.spawn(gen.run, [(HOLD_LINE, 1.0)], args.ramp_rate, ramp_s, ramp_s + args.hold + 120)
    gevent.sleep(ramp_s + 1.0)
    hold0 = (time.perf_counter(), proc_cpu_s(pid))
    talking, plateau_rss = 0, 0
    while time.perf_counter() < end[0] - 0.5:
        gevent.sleep(0.5)
        plateau_rss = max(plateau_rss, proc_rss_kb(pid))
        talking = max(talking, gen.active)
    hold_cpu = (proc_cpu_s(pid) - hold0[1]) / (time.perf_counter() - hold0[0])
    recs = job.get()
    usage = meter.stop()
    bridged = sum(r.bridged for r in recs)
    per_call = (plateau_rss - base_rss) / max(1, talking)
    row = ("- concurrency: %d calls to the employee line at %.0f calls/s, all talking for %.0f s: %d bridged, %d failed, "
           "%d connections open at once; orchestrator RSS %.1f MiB before, %.1f MiB with them up: %.1f KiB per concurrent call; "
           "CPU while they only talk %.0f%% of a core; whole run orchestrator %.1f ms CPU/call, loadgen %.1f ms/call, "
           "loadgen peak RSS %.1f MiB; left in Redis: %s; machine busy before %.0f%%") % (
        n, args.ramp_rate, args.hold, bridged, sum(1 for r in recs if r.error), talking, base_rss / 1024.0, plateau_rss / 1024.0,
        per_call, 100.0 * hold_cpu, 1000.0 * usage.orch_s / max(1, n), 1000.0 * usage.gen_s / max(1, n),
        proc_rss_kb(os.getpid()) / 1024.0, leftovers(client), before)
    print(row, flush=True)
    return ["", row]


def commit_of(code: Path) -> str:
    marker = code / ".commit"
    if marker.exists():
        return marker.read_text().strip()[:12]
    done = subprocess.run(["git", "-C", str(code), "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run(["git", "-C", str(code), "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True).stdout
    return (done.stdout.strip() or "unknown") + (" with uncommitted changes" if dirty.strip() else "")


def write(args: argparse.Namespace, rows: list[str]) -> None:
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines() if ln.startswith("model name")), "?")
    head = [
        "", "## %s department_bench (%s, nproc %d, %s, Python %s)" % (
            datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), platform.machine(), os.cpu_count() or 0, cpu, platform.python_version()),
        "",
        "`.venv/bin/python bench/department_bench.py --rates %s --duration %.0f --talk-ms %.0f --queue-rate %.0f --queue-duration %.0f "
        "--concurrent %d --ramp-rate %.0f --hold %.0f --log-level %s --nice %d%s%s`" % (
            args.rates, args.duration, args.talk_ms, args.queue_rate, args.queue_duration, args.concurrent, args.ramp_rate, args.hold, args.log_level, args.nice,
            " --profile-rate %.0f" % args.profile_rate if args.profile_rate else "", " --profile-queue" if args.profile_queue else ""),
        "",
        "Orchestrator code: commit %s. One orchestrator process (a fresh one per run; PostgreSQL and Redis on this "
        "machine); the load generator (bench/loadgen.py) in the benchmark process. Latencies are measured by the load "
        "generator on the wire." % commit_of(Path(args.code)),
        "",
    ]
    text = "\n".join(head + rows) + "\n"
    print(text)
    if not args.no_write:
        with open(args.results, "a", encoding="utf-8") as fh:
            fh.write(text)


if __name__ == "__main__":
    raise SystemExit(main())
