"""Accounts of the admin panel: operators (all tenants) and tenant-scoped users."""
from __future__ import annotations

import enum

from sqlalchemy import CheckConstraint, Enum, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from orchestrator.db.base import Base
from orchestrator.db.models import Employee, Tenant


class AdminRole(str, enum.Enum):
    OPERATOR = "operator"  # the telecom operator's staff: every tenant
    TENANT_ADMIN = "tenant_admin"  # one tenant's administrator
    USER = "user"
    RESTRICTED = "restricted"


class AdminUser(Base):
    __tablename__ = "admin_user"
    __table_args__ = (
        CheckConstraint(
            "(role = 'operator' AND tenant_id IS NULL) OR (role <> 'operator' AND tenant_id IS NOT NULL)",
            name="operator_has_no_tenant",
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(100), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[AdminRole] = mapped_column(
        Enum(AdminRole, name="admin_role", native_enum=False, create_constraint=True, length=16,
             values_callable=lambda e: [m.value for m in e]),
        default=AdminRole.TENANT_ADMIN,
    )
    tenant_id: Mapped[int | None] = mapped_column(ForeignKey("tenant.id", ondelete="CASCADE"), index=True)
    employee_id: Mapped[int | None] = mapped_column(ForeignKey("employee.id", ondelete="SET NULL"))
    # Raised by logout, a new password, disabling: sessions signed with an older one end.
    session_version: Mapped[int] = mapped_column(default=0, server_default="0")

    tenant: Mapped[Tenant | None] = relationship()
    employee: Mapped[Employee | None] = relationship()

    @property
    def is_operator(self) -> bool:
        return self.role is AdminRole.OPERATOR

    def __str__(self) -> str:
        return self.username
