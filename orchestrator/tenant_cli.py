"""``pbx-tenant``: import, export, validate and list tenant documents.

    pbx-tenant import FILE [--replace]
    pbx-tenant export TENANT_DOMAIN [--with-secrets] [-o FILE]
    pbx-tenant validate FILE
    pbx-tenant list

Uses DATABASE_URL (default: the SQLite file of the settings) and migrates it first.
Problems are printed one per line as ``file:line: field: message``; exit status 1.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Sequence

from sqlalchemy import func, select
from sqlalchemy.orm import sessionmaker

from orchestrator.config import from_env
from orchestrator.db.models import Employee, PhoneNumber, Tenant
from orchestrator.errors import FieldError, PbxError, TenantDataError
from orchestrator.tenant_doc import export_tenant, import_tenant, load_and_validate
from orchestrator.tenant_doc.source import read_document


def _print_errors(source: str, errors: list[FieldError]) -> None:
    for e in errors:
        where = "%s:%s" % (source, e.line) if e.line is not None else source
        print("%s: %s: %s" % (where, e.field, e.message), file=sys.stderr)


def _factory() -> sessionmaker:
    """The settings' database, migrated, as every process builds it (``wiring.database``):
    a commit that changes routing data (import, --replace) publishes its version to
    Redis, so running orchestrators route by it on their next call."""
    from orchestrator import wiring

    return wiring.database(from_env(), seed_demo=False).session_factory


def _read(path: str) -> str:
    """At most 2 MB (+1 byte to tell), UTF-8: ``tenant_doc.source.read_document``."""
    return read_document(path)


def _cmd_validate(args: argparse.Namespace) -> int:
    load_and_validate(_read(args.file), args.file)
    print("%s: valid" % args.file)
    return 0


def _cmd_import(args: argparse.Namespace) -> int:
    text = _read(args.file)
    load_and_validate(text, args.file)  # fail fast before touching the database
    factory = _factory()
    with factory.begin() as session:
        tenant_id = import_tenant(session, text, replace=args.replace, source=args.file)
        domain = session.get(Tenant, tenant_id).sip_domain  # type: ignore[union-attr]
    print("%s tenant %s (id %d)" % ("replaced" if args.replace else "imported", domain, tenant_id))
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    factory = _factory()
    with factory() as session:
        tenant_id = session.scalar(select(Tenant.id).where(Tenant.sip_domain == args.domain.lower()))
        if tenant_id is None:
            print("no tenant with SIP domain %s (see: pbx-tenant list)" % args.domain, file=sys.stderr)
            return 1
        text = export_tenant(session, tenant_id, with_secrets=args.with_secrets)
    if args.output and args.with_secrets:
        return _write_private(args.output, text)
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


def _write_private(path: str, text: str) -> int:
    """Write SIP passwords to a new file readable by its owner only: created 0600 in one
    step (no window in which another user can open it), never over an existing file
    (which may be a link elsewhere or already readable by others)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    except FileExistsError:
        print("%s exists already; the export with secrets writes a new file only: remove it or choose "
              "another name" % path, file=sys.stderr)
        return 1
    except OSError as exc:
        print("cannot create %s: %s" % (path, exc.strerror), file=sys.stderr)
        return 1
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    factory = _factory()
    with factory() as session:
        employees = select(func.count(Employee.id)).where(Employee.tenant_id == Tenant.id).scalar_subquery()
        numbers = select(func.count(PhoneNumber.id)).where(PhoneNumber.tenant_id == Tenant.id).scalar_subquery()
        rows = session.execute(
            select(Tenant.id, Tenant.sip_domain, Tenant.name, Tenant.enabled, Tenant.routing_version,
                   employees, numbers).order_by(Tenant.sip_domain)
        ).all()
    for tid, domain, name, enabled, version, n_emp, n_num in rows:
        print("%d\t%s\t%s\t%s\tv%d\t%d employees\t%d numbers"
              % (tid, domain, name, "enabled" if enabled else "disabled", version, n_emp, n_num))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pbx-tenant", description="Tenant documents (YAML) of the cloud PBX")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("import", help="create a tenant from a YAML document")
    p.add_argument("file")
    p.add_argument("--replace", action="store_true", help="replace the routing data of the existing tenant")
    p.set_defaults(run=_cmd_import)
    p = sub.add_parser("export", help="print a tenant's YAML document")
    p.add_argument("domain", metavar="TENANT_DOMAIN")
    p.add_argument("--with-secrets", action="store_true", help="include SIP passwords")
    p.add_argument("-o", "--output", help="write to this file instead of standard output")
    p.set_defaults(run=_cmd_export)
    p = sub.add_parser("validate", help="check a YAML document without importing it")
    p.add_argument("file")
    p.set_defaults(run=_cmd_validate)
    p = sub.add_parser("list", help="list tenants")
    p.set_defaults(run=_cmd_list)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args))
    except TenantDataError as exc:
        _print_errors(getattr(args, "file", "(database)"), exc.errors)
        return 1
    except (PbxError, OSError) as exc:
        print("pbx-tenant: %s" % exc, file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
