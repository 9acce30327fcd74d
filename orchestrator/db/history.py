"""What happened: call records and voicemail messages (not routing data)."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, CheckConstraint, DateTime, ForeignKey, ForeignKeyConstraint, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from orchestrator.db.base import Base, TenantScoped, utcnow

DIRECTIONS = ("inbound", "internal", "outbound")


class CallRecord(TenantScoped, Base):
    __tablename__ = "call_record"
    __table_args__ = (
        CheckConstraint("direction IN ('inbound', 'internal', 'outbound')", name="direction"),
        # the last agent of a caller: their latest answered call (caller rules)
        Index("ix_call_record_tenant_caller", "tenant_id", "caller", "started_at"),
        # ... and the clients employees called out to (outbound rows keep the E.164 dialled)
        Index("ix_call_record_tenant_destination", "tenant_id", "destination", "started_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    call_uuid: Mapped[str] = mapped_column(String(64), unique=True)
    direction: Mapped[str] = mapped_column(String(16))
    caller: Mapped[str] = mapped_column(String(64), default="")
    destination: Mapped[str] = mapped_column(String(64), default="")
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    answered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # History outlives employees: a plain FK that is cleared when the employee goes.
    answered_by_employee_id: Mapped[int | None] = mapped_column(
        ForeignKey("employee.id", ondelete="SET NULL"), index=True
    )
    hangup_cause: Mapped[str | None] = mapped_column(String(64))
    route: Mapped[str] = mapped_column(Text, default="")


class VoicemailMessage(TenantScoped, Base):
    __tablename__ = "voicemail_message"
    __table_args__ = (
        ForeignKeyConstraint(
            ["tenant_id", "box_id"], ["voicemail_box.tenant_id", "voicemail_box.id"], ondelete="CASCADE"
        ),
        CheckConstraint("duration_ms >= 0", name="duration"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    box_id: Mapped[int] = mapped_column(Integer, index=True)
    caller: Mapped[str] = mapped_column(String(64), default="")
    call_uuid: Mapped[str] = mapped_column(String(64))
    recording_path: Mapped[str] = mapped_column(String(512))
    duration_ms: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class FaxMessage(TenantScoped, Base):
    """A fax received for a voicemail box (``rxfax``); ``success`` False: only some pages
    arrived before the transfer failed (``result_code``/``result_text`` from mod_spandsp)."""

    __tablename__ = "fax_message"
    __table_args__ = (
        ForeignKeyConstraint(
            ["tenant_id", "box_id"], ["voicemail_box.tenant_id", "voicemail_box.id"], ondelete="CASCADE"
        ),
        CheckConstraint("pages >= 0", name="pages"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    box_id: Mapped[int] = mapped_column(Integer, index=True)
    caller: Mapped[str] = mapped_column(String(64), default="")
    call_uuid: Mapped[str] = mapped_column(String(64))
    document_path: Mapped[str] = mapped_column(String(512))
    pages: Mapped[int] = mapped_column(Integer, default=0)
    success: Mapped[bool] = mapped_column(Boolean, default=True)
    result_code: Mapped[int] = mapped_column(Integer, default=0)
    result_text: Mapped[str] = mapped_column(String(255), default="")
    remote_station: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


MISSED_RESULTS = ("no_answer", "rejected", "busy", "unregistered")


class MissedOffer(TenantScoped, Base):
    """A department member was offered a call and did not take it."""

    __tablename__ = "missed_offer"
    __table_args__ = (
        CheckConstraint("result IN ('no_answer', 'rejected', 'busy', 'unregistered')", name="result"),
        CheckConstraint("rang_ms >= 0", name="rang"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    # History outlives employees and departments: plain FKs cleared when they go.
    employee_id: Mapped[int | None] = mapped_column(ForeignKey("employee.id", ondelete="SET NULL"), index=True)
    department_id: Mapped[int | None] = mapped_column(ForeignKey("department.id", ondelete="SET NULL"))
    call_uuid: Mapped[str] = mapped_column(String(64))
    offered_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    rang_ms: Mapped[int] = mapped_column(Integer, default=0)
    result: Mapped[str] = mapped_column(String(16))
    paused: Mapped[bool] = mapped_column(Boolean, default=False)  # this miss paused the member
