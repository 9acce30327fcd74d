"""``pbx-explain``: what happens if CALLER calls DIALED at a given time, for one tenant.

    pbx-explain --tenant demo.pbx.local --from +78121234567 --to +74950000003 \\
                --at "2026-11-28 21:00" [--json]

``--at`` is the tenant's local time (default: now). Prints the decision chain (caller
rules, number, schedule interval or holiday, target) and what the target does step by
step, using the call-flow core of the live calls (``orchestrator.core.explain``). A
caller rule that needs a lookup asks what a live call would: the call history and the
tenant's CRM (within the rule's timeout); ``--no-lookups`` treats the caller as unknown
to both instead. Reads DATABASE_URL (default: the SQLite file of the settings), like the
other commands; it changes nothing.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime
from typing import Sequence, TextIO
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from orchestrator import config, wiring
from orchestrator.core.explain import explain
from orchestrator.errors import PbxError


def parse_local_time(text: str, tz_name: str) -> int:
    """``YYYY-MM-DD HH:MM`` in the tenant's time zone (unless it carries its own) -> epoch ms."""
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError("--at must look like 2026-11-28 21:00, got %r" % text) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=ZoneInfo(tz_name))
    return int(when.timestamp() * 1000)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pbx-explain", description=__doc__.split("\n\n")[0].strip("`"))
    parser.add_argument("--tenant", required=True, metavar="DOMAIN", help="the tenant's SIP domain")
    parser.add_argument("--from", dest="caller", default="", metavar="NUMBER", help="the caller's number")
    parser.add_argument("--to", dest="dialed", required=True, metavar="NUMBER",
                        help="the dialled number (or an extension with --internal)")
    parser.add_argument("--at", default=None, metavar="'YYYY-MM-DD HH:MM'", help="tenant's local time (default: now)")
    parser.add_argument("--internal", action="store_true",
                        help="a call from an employee's phone (--from EXTENSION) to an extension or, "
                             "dialled as on the phone, an outside number (*7<code>*<number>: with another number)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    parser.add_argument("--no-lookups", action="store_true",
                        help="do not ask the call history or the CRM for caller rules (unknown caller)")
    return parser


def main(argv: Sequence[str] | None = None, out: TextIO = sys.stdout) -> int:
    from orchestrator.db.models import Tenant
    from orchestrator.db.snapshot import load_tenant_snapshot

    args = build_parser().parse_args(argv)
    try:
        settings = config.from_env()
        db = wiring.database(settings)
        with db.session_factory() as session:
            tenant_id = session.scalar(select(Tenant.id).where(func.lower(Tenant.sip_domain) == args.tenant.strip().lower()))
            snapshot = load_tenant_snapshot(session, tenant_id) if tenant_id is not None else None
    except (PbxError, OSError, SQLAlchemyError) as exc:
        print("pbx-explain: %s" % exc, file=sys.stderr)
        return 1
    try:
        if snapshot is None:
            print("pbx-explain: no tenant with SIP domain %s (see: pbx-tenant list)" % args.tenant, file=sys.stderr)
            return 1
        try:
            now_ms = parse_local_time(args.at, snapshot.timezone) if args.at else int(time.time() * 1000)
        except ValueError as exc:
            print("pbx-explain: %s" % exc, file=sys.stderr)
            return 2
        lookups = None
        if not args.no_lookups:  # the live adapters, run directly (this command has no thread pool)
            live = wiring.caller_lookups(db, allow_private=settings.crm_allow_private, run_blocking=lambda fn, *a: fn(*a))
            sip_domain = snapshot.sip_domain
            lookups = lambda ask: live.answer(snapshot.tenant_id, sip_domain, args.caller, ask)  # noqa: E731
        result = explain(snapshot, wiring.policy_from(settings), args.caller, args.dialed, now_ms,
                         entry="internal" if args.internal else "public", lookups=lookups)
    finally:
        db.engine.dispose()
    if args.json:
        json.dump(result.to_dict(), out, indent=2, ensure_ascii=False)
        out.write("\n")
    else:
        out.write(result.render())
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
