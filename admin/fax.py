"""Received faxes in the panel: read-only, tenant-scoped, like voicemail messages.

Who sees what (as ``admin.voicemail``): operators every tenant's faxes, tenant admins
and users their company's, restricted accounts only faxes for boxes their employee owns.
The document itself is e-mailed to the box (``workers.mail.send_fax``); the panel shows
where it is stored.
"""
from __future__ import annotations

from typing import Any

from sqlalchemy import false
from sqlalchemy.orm import scoped_session

from admin.scoping import ALL_ROLES, ScopedChoiceFilter, TenantScopedView
from admin.voicemail import _own_boxes, box_choices
from orchestrator.db.accounts import AdminRole
from orchestrator.db.history import FaxMessage
from orchestrator.db.models import VoicemailBox


class FaxMessageView(TenantScopedView):
    roles = ALL_ROLES
    can_create = False
    can_edit = False
    can_delete = False
    can_view_details = True
    column_list = ("tenant_id", "created_at", "box_id", "caller", "pages", "success", "result_text", "document_path")
    column_details_list = column_list + ("remote_station", "call_uuid")
    column_labels = {"tenant_id": "Tenant", "created_at": "Time", "box_id": "Box", "success": "Complete",
                     "result_text": "Result", "document_path": "Document", "remote_station": "Sender's fax id"}
    column_sortable_list = ("created_at", "caller", "pages")
    column_searchable_list = ("caller",)
    column_default_sort = ("created_at", True)

    def __init__(self, db: scoped_session, **kw: Any) -> None:
        self.column_filters = (ScopedChoiceFilter(FaxMessage.box_id, "Box", box_choices), "caller", "success")
        self.column_formatters = {"box_id": lambda v, c, m, n: self._box_name(m)}
        self.column_formatters_detail = self.column_formatters
        super().__init__(FaxMessage, db, **kw)

    def row_scope(self, query: Any) -> Any:
        if self.user.role is not AdminRole.RESTRICTED:
            return query
        if self.user.employee_id is None:
            return query.filter(false())
        return query.filter(FaxMessage.box_id.in_(_own_boxes(self.user)))

    def _box_name(self, fax: FaxMessage) -> str:
        box = self.session.get(VoicemailBox, fax.box_id)
        if box is None or box.tenant_id != fax.tenant_id:
            return "#%d" % fax.box_id
        return box.name
