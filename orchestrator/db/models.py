"""Routing tables of a tenant: what a call is decided on.

Every table but ``tenant`` carries ``tenant_id``; child rows reference their parent by a
composite foreign key ``(tenant_id, parent_id)`` -> ``parent(tenant_id, id)`` so that the
database itself refuses, e.g., a department member pointing at another tenant's employee.
Route targets (``targets.py``) are checked for the same tenant by validation.
"""
from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    Enum,
    ForeignKeyConstraint,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship, validates

from orchestrator.core.model import CallerMatch, NumberMode, Role, Strategy
from orchestrator.db.base import Base, TenantScoped, generate_sip_password, utcnow
from orchestrator.db.targets import TargetRef, target_check, target_mixin

ROUTING_TABLES = (
    "employee", "department", "department_member", "phone_number", "schedule",
    "schedule_interval", "schedule_exception", "voice_menu", "voice_menu_option",
    "voicemail_box", "voicemail_box_owner", "caller_rule",
)  # a change to any of these bumps the tenant's routing_version


def _enum(enum_cls: type, name: str) -> Enum:
    return Enum(
        enum_cls, name=name, native_enum=False, create_constraint=True, length=16,
        values_callable=lambda e: [m.value for m in e], validate_strings=True,
    )


def _same_tenant_fk(columns: tuple[str, str], table: str, ondelete: str | None = "CASCADE") -> ForeignKeyConstraint:
    return ForeignKeyConstraint(
        list(columns), ["%s.tenant_id" % table, "%s.id" % table], ondelete=ondelete
    )


def _tenant_key(table: str) -> UniqueConstraint:
    """(tenant_id, id): the target of composite foreign keys from child rows."""
    return UniqueConstraint("tenant_id", "id", name="uq_%s_tenant_id_id" % table)


class Tenant(Base):
    __tablename__ = "tenant"
    __table_args__ = (
        CheckConstraint("max_concurrent_calls >= 0", name="max_calls"),
        CheckConstraint("routing_version >= 1", name="routing_version"),
        CheckConstraint("forward_caller_id IN ('caller', 'number')", name="forward_caller_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    sip_domain: Mapped[str] = mapped_column(String(253), unique=True)
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    max_concurrent_calls: Mapped[int] = mapped_column(Integer, default=0)
    # forwarded calls show the caller's number ("caller") or the number called ("number")
    forward_caller_id: Mapped[str] = mapped_column(String(8), default="caller", server_default="caller")
    routing_version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    employees: Mapped[list[Employee]] = relationship(back_populates="tenant", passive_deletes=True)
    departments: Mapped[list[Department]] = relationship(back_populates="tenant", passive_deletes=True)

    @validates("timezone")
    def _check_timezone(self, key: str, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError("unknown IANA time zone %r (e.g. Europe/Moscow)" % value) from None
        return value

    @validates("sip_domain")
    def _lower_domain(self, key: str, value: str) -> str:
        return value.strip().lower()

    def __str__(self) -> str:
        return "%s (%s)" % (self.name, self.sip_domain)


class VoicemailBox(TenantScoped, Base):
    __tablename__ = "voicemail_box"
    __table_args__ = (
        _tenant_key("voicemail_box"),
        UniqueConstraint("tenant_id", "name"),
        UniqueConstraint("tenant_id", "extension"),
        CheckConstraint("max_message_seconds > 0", name="max_message_seconds"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    extension: Mapped[str | None] = mapped_column(String(6))
    greeting: Mapped[str | None] = mapped_column(String(255))
    email: Mapped[str | None] = mapped_column(String(254))
    max_message_seconds: Mapped[int] = mapped_column(Integer, default=120)

    tenant: Mapped[Tenant] = relationship()
    owners: Mapped[list[VoicemailBoxOwner]] = relationship(
        back_populates="box", cascade="all, delete-orphan", passive_deletes=True,
        primaryjoin="and_(VoicemailBox.tenant_id == VoicemailBoxOwner.tenant_id, "
        "VoicemailBox.id == VoicemailBoxOwner.box_id)",
        foreign_keys="[VoicemailBoxOwner.tenant_id, VoicemailBoxOwner.box_id]",
    )

    def __str__(self) -> str:
        return self.name


class Employee(TenantScoped, Base):
    __tablename__ = "employee"
    __table_args__ = (
        _tenant_key("employee"),
        UniqueConstraint("tenant_id", "extension"),
        _same_tenant_fk(("tenant_id", "voicemail_box_id"), "voicemail_box", ondelete=None),
        CheckConstraint("ring_seconds > 0", name="ring_seconds"),
        CheckConstraint("forward_to_mobile_after IS NULL OR forward_to_mobile_after >= 0", name="forward_after"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    extension: Mapped[str] = mapped_column(String(6))
    sip_password: Mapped[str] = mapped_column(String(128), default=generate_sip_password)
    email: Mapped[str | None] = mapped_column(String(254))
    role: Mapped[Role] = mapped_column(_enum(Role, "role"), default=Role.USER)
    mobile: Mapped[str | None] = mapped_column(String(32))
    forward_to_mobile_after: Mapped[int | None] = mapped_column(Integer)
    ring_seconds: Mapped[int] = mapped_column(Integer, default=20)
    outbound_caller_id: Mapped[str | None] = mapped_column(String(32))
    logged_in: Mapped[bool] = mapped_column(Boolean, default=True)
    voicemail_box_id: Mapped[int | None] = mapped_column(Integer)

    tenant: Mapped[Tenant] = relationship(back_populates="employees")
    voicemail_box: Mapped[VoicemailBox | None] = relationship(
        primaryjoin="Employee.voicemail_box_id == VoicemailBox.id",
        foreign_keys="[Employee.voicemail_box_id]",
    )

    def __str__(self) -> str:
        return "%s %s" % (self.extension, self.name)


class VoicemailBoxOwner(TenantScoped, Base):
    __tablename__ = "voicemail_box_owner"
    __table_args__ = (
        _same_tenant_fk(("tenant_id", "box_id"), "voicemail_box"),
        _same_tenant_fk(("tenant_id", "employee_id"), "employee"),
        UniqueConstraint("box_id", "employee_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    box_id: Mapped[int] = mapped_column(Integer)
    employee_id: Mapped[int] = mapped_column(Integer, index=True)

    box: Mapped[VoicemailBox] = relationship(
        back_populates="owners", overlaps="owners",
        primaryjoin="VoicemailBoxOwner.box_id == VoicemailBox.id", foreign_keys="[VoicemailBoxOwner.box_id]",
    )
    employee: Mapped[Employee] = relationship(
        primaryjoin="VoicemailBoxOwner.employee_id == Employee.id", foreign_keys="[VoicemailBoxOwner.employee_id]",
    )


NoAnswerTarget = target_mixin("no_answer")


class Department(NoAnswerTarget, TenantScoped, Base):  # type: ignore[valid-type, misc]
    __tablename__ = "department"
    __table_args__ = (
        _tenant_key("department"),
        UniqueConstraint("tenant_id", "extension"),
        UniqueConstraint("tenant_id", "name"),
        target_check("no_answer"),
        CheckConstraint("ring_seconds > 0 AND no_answer_timeout > 0 AND wrapup_seconds >= 0", name="times"),
        CheckConstraint("queue_max_wait > 0 AND queue_max_length >= 0", name="queue_limits"),
        CheckConstraint("pause_after_missed >= 0 AND stats_window_days BETWEEN 1 AND 31", name="member_rules"),
        CheckConstraint("queue_announce_every BETWEEN 5 AND 600", name="queue_announce"),
        CheckConstraint("queue_callback_attempts BETWEEN 1 AND 10 AND queue_callback_retry_delay BETWEEN 0 AND 3600",
                        name="queue_callback_retries"),
        _same_tenant_fk(("tenant_id", "queue_callback_box_id"), "voicemail_box", ondelete=None),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    extension: Mapped[str] = mapped_column(String(6))
    strategy: Mapped[Strategy] = mapped_column(_enum(Strategy, "strategy"), default=Strategy.RING_ALL)
    ring_seconds: Mapped[int] = mapped_column(Integer, default=20)
    no_answer_timeout: Mapped[int] = mapped_column(Integer, default=60)
    wrapup_seconds: Mapped[int] = mapped_column(Integer, default=0)
    pause_after_missed: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    stats_window_days: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    queue_music: Mapped[str | None] = mapped_column(String(255))
    queue_announcement: Mapped[str | None] = mapped_column(String(255))
    queue_announce_position: Mapped[bool] = mapped_column(Boolean, default=False)
    queue_max_wait: Mapped[int] = mapped_column(Integer, default=300)
    queue_max_length: Mapped[int] = mapped_column(Integer, default=0)
    queue_callback_allowed: Mapped[bool] = mapped_column(Boolean, default=False)
    queue_callback_key: Mapped[str] = mapped_column(String(1), default="1")
    queue_announce_every: Mapped[int] = mapped_column(Integer, default=30, server_default="30")
    queue_callback_apology: Mapped[str | None] = mapped_column(String(255))  # expired callback (sound)
    queue_callback_prompt: Mapped[str | None] = mapped_column(String(255))  # "this is your callback" (sound)
    queue_callback_attempts: Mapped[int] = mapped_column(Integer, default=3, server_default="3")
    queue_callback_retry_delay: Mapped[int] = mapped_column(Integer, default=60, server_default="60")
    # The expired callback's voicemail box (None: the no-answer target's box, if it is one).
    queue_callback_box_id: Mapped[int | None] = mapped_column(Integer)
    outbound_caller_id: Mapped[str | None] = mapped_column(String(32))  # a number of the tenant
    no_answer: Mapped[TargetRef]  # composite from NoAnswerTarget

    tenant: Mapped[Tenant] = relationship(back_populates="departments")
    queue_callback_box: Mapped[VoicemailBox | None] = relationship(
        primaryjoin="Department.queue_callback_box_id == VoicemailBox.id",
        foreign_keys="[Department.queue_callback_box_id]",
    )
    members: Mapped[list[DepartmentMember]] = relationship(
        back_populates="department", cascade="all, delete-orphan", passive_deletes=True,
        order_by="DepartmentMember.order",
        primaryjoin="and_(Department.tenant_id == DepartmentMember.tenant_id, "
        "Department.id == DepartmentMember.department_id)",
        foreign_keys="[DepartmentMember.tenant_id, DepartmentMember.department_id]",
    )

    def __str__(self) -> str:
        return "%s %s" % (self.extension, self.name)


class DepartmentMember(TenantScoped, Base):
    __tablename__ = "department_member"
    __table_args__ = (
        _same_tenant_fk(("tenant_id", "department_id"), "department"),
        _same_tenant_fk(("tenant_id", "employee_id"), "employee"),
        UniqueConstraint("department_id", "employee_id"),
        CheckConstraint("weight >= 0 AND escalation_offset >= 0", name="weights"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    department_id: Mapped[int] = mapped_column(Integer)
    employee_id: Mapped[int] = mapped_column(Integer, index=True)
    order: Mapped[int] = mapped_column(Integer, default=0)
    weight: Mapped[int] = mapped_column(Integer, default=5)
    escalation_offset: Mapped[int] = mapped_column(Integer, default=0)

    department: Mapped[Department] = relationship(
        back_populates="members", overlaps="members",
        primaryjoin="DepartmentMember.department_id == Department.id",
        foreign_keys="[DepartmentMember.department_id]",
    )
    employee: Mapped[Employee] = relationship(
        primaryjoin="DepartmentMember.employee_id == Employee.id",
        foreign_keys="[DepartmentMember.employee_id]",
    )


class Schedule(TenantScoped, Base):
    __tablename__ = "schedule"
    __table_args__ = (
        _tenant_key("schedule"),
        UniqueConstraint("tenant_id", "name"),
        # At most one default schedule per tenant (partial unique index).
        Index(
            "uq_schedule_one_default", "tenant_id", unique=True,
            postgresql_where=text("is_default"), sqlite_where=text("is_default"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    is_default: Mapped[bool] = mapped_column(Boolean, default=False)

    tenant: Mapped[Tenant] = relationship()
    intervals: Mapped[list[ScheduleInterval]] = relationship(
        back_populates="schedule", cascade="all, delete-orphan", passive_deletes=True,
        order_by="(ScheduleInterval.weekday, ScheduleInterval.start_minute)",
        primaryjoin="and_(Schedule.tenant_id == ScheduleInterval.tenant_id, "
        "Schedule.id == ScheduleInterval.schedule_id)",
        foreign_keys="[ScheduleInterval.tenant_id, ScheduleInterval.schedule_id]",
    )
    exceptions: Mapped[list[ScheduleException]] = relationship(
        back_populates="schedule", cascade="all, delete-orphan", passive_deletes=True,
        order_by="ScheduleException.day",
        primaryjoin="and_(Schedule.tenant_id == ScheduleException.tenant_id, "
        "Schedule.id == ScheduleException.schedule_id)",
        foreign_keys="[ScheduleException.tenant_id, ScheduleException.schedule_id]",
    )

    def __str__(self) -> str:
        return self.name


class ScheduleInterval(TenantScoped, Base):
    __tablename__ = "schedule_interval"
    __table_args__ = (
        _same_tenant_fk(("tenant_id", "schedule_id"), "schedule"),
        CheckConstraint("weekday BETWEEN 0 AND 6", name="weekday"),
        CheckConstraint("start_minute >= 0 AND start_minute < end_minute AND end_minute <= 2880", name="minutes"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    schedule_id: Mapped[int] = mapped_column(Integer, index=True)
    weekday: Mapped[int] = mapped_column(Integer)  # 0 = Monday
    start_minute: Mapped[int] = mapped_column(Integer)
    end_minute: Mapped[int] = mapped_column(Integer)  # may pass 1440: spans midnight

    schedule: Mapped[Schedule] = relationship(
        back_populates="intervals", overlaps="intervals",
        primaryjoin="ScheduleInterval.schedule_id == Schedule.id", foreign_keys="[ScheduleInterval.schedule_id]",
    )


class ScheduleException(TenantScoped, Base):
    __tablename__ = "schedule_exception"
    __table_args__ = (
        _same_tenant_fk(("tenant_id", "schedule_id"), "schedule"),
        UniqueConstraint("schedule_id", "day"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    schedule_id: Mapped[int] = mapped_column(Integer)
    day: Mapped[date] = mapped_column(Date)
    name: Mapped[str] = mapped_column(String(200), default="")
    closed: Mapped[bool] = mapped_column(Boolean, default=True)
    # Special hours when not closed: "10:00-14:00, 15:00-17:00" (see tenant_doc.hours).
    intervals: Mapped[str] = mapped_column(String(255), default="")

    schedule: Mapped[Schedule] = relationship(
        back_populates="exceptions", overlaps="exceptions",
        primaryjoin="ScheduleException.schedule_id == Schedule.id", foreign_keys="[ScheduleException.schedule_id]",
    )


WorkTarget = target_mixin("work")
AfterHoursTarget = target_mixin("after_hours")


class PhoneNumber(WorkTarget, AfterHoursTarget, TenantScoped, Base):  # type: ignore[valid-type, misc]
    __tablename__ = "phone_number"
    __table_args__ = (
        _tenant_key("phone_number"),
        _same_tenant_fk(("tenant_id", "schedule_id"), "schedule", ondelete=None),
        target_check("work"),
        target_check("after_hours"),
        UniqueConstraint("tenant_id", "dial_code"),
        CheckConstraint("length(dial_code) BETWEEN 1 AND 3", name="dial_code"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    e164: Mapped[str] = mapped_column(String(32), unique=True)
    # Employees call out with this number by dialling *7<dial_code>*<number>.
    dial_code: Mapped[str | None] = mapped_column(String(3))
    mode: Mapped[NumberMode] = mapped_column(_enum(NumberMode, "mode"), default=NumberMode.ALWAYS)
    schedule_id: Mapped[int | None] = mapped_column(Integer)  # NULL: the tenant's default
    work: Mapped[TargetRef]
    after_hours: Mapped[TargetRef]

    tenant: Mapped[Tenant] = relationship()
    schedule: Mapped[Schedule | None] = relationship(
        primaryjoin="PhoneNumber.schedule_id == Schedule.id", foreign_keys="[PhoneNumber.schedule_id]",
    )

    @validates("dial_code")
    def _blank_dial_code(self, key: str, value: str | None) -> str | None:
        # "" from a form is no code; the digits rule is tenant_doc.rules.check_dial_code
        return (value or "").strip() or None

    def __str__(self) -> str:
        return self.e164


DefaultTarget = target_mixin("default")
OptionTarget = target_mixin("target")


class VoiceMenu(DefaultTarget, TenantScoped, Base):  # type: ignore[valid-type, misc]
    __tablename__ = "voice_menu"
    __table_args__ = (
        _tenant_key("voice_menu"),
        UniqueConstraint("tenant_id", "name"),
        UniqueConstraint("tenant_id", "extension"),
        target_check("default"),
        CheckConstraint("timeout_seconds > 0 AND max_invalid > 0", name="limits"),
        CheckConstraint("back_digit IN ('0','1','2','3','4','5','6','7','8','9','*')", name="back_digit"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    extension: Mapped[str | None] = mapped_column(String(6))
    greeting: Mapped[str | None] = mapped_column(String(255))
    timeout_seconds: Mapped[int] = mapped_column(Integer, default=5)
    invalid_sound: Mapped[str | None] = mapped_column(String(255))
    max_invalid: Mapped[int] = mapped_column(Integer, default=3)
    direct_dial: Mapped[bool] = mapped_column(Boolean, default=True)
    back_digit: Mapped[str | None] = mapped_column(String(1))  # back to the menu the caller came from
    default: Mapped[TargetRef]

    tenant: Mapped[Tenant] = relationship()
    options: Mapped[list[VoiceMenuOption]] = relationship(
        back_populates="menu", cascade="all, delete-orphan", passive_deletes=True,
        order_by="VoiceMenuOption.digit",
        primaryjoin="and_(VoiceMenu.tenant_id == VoiceMenuOption.tenant_id, VoiceMenu.id == VoiceMenuOption.menu_id)",
        foreign_keys="[VoiceMenuOption.tenant_id, VoiceMenuOption.menu_id]",
    )

    def __str__(self) -> str:
        return self.name


class VoiceMenuOption(OptionTarget, TenantScoped, Base):  # type: ignore[valid-type, misc]
    __tablename__ = "voice_menu_option"
    __table_args__ = (
        _same_tenant_fk(("tenant_id", "menu_id"), "voice_menu"),
        UniqueConstraint("menu_id", "digit"),
        target_check("target"),
        CheckConstraint("target_kind IS NOT NULL", name="target_required"),
        CheckConstraint("digit IN ('0','1','2','3','4','5','6','7','8','9','*','#')", name="digit"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    menu_id: Mapped[int] = mapped_column(Integer)
    digit: Mapped[str] = mapped_column(String(1))
    target: Mapped[TargetRef]

    menu: Mapped[VoiceMenu] = relationship(
        back_populates="options", overlaps="options",
        primaryjoin="VoiceMenuOption.menu_id == VoiceMenu.id", foreign_keys="[VoiceMenuOption.menu_id]",
    )


def split_lines(text: str | None) -> list[str]:
    """A list kept one value a line in a text column (stripped, blanks dropped)."""
    return [line.strip() for line in (text or "").splitlines() if line.strip()]


class CallerRule(OptionTarget, TenantScoped, Base):  # type: ignore[valid-type, misc]
    """A caller-based rule (``orchestrator.core.caller_rules``), tried before the schedule
    in ``position`` order. Values and numbers are kept one a line; the target is the
    rule's destination (last agent / CRM: the fallback; block: the announcement)."""

    __tablename__ = "caller_rule"
    __table_args__ = (
        UniqueConstraint("tenant_id", "name"),
        target_check("target"),
        CheckConstraint("position >= 0", name="position"),
        CheckConstraint("days BETWEEN 1 AND 3650", name="days"),
        CheckConstraint("crm_timeout_ms BETWEEN 100 AND 1500", name="crm_timeout"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    position: Mapped[int] = mapped_column(Integer, default=0)
    match_kind: Mapped[CallerMatch] = mapped_column(_enum(CallerMatch, "caller_match"), default=CallerMatch.LIST)
    match_values: Mapped[str] = mapped_column(Text, default="")
    negate: Mapped[bool] = mapped_column(Boolean, default=False)
    block: Mapped[bool] = mapped_column(Boolean, default=False)
    numbers: Mapped[str] = mapped_column(Text, default="")  # E.164, one a line; empty: all
    days: Mapped[int] = mapped_column(Integer, default=30)
    crm_url: Mapped[str | None] = mapped_column(String(500))
    crm_timeout_ms: Mapped[int] = mapped_column(Integer, default=1000)
    target: Mapped[TargetRef]

    tenant: Mapped[Tenant] = relationship()

    def value_list(self) -> list[str]:
        return split_lines(self.match_values)

    def number_list(self) -> list[str]:
        return split_lines(self.numbers)

    def __str__(self) -> str:
        return self.name
