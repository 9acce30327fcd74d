"""Which tenant ``pbx-inspect --tenant`` means (an id or a SIP domain) and its names
(employees, departments) from the tenant's routing snapshot in the database.

Domains are looked up with the routing index the orchestrator routes internal calls by
(``db.snapshot.load_routing_index``: enabled tenants); names come from
``db.snapshot.load_tenant_snapshot``. Nothing is written and no migration is run.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator import config
from orchestrator.core.model import TenantSnapshot

MAX_TENANT_ARG = 253  # a DNS name's length


class CannotInspect(Exception):
    """What was wrong and what to do; printed without a traceback, exit code 2."""


# ------------------------------------------------------------------ tenants and names


@dataclass(frozen=True)
class Tenant:
    """The tenant inspected, with its routing snapshot when the database has it."""

    id: int
    snapshot: TenantSnapshot | None = None

    def as_json(self) -> dict[str, Any]:
        s = self.snapshot
        return {"id": self.id, "name": s.name if s else None, "sip_domain": s.sip_domain if s else None}

    def title(self) -> str:
        s = self.snapshot
        return "tenant %d %s (%s)" % (self.id, s.sip_domain, s.name) if s else "tenant %d" % self.id

    def employee(self, emp: int) -> dict[str, Any]:
        e = self.snapshot.employees.get(emp) if self.snapshot else None
        return {"id": emp, "extension": e.extension if e else None, "name": e.name if e else None}

    def department(self, dep: int | None) -> dict[str, Any] | None:
        if dep is None:
            return None
        d = self.snapshot.departments.get(dep) if self.snapshot else None
        return {"id": dep, "name": d.name if d else None, "extension": d.extension if d else None}

    def member_ids(self) -> list[int]:
        """Employees who are members of some department (from the routing data)."""
        if self.snapshot is None:
            return []
        return sorted({m.employee_id for d in self.snapshot.departments.values() for m in d.members})

    def departments_of(self, emp: int) -> list[str]:
        if self.snapshot is None:
            return []
        return [d.name for d in self.snapshot.departments.values() if any(m.employee_id == emp for m in d.members)]


class Directory:
    """Tenants by id or SIP domain, and their routing snapshots, from the database.

    ``session_factory`` None: no database (ids only, no names); ``db_error`` says why."""

    def __init__(self, session_factory: Any, db_error: str = "") -> None:
        self.factory = session_factory
        self.db_error = db_error
        self.notes: list[str] = []

    def resolve(self, text: str) -> Tenant:
        text = text.strip()
        if not text or len(text) > MAX_TENANT_ARG:
            raise CannotInspect("--tenant needs a tenant id or SIP domain (see: pbx-tenant list)")
        if text.isdigit():
            tenant_id = int(text)
            snap = self._snapshot(tenant_id)
            if snap is None and self.factory is not None and not self.notes:
                self.notes.append("tenant %d is not in the database: names are not shown" % tenant_id)
            return Tenant(tenant_id, snap)
        from orchestrator.tenant_doc.rules import check_domain

        domain = text.lower()
        if check_domain(domain):
            raise CannotInspect("--tenant %r is neither a tenant id nor a SIP domain (see: pbx-tenant list)" % text[:60])
        if self.factory is None:
            raise CannotInspect("cannot look up SIP domain %s: %s; give the tenant's id instead (see: pbx-tenant list)"
                                % (domain, self.db_error or "no database"))
        from orchestrator.db.snapshot import load_routing_index

        try:
            with self.factory() as session:
                index = load_routing_index(session)
        except Exception as exc:  # noqa: BLE001 - any database failure: say so, no traceback
            raise CannotInspect("cannot look up SIP domain %s: database error (%s); check DATABASE_URL or give the "
                                "tenant's id" % (domain, str(exc).splitlines()[0][:200])) from None
        found = index.domains.get(domain)
        if found is None:
            raise CannotInspect("no enabled tenant has SIP domain %s (see: pbx-tenant list; for a disabled tenant give "
                                "its id)" % domain)
        return Tenant(found, self._snapshot(found))

    def _snapshot(self, tenant_id: int) -> TenantSnapshot | None:
        if self.factory is None:
            if self.db_error and not self.notes:
                self.notes.append("names not shown: %s" % self.db_error)
            return None
        from orchestrator.db.snapshot import load_tenant_snapshot

        try:
            with self.factory() as session:
                return load_tenant_snapshot(session, tenant_id)
        except Exception as exc:  # noqa: BLE001 - names are a convenience; the live state still shows
            self.notes.append("names not shown: database error (%s)" % str(exc).splitlines()[0][:200])
            return None


def directory_from(settings: config.Settings) -> Directory:
    """The database of DATABASE_URL (no migrations run, nothing written); the embedded
    SQLite file only when it exists."""
    url = settings.effective_database_url
    if url.startswith("sqlite:///") and not Path(url[len("sqlite:///"):]).exists():
        return Directory(None, "no database (DATABASE_URL unset and no %s)" % url[len("sqlite:///"):])
    from orchestrator.db.engine import make_engine, make_session_factory

    try:
        return Directory(make_session_factory(make_engine(url)))
    except Exception as exc:  # noqa: BLE001
        return Directory(None, "database not usable (%s)" % str(exc).splitlines()[0][:200])
