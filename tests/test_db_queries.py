"""SIP user lookup for the directory, call records and voicemail messages (SQLite)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterator

import pytest
from sqlalchemy import select
from sqlalchemy.orm import sessionmaker

from orchestrator.db import schema as db
from orchestrator.db.engine import make_engine, make_session_factory
from orchestrator.db.migrate import upgrade
from orchestrator.db.queries import SipUser, find_sip_user, record_call, record_voicemail
from orchestrator.tenant_doc import import_tenant

DEMO = Path(__file__).resolve().parents[1] / "orchestrator" / "demo" / "demo-tenant.yaml"


@pytest.fixture
def factory(tmp_path: Path) -> Iterator[sessionmaker]:
    url = "sqlite:///%s" % (tmp_path / "q.sqlite3")
    upgrade(url)
    engine = make_engine(url)
    f = make_session_factory(engine)
    with f.begin() as s:
        import_tenant(s, DEMO.read_text())
    yield f
    engine.dispose()


def test_find_sip_user_by_domain_and_extension(factory: sessionmaker) -> None:
    with factory() as s:
        emp = s.scalars(select(db.Employee).where(db.Employee.extension == "101")).one()
        user = find_sip_user(s, "DEMO.pbx.local", "101")
    assert user == SipUser(tenant_id=emp.tenant_id, employee_id=emp.id, extension="101", name="Ivan Petrov",
                           password=emp.sip_password, domain="demo.pbx.local",
                           outbound_caller_id="+74950000001", email="ivan.petrov@demo.example")
    assert emp.sip_password not in repr(user)
    with factory() as s:
        assert find_sip_user(s, "demo.pbx.local", "199") is None
        assert find_sip_user(s, "nowhere.example", "101") is None
        s.scalars(select(db.Tenant)).one().enabled = False
        s.flush()
        assert find_sip_user(s, "demo.pbx.local", "101") is None  # disabled tenant: no registration


def test_record_call_and_voicemail(factory: sessionmaker) -> None:
    start = datetime(2026, 3, 2, 9, 30, tzinfo=timezone.utc)
    with factory.begin() as s:
        tid = s.scalars(select(db.Tenant.id)).one()
        emp = s.scalars(select(db.Employee.id).where(db.Employee.extension == "102")).one()
        box = s.scalars(select(db.VoicemailBox.id).where(db.VoicemailBox.name == "Sales voicemail")).one()
        call_id = record_call(s, tid, call_uuid="c-1", direction="inbound", caller="+79161112233",
                              destination="+74950000001", started_at=start, answered_at=start + timedelta(seconds=4),
                              ended_at=start + timedelta(seconds=60), answered_by_employee_id=emp,
                              hangup_cause="NORMAL_CLEARING", route="number -> department 200 -> employee 102")
        vm_id = record_voicemail(s, tid, box, "+79161112233", "c-2", "/rec/c-2.wav", 12500)
    with factory() as s:
        rec = s.get(db.CallRecord, call_id)
        assert (rec.answered_by_employee_id, rec.hangup_cause, rec.direction) == (emp, "NORMAL_CLEARING", "inbound")
        msg = s.get(db.VoicemailMessage, vm_id)
        assert (msg.box_id, msg.duration_ms, msg.recording_path) == (box, 12500, "/rec/c-2.wav")
        with pytest.raises(ValueError):
            record_call(s, tid, call_uuid="c-3", direction="sideways", caller="", destination="", started_at=start)
        with pytest.raises(ValueError):
            record_call(s, tid + 1, call_uuid="c-4", direction="internal", caller="101", destination="102",
                        started_at=start, answered_by_employee_id=emp)


def test_call_path_history_insert_never_attaches_another_tenants_employee(migrated_any):
    """insert_call_record (the orchestrator's one-statement insert) keeps the same rule
    as record_call: an employee of another tenant is not attached."""
    from datetime import datetime, timezone

    from sqlalchemy import select

    from orchestrator.db.history import CallRecord
    from orchestrator.db.models import Employee, Tenant
    from orchestrator.db.queries import insert_call_record

    with migrated_any() as s:
        a = Tenant(name="Ins A", sip_domain="ins-a.test")
        b = Tenant(name="Ins B", sip_domain="ins-b.test")
        s.add_all([a, b])
        s.flush()
        ea = Employee(tenant_id=a.id, name="A", extension="101", sip_password="x" * 16)
        eb = Employee(tenant_id=b.id, name="B", extension="101", sip_password="x" * 16)
        s.add_all([ea, eb])
        s.flush()
        now = datetime.now(timezone.utc)
        for uuid, emp in (("ins-own", ea.id), ("ins-foreign", eb.id), ("ins-none", None)):
            insert_call_record(s, a.id, answered_by_employee_id=emp, call_uuid=uuid, direction="inbound",
                               caller="+7812", destination="+7495", started_at=now, ended_at=now, route="r")
        s.commit()
        rows = {r.call_uuid: r.answered_by_employee_id for r in s.scalars(select(CallRecord).where(CallRecord.tenant_id == a.id))}
    assert rows == {"ins-own": ea.id, "ins-foreign": None, "ins-none": None}


def test_box_recipients_are_the_box_then_every_owner_once(factory: sessionmaker) -> None:
    from orchestrator.db.queries import box_recipients
    with factory.begin() as s:
        box = s.scalars(select(db.VoicemailBox).where(db.VoicemailBox.name == "Sales voicemail")).one()
        emps = {e.extension: e for e in s.scalars(select(db.Employee).where(db.Employee.tenant_id == box.tenant_id))}
        for ext in ("103", "102"):  # two more owners; 102 writes her address in capitals
            s.add(db.VoicemailBoxOwner(tenant_id=box.tenant_id, box_id=box.id, employee_id=emps[ext].id))
        emps["102"].email = "Maria.Ivanova@demo.example"
        emps["103"].email = None  # an owner without an address is skipped
        tenant_id, box_id = box.tenant_id, box.id
    with factory() as s:
        assert box_recipients(s, tenant_id, box_id, "sales@demo.example") == (
            "sales@demo.example, ivan.petrov@demo.example, Maria.Ivanova@demo.example")
        # The box without its own address: the owners only; an owner's address given as the box's: once.
        assert box_recipients(s, tenant_id, box_id, None) == "ivan.petrov@demo.example, Maria.Ivanova@demo.example"
        assert box_recipients(s, tenant_id, box_id, "maria.ivanova@demo.example") == (
            "maria.ivanova@demo.example, ivan.petrov@demo.example")
        other = s.scalars(select(db.VoicemailBox).where(db.VoicemailBox.name == "Support voicemail")).one()
        assert box_recipients(s, tenant_id, other.id, None) == "olga.kuznetsova@demo.example"
