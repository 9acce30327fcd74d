"""Tenant documents: one tenant's whole routing data as YAML, imported and exported.

    source.py      YAML text -> Document (plain data + a line for every field path)
    rules.py       single-value rules (extension, E.164, time zone, hours) for forms too
    targets.py     readable route targets ``{department: "200"}`` <-> references
    validation.py  validate(doc) -> [FieldError]: every rule of a whole document
    importer.py    import_tenant(session, text, replace=False) -> tenant id
    exporter.py    export_tenant(session, tenant_id) -> YAML; tenant_document() for forms
    live.py        check_tenant / errors_for: the same rules over a session's pending state
"""
from __future__ import annotations

from orchestrator.tenant_doc.exporter import export_tenant, tenant_document
from orchestrator.tenant_doc.importer import import_tenant, load_and_validate
from orchestrator.tenant_doc.live import check_tenant, errors_for
from orchestrator.tenant_doc.source import Document, parse
from orchestrator.tenant_doc.validation import validate

__all__ = [
    "Document", "check_tenant", "errors_for", "export_tenant", "import_tenant", "load_and_validate", "parse", "tenant_document", "validate",
]
