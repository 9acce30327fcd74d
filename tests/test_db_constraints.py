"""The database itself refuses broken tenant data: duplicates, cross-tenant references,
malformed route targets. Runs on PostgreSQL and SQLite."""
from __future__ import annotations


import pytest
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from orchestrator.core.model import TargetKind
from orchestrator.db.schema import (
    Department,
    DepartmentMember,
    Employee,
    PhoneNumber,
    Schedule,
    TargetRef,
    Tenant,
    VoiceMenu,
    VoiceMenuOption,
    VoicemailBox,
    VoicemailBoxOwner,
)
from orchestrator.db.queries import record_voicemail
from orchestrator.tenant_doc import check_tenant, errors_for


@pytest.fixture
def factory(migrated_any: sessionmaker) -> sessionmaker:
    """Each test runs on PostgreSQL and on SQLite (conftest's empty_db_url)."""
    return migrated_any


def _two_tenants(session: Session) -> tuple[Tenant, Tenant]:
    a = Tenant(name="A", sip_domain="a.example", timezone="Europe/Moscow")
    b = Tenant(name="B", sip_domain="b.example")
    session.add_all([a, b])
    session.flush()
    for t in (a, b):
        session.add(Employee(tenant_id=t.id, name="Emp", extension="101"))
        session.add(Department(tenant_id=t.id, name="Sales", extension="200"))
    session.flush()
    return a, b


def _emp(session: Session, tenant: Tenant) -> Employee:
    return session.query(Employee).filter_by(tenant_id=tenant.id).one()


def _dep(session: Session, tenant: Tenant) -> Department:
    return session.query(Department).filter_by(tenant_id=tenant.id).one()


def _refused(session: Session, *rows: object) -> None:
    session.add_all(rows)
    with pytest.raises(IntegrityError):
        session.flush()
    session.rollback()


def test_same_extension_twice_in_a_tenant_is_refused_but_fine_in_another(factory: sessionmaker) -> None:
    with factory() as s:
        a, b = _two_tenants(s)  # both tenants already have 101: different tenants are fine
        s.commit()
        _refused(s, Employee(tenant_id=a.id, name="Dup", extension="101"))


def test_member_of_another_tenants_employee_is_refused(factory: sessionmaker) -> None:
    with factory() as s:
        a, b = _two_tenants(s)
        s.commit()
        dep_a, emp_b = _dep(s, a), _emp(s, b)
        _refused(s, DepartmentMember(tenant_id=a.id, department_id=dep_a.id, employee_id=emp_b.id))
        dep_a, emp_a = _dep(s, a), _emp(s, a)
        s.add(DepartmentMember(tenant_id=a.id, department_id=dep_a.id, employee_id=emp_a.id))
        s.flush()  # same tenant: fine
        _refused(s, DepartmentMember(tenant_id=a.id, department_id=dep_a.id, employee_id=emp_a.id))  # twice


def test_cross_tenant_voicemail_owner_box_and_schedule_are_refused(factory: sessionmaker) -> None:
    with factory() as s:
        a, b = _two_tenants(s)
        box_b = VoicemailBox(tenant_id=b.id, name="B box")
        sched_b = Schedule(tenant_id=b.id, name="B hours")
        s.add_all([box_b, sched_b])
        s.commit()
        emp_a = _emp(s, a)
        _refused(s, VoicemailBoxOwner(tenant_id=a.id, box_id=box_b.id, employee_id=emp_a.id))
        emp_a = _emp(s, a)
        emp_a.voicemail_box_id = box_b.id
        with pytest.raises(IntegrityError):
            s.flush()
        s.rollback()
        _refused(s, PhoneNumber(tenant_id=a.id, e164="+74951110000", schedule_id=sched_b.id,
                                work=TargetRef.of("employee", 1)))
        with pytest.raises(IntegrityError):
            record_voicemail(s, a.id, box_b.id, "+79161234567", "uuid-1", "/tmp/x.wav", 1000)
        s.rollback()


def test_number_is_globally_unique_and_one_default_schedule_per_tenant(factory: sessionmaker) -> None:
    with factory() as s:
        a, b = _two_tenants(s)
        s.add(PhoneNumber(tenant_id=a.id, e164="+74951110001", work=TargetRef.of("department", 1)))
        s.add(Schedule(tenant_id=a.id, name="Main", is_default=True))
        s.add(Schedule(tenant_id=b.id, name="Main", is_default=True))  # another tenant: fine
        s.commit()
        _refused(s, PhoneNumber(tenant_id=b.id, e164="+74951110001", work=TargetRef.of("department", 1)))
        _refused(s, Schedule(tenant_id=a.id, name="Second", is_default=True))
        s.add(Schedule(tenant_id=a.id, name="Second", is_default=False))
        s.flush()


@pytest.mark.parametrize("target", [
    TargetRef(kind="department"),  # no ref_id
    TargetRef(kind="external", ref_id=3),  # no number
    TargetRef(kind="employee", ref_id=3, number="+74951234567"),  # both
    TargetRef(kind="nowhere", ref_id=3),
    TargetRef(ref_id=3),  # no kind
])
def test_malformed_route_target_is_refused_by_the_check_constraint(factory: sessionmaker, target: TargetRef) -> None:
    with factory() as s:
        a, _ = _two_tenants(s)
        s.commit()
        _refused(s, VoiceMenu(tenant_id=a.id, name="M", default=target))


def test_well_formed_targets_of_every_kind_are_stored(factory: sessionmaker) -> None:
    with factory() as s:
        a, _ = _two_tenants(s)
        menu = VoiceMenu(tenant_id=a.id, name="M", default=TargetRef.of("announcement", None))
        s.add(menu)
        s.flush()
        for digit, t in zip("123456", [
            TargetRef.of("department", 1), TargetRef.of("employee", 1), TargetRef.of("menu", menu.id),
            TargetRef.of("voicemail", 1), TargetRef.of("external", "+74951234567"),
            TargetRef.of("announcement", "ivr/closed.wav"),
        ]):
            menu.options.append(VoiceMenuOption(digit=digit, target=t))
        s.commit()
        s.expire_all()
        kinds = [o.target.to_core().kind for o in s.get(VoiceMenu, menu.id).options]
        assert kinds == [TargetKind.DEPARTMENT, TargetKind.EMPLOYEE, TargetKind.MENU, TargetKind.VOICEMAIL,
                         TargetKind.EXTERNAL, TargetKind.ANNOUNCEMENT]
        assert s.get(VoiceMenu, menu.id).default.to_core().sound is None


def test_target_pointing_into_another_tenant_is_refused_by_validation(factory: sessionmaker) -> None:
    """ref_id is not a foreign key (it points into one of four tables): validation checks it."""
    with factory() as s:
        a, b = _two_tenants(s)
        s.commit()
        dep_a, dep_b = _dep(s, a), _dep(s, b)
        assert check_tenant(s, a.id) == []
        dep_a.no_answer = TargetRef.of("department", dep_b.id)
        errors = check_tenant(s, a.id)
        assert [(e.field, "not in this tenant" in e.message) for e in errors] == [
            ("departments[0].no_answer.department", True)
        ]
        assert list(errors_for(s, a.id, dep_a)) == ["no_answer"]


def test_extension_clash_between_employee_and_department_is_refused_by_validation(factory: sessionmaker) -> None:
    with factory() as s:
        a, _ = _two_tenants(s)
        emp = Employee(tenant_id=a.id, name="Clash", extension="200")  # Sales is 200
        s.add(emp)
        assert errors_for(s, a.id, emp) == {"extension": ["extension 200 is already used by department Sales "
                                                           "(departments[0])"]}


def test_timezone_is_validated_on_the_model() -> None:
    with pytest.raises(ValueError, match="IANA"):
        Tenant(name="x", sip_domain="x.example", timezone="Mars/Olympus")


def test_repr_never_shows_the_sip_password(factory: sessionmaker) -> None:
    with factory() as s:
        a, _ = _two_tenants(s)
        emp = _emp(s, a)
        assert len(emp.sip_password) >= 20
        assert emp.sip_password not in repr(emp) and emp.sip_password not in str(emp)
        assert _emp(s, a).sip_password != s.query(Employee).filter(Employee.tenant_id != a.id).one().sip_password
