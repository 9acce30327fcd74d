"""``pbx-inspect``: what the orchestrators hold in Redis right now, for support engineers.

    pbx-inspect calls [--tenant T] [--json]   live calls (caller, destination, age)
    pbx-inspect tenants [--json]              tenants with live calls, and their count
    pbx-inspect versions [--tenant T] [--json]  routing data versions (cache invalidation)
    pbx-inspect members --tenant T [--json]   department members by extension and name:
                                              offer, wrap-up, pause, busy channels, calls
                                              and talk time today
    pbx-inspect queues --tenant T [--json]    callers waiting on hold, per department
    pbx-inspect callbacks --tenant T [--json] open callbacks from the queues
    pbx-inspect keys --tenant T [--json]      every Redis key of one tenant
    pbx-inspect check --tenant T [--fix] [--json] [--esl HOST:PORT ...]
                                              Redis against FreeSWITCH's live channels

``--tenant`` takes the tenant's id or its SIP domain (``demo.pbx.local``; looked up in
the database, enabled tenants). Names of members and departments come from the tenant's
routing data in the database (DATABASE_URL); without it members show by id only.

``--json`` prints one object, the same shape for every subcommand::

    {"tenant": {"id": 1, "name": "Demo Trading LLC", "sip_domain": "demo.pbx.local"} or null,
     "items": [ {...}, ... ]}

``tenant`` is null when the command covers every tenant (``calls``/``versions`` without
``--tenant``, ``tenants``); ``name``/``sip_domain`` are null when the database cannot
say. ``check`` adds ``"freeswitch": {"asked", "servers", "listed", "error"}``,
``"fix"`` (bool), ``"checked"`` (the fault kinds looked for) and ``"hung_up"`` (legs of
lost callback attempts hung up by ``--fix``); each item is one fault: ``kind``,
``subject``, ``detail``, ``employee`` ({id, extension, name} or null), ``department``
({id, name} or null) and ``fixed`` (what ``--fix`` changed, or null).

``check`` looks for: call_lease_expired, offer_lease_expired, queue_lease_expired,
callback_dialing_expired, offer_without_callback (Redis alone) and, when FreeSWITCH
answers, call_without_channel, offer_without_call, talk_leg_gone,
busy_without_channel, queue_caller_gone (see orchestrator/store/check.py). ``--fix``
repairs with the orchestrator's own operations and publishes the members-free notice.
FreeSWITCH is asked at PBX_ESL_ADDRESS and every PBX_PRESENCE_ESL server (or ``--esl``),
with PBX_ESL_PASSWORD; when it cannot be asked no channel is ever taken for gone.
Exit codes of ``check``: 0 consistent (or all repaired), 1 faults left, 2 nothing could
be checked (Redis unreachable, unknown tenant), 3 FreeSWITCH not asked and no fault
left. Other subcommands: 0, or 2 when Redis or the tenant cannot be read.

Reads REDIS_URL (or the embedded Redis of PBX_DATA_DIR, as the other commands do).
Only ``check --fix`` changes live state.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any, Callable, Sequence, TextIO

import redis

from orchestrator import config
from orchestrator.errors import ConfigError
from orchestrator.inspect_tenant import CannotInspect, Directory, Tenant, directory_from
from orchestrator.member_offers import utc_days
from orchestrator.store.agents import AgentStore
from orchestrator.store.check import redis_now_ms, scan_ids
from orchestrator.store.redis_store import CallStore, RoutingVersions, tenant_tag

EXIT_CANNOT = 2


def _now_ms() -> int:
    return int(time.time() * 1000)


_redis_ms = redis_now_ms  # the name tests/test_redis_store.py uses


def _age(started_ms: str | None, now_ms: int) -> str:
    if not started_ms or not started_ms.isdigit():
        return "?"
    seconds = max(0, (now_ms - int(started_ms)) // 1000)
    return "%d:%02d" % divmod(seconds, 60)


def _employee_text(t: Tenant, emp: int) -> str:
    e = t.employee(emp)
    return "%s %s" % (e["extension"], e["name"]) if e["extension"] else "#%d" % emp


def _department_text(t: Tenant, dep: int) -> str:
    d = t.department(dep)
    return "%d %s" % (dep, d["name"]) if d and d["name"] else "%d" % dep


# ------------------------------------------------------------------ collectors


def collect_calls(store: CallStore, tenant: int | None, now_ms: int) -> list[dict[str, Any]]:
    tenants = [tenant] if tenant is not None else store.active_tenants()
    rows = []
    for tenant_id in tenants:
        for uuid, facts in sorted(store.active_calls(tenant_id, now_ms).items()):
            rows.append({"tenant": tenant_id, "uuid": uuid, **facts, "age": _age(facts.get("started_ms"), now_ms)})
    return rows


def collect_members(client: Any, tenant: Tenant, now_ms: int) -> list[dict[str, Any]]:
    agents = AgentStore(client)
    ids = sorted(set(scan_ids(client, tenant.id, "agent")) | set(tenant.member_ids()))
    states = agents.states(tenant.id, ids, utc_days(now_ms, 1))
    rows = []
    for emp, s in sorted(states.items()):
        e = tenant.employee(emp)
        rows.append({
            "employee": emp, "extension": e["extension"], "name": e["name"], "departments": tenant.departments_of(emp),
            "offer": s.offer if s.offer_until_ms > now_ms else "",
            "offer_left_ms": max(0, s.offer_until_ms - now_ms) if s.offer else 0,
            "wrapup_left_ms": max(0, s.wrapup_until_ms - now_ms), "paused": s.paused, "missed": s.missed,
            "channels": s.channels, "calls_today": s.calls_today, "talk_s_today": s.talk_ms_today // 1000,
        })
    return rows


def collect_queues(client: Any, tenant: Tenant, now_ms: int) -> list[dict[str, Any]]:
    agents = AgentStore(client)
    return [{"department": dep, "department_name": (tenant.department(dep) or {}).get("name"), "place": n, "call": uuid,
             "waiting_s": max(0, now_ms - since) // 1000}
            for dep in scan_ids(client, tenant.id, "queue") for n, (uuid, since) in enumerate(agents.queue(tenant.id, dep), 1)]


def collect_callbacks(client: Any, tenant: Tenant, now_ms: int) -> list[dict[str, Any]]:
    from orchestrator.store.callbacks import CallbackStore

    return [{"id": cb.id, "department": cb.department_id, "department_name": (tenant.department(cb.department_id) or {}).get("name"),
             "caller": cb.caller, "status": cb.status, "attempts": cb.attempts,
             "waiting_s": max(0, now_ms - cb.created_ms) // 1000} for cb in CallbackStore(client).open(tenant.id)]


def collect_keys(client: Any, tenant: Tenant) -> list[dict[str, Any]]:
    pattern = "%s:*" % tenant_tag(tenant.id).replace("{", "\\{").replace("}", "\\}")
    keys = sorted(k.decode() if isinstance(k, bytes) else k for k in client.scan_iter(match=pattern, count=500))
    out = []
    for key in keys:
        kind = client.type(key)
        out.append({"key": key, "type": kind.decode() if isinstance(kind, bytes) else kind})
    return out


# ------------------------------------------------------------------ output


def _dump(out: TextIO, tenant: Tenant | None, items: list[dict[str, Any]], **extra: Any) -> None:
    json.dump({"tenant": tenant.as_json() if tenant else None, "items": items, **extra}, out, indent=2)
    out.write("\n")


def _text_calls(out: TextIO, rows: list[dict[str, Any]]) -> None:
    if not rows:
        out.write("no live calls\n")
        return
    out.write("%-7s %-38s %-16s %-16s %-9s %s\n" % ("TENANT", "CALL", "CALLER", "DESTINATION", "ENTRY", "AGE"))
    for r in rows:
        out.write("%-7s %-38s %-16s %-16s %-9s %s\n" % (r["tenant"], r["uuid"], r.get("caller", ""), r.get("destination", ""), r.get("entry", ""), r["age"]))


def _text_members(out: TextIO, tenant: Tenant, rows: list[dict[str, Any]]) -> None:
    if not rows:
        out.write("no member state for %s\n" % tenant.title())
        return
    out.write("%-24s %-38s %-7s %-7s %-6s %-6s %-5s %s\n" % ("EMPLOYEE", "OFFERED TO CALL", "WRAPUP", "PAUSED", "MISSED", "BUSY", "CALLS", "TALK"))
    for r in rows:
        who = "%s %s" % (r["extension"], r["name"]) if r["extension"] else "#%d" % r["employee"]
        out.write("%-24s %-38s %-7s %-7s %-6s %-6s %-5s %ds\n" % (
            who[:24], r["offer"] or "-", "%.1fs" % (r["wrapup_left_ms"] / 1000) if r["wrapup_left_ms"] else "-",
            "yes" if r["paused"] else "-", r["missed"], r["channels"] or "-", r["calls_today"], r["talk_s_today"]))


def _text_queues(out: TextIO, tenant: Tenant, rows: list[dict[str, Any]]) -> None:
    shown: set[int] = set()
    for r in rows:
        dep = r["department"]
        if dep not in shown:
            shown.add(dep)
            out.write("department %s: %d waiting\n" % (_department_text(tenant, dep), sum(1 for x in rows if x["department"] == dep)))
        out.write("  %d. %s waiting %ds\n" % (r["place"], r["call"], r["waiting_s"]))
    if not rows:
        out.write("nobody waiting in %s\n" % tenant.title())


def _text_callbacks(out: TextIO, tenant: Tenant, rows: list[dict[str, Any]]) -> None:
    if not rows:
        out.write("no open callbacks in %s\n" % tenant.title())
        return
    out.write("%-17s %-20s %-16s %-8s %-8s %s\n" % ("CALLBACK", "DEPARTMENT", "CALLER", "STATUS", "ATTEMPTS", "WAITING"))
    for r in rows:
        out.write("%-17s %-20s %-16s %-8s %-8s %ds\n" % (r["id"], _department_text(tenant, r["department"])[:20], r["caller"],
                                                       r["status"], r["attempts"], r["waiting_s"]))


# ------------------------------------------------------------------ check


def _check(args: argparse.Namespace, client: Any, tenant: Tenant, out: TextIO, err: TextIO, settings: Callable[[], config.Settings]) -> int:
    from orchestrator.inspect_check import FreeSwitch, run_check

    s = settings()
    servers = args.esl or list(dict.fromkeys([(s.esl_host, s.esl_port), *s.presence_esl]))
    with FreeSwitch(servers, s.esl_password, max(0.5, s.esl_command_timeout_ms / 1000.0)) as fs:
        result = run_check(client, tenant.id, fs, args.fix)
    fsa = result.freeswitch
    items = []
    for f in result.faults:
        items.append({"kind": f.kind, "subject": f.subject, "detail": f.detail,
                      "employee": tenant.employee(f.employee_id) if f.employee_id is not None else None,
                      "department": tenant.department(f.department_id), "fixed": result.changes.get(f.key)})
    code = result.exit_code(args.fix)
    if not fsa.asked:
        err.write("pbx-inspect: FreeSWITCH was not asked (%s): only what Redis alone can tell was checked (expired leases, "
                  "callback offers); nothing was taken for gone. Check PBX_ESL_ADDRESS / PBX_ESL_PASSWORD or pass --esl.\n"
                  % fsa.error)
    if args.json:
        _dump(out, tenant, items, freeswitch={"asked": fsa.asked, "servers": fsa.servers, "listed": fsa.listed,
                                              "error": fsa.error or None},
              fix=args.fix, checked=result.checked, hung_up=result.hung_up)
        return code
    out.write("%s: checked %s\n" % (tenant.title(), "Redis against FreeSWITCH %s (%d channels)" % (", ".join(fsa.servers), fsa.listed)
                                    if fsa.asked else "Redis only (FreeSWITCH not asked)"))
    if not items:
        out.write("no inconsistencies found\n")
    for item, f in zip(items, result.faults):
        who = " member %s:" % _employee_text(tenant, f.employee_id) if f.employee_id is not None else ""
        where = " department %s:" % _department_text(tenant, f.department_id) if f.department_id is not None else ""
        out.write("%-25s%s%s %s: %s\n" % (f.kind, who, where, f.subject, f.detail))
        if item["fixed"]:
            out.write("  fixed: %s\n" % item["fixed"])
        elif args.fix:
            out.write("  not changed (the state had moved on)\n")
    for leg in result.hung_up:
        out.write("hung up leg %s of a lost callback attempt\n" % leg)
    if items and not args.fix:
        out.write("%d inconsistenc%s; run with --fix to repair\n" % (len(items), "y" if len(items) == 1 else "ies"))
    return code


# ------------------------------------------------------------------ main


def _hostport(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError("expected HOST:PORT, got %r" % text[:80])
    return host or "127.0.0.1", int(port)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pbx-inspect", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["calls", "tenants", "versions", "members", "queues", "callbacks", "keys", "check"])
    parser.add_argument("--tenant", metavar="ID_OR_DOMAIN", help="tenant id or SIP domain")
    parser.add_argument("--json", action="store_true", help="machine-readable output (one object)")
    parser.add_argument("--fix", action="store_true", help="check: repair what was found")
    parser.add_argument("--esl", action="append", type=_hostport, metavar="HOST:PORT",
                        help="check: FreeSWITCH event socket(s) to ask (default PBX_ESL_ADDRESS and PBX_PRESENCE_ESL)")
    return parser


def main(argv: Sequence[str] | None = None, out: TextIO = sys.stdout, client: Any = None, directory: Directory | None = None,
         err: TextIO = sys.stderr) -> int:
    """``client`` / ``directory``: a caller that hands in its Redis client hands in the
    directory too (None then: tenants by id only, no names); by default both come from the
    environment (REDIS_URL, DATABASE_URL)."""
    parser = _parser()
    args = parser.parse_args(argv)
    if directory is None and client is not None:
        directory = Directory(None, "no database given")
    if args.fix and args.what != "check":
        parser.error("--fix is only for check")
    settings_cache: list[config.Settings] = []

    def settings() -> config.Settings:
        if not settings_cache:
            settings_cache.append(config.from_env())
        return settings_cache[0]

    try:
        if client is None:
            from orchestrator import wiring

            client = wiring.redis_client(wiring.resolve_redis_url(settings()))
        tenant: Tenant | None = None
        if args.tenant is not None:
            directory = directory if directory is not None else directory_from(settings())
            tenant = directory.resolve(args.tenant)
            for note in directory.notes:
                err.write("pbx-inspect: %s\n" % note)
        elif args.what not in ("calls", "tenants", "versions"):
            parser.error("%s needs --tenant (a tenant id or SIP domain)" % args.what)
        return _run(args, client, tenant, out, err, settings)
    except CannotInspect as exc:
        err.write("pbx-inspect: %s\n" % exc)
        return EXIT_CANNOT
    except ConfigError as exc:
        err.write("pbx-inspect: configuration: %s\n" % exc)
        return EXIT_CANNOT
    except redis.RedisError as exc:
        err.write("pbx-inspect: cannot read Redis (%s): nothing was checked. Is Redis running, and REDIS_URL right?\n" % exc)
        return EXIT_CANNOT


def _run(args: argparse.Namespace, client: Any, tenant: Tenant | None, out: TextIO, err: TextIO,
         settings: Callable[[], config.Settings]) -> int:
    store = CallStore(client)
    if args.what == "calls":
        rows = collect_calls(store, tenant.id if tenant else None, _now_ms())
        _dump(out, tenant, rows) if args.json else _text_calls(out, rows)
        return 0
    if args.what == "tenants":
        now = _now_ms()
        counts = {t: len(store.active_calls(t, now)) for t in store.active_tenants()}
        if args.json:
            _dump(out, None, [{"tenant": t, "live_calls": n} for t, n in sorted(counts.items())])
        else:
            for tenant_id, count in sorted(counts.items()):
                out.write("tenant %d: %d live call(s)\n" % (tenant_id, count))
            if not counts:
                out.write("no tenant has had a call since Redis started\n")
        return 0
    if args.what == "versions":
        versions = RoutingVersions(client)
        items: list[dict[str, Any]] = [{"what": "index", "tenant": None, "version": versions.index()}]
        for tenant_id in [tenant.id] if tenant else store.active_tenants():
            items.append({"what": "tenant", "tenant": tenant_id, "version": versions.tenant(tenant_id)})
        if args.json:
            _dump(out, tenant, items)
        else:
            for item in items:
                name = "index" if item["what"] == "index" else "tenant %d" % item["tenant"]
                out.write("%s: %s\n" % (name, "not published (Redis restarted?)" if item["version"] is None else item["version"]))
        return 0
    assert tenant is not None
    if args.what == "check":
        return _check(args, client, tenant, out, err, settings)
    now = redis_now_ms(client)  # offers, wrap-ups and callbacks are on Redis's clock
    if args.what == "members":
        rows = collect_members(client, tenant, now)
        _dump(out, tenant, rows) if args.json else _text_members(out, tenant, rows)
    elif args.what == "queues":
        rows = collect_queues(client, tenant, now)
        _dump(out, tenant, rows) if args.json else _text_queues(out, tenant, rows)
    elif args.what == "callbacks":
        rows = collect_callbacks(client, tenant, now)
        _dump(out, tenant, rows) if args.json else _text_callbacks(out, tenant, rows)
    else:
        rows = collect_keys(client, tenant)
        if args.json:
            _dump(out, tenant, rows)
        else:
            for r in rows:
                out.write("%s (%s)\n" % (r["key"], r["type"]))
            if not rows:
                out.write("no keys for %s\n" % tenant.title())
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
