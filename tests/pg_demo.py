"""The demo tenant in the session's shared PostgreSQL database (``pg_server_url``).

The database is shared by the whole test session: look the tenant up by its SIP domain
and import ``orchestrator/demo/demo-tenant.yaml`` only when it is not there yet.
"""
from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from orchestrator.db.engine import make_engine, make_session_factory
from orchestrator.db.migrate import upgrade
from orchestrator.db.models import Tenant
from orchestrator.tenant_doc import import_tenant

DEMO = Path(__file__).resolve().parents[1] / "orchestrator" / "demo" / "demo-tenant.yaml"
DEMO_DOMAIN = "demo.pbx.local"


def ensure_demo_tenant(url: str) -> int:
    """The demo tenant's id in the database at ``url`` (migrated, imported if missing)."""
    upgrade(url)
    engine = make_engine(url)
    try:
        with make_session_factory(engine).begin() as session:
            tenant_id = session.scalar(select(Tenant.id).where(Tenant.sip_domain == DEMO_DOMAIN))
            if tenant_id is None:
                tenant_id = import_tenant(session, DEMO.read_text(encoding="utf-8"))
            return int(tenant_id)
    finally:
        engine.dispose()
