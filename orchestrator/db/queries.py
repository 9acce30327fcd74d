"""Small lookups and inserts for the call path and FreeSWITCH's directory.

Functions add and flush; the caller owns the transaction (``with factory.begin() as s``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Mapping, Sequence

from sqlalchemy import Table, func, insert, select
from sqlalchemy.orm import Session

from orchestrator.db.history import DIRECTIONS, MISSED_RESULTS, CallRecord, FaxMessage, MissedOffer, VoicemailMessage
from orchestrator.core.model import mail_recipients
from orchestrator.db.models import Employee, Tenant, VoicemailBox, VoicemailBoxOwner


@dataclass(frozen=True)
class SipUser:
    tenant_id: int
    employee_id: int
    extension: str
    name: str
    password: str = field(repr=False)
    domain: str
    outbound_caller_id: str | None = None
    email: str | None = None


def find_sip_user(session: Session, domain: str, user: str) -> SipUser | None:
    """The employee registering as ``user@domain`` (an enabled tenant's), or None."""
    row = session.execute(
        select(Employee, Tenant.sip_domain)
        .join(Tenant, Tenant.id == Employee.tenant_id)
        .where(func.lower(Tenant.sip_domain) == domain.strip().lower())
        .where(Tenant.enabled.is_(True))
        .where(Employee.extension == user.strip())
    ).first()
    if row is None:
        return None
    emp, sip_domain = row
    return SipUser(
        tenant_id=emp.tenant_id, employee_id=emp.id, extension=emp.extension, name=emp.name,
        password=emp.sip_password, domain=sip_domain, outbound_caller_id=emp.outbound_caller_id, email=emp.email,
    )


def record_call(
    session: Session,
    tenant_id: int,
    *,
    call_uuid: str,
    direction: str,
    caller: str,
    destination: str,
    started_at: datetime,
    answered_at: datetime | None = None,
    ended_at: datetime | None = None,
    answered_by_employee_id: int | None = None,
    hangup_cause: str | None = None,
    route: str = "",
) -> int:
    """Insert one call_record row (flushed, not committed); returns its id."""
    if direction not in DIRECTIONS:
        raise ValueError("direction must be one of %s, got %r" % (", ".join(DIRECTIONS), direction))
    if answered_by_employee_id is not None:
        owner = session.scalar(select(Employee.tenant_id).where(Employee.id == answered_by_employee_id))
        if owner != tenant_id:
            raise ValueError("employee %d is not of tenant %d" % (answered_by_employee_id, tenant_id))
    record = CallRecord(**fit_to_columns(CALL_RECORD_TABLE, dict(
        tenant_id=tenant_id, call_uuid=call_uuid, direction=direction, caller=caller, destination=destination,
        started_at=started_at, answered_at=answered_at, ended_at=ended_at,
        answered_by_employee_id=answered_by_employee_id, hangup_cause=hangup_cause, route=route,
    )))
    session.add(record)
    session.flush()
    return record.id


def insert_call_record(session: Session, tenant_id: int, *, answered_by_employee_id: int | None, **values: object) -> None:
    """The call path's history insert: one INSERT, no ORM unit of work, no extra SELECT.

    The employee is attached only if they are the tenant's (a scalar subquery in the same
    statement), so a stale id can never point a row at another tenant's employee.
    """
    if values.get("direction") not in DIRECTIONS:
        raise ValueError("direction must be one of %s, got %r" % (", ".join(DIRECTIONS), values.get("direction")))
    employee: object = None
    if answered_by_employee_id is not None:
        employee = (select(Employee.id)
                    .where(Employee.id == answered_by_employee_id, Employee.tenant_id == tenant_id)
                    .scalar_subquery())
    session.execute(insert(CallRecord).values(tenant_id=tenant_id, answered_by_employee_id=employee,
                                              **fit_to_columns(CALL_RECORD_TABLE, dict(values))))


# The columns of a call_record row as the history writer queues it (``CallRow``).
CALL_ROW_COLUMNS = ("tenant_id", "call_uuid", "direction", "caller", "destination", "started_at", "answered_at",
                    "ended_at", "answered_by_employee_id", "hangup_cause", "route")
CallRow = Mapping[str, Any]

# Why insert_call_records left a row out.
# The tables themselves, for Core INSERTs of whole batches (``insert_call_records``).
CALL_RECORD_TABLE: Table = CallRecord.__table__  # type: ignore[assignment]
MISSED_OFFER_TABLE: Table = MissedOffer.__table__  # type: ignore[assignment]
TENANT_GONE = "tenant gone"
ALREADY_STORED = "already stored"


def _text_limits(table: Table) -> dict[str, int]:
    return {c.name: c.type.length for c in table.columns
            if isinstance(getattr(c.type, "length", None), int)}


_LIMITS: dict[str, dict[str, int]] = {}


def fit_to_columns(table: Table, values: dict[str, Any]) -> dict[str, Any]:
    """``values`` with every text cut to its column's length (in place; returned).

    What FreeSWITCH reports about a call (a caller ID is whatever the caller's SIP
    ``From`` said: any length) must never keep the call out of the history: PostgreSQL
    refuses a value longer than its column (StringDataRightTruncation), which used to
    drop the row. A caller ID is kept to its first 64 characters instead. NUL characters
    (an event header's ``%00``) are removed: psycopg2 refuses a string holding one with a
    ValueError, which is no database error, so the writer would retry that batch for ever."""
    limits = _LIMITS.get(table.name)
    if limits is None:
        limits = _LIMITS[table.name] = _text_limits(table)
    for name, value in values.items():
        if isinstance(value, str):
            if "\x00" in value:
                value = values[name] = value.replace("\x00", "")
            length = limits.get(name)
            if length is not None and len(value) > length:
                values[name] = value[:length]
    return values


def insert_call_records(session: Session, rows: Sequence[CallRow]) -> list[tuple[CallRow, str]]:
    """Insert call_record rows with one executemany INSERT (not committed); returns the
    rows left out, each with why (``TENANT_GONE``, ``ALREADY_STORED``).

    The same rules as ``insert_call_record``, checked for the whole batch with one
    SELECT each instead of a subquery per row: a row of a tenant that no longer exists is
    left out (the database would refuse the whole statement for it); an employee who is
    not the row's tenant's (or no longer exists) is not attached. A call already stored
    (its ``call_uuid``: a retried batch whose commit did go through) is left out, so
    that writing a batch again is harmless. A tenant or employee deleted by another
    transaction between these SELECTs and the INSERT still fails the statement
    (IntegrityError): the caller then writes the rows one by one.
    """
    if not rows:
        return []
    for row in rows:
        if row["direction"] not in DIRECTIONS:
            raise ValueError("direction must be one of %s, got %r" % (", ".join(DIRECTIONS), row["direction"]))
    tenants = set(session.scalars(select(Tenant.id).where(Tenant.id.in_({r["tenant_id"] for r in rows}))))
    employee_ids = {r["answered_by_employee_id"] for r in rows if r["answered_by_employee_id"] is not None}
    owners: dict[int, int] = dict(session.execute(  # type: ignore[arg-type]
        select(Employee.id, Employee.tenant_id).where(Employee.id.in_(employee_ids))).all()) if employee_ids else {}
    stored = set(session.scalars(select(CallRecord.call_uuid).where(CallRecord.call_uuid.in_({r["call_uuid"] for r in rows}))))
    keep: list[dict[str, Any]] = []
    left_out: list[tuple[CallRow, str]] = []
    for row in rows:
        if row["tenant_id"] not in tenants:
            left_out.append((row, TENANT_GONE))
            continue
        if row["call_uuid"] in stored:
            left_out.append((row, ALREADY_STORED))
            continue
        stored.add(row["call_uuid"])
        values = fit_to_columns(CALL_RECORD_TABLE, {name: row[name] for name in CALL_ROW_COLUMNS})
        employee = values["answered_by_employee_id"]
        if employee is not None and owners.get(employee) != values["tenant_id"]:
            values["answered_by_employee_id"] = None
        keep.append(values)
    if keep:
        # A Core INSERT on the table (not the ORM's bulk path, several times dearer in
        # Python): SQLAlchemy 2 sends a list of same-keyed dicts as one multi-row INSERT
        # ("insertmanyvalues") on psycopg2 and sqlite3 alike.
        session.execute(insert(CALL_RECORD_TABLE), keep)
    return left_out


def record_voicemail(
    session: Session,
    tenant_id: int,
    box_id: int,
    caller: str,
    call_uuid: str,
    recording_path: str,
    duration_ms: int,
) -> int:
    """Insert one voicemail_message row (flushed, not committed); returns its id.
    The composite foreign key refuses a box of another tenant."""
    message = VoicemailMessage(**fit_to_columns(VoicemailMessage.__table__, dict(  # type: ignore[arg-type]
        tenant_id=tenant_id, box_id=box_id, caller=caller, call_uuid=call_uuid,
        recording_path=recording_path, duration_ms=duration_ms,
    )))
    session.add(message)
    session.flush()
    return message.id


def voicemail_box_email(session: Session, tenant_id: int, box_id: int) -> str | None:
    return session.scalar(
        select(VoicemailBox.email).where(VoicemailBox.tenant_id == tenant_id, VoicemailBox.id == box_id)
    )


@dataclass(frozen=True)
class VoicemailNotice:
    """A stored voicemail message with what its e-mail needs (box, address, tenant)."""

    tenant_id: int
    message_id: int
    tenant_name: str
    timezone: str
    box_id: int
    box_name: str
    email: str | None
    caller: str
    created_at: datetime
    duration_ms: int
    recording_path: str


def box_recipients(session: Session, tenant_id: int, box_id: int, box_email: str | None) -> str | None:
    """Who a box's messages and faxes are e-mailed to, as one ``To`` value: the box's own
    address, then every owner's (by extension), each once; None when nobody has one."""
    owners = session.scalars(
        select(Employee.email)
        .join(VoicemailBoxOwner, (VoicemailBoxOwner.tenant_id == Employee.tenant_id) & (VoicemailBoxOwner.employee_id == Employee.id))
        .where(VoicemailBoxOwner.tenant_id == tenant_id, VoicemailBoxOwner.box_id == box_id)
        .order_by(Employee.extension)
    ).all()
    return mail_recipients([box_email, *owners])


def voicemail_notice(session: Session, tenant_id: int, message_id: int) -> VoicemailNotice | None:
    """The message ``message_id`` of the tenant, with its box and e-mail; None if gone."""
    row = session.execute(
        select(VoicemailMessage, VoicemailBox.name, VoicemailBox.email, Tenant.name, Tenant.timezone)
        .join(VoicemailBox, (VoicemailBox.tenant_id == VoicemailMessage.tenant_id) & (VoicemailBox.id == VoicemailMessage.box_id))
        .join(Tenant, Tenant.id == VoicemailMessage.tenant_id)
        .where(VoicemailMessage.tenant_id == tenant_id, VoicemailMessage.id == message_id)
    ).first()
    if row is None:
        return None
    message, box_name, email, tenant_name, tz = row
    return VoicemailNotice(
        tenant_id=tenant_id, message_id=message.id, tenant_name=tenant_name, timezone=tz or "UTC",
        box_id=message.box_id, box_name=box_name, email=box_recipients(session, tenant_id, message.box_id, email),
        caller=message.caller,
        created_at=message.created_at, duration_ms=message.duration_ms, recording_path=message.recording_path,
    )


@dataclass(frozen=True)
class Miss:
    employee_id: int
    result: str
    rang_ms: int
    paused: bool = False


def record_missed_offers(session: Session, tenant_id: int, department_id: int, call_uuid: str, offered_at: datetime, misses: list[Miss]) -> None:
    """Insert one missed_offer row per miss (flushed, not committed).

    Employees that are not the tenant's (or no longer exist) are skipped, so a stale
    snapshot can never attach a row to another tenant's employee.
    """
    ids = {m.employee_id for m in misses}
    own = set(session.scalars(select(Employee.id).where(Employee.tenant_id == tenant_id, Employee.id.in_(ids)))) if ids else set()
    for m in misses:
        if m.result not in MISSED_RESULTS:
            raise ValueError("result must be one of %s, got %r" % (", ".join(MISSED_RESULTS), m.result))
        if m.employee_id not in own:
            continue
        session.add(MissedOffer(
            tenant_id=tenant_id, employee_id=m.employee_id, department_id=department_id, call_uuid=call_uuid,
            offered_at=offered_at, rang_ms=m.rang_ms, result=m.result, paused=m.paused,
        ))
    session.flush()


@dataclass(frozen=True)
class MissedOffers:
    """One department call's missed offers, as the history writer queues them."""

    tenant_id: int
    department_id: int
    call_uuid: str
    offered_at: datetime
    misses: tuple[Miss, ...]


def insert_missed_offers(session: Session, groups: Sequence[MissedOffers]) -> None:
    """``record_missed_offers`` for many calls at once: one SELECT and one executemany
    INSERT (not committed), with the same rule: a miss of an employee who is not the
    group's tenant's (or no longer exists) is skipped."""
    for group in groups:
        for m in group.misses:
            if m.result not in MISSED_RESULTS:
                raise ValueError("result must be one of %s, got %r" % (", ".join(MISSED_RESULTS), m.result))
    ids = {m.employee_id for g in groups for m in g.misses}
    owners: dict[int, int] = dict(session.execute(  # type: ignore[arg-type]
        select(Employee.id, Employee.tenant_id).where(Employee.id.in_(ids))).all()) if ids else {}
    rows = [
        fit_to_columns(MISSED_OFFER_TABLE, {
            "tenant_id": g.tenant_id, "employee_id": m.employee_id, "department_id": g.department_id,
            "call_uuid": g.call_uuid, "offered_at": g.offered_at, "rang_ms": m.rang_ms, "result": m.result,
            "paused": m.paused})
        for g in groups for m in g.misses if owners.get(m.employee_id) == g.tenant_id
    ]
    if rows:
        session.execute(insert(MISSED_OFFER_TABLE), rows)  # Core INSERT, as for call records


@dataclass(frozen=True)
class LastAgent:
    employee_id: int
    talked_at: datetime


def last_agent(session: Session, tenant_id: int, callers: tuple[str, ...], now: datetime, days: int) -> LastAgent | None:
    """The employee who last talked with ``callers`` (the forms the number may have been
    recorded in) within ``days`` before ``now``: who answered their latest call, or
    called them (an answered outbound call), whichever is later; None if nobody did.
    Two indexed queries (``ix_call_record_tenant_caller`` / ``_destination``)."""
    if not callers:
        return None
    since = now - timedelta(days=days)
    latest: tuple[int, datetime] | None = None
    for match in (CallRecord.caller.in_(callers),
                  (CallRecord.direction == "outbound") & CallRecord.destination.in_(callers)):
        row = session.execute(
            select(CallRecord.answered_by_employee_id, CallRecord.started_at)
            .where(CallRecord.tenant_id == tenant_id, match, CallRecord.started_at >= since,
                   CallRecord.answered_by_employee_id.is_not(None))
            .order_by(CallRecord.started_at.desc())
            .limit(1)
        ).first()
        if row is not None and row[0] is not None and (latest is None or row[1] > latest[1]):
            latest = (row[0], row[1])
    return LastAgent(latest[0], latest[1]) if latest is not None else None


def record_fax(session: Session, tenant_id: int, box_id: int, caller: str, call_uuid: str, document_path: str,
               pages: int, success: bool = True, result_code: int = 0, result_text: str = "",
               remote_station: str = "") -> int:
    """Insert one fax_message row (flushed, not committed); returns its id. The
    composite foreign key refuses a box of another tenant."""
    fax = FaxMessage(**fit_to_columns(FaxMessage.__table__, dict(  # type: ignore[arg-type]
        tenant_id=tenant_id, box_id=box_id, caller=caller, call_uuid=call_uuid, document_path=document_path,
        pages=pages, success=success, result_code=result_code, result_text=result_text,
        remote_station=remote_station,
    )))
    session.add(fax)
    session.flush()
    return fax.id


@dataclass(frozen=True)
class FaxNotice:
    """A stored fax with what its e-mail needs (box, address, tenant)."""

    tenant_id: int
    fax_id: int
    tenant_name: str
    timezone: str
    box_name: str
    email: str | None
    caller: str
    created_at: datetime
    pages: int
    success: bool
    result_text: str
    remote_station: str
    document_path: str


def fax_notice(session: Session, tenant_id: int, fax_id: int) -> FaxNotice | None:
    """The fax ``fax_id`` of the tenant, with its box and e-mail; None if gone."""
    row = session.execute(
        select(FaxMessage, VoicemailBox.name, VoicemailBox.email, Tenant.name, Tenant.timezone)
        .join(VoicemailBox, (VoicemailBox.tenant_id == FaxMessage.tenant_id) & (VoicemailBox.id == FaxMessage.box_id))
        .join(Tenant, Tenant.id == FaxMessage.tenant_id)
        .where(FaxMessage.tenant_id == tenant_id, FaxMessage.id == fax_id)
    ).first()
    if row is None:
        return None
    fax, box_name, email, tenant_name, tz = row
    return FaxNotice(
        tenant_id=tenant_id, fax_id=fax.id, tenant_name=tenant_name, timezone=tz or "UTC", box_name=box_name,
        email=box_recipients(session, tenant_id, fax.box_id, email), caller=fax.caller, created_at=fax.created_at,
        pages=fax.pages, success=fax.success,
        result_text=fax.result_text, remote_station=fax.remote_station, document_path=fax.document_path,
    )
