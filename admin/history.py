"""Call history as people read it: the company's local time (no microseconds), duration
and talk time, names and extensions instead of ids, filters (dates in the company's
time, number, department, member, result) and a CSV export of exactly the rows the list
would show (the same tenant scope; a restricted user exports only their own calls).

A call belongs to a department when it was dialled to the department's extension, was
offered to the department's members (``missed_offer``), or was answered by one of them.
"""
from __future__ import annotations

from datetime import datetime, time, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from flask import g
from flask_admin.contrib.sqla.filters import BaseSQLAFilter, DateBetweenFilter
from sqlalchemy import false, or_, select
from sqlalchemy.orm import scoped_session

from admin.auth import current_user
from admin.scoping import ALL_ROLES, ReadOnlyTenantView, ScopedChoiceFilter
from orchestrator.db.accounts import AdminRole
from orchestrator.db.history import CallRecord, MissedOffer
from orchestrator.db.models import Department, DepartmentMember, Employee, Tenant, VoiceMenu, VoicemailBox

DIRECTION_WORDS = {"inbound": "incoming", "internal": "internal", "outbound": "outgoing"}


def _zone(name: str | None) -> timezone | ZoneInfo:
    try:
        return ZoneInfo(name) if name else timezone.utc
    except (ZoneInfoNotFoundError, ValueError):
        return timezone.utc


def tenant_zone(session: Any, tenant_id: int | None) -> timezone | ZoneInfo:
    """The tenant's time zone, once per request."""
    cache = g.setdefault("pbx_zones", {})
    if tenant_id not in cache:
        name = session.scalar(select(Tenant.timezone).where(Tenant.id == tenant_id)) if tenant_id else None
        cache[tenant_id] = _zone(name)
    return cache[tenant_id]


def directory(session: Any, tenant_id: int) -> dict[str, str]:
    """Extension -> "101 Ivan Petrov" for the tenant's employees, departments, menus and
    boxes, once per request (history shows who, not just digits)."""
    cache = g.setdefault("pbx_directory", {})
    if tenant_id not in cache:
        names: dict[str, str] = {}
        for model in (VoicemailBox, VoiceMenu, Department, Employee):  # employees win a clash
            rows = session.execute(select(model.extension, model.name).where(model.tenant_id == tenant_id))
            names.update({ext: "%s %s" % (ext, name) for ext, name in rows if ext})
        cache[tenant_id] = names
    return cache[tenant_id]


def local_time(session: Any, model: Any, value: datetime | None) -> str:
    if value is None:
        return ""
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(tenant_zone(session, model.tenant_id)).strftime("%Y-%m-%d %H:%M:%S")


def duration(start: datetime | None, end: datetime | None) -> str:
    if start is None or end is None or end < start:
        return ""
    seconds = int((end - start).total_seconds())
    hours, rest = divmod(seconds, 3600)
    return ("%d:%02d:%02d" % (hours, *divmod(rest, 60))) if hours else "%d:%02d" % divmod(rest, 60)


def party(session: Any, model: Any, value: str) -> str:
    return directory(session, model.tenant_id).get(value or "", value or "")


def answered_by(session: Any, model: Any) -> str:
    if model.answered_by_employee_id is None:
        return ""
    row = session.get(Employee, model.answered_by_employee_id)
    if row is None or row.tenant_id != model.tenant_id:
        return "(deleted employee)"
    return "%s %s" % (row.extension, row.name)


def result(model: Any) -> str:
    if model.answered_at is not None:
        return "answered"
    if model.ended_at is None:
        return "in progress"
    return "not answered"


class LocalDateBetween(DateBetweenFilter):
    """Calls started between two dates of the company's calendar (its time zone)."""

    def apply(self, query: Any, value: Any, alias: Any = None) -> Any:
        first, last = value
        user = current_user()
        zone = tenant_zone(g.get("pbx_db_session"), user.tenant_id) if user is not None and user.tenant_id \
            else timezone.utc
        start = datetime.combine(first, time.min, tzinfo=zone)
        end = datetime.combine(last + timedelta(days=1), time.min, tzinfo=zone)
        return query.filter(CallRecord.started_at >= start, CallRecord.started_at < end)


class NumberFilter(BaseSQLAFilter):
    """A caller or dialled number containing these digits (``+7916``, ``101``)."""

    def apply(self, query: Any, value: Any, alias: Any = None) -> Any:
        digits = "".join(c for c in str(value) if c.isdigit() or c in "+*#")[:32]
        if not digits:
            return query
        return query.filter(or_(CallRecord.caller.contains(digits, autoescape=True),
                                CallRecord.destination.contains(digits, autoescape=True)))

    def operation(self) -> str:
        return "contains"


class ResultFilter(BaseSQLAFilter):
    def apply(self, query: Any, value: Any, alias: Any = None) -> Any:
        if value == "answered":
            return query.filter(CallRecord.answered_at.is_not(None))
        if value == "missed":
            return query.filter(CallRecord.answered_at.is_(None), CallRecord.ended_at.is_not(None))
        return query

    def operation(self) -> str:
        return "is"


class DepartmentCallsFilter(ScopedChoiceFilter):
    def apply(self, query: Any, value: Any, alias: Any = None) -> Any:
        department = int(value)
        session = g.get("pbx_db_session")
        ext = session.scalar(select(Department.extension).where(Department.id == department)) if session else None
        offered = select(MissedOffer.call_uuid).where(MissedOffer.department_id == department)
        members = select(DepartmentMember.employee_id).where(DepartmentMember.department_id == department)
        dialled = CallRecord.destination == ext if ext else false()
        return query.filter(or_(dialled, CallRecord.call_uuid.in_(offered),
                                CallRecord.answered_by_employee_id.in_(members)))


def _formatters(view: "CallRecordView") -> dict[str, Any]:
    s = view.session
    return {
        "started_at": lambda v, c, m, n: local_time(s, m, m.started_at),
        "direction": lambda v, c, m, n: DIRECTION_WORDS.get(m.direction, m.direction),
        "caller": lambda v, c, m, n: party(s, m, m.caller),
        "destination": lambda v, c, m, n: party(s, m, m.destination),
        "answered_by_employee_id": lambda v, c, m, n: answered_by(s, m),
        "answered_at": lambda v, c, m, n: result(m),
        "ended_at": lambda v, c, m, n: duration(m.started_at, m.ended_at),
        "hangup_cause": lambda v, c, m, n: duration(m.answered_at, m.ended_at),
        "tenant_id": lambda v, c, m, n: getattr(s.get(Tenant, m.tenant_id), "name", ""),
    }


def _operator() -> bool:
    """In a request by an operator (never at start, when views are built)."""
    from flask import has_request_context

    user = current_user() if has_request_context() else None
    return user is not None and user.is_operator


class CallRecordView(ReadOnlyTenantView):
    """Every role: operators all calls, tenant admins and users their company's calls,
    restricted users only calls they answered or that came from/went to their extension."""

    roles = ALL_ROLES
    can_export = True
    export_types = ["csv"]
    column_list = ("started_at", "direction", "caller", "destination", "answered_by_employee_id", "answered_at",
                   "ended_at", "hangup_cause", "route")
    column_export_list = column_list + ("call_uuid",)
    column_labels = {"started_at": "Started (company time)", "answered_by_employee_id": "Answered by",
                     "answered_at": "Result", "ended_at": "Duration", "hangup_cause": "Talk time",
                     "destination": "Dialled", "call_uuid": "Call", "tenant_id": "Company"}
    column_sortable_list = ("started_at", "direction", "caller", "destination")
    column_default_sort = ("started_at", True)
    column_searchable_list = ("caller", "destination")

    def __init__(self, db: scoped_session, **kw: Any) -> None:
        from admin.views import department_choices, member_choices

        self.column_filters = [
            LocalDateBetween(CallRecord.started_at, "Date (company time)"),
            NumberFilter(CallRecord.caller, "Number"),
            DepartmentCallsFilter(CallRecord.answered_by_employee_id, "Department", department_choices),
            ScopedChoiceFilter(CallRecord.answered_by_employee_id, "Answered by", member_choices),
            ResultFilter(CallRecord.answered_at, "Result", options=[("answered", "answered"),
                                                                    ("missed", "not answered")]),
        ]
        super().__init__(CallRecord, db, **kw)
        self.column_formatters = _formatters(self)
        self.column_formatters_export = _formatters(self)

    def get_query(self) -> Any:
        g.pbx_db_session = self.session
        return super().get_query()

    def get_count_query(self) -> Any:
        g.pbx_db_session = self.session
        return super().get_count_query()

    # Flask-Admin computes the list and export columns once, at start; the operator's
    # extra "Company" column depends on who asks, so they are computed per request.
    def _with_company(self, columns: Any) -> list[Any]:
        columns = list(columns)
        if _operator():  # the company as a name, for the operator only (no tenant id column)
            columns.insert(0, ("tenant_id", "Company"))
        return columns

    @property  # type: ignore[override]
    def _list_columns(self) -> list[Any]:
        return self._with_company(self.__list_columns)

    @_list_columns.setter
    def _list_columns(self, value: Any) -> None:
        self.__list_columns = value

    @property  # type: ignore[override]
    def _export_columns(self) -> list[Any]:
        return self._with_company(self.__export_columns)

    @_export_columns.setter
    def _export_columns(self, value: Any) -> None:
        self.__export_columns = value

    def row_scope(self, query: Any) -> Any:
        if self.user.role is not AdminRole.RESTRICTED:
            return query
        if self.user.employee_id is None:
            return query.filter(false())
        extension = self.session.scalar(select(Employee.extension).where(
            Employee.id == self.user.employee_id, Employee.tenant_id == self.user.tenant_id))
        if extension is None:
            return query.filter(false())
        return query.filter(or_(CallRecord.answered_by_employee_id == self.user.employee_id,
                                CallRecord.caller == extension, CallRecord.destination == extension))
