"""``pbx-inspect``: what the orchestrators hold in Redis right now, for support engineers.

    pbx-inspect calls [--tenant ID] [--json]   live calls (caller, destination, age)
    pbx-inspect tenants [--json]               tenants with live calls, and their count
    pbx-inspect versions [--tenant ID]         routing data versions (cache invalidation)
    pbx-inspect members --tenant ID [--json]   department members: offer, wrap-up, pause,
                                               busy channels, calls and talk time today
    pbx-inspect queues --tenant ID [--json]    callers waiting on hold, per department
    pbx-inspect keys --tenant ID               every Redis key of one tenant

Reads REDIS_URL (or the embedded Redis of PBX_DATA_DIR, as the other commands do).
It only reads; it never changes live state.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any, TextIO

from orchestrator import config
from orchestrator.member_offers import utc_days
from orchestrator.store.agents import AgentStore
from orchestrator.store.redis_store import CallStore, RoutingVersions, tenant_tag


def _now_ms() -> int:
    return int(time.time() * 1000)


def _age(started_ms: str | None, now_ms: int) -> str:
    if not started_ms or not started_ms.isdigit():
        return "?"
    seconds = max(0, (now_ms - int(started_ms)) // 1000)
    return "%d:%02d" % divmod(seconds, 60)


def collect_calls(store: CallStore, tenant: int | None, now_ms: int) -> list[dict[str, Any]]:
    tenants = [tenant] if tenant is not None else store.active_tenants()
    rows = []
    for tenant_id in tenants:
        for uuid, facts in sorted(store.active_calls(tenant_id, now_ms).items()):
            rows.append({"tenant": tenant_id, "uuid": uuid, **facts, "age": _age(facts.get("started_ms"), now_ms)})
    return rows


def _scan_ids(client: Any, tenant: int, kind: str) -> list[int]:
    """Ids in the tenant's ``{t:T}:<kind>:<id>`` keys (members, queues)."""
    pattern = "%s:%s:*" % (tenant_tag(tenant).replace("{", "\\{").replace("}", "\\}"), kind)
    ids = set()
    for key in client.scan_iter(match=pattern, count=500):
        tail = (key.decode() if isinstance(key, bytes) else key).split(":%s:" % kind, 1)[1]
        if tail.isdigit():
            ids.add(int(tail))
    return sorted(ids)


def collect_members(client: Any, tenant: int, now_ms: int) -> list[dict[str, Any]]:
    agents = AgentStore(client)
    states = agents.states(tenant, _scan_ids(client, tenant, "agent"), utc_days(now_ms, 1))
    rows = []
    for emp, s in sorted(states.items()):
        rows.append({
            "employee": emp, "offer": s.offer if s.offer_until_ms > now_ms else "",
            "offer_left_ms": max(0, s.offer_until_ms - now_ms) if s.offer else 0,
            "wrapup_left_ms": max(0, s.wrapup_until_ms - now_ms), "paused": s.paused, "missed": s.missed,
            "channels": s.channels, "calls_today": s.calls_today, "talk_s_today": s.talk_ms_today // 1000,
        })
    return rows


def collect_queues(client: Any, tenant: int, now_ms: int) -> dict[int, list[dict[str, Any]]]:
    agents = AgentStore(client)
    return {dep: [{"call": uuid, "waiting_s": max(0, now_ms - since) // 1000} for uuid, since in agents.queue(tenant, dep)]
            for dep in _scan_ids(client, tenant, "queue")}


def collect_callbacks(client: Any, tenant: int, now_ms: int) -> list[dict[str, Any]]:
    from orchestrator.store.callbacks import CallbackStore

    return [{"id": cb.id, "department": cb.department_id, "caller": cb.caller, "status": cb.status, "attempts": cb.attempts,
             "waiting_s": max(0, now_ms - cb.created_ms) // 1000} for cb in CallbackStore(client).open(tenant)]


def _redis_ms(client: Any) -> int:
    sec, usec = client.time()
    return int(sec) * 1000 + int(usec) // 1000


def main(argv: list[str] | None = None, out: TextIO = sys.stdout, client: Any = None) -> int:
    parser = argparse.ArgumentParser(prog="pbx-inspect", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["calls", "tenants", "versions", "members", "queues", "callbacks", "keys"])
    parser.add_argument("--tenant", type=int)
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    args = parser.parse_args(argv)
    if client is None:
        from orchestrator import wiring

        client = wiring.redis_client(wiring.resolve_redis_url(config.from_env()))
    store = CallStore(client)
    now = _now_ms()
    if args.what == "calls":
        rows = collect_calls(store, args.tenant, now)
        if args.json:
            json.dump(rows, out, indent=2)
            out.write("\n")
        elif not rows:
            out.write("no live calls\n")
        else:
            out.write("%-7s %-38s %-16s %-16s %-9s %s\n" % ("TENANT", "CALL", "CALLER", "DESTINATION", "ENTRY", "AGE"))
            for r in rows:
                out.write("%-7s %-38s %-16s %-16s %-9s %s\n" % (r["tenant"], r["uuid"], r.get("caller", ""), r.get("destination", ""), r.get("entry", ""), r["age"]))
        return 0
    if args.what == "tenants":
        counts = {t: len(store.active_calls(t, now)) for t in store.active_tenants()}
        if args.json:
            json.dump(counts, out)
            out.write("\n")
        else:
            for tenant_id, count in sorted(counts.items()):
                out.write("tenant %d: %d live call(s)\n" % (tenant_id, count))
            if not counts:
                out.write("no tenant has had a call since Redis started\n")
        return 0
    if args.what == "versions":
        versions = RoutingVersions(client)
        data: dict[str, Any] = {"index": versions.index()}
        tenants = [args.tenant] if args.tenant is not None else store.active_tenants()
        for tenant_id in tenants:
            data["tenant %d" % tenant_id] = versions.tenant(tenant_id)
        if args.json:
            json.dump(data, out)
            out.write("\n")
        else:
            for key, value in data.items():
                out.write("%s: %s\n" % (key, "not published (Redis restarted?)" if value is None else value))
        return 0
    if args.tenant is None:
        parser.error("%s needs --tenant" % args.what)
    if args.what in ("members", "queues"):
        now = _redis_ms(client)  # offers and wrap-ups are on Redis's clock
        data_any: Any = collect_members(client, args.tenant, now) if args.what == "members" else collect_queues(client, args.tenant, now)
        if args.json:
            json.dump(data_any, out, indent=2)
            out.write("\n")
        elif args.what == "members":
            out.write("%-9s %-38s %-7s %-7s %-6s %-6s %-5s %s\n" % ("EMPLOYEE", "OFFERED TO CALL", "WRAPUP", "PAUSED", "MISSED", "BUSY", "CALLS", "TALK"))
            for r in data_any:
                out.write("%-9s %-38s %-7s %-7s %-6s %-6s %-5s %ds\n" % (
                    r["employee"], r["offer"] or "-", "%.1fs" % (r["wrapup_left_ms"] / 1000) if r["wrapup_left_ms"] else "-",
                    "yes" if r["paused"] else "-", r["missed"], r["channels"] or "-", r["calls_today"], r["talk_s_today"]))
            if not data_any:
                out.write("no member state for tenant %d\n" % args.tenant)
        else:
            for dep, callers in data_any.items():
                out.write("department %d: %d waiting\n" % (dep, len(callers)))
                for n, c in enumerate(callers, 1):
                    out.write("  %d. %s waiting %ds\n" % (n, c["call"], c["waiting_s"]))
            if not data_any:
                out.write("nobody waiting in tenant %d\n" % args.tenant)
        return 0
    if args.what == "callbacks":
        rows = collect_callbacks(client, args.tenant, _redis_ms(client))
        if args.json:
            json.dump(rows, out, indent=2)
            out.write("\n")
        elif not rows:
            out.write("no open callbacks in tenant %d\n" % args.tenant)
        else:
            out.write("%-17s %-10s %-16s %-8s %-8s %s\n" % ("CALLBACK", "DEPARTMENT", "CALLER", "STATUS", "ATTEMPTS", "WAITING"))
            for r in rows:
                out.write("%-17s %-10s %-16s %-8s %-8s %ds\n" % (r["id"], r["department"], r["caller"], r["status"], r["attempts"], r["waiting_s"]))
        return 0
    pattern = "%s:*" % tenant_tag(args.tenant).replace("{", "\\{").replace("}", "\\}")
    keys = sorted(k.decode() if isinstance(k, bytes) else k for k in client.scan_iter(match=pattern, count=500))
    for key in keys:
        kind = client.type(key)
        out.write("%s (%s)\n" % (key, kind.decode() if isinstance(kind, bytes) else kind))
    if not keys:
        out.write("no keys for tenant %d\n" % args.tenant)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
