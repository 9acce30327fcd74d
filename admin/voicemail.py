"""Voicemail messages in the panel: read-only, tenant-scoped, filterable by box and day.

Who sees what: operators every tenant's messages; tenant admins and users their
company's (like call history); restricted accounts only messages in boxes their employee
owns (``VoicemailBoxOwner``). The recording (``recording/?id=``) is served to admins and
to the box's owners only, and only from the tenant's own folder under
``PBX_RECORDINGS_DIR`` (the path is resolved first, so ``..`` or a link cannot leave it);
a recording that is not on this host says so.
"""
from __future__ import annotations

import mimetypes
import os
from datetime import date, datetime, time, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

from flask import abort, current_app, request, send_file
from flask_admin import expose
from flask_admin.contrib.sqla.filters import BaseSQLAFilter
from markupsafe import Markup, escape
from sqlalchemy import false, select
from sqlalchemy.orm import scoped_session
from werkzeug.wrappers import Response

from admin.auth import CurrentUser, current_user
from admin.scoping import ALL_ROLES, ScopedChoiceFilter, TenantScopedView
from orchestrator.db.accounts import AdminRole
from orchestrator.db.history import VoicemailMessage
from orchestrator.db.models import Tenant, VoicemailBox, VoicemailBoxOwner


def _own_boxes(user: CurrentUser) -> Any:
    """The ids of the boxes the user's employee owns (a subquery)."""
    return select(VoicemailBoxOwner.box_id).where(VoicemailBoxOwner.tenant_id == user.tenant_id,
                                                  VoicemailBoxOwner.employee_id == user.employee_id)


def box_choices(view: TenantScopedView) -> list[tuple[int, str]]:
    """The boxes a user may filter by: the tenant's (restricted: their own; the operator:
    every tenant's, with the tenant's name)."""
    user = view.user
    query = (select(VoicemailBox.id, VoicemailBox.name, Tenant.name)
             .join(Tenant, Tenant.id == VoicemailBox.tenant_id).order_by(Tenant.name, VoicemailBox.name))
    if not user.is_operator:
        query = query.where(VoicemailBox.tenant_id == user.tenant_id)
    if user.role is AdminRole.RESTRICTED:
        query = query.where(VoicemailBox.id.in_(_own_boxes(user)))
    return [(i, name + (" (%s)" % tenant if user.is_operator else "")) for i, name, tenant in view.session.execute(query)]


class LocalDayFilter(BaseSQLAFilter):
    """Messages left on one day (YYYY-MM-DD) in the company's time zone (operators: UTC)."""

    def __init__(self, column: Any, name: str, zone: Any) -> None:
        super().__init__(column, name, data_type="datepicker")
        self.zone = zone

    def operation(self) -> str:
        return "on"

    def validate(self, value: Any) -> bool:
        try:
            date.fromisoformat(str(value))
        except ValueError:
            return False
        return True

    def apply(self, query: Any, value: Any, alias: Any = None) -> Any:
        day = date.fromisoformat(str(value))
        start = datetime.combine(day, time(0), tzinfo=self.zone()).astimezone(timezone.utc)
        return query.filter(self.column >= start, self.column < start + timedelta(days=1))


def _duration(ms: int) -> str:
    return "%d:%02d" % divmod(max(0, round(ms / 1000)), 60)


class VoicemailMessageView(TenantScopedView):
    roles = ALL_ROLES
    can_create = False
    can_edit = False
    can_delete = False
    can_view_details = True
    column_list = ("tenant_id", "created_at", "box_id", "caller", "duration_ms", "recording")
    column_details_list = column_list
    column_labels = {"tenant_id": "Tenant", "created_at": "Time", "box_id": "Box", "duration_ms": "Duration",
                     "recording": "Recording"}
    column_sortable_list = ("created_at", "caller", "duration_ms")
    column_searchable_list = ("caller",)
    column_default_sort = ("created_at", True)

    def __init__(self, db: scoped_session, **kw: Any) -> None:
        self.column_filters = (
            ScopedChoiceFilter(VoicemailMessage.box_id, "Box", box_choices),
            LocalDayFilter(VoicemailMessage.created_at, "Day", self._zone),
            "caller",
        )
        self.column_formatters = {
            "tenant_id": lambda v, c, m, n: self._tenant(m.tenant_id).name,
            "created_at": lambda v, c, m, n: self._local_time(m),
            "box_id": lambda v, c, m, n: self._box_name(m),
            "duration_ms": lambda v, c, m, n: _duration(m.duration_ms),
            "recording": lambda v, c, m, n: self._recording_cell(m),
        }
        self.column_formatters_detail = self.column_formatters
        super().__init__(VoicemailMessage, db, **kw)

    # scope ------------------------------------------------------------------------------

    def row_scope(self, query: Any) -> Any:
        if self.user.role is not AdminRole.RESTRICTED:
            return query
        if self.user.employee_id is None:
            return query.filter(false())
        return query.filter(VoicemailMessage.box_id.in_(_own_boxes(self.user)))

    def may_listen(self, message: VoicemailMessage) -> bool:
        """Admins, and the employees owning the message's box."""
        user = self.user
        if user.can_administer:
            return True
        if user.employee_id is None or message.tenant_id != user.tenant_id:
            return False
        return self.session.scalar(_own_boxes(user).where(VoicemailBoxOwner.box_id == message.box_id)) is not None

    def recording_file(self, message: VoicemailMessage) -> str | None:
        """The recording's real path when it is a readable file inside the tenant's
        folder under the recordings directory, else None."""
        root = os.path.realpath(os.path.join(current_app.extensions["pbx_settings"].recordings_dir,
                                             str(message.tenant_id)))
        path = os.path.realpath(message.recording_path)
        if os.path.commonpath([root, path]) != root or not os.path.isfile(path) or not os.access(path, os.R_OK):
            return None
        return path

    # cells ------------------------------------------------------------------------------

    def _tenant(self, tenant_id: int) -> Tenant:
        tenant = self.session.get(Tenant, tenant_id)  # identity map: one query per tenant shown
        assert tenant is not None
        return tenant

    def _zone(self) -> ZoneInfo:
        user = current_user()
        if user is None or user.tenant_id is None:
            return ZoneInfo("UTC")
        return ZoneInfo(self._tenant(user.tenant_id).timezone)

    def _local_time(self, message: VoicemailMessage) -> str:
        created = message.created_at if message.created_at.tzinfo else message.created_at.replace(tzinfo=timezone.utc)
        return created.astimezone(ZoneInfo(self._tenant(message.tenant_id).timezone)).strftime("%Y-%m-%d %H:%M:%S %Z")

    def _box_name(self, message: VoicemailMessage) -> str:
        box = self.session.get(VoicemailBox, message.box_id)
        if box is None or box.tenant_id != message.tenant_id:
            return "#%d" % message.box_id
        return box.name

    def _recording_cell(self, message: VoicemailMessage) -> Markup:
        if not self.may_listen(message):
            return Markup('<span class="text-muted">box owners and admins only</span>')
        if self.recording_file(message) is None:
            return Markup('<span class="text-muted">not on this server</span>')
        url = self.get_url(".recording", id=message.id)
        return Markup('<audio controls preload="none" src="%s"></audio> <a href="%s">download</a>'
                      % (escape(url), escape(self.get_url(".recording", id=message.id, download=1))))

    # the recording ----------------------------------------------------------------------

    @expose("/recording/")
    def recording(self) -> Response:
        message: VoicemailMessage = self.get_one(request.args.get("id"))
        if not self.may_listen(message):
            abort(403)
        path = self.recording_file(message)
        if path is None:
            abort(404, "The recording is not on this server (it is kept where FreeSWITCH wrote it).")
        extension = os.path.splitext(path)[1] or ".wav"
        return send_file(path, mimetype=mimetypes.guess_type(path)[0] or "audio/wav",
                         as_attachment=request.args.get("download") == "1",
                         download_name="voicemail-%d%s" % (message.id, extension), max_age=0)
