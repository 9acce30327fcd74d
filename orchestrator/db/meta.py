"""``routing_meta``: global key/value counters, e.g. the routing index version."""
from __future__ import annotations

from sqlalchemy import Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from orchestrator.db.base import Base

INDEX_VERSION = "index_version"  # bumped when numbers, SIP domains or tenants change


class RoutingMeta(Base):
    __tablename__ = "routing_meta"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[int] = mapped_column(Integer, default=0)
