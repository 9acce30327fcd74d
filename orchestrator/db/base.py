"""Declarative base shared by every table, with a naming convention for constraints
(so that Alembic migrations name them the same on PostgreSQL and SQLite)."""
from __future__ import annotations

import secrets
from datetime import datetime, timezone

from sqlalchemy import ForeignKey, MetaData
from sqlalchemy.orm import DeclarativeBase, Mapped, declared_attr, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)

    def __repr__(self) -> str:
        # Deliberately minimal: never leaks secrets such as SIP passwords.
        parts = ["%s=%r" % (key, getattr(self, key, None)) for key in ("id", "tenant_id") if key in self.__dict__]
        return "<%s %s>" % (type(self).__name__, " ".join(parts))


class TenantScoped:
    """Mixin: a row that belongs to one tenant (deleted with it)."""

    @declared_attr
    def tenant_id(cls) -> Mapped[int]:
        return mapped_column(ForeignKey("tenant.id", ondelete="CASCADE"), index=True)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def generate_sip_password() -> str:
    """A strong random SIP password (144 bits, URL-safe characters)."""
    return secrets.token_urlsafe(18)
