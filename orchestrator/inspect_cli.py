"""``pbx-inspect``: what the orchestrators hold in Redis right now, for support engineers.

    pbx-inspect calls [--tenant ID] [--json]   live calls (caller, destination, age)
    pbx-inspect tenants [--json]               tenants with live calls, and their count
    pbx-inspect versions [--tenant ID]         routing data versions (cache invalidation)
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


def main(argv: list[str] | None = None, out: TextIO = sys.stdout, client: Any = None) -> int:
    parser = argparse.ArgumentParser(prog="pbx-inspect", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["calls", "tenants", "versions", "keys"])
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
        parser.error("keys needs --tenant")
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
