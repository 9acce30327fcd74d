"""Validate a tenant as a session currently sees it (pending edits included).

Admin forms edit one row at a time; this runs the whole-document rules of
``validation`` over the tenant's would-be state and says which errors belong to
which row, so a form can show them next to its fields.
"""
from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from orchestrator.errors import FieldError
from orchestrator.tenant_doc.exporter import tenant_document
from orchestrator.tenant_doc.validation import validate


def check_tenant(session: Session, tenant_id: int) -> list[FieldError]:
    """Every broken rule of the tenant's data including unflushed changes."""
    doc, _ = tenant_document(session, tenant_id, pending=True)
    return validate(doc)


def errors_for(session: Session, tenant_id: int, obj: Any) -> dict[str, list[str]]:
    """Broken rules that concern ``obj`` (a routing row of the tenant), keyed by its field
    (``extension``, ``no_answer``, ``members``...); other rows' old problems are ignored."""
    doc, origins = tenant_document(session, tenant_id, pending=True)
    prefixes = [path for path, (_, row) in origins.items() if row is obj]
    out: dict[str, list[str]] = {}
    for error in validate(doc):
        for prefix in prefixes:
            if error.field.startswith(prefix + ".") or error.field == prefix:
                rest = error.field[len(prefix) + 1:]
                field = rest.split(".", 1)[0].split("[", 1)[0] or "(form)"
                if field == "queue" and "." in rest:  # queue.<key> is the row's queue_<key> column
                    field = "queue." + rest.split(".", 2)[1].split("[", 1)[0]
                out.setdefault(field, []).append(error.message)
    return out
