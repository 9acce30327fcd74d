"""The routing explainer in the panel: "what happens if +7812... calls +7495... on
Saturday at 21:00?" for the user's company, answered by the call-flow core of live calls
(``orchestrator.core.explain``, the same as ``pbx-explain``).

Tenant admins ask about their own company; operators name a company by its SIP domain.
It reads the routing data (a snapshot, as a call would) and changes nothing. Caller rules
that need a lookup (last agent, CRM) treat the caller as unknown here: the panel does not
call tenants' CRMs; ``pbx-explain`` on a server does.
"""
from __future__ import annotations

import time
from typing import Any

from flask import request
from flask_admin import BaseView, expose
from sqlalchemy import func, select
from sqlalchemy.orm import scoped_session

from admin.auth import AdministratorsPage, current_user
from orchestrator.core.explain import explain
from orchestrator.core.plan import Policy
from orchestrator.db.models import Tenant
from orchestrator.db.snapshot import load_tenant_snapshot
from orchestrator.explain_cli import parse_local_time

MAX_FIELD = 64


class ExplainView(AdministratorsPage, BaseView):
    def __init__(self, db: scoped_session, policy: Policy, **kw: Any) -> None:
        self.db = db
        self.policy = policy
        super().__init__(**kw)

    def _tenant(self, domain: str) -> Tenant | None:
        user = current_user()
        assert user is not None
        if not user.is_operator:
            return self.db.get(Tenant, user.tenant_id)
        if not domain:
            return None
        return self.db.scalar(select(Tenant).where(func.lower(Tenant.sip_domain) == domain.lower()))

    @expose("/")
    def index(self) -> str:
        user = current_user()
        assert user is not None
        field = {k: (request.args.get(k) or "").strip()[:MAX_FIELD] for k in ("tenant", "caller", "dialed", "at")}
        internal = request.args.get("internal") in ("1", "y", "on")
        problem, text = "", ""
        tenant = self._tenant(field["tenant"])
        if field["dialed"]:
            if tenant is None:
                problem = "No company with SIP domain %s." % (field["tenant"] or "(none given)")
            else:
                snapshot = load_tenant_snapshot(self.db(), tenant.id)
                try:
                    now_ms = parse_local_time(field["at"], tenant.timezone) if field["at"] else int(time.time() * 1000)
                except ValueError:
                    problem = "The time must look like 2026-11-28 21:00 (the company's local time)."
                else:
                    if snapshot is None:
                        problem = "The company's routing data cannot be read."
                    else:
                        text = explain(snapshot, self.policy, field["caller"], field["dialed"], now_ms,
                                       entry="internal" if internal else "public").render()
        return self.render("pbx/explain.html", field=field, internal=internal, problem=problem, text=text,
                           operator=user.is_operator, tenant=tenant)
