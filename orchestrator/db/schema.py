"""All tables, imported once so that ``Base.metadata`` is complete (Alembic, tests)."""
from __future__ import annotations

from orchestrator.db.accounts import AdminRole, AdminUser
from orchestrator.db.base import Base
from orchestrator.db.history import CallRecord, FaxMessage, MissedOffer, VoicemailMessage
from orchestrator.db.meta import INDEX_VERSION, RoutingMeta
from orchestrator.db.models import (
    ROUTING_TABLES,
    CallerRule,
    Department,
    DepartmentMember,
    Employee,
    PhoneNumber,
    Schedule,
    ScheduleException,
    ScheduleInterval,
    Tenant,
    VoiceMenu,
    VoiceMenuOption,
    VoicemailBox,
    VoicemailBoxOwner,
)
from orchestrator.db.targets import TargetRef

metadata = Base.metadata

__all__ = [
    "AdminRole", "AdminUser", "Base", "CallRecord", "CallerRule", "Department", "DepartmentMember", "Employee", "FaxMessage",
    "INDEX_VERSION", "MissedOffer", "PhoneNumber", "ROUTING_TABLES", "RoutingMeta", "Schedule", "ScheduleException",
    "ScheduleInterval", "TargetRef", "Tenant", "VoiceMenu", "VoiceMenuOption", "VoicemailBox",
    "VoicemailBoxOwner", "VoicemailMessage", "metadata",
]
