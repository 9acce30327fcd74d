"""Department offers on a real FreeSWITCH 1.10.12: ours against mod_callcenter.

Starts a private FreeSWITCH with our overlay (tests/realfs harness: ``pbx-fs-install``
into a copy of its configuration, free ports), our orchestrator (with the presence
watcher on) and the admin app's SIP directory, on real PostgreSQL and Redis; ten sipp
members (each registered twice: as ``2xx@`` our tenant's domain, through our directory,
and as ``2xx@cc.bench.test``, a static directory for mod_callcenter's agents); a sipp
carrier. mod_callcenter is configured in the instance's configuration copy with the
same workload: queues ``longest-idle-agent`` (wrap-up 0, hold music) and ``ring-all``,
agents ``user/2xx@cc.bench.test``. Ours and mod_callcenter run alternately, round by
round, in one run.

Figures come from FreeSWITCH's own events (inbound ESL, ``Event-Date-Timestamp``, us):

* offer: the caller's CHANNEL_CREATE (its INVITE) -> the member leg's CHANNEL_CREATE
  (FreeSWITCH creates the leg and sends its INVITE at once), all members free;
Event timestamps are made exact to the ms with ``1ms-timer`` in this instance
(:func:`fine_clock`; FreeSWITCH's default stamps are 20 ms ticks).

* re-offer: one member, two callers; the member hangs up the first call (its BYE:
  the member leg's CHANNEL_HANGUP, sip_hangup_disposition recv_bye) -> the waiting
  caller's member leg CHANNEL_CREATE;
* 20 calls/s: 20 calls 50 ms apart into ten members; per call, its CHANNEL_CREATE ->
  its member leg's CHANNEL_CREATE (calls and member legs paired in order: both queues
  are first come, first served);
* ring all: ten members; first -> last member leg CHANNEL_CREATE of the call.

Every loop is bounded in count and time; all traffic is on 127.0.0.1/127.0.0.2.
Appends a section to bench/results.md (``--no-write``: print only).

    python bench/realfs_bench.py [--rounds 5] [--no-write]
"""
from __future__ import annotations

import argparse
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

import redis  # noqa: E402
import yaml  # noqa: E402

from tests.realfs.conftest import CARRIER_IP, Process, _directory_answers  # noqa: E402
from tests.realfs.fs_harness import EslEvents, PrivateFreeSwitch, find_prefix, free_port, free_udp_port, wait_until  # noqa: E402
from tests.realfs.sipp import Sipp, carrier_scenario, member_scenario, register_scenario  # noqa: E402

DOMAIN = "realfs-bench.pbx.test"
CC_DOMAIN = "cc.bench.test"
CC_PASSWORD = "cc-bench-%s" % os.urandom(4).hex()
MEMBERS = ["2%02d" % i for i in range(1, 11)]
NUMBERS = {"q1": "+74953330001", "q10": "+74953330002", "ring": "+74953330003"}
SETTLE = 60.0
ANSWER_MS, TALK_MS = 100, 300  # members answer after 100 ms, talk 300 ms, then hang up themselves


def tenant_yaml() -> str:
    employees = [{"name": "Member %s" % e, "extension": e} for e in MEMBERS]
    def queue() -> dict[str, object]:
        return {"music": "local_stream://moh", "max_wait": 120}
    departments = [
        {"name": "One", "extension": "501", "strategy": "longest_idle", "ring_seconds": 15, "no_answer_timeout": 60,
         "wrapup_seconds": 0, "queue": queue(), "members": [{"employee": MEMBERS[0]}]},
        {"name": "Ten", "extension": "502", "strategy": "longest_idle", "ring_seconds": 15, "no_answer_timeout": 60,
         "wrapup_seconds": 0, "queue": queue(), "members": [{"employee": e} for e in MEMBERS]},
        {"name": "All", "extension": "503", "strategy": "ring_all", "ring_seconds": 15, "no_answer_timeout": 20,
         "wrapup_seconds": 0, "members": [{"employee": e} for e in MEMBERS]},
    ]
    numbers = [{"number": NUMBERS[k], "mode": "always", "work": {"department": ext}}
               for k, ext in (("q1", "501"), ("q10", "502"), ("ring", "503"))]
    return yaml.safe_dump({"tenant": {"name": "RealFS Bench", "sip_domain": DOMAIN, "timezone": "UTC",
                                      "max_concurrent_calls": 0},
                           "employees": employees, "departments": departments, "numbers": numbers}, sort_keys=False)


# ----------------------------------------------------------------- mod_callcenter config


def callcenter_conf() -> str:
    agents, tiers = [], []
    for e in MEMBERS:
        agents.append('<agent name="cc%s" type="callback" contact="[leg_timeout=15]user/%s@%s" status="Available" '
                      'max-no-answer="0" wrap-up-time="0" reject-delay-time="0" busy-delay-time="0" '
                      'no-answer-delay-time="0"/>' % (e, e, CC_DOMAIN))
        for q in ("q10", "ring"):
            tiers.append('<tier agent="cc%s" queue="%s@%s" level="1" position="1"/>' % (e, q, CC_DOMAIN))
    tiers.append('<tier agent="cc%s" queue="q1@%s" level="1" position="1"/>' % (MEMBERS[0], CC_DOMAIN))

    def queue(name: str, strategy: str) -> str:
        return ('<queue name="%s@%s"><param name="strategy" value="%s"/>'
                '<param name="moh-sound" value="local_stream://moh"/><param name="time-base-score" value="system"/>'
                '<param name="max-wait-time" value="0"/><param name="max-wait-time-with-no-agent" value="0"/>'
                '<param name="tier-rules-apply" value="false"/><param name="discard-abandoned-after" value="60"/>'
                '<param name="abandoned-resume-allowed" value="false"/></queue>' % (name, CC_DOMAIN, strategy))

    return ('<configuration name="callcenter.conf" description="CallCenter"><settings/><queues>%s%s%s</queues>'
            '<agents>%s</agents><tiers>%s</tiers></configuration>\n'
            % (queue("q1", "longest-idle-agent"), queue("q10", "longest-idle-agent"), queue("ring", "ring-all"),
               "".join(agents), "".join(tiers)))


def static_directory() -> str:
    from admin.directory import DIAL_STRING

    users = "".join('<user id="%s"><params><param name="password" value="%s"/></params></user>' % (e, CC_PASSWORD)
                    for e in MEMBERS)
    # FreeSWITCH's preprocessor drops the whole line holding <include> / </include>.
    return ('<include>\n<domain name="%s"><params><param name="dial-string" value="%s"/></params>'
            '<groups><group name="default"><users>%s</users></group></groups></domain>\n</include>\n'
            % (CC_DOMAIN, DIAL_STRING, users))


def fine_clock(conf: Path) -> None:
    """``1ms-timer``: event timestamps to the ms. FreeSWITCH 1.10.12 stamps events with
    switch_micro_time_now(), the core timer's last tick (switch_time.c): 20 ms by default
    (switch_core.c microseconds_per_tick = 20000; 10 ms once a 10 ms media timer runs),
    which made every figure a multiple of 20 ms. Set in this instance only, for both."""
    switch_conf = conf / "autoload_configs" / "switch.conf.xml"
    text = switch_conf.read_text(encoding="utf-8")
    # The stock sessions-per-second (30) answers the burst's INVITEs beyond 30 new
    # channels a second (a caller and a member leg each) with "503 Maximum Calls In
    # Progress": raised here, in this instance only, for both.
    text = re.sub(r'<param name="sessions-per-second" value="\d+"/>', '<param name="sessions-per-second" value="1000"/>', text)
    switch_conf.write_text(text.replace("<settings>", '<settings>\n    <param name="1ms-timer" value="true"/>', 1),
                           encoding="utf-8")


def add_callcenter(conf: Path) -> None:
    """mod_callcenter's queues, the static directory of its agents, and ``cc-<queue>``
    numbers in context public (before our socket extension) -> ``callcenter``."""
    (conf / "autoload_configs" / "callcenter.conf.xml").write_text(callcenter_conf(), encoding="utf-8")
    (conf / "directory" / "cc_bench.xml").write_text(static_directory(), encoding="utf-8")
    modules = conf / "autoload_configs" / "modules.conf.xml"
    text = modules.read_text(encoding="utf-8")
    if '<load module="mod_callcenter"/>' not in text:
        modules.write_text(text.replace("</modules>", '<load module="mod_callcenter"/>\n</modules>'), encoding="utf-8")
    for path in (conf / "dialplan").rglob("*.xml"):
        text = path.read_text(encoding="utf-8")
        if '<extension name="pbx_public">' in text:
            cc = ('<extension name="cc_bench"><condition field="destination_number" expression="^cc-(q1|q10|ring)$">'
                  '<action application="answer"/><action application="callcenter" data="$1@%s"/></condition></extension>\n'
                  '    <extension name="pbx_public">' % CC_DOMAIN)
            path.write_text(text.replace('<extension name="pbx_public">', cc, 1), encoding="utf-8")
            return
    raise RuntimeError("no pbx_public extension found in %s/dialplan" % conf)


# ----------------------------------------------------------------- events


class BenchEvents(EslEvents):
    """The harness's event socket, also recording HANGUP_COMPLETE / UNBRIDGE /
    EXECUTE_COMPLETE stamps and which caller a member leg serves."""

    EVENTS = EslEvents.EVENTS + " CHANNEL_HANGUP_COMPLETE CHANNEL_UNBRIDGE CHANNEL_EXECUTE_COMPLETE"

    def __init__(self, *a, **kw) -> None:  # type: ignore[no-untyped-def]
        self.stamps: dict[str, list[tuple[str, float, str]]] = {}
        self.caller_of: dict[str, str] = {}
        super().__init__(*a, **kw)

    def _on_event(self, ev) -> None:  # type: ignore[no-untyped-def]
        uuid = ev.get("Unique-ID") or ""
        stamp = int(ev.get("Event-Date-Timestamp") or "0") / 1e6
        self.stamps.setdefault(uuid, []).append((ev.name, stamp, ev.get("Application") or ""))
        if uuid not in self.caller_of:
            for other in (ev.get("variable_cc_member_session_uuid"), ev.get("Other-Leg-Unique-ID"), ev.get("Channel-Call-UUID")):
                if other and other != uuid:
                    self.caller_of[uuid] = other
                    break
        super()._on_event(ev)

    def first(self, uuid: str, name: str, app: str = "") -> float | None:
        for n, t, a in self.stamps.get(uuid, []):
            if n == name and (not app or a == app):
                return t
        return None


# ----------------------------------------------------------------- the stack


class Bench:
    def __init__(self, prefix: Path, workdir: Path) -> None:
        self.workdir = workdir
        self.fs = PrivateFreeSwitch(prefix, workdir / "fs")
        self.fs.workdir.mkdir(parents=True)
        self.procs: list[Process] = []
        self.sipps: list[Sipp] = []
        self.esl: BenchEvents | None = None

    def start(self, pg_url: str, redis_url: str) -> None:
        from sqlalchemy import select

        from orchestrator.db.engine import make_engine, make_session_factory
        from orchestrator.db.migrate import upgrade
        from orchestrator.db.models import Tenant
        from orchestrator.tenant_doc import import_tenant

        engine = make_engine(pg_url)
        upgrade(engine)
        with make_session_factory(engine)() as session:
            if session.scalar(select(Tenant.id).where(Tenant.sip_domain == DOMAIN)) is None:
                import_tenant(session, tenant_yaml())
                session.commit()
        engine.dispose()
        redis.Redis.from_url(redis_url).flushdb()
        orchestrator_port, admin_port, directory_port = free_port(), free_port(), free_port()
        password = "dir-%s" % os.urandom(8).hex()
        self.directory_url = "http://127.0.0.1:%d/freeswitch/directory" % directory_port
        env = {k: v for k, v in os.environ.items() if not k.startswith("PBX_")}
        env.update(DATABASE_URL=pg_url, REDIS_URL=redis_url, PBX_ENV="test", PBX_DATA_DIR=str(self.workdir),
                   PBX_ESL_ADDRESS="127.0.0.1:%d" % self.fs.esl_port, PBX_ESL_PASSWORD=self.fs.esl_password,
                   PBX_PRESENCE_ESL="127.0.0.1:%d" % self.fs.esl_port, PBX_RECORDINGS_DIR=str(self.fs.recordings / "pbx"),
                   PBX_ADMIN_LISTEN="127.0.0.1:%d" % admin_port, PBX_DIRECTORY_LISTEN="127.0.0.1:%d" % directory_port,
                   PBX_DIRECTORY_USER="freeswitch", PBX_DIRECTORY_PASSWORD=password)
        self.env = env
        self.fs.install("127.0.0.1:%d" % orchestrator_port, self.directory_url, "freeswitch:" + password, [CARRIER_IP + "/32"])
        add_callcenter(self.fs.conf)
        fine_clock(self.fs.conf)
        exported = subprocess.run([sys.executable, "-c", "import sys; from orchestrator.tenant_cli import main; sys.exit(main())",
                                   "export", DOMAIN, "--with-secrets"], env=env, capture_output=True, text=True, timeout=120)
        if exported.returncode != 0:
            raise RuntimeError(exported.stderr)
        self.passwords = {str(e["extension"]): e["sip_password"] for e in yaml.safe_load(exported.stdout)["employees"]}
        self.procs.append(Process("admin", "import sys; from admin.cli import main; sys.exit(main())", [], env, self.workdir))
        orch = Process("orchestrator", "import sys; from orchestrator.cli import orchestrator_main; sys.exit(orchestrator_main())",
                       ["--listen", "127.0.0.1:%d" % orchestrator_port], env, self.workdir)
        self.procs.append(orch)
        orch.read_line_containing("listening on", 90)
        wait_until(lambda: _directory_answers(self.directory_url, "freeswitch:" + password), 90, "the directory", step=0.2)
        self.fs.start().close()
        self.esl = BenchEvents(self.fs.esl_port, self.fs.esl_password)
        self.members()

    def members(self) -> None:
        """Ten sipp members, each registered in both directories."""
        remote = "127.0.0.1:%d" % self.fs.sip_port
        pdir = self.workdir / "phones"
        pdir.mkdir(exist_ok=True)
        for e in MEMBERS:
            port = free_udp_port()
            self.sipps.append(Sipp(pdir, "member-%s" % e, member_scenario(ANSWER_MS, TALK_MS), remote, "127.0.0.1", port,
                                   calls=None, timeout_s=3600))
            for domain, pw, contact in ((DOMAIN, self.passwords[e], e), (CC_DOMAIN, CC_PASSWORD, "cc" + e)):
                reg = Sipp(pdir, "reg-%s-%s" % (e, domain), register_scenario(e, domain, pw, port, contact_user=contact),
                           remote, "127.0.0.1",
                           free_udp_port(), calls=1, timeout_s=60)
                if reg.wait(timeout=90) != 0:
                    raise RuntimeError("member %s@%s did not register: %s" % (e, domain, reg.log.read_text()[-1500:]))

    def call(self, number: str, hold_ms: int = 6000) -> Sipp:
        cdir = self.workdir / "carrier"
        cdir.mkdir(exist_ok=True)
        n = len(self.sipps)
        sipp = Sipp(cdir, "carrier-%d" % n, carrier_scenario(number, "+78121234567", self.fs.sip_port, hold_ms),
                    "127.0.0.1:%d" % self.fs.sip_port, CARRIER_IP, free_udp_port(CARRIER_IP), calls=1, timeout_s=60)
        self.sipps.append(sipp)
        return sipp

    def stop(self) -> None:
        if self.esl is not None:
            self.esl.close()
        for s in self.sipps:
            s.stop()
        self.fs.stop()
        for p in self.procs:
            p.stop()


# ----------------------------------------------------------------- scenarios


def callers(esl: BenchEvents, number: str) -> list:  # type: ignore[type-arg]
    return esl.legs_where(lambda l: l.direction == "inbound" and l.destination == number)


def member_legs(esl: BenchEvents) -> list:  # type: ignore[type-arg]
    # Our legs reach the member's Contact sip:2xx@, mod_callcenter's sip:cc2xx@ (Bench.members).
    return esl.legs_where(lambda l: l.direction == "outbound" and re.match(r"sofia/pbx/(cc)?2\d\d@", l.name) is not None)


def quiet(bench: Bench) -> None:
    """Bounded wait until no channel is up (the previous scenario's calls ended)."""
    esl = bench.esl
    assert esl is not None
    wait_until(lambda: all(l.hungup is not None for l in esl.legs.values()), SETTLE, "all channels ended", step=0.1)
    time.sleep(0.3)  # the members' BYE transactions and the presence watcher settle
    esl.clear()
    esl.stamps.clear()
    esl.caller_of.clear()


def offer(bench: Bench, number: str) -> float:
    esl = bench.esl
    assert esl is not None
    quiet(bench)
    bench.call(number, hold_ms=300)
    (a,) = esl.wait_for(lambda: callers(esl, number), SETTLE, "the caller")
    (m, *_) = esl.wait_for(lambda: member_legs(esl), SETTLE, "a member leg")
    esl.wait_for(lambda: a.hungup is not None, SETTLE, "the call's end")
    return (m.created - a.created) * 1000


def reoffer(bench: Bench, number: str) -> tuple[float, dict[str, float]]:
    esl = bench.esl
    assert esl is not None
    quiet(bench)
    bench.call(number, hold_ms=6000)
    esl.wait_for(lambda: len(member_legs(esl)) == 1, SETTLE, "the first member leg")
    bench.call(number, hold_ms=6000)
    esl.wait_for(lambda: len(callers(esl, number)) == 2, SETTLE, "the second caller")
    first, second = esl.wait_for(lambda: len(member_legs(esl)) >= 2 and member_legs(esl)[:2], SETTLE, "the re-offer")
    esl.wait_for(lambda: first.hungup is not None, SETTLE, "the member's BYE")
    b = callers(esl, number)[1]
    parts = {"hangup_complete": esl.first(first.uuid, "CHANNEL_HANGUP_COMPLETE"),
             "hold_music_ended": esl.first(b.uuid, "CHANNEL_EXECUTE_COMPLETE", "playback"),
             "bridge_executed": esl.first(b.uuid, "CHANNEL_EXECUTE", "bridge")}
    bye = first.hungup or 0.0
    esl.wait_for(lambda: all(l.hungup is not None for l in esl.legs.values()), SETTLE, "both calls' end")
    return (second.created - bye) * 1000, {k: (v - bye) * 1000 for k, v in parts.items() if v}


def burst(bench: Bench, number: str, calls: int = 20, every_s: float = 0.05) -> list[float]:
    esl = bench.esl
    assert esl is not None
    quiet(bench)
    start = time.monotonic()
    for i in range(calls):
        delay = start + i * every_s - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        bench.call(number, hold_ms=6000)
    try:
        esl.wait_for(lambda: len(callers(esl, number)) >= calls, 5.0, "every call of the burst")
    except AssertionError:
        print("burst: %d of %d calls reached FreeSWITCH" % (len(callers(esl, number)), calls), flush=True)
    cs = callers(esl, number)
    esl.wait_for(lambda: len(member_legs(esl)) >= len(cs), 3 * SETTLE, "a member leg for every call")
    legs = member_legs(esl)
    by_caller = {}
    for leg in legs:
        by_caller.setdefault(esl.caller_of.get(leg.uuid, ""), leg)
    out = []
    for i, a in enumerate(cs):
        leg = by_caller.get(a.uuid) or legs[i]
        out.append((leg.created - a.created) * 1000)
    esl.wait_for(lambda: all(l.hungup is not None for l in esl.legs.values()), 3 * SETTLE, "the burst's end")
    return out


def ring_all(bench: Bench, number: str) -> float:
    esl = bench.esl
    assert esl is not None
    quiet(bench)
    bench.call(number, hold_ms=6000)
    esl.wait_for(lambda: len(member_legs(esl)) >= 2, SETTLE, "the members' legs")
    esl.wait_for(lambda: all(l.hungup is not None for l in esl.legs.values()), SETTLE, "the call's end")
    legs = member_legs(esl)
    if len(legs) < len(MEMBERS):
        print("ring all (%s): %d of %d members rung" % (number, len(legs), len(MEMBERS)), flush=True)
    return (legs[-1].created - legs[0].created) * 1000


# ----------------------------------------------------------------- report


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))] if s else float("nan")


def run(rounds: int, write: bool) -> str:
    prefix, why = find_prefix()
    if prefix is None:
        raise SystemExit("no FreeSWITCH: " + why)
    import tempfile

    workdir = Path(tempfile.mkdtemp(prefix="realfs-bench-"))
    pg = os.environ.get("PBX_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    rd = os.environ.get("PBX_BENCH_REDIS_URL", "redis://127.0.0.1:6379/6")
    bench = Bench(prefix, workdir)
    figures: dict[tuple[str, str], list[float]] = {}
    parts: list[dict[str, float]] = []

    def add(metric: str, who: str, values: list[float]) -> None:
        figures.setdefault((metric, who), []).extend(values)

    try:
        bench.start(pg, rd)
        for r in range(rounds):
            for who, num in (("ours", NUMBERS), ("cc", {k: "cc-" + k for k in NUMBERS})):
                add("offer", who, [offer(bench, num["q10"]) for _ in range(3)])
                value, detail = reoffer(bench, num["q1"])
                add("reoffer", who, [value])
                if who == "ours":
                    parts.append(detail)
                add("burst", who, burst(bench, num["q10"]))
                add("ringall", who, [ring_all(bench, num["ring"])])
                print("round %d %s done" % (r + 1, who), flush=True)
    finally:
        bench.stop()
    names = {"offer": "offer to a free member (caller INVITE -> member INVITE)",
             "reoffer": "re-offer (member BYE -> next waiting caller's member INVITE)",
             "burst": "20 calls/s, call created -> member INVITE",
             "ringall": "ring all 10 members: first -> last INVITE"}
    lines = ["", "## %s realfs_bench (%s, nproc %d, FreeSWITCH 1.10.12 at %s, %d rounds)" % (
        time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), platform.machine(), os.cpu_count() or 0, prefix, rounds), "",
        "Ours and mod_callcenter alternately in one run (same sipp members; bench/realfs_bench.py). "
        "ms from FreeSWITCH's event timestamps; ratio = ours / mod_callcenter medians.", "",
        "| metric (ms) | mod_callcenter med / p90 (n) | ours med / p90 / max (n) | ratio |", "|---|---|---|---|"]
    for key, label in names.items():
        cc, ours = figures.get((key, "cc"), []), figures.get((key, "ours"), [])
        ratio = statistics.median(ours) / statistics.median(cc) if cc and ours and statistics.median(cc) > 0 else float("nan")
        lines.append("| %s | %.0f / %.0f (%d) | %.0f / %.0f / %.0f (%d) | %.2f |" % (
            label, pct(cc, 50), pct(cc, 90), len(cc), pct(ours, 50), pct(ours, 90), max(ours) if ours else float("nan"),
            len(ours), ratio))
    if parts:
        keys = sorted({k for p in parts for k in p})
        lines += ["", "Ours, re-offer, ms after the member's BYE (median over rounds): " + ", ".join(
            "%s %.0f" % (k, statistics.median([p[k] for p in parts if k in p])) for k in keys)]
    text = "\n".join(lines) + "\n"
    print(text)
    if write:
        with open(HERE / "results.md", "a", encoding="utf-8") as f:
            f.write(text)
    return text


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=5, help="rounds (each: ours, then mod_callcenter), 1..50")
    p.add_argument("--no-write", action="store_true", help="print the figures only")
    args = p.parse_args(argv)
    run(max(1, min(50, args.rounds)), not args.no_write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
