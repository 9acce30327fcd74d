"""Live state of a tenant: calls in progress (Redis, ``CallStore.active_calls``, the same
data as the inspection tool) and department members' log-in state, refreshed by a small
script polling ``calls.json``. Tenant admins see their tenant only; operators choose one
(``?tenant=<id>``)."""
from __future__ import annotations

import time
from typing import Any

from flask import abort, jsonify, redirect, request, url_for
from flask_admin import BaseView, expose
from sqlalchemy import select
from sqlalchemy.orm import scoped_session
from werkzeug.wrappers import Response

from admin.auth import CurrentUser, current_user
from orchestrator.db.models import Department, DepartmentMember, Employee, Tenant
from orchestrator.store.redis_store import CallStore

REFRESH_SECONDS = 5
SHOWN_FACTS = ("caller", "destination", "state")


def call_rows(calls: dict[str, dict[str, str]]) -> list[dict[str, str]]:
    """Calls as table rows: the usual facts in columns, any others in ``details``."""
    rows = []
    for uuid, facts in sorted(calls.items()):
        rest = ", ".join("%s=%s" % (k, v) for k, v in sorted(facts.items()) if k not in SHOWN_FACTS)
        rows.append({"uuid": uuid, **{k: facts.get(k, "") for k in SHOWN_FACTS}, "details": rest})
    return rows


class LiveView(BaseView):
    def __init__(self, db: scoped_session, calls: CallStore | None, **kw: Any) -> None:
        self.db = db
        self.calls = calls
        super().__init__(**kw)

    def is_accessible(self) -> bool:
        user = current_user()
        return user is not None and user.can_administer

    def inaccessible_callback(self, name: str, **kwargs: Any) -> Response:
        if current_user() is None:
            return redirect(url_for("auth.login", next=request.full_path))
        abort(403)

    def _tenants(self, user: CurrentUser) -> list[Tenant]:
        query = select(Tenant).order_by(Tenant.name)
        if not user.is_operator:
            query = query.where(Tenant.id == user.tenant_id)
        return list(self.db.scalars(query))

    def _tenant_id(self, user: CurrentUser, tenants: list[Tenant]) -> int | None:
        if not user.is_operator:
            return user.tenant_id
        wanted = request.args.get("tenant", type=int)
        known = {t.id for t in tenants}
        if wanted is not None and wanted not in known:
            abort(404)
        return wanted if wanted is not None else (tenants[0].id if tenants else None)

    def _calls(self, tenant_id: int | None) -> list[dict[str, str]]:
        if self.calls is None or tenant_id is None:
            return []
        return call_rows(self.calls.active_calls(tenant_id, int(time.time() * 1000)))

    def _members(self, tenant_id: int | None) -> list[dict[str, Any]]:
        if tenant_id is None:
            return []
        rows = self.db.execute(
            select(Department.name, Employee.extension, Employee.name, Employee.logged_in)
            .join(DepartmentMember, DepartmentMember.department_id == Department.id)
            .join(Employee, Employee.id == DepartmentMember.employee_id)
            .where(Department.tenant_id == tenant_id, DepartmentMember.tenant_id == tenant_id,
                   Employee.tenant_id == tenant_id)
            .order_by(Department.extension, DepartmentMember.order)
        )
        return [{"department": d, "employee": "%s %s" % (ext, name), "logged_in": logged_in}
                for d, ext, name, logged_in in rows]

    @expose("/")
    def index(self) -> str:
        user = current_user()
        assert user is not None
        tenants = self._tenants(user)
        tenant_id = self._tenant_id(user, tenants)
        json_url = url_for(".calls_json", tenant=tenant_id) if user.is_operator else url_for(".calls_json")
        return self.render("pbx/live.html", available=self.calls is not None, tenants=tenants,
                           tenant_id=tenant_id, calls=self._calls(tenant_id), members=self._members(tenant_id),
                           json_url=json_url, refresh_seconds=REFRESH_SECONDS)

    @expose("/calls.json")
    def calls_json(self) -> Response:
        user = current_user()
        assert user is not None
        tenant_id = self._tenant_id(user, self._tenants(user))
        return jsonify({"tenant_id": tenant_id, "available": self.calls is not None,
                        "calls": self._calls(tenant_id)})
