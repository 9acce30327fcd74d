"""routing_version / index_version bump automatically on flush; publishers hear about it
after commit (and not after a rollback)."""
from __future__ import annotations


import pytest
from sqlalchemy import select
from sqlalchemy.orm import sessionmaker

from orchestrator.db.engine import add_change_publisher
from orchestrator.db.schema import (
    INDEX_VERSION,
    CallRecord,
    Department,
    DepartmentMember,
    Employee,
    PhoneNumber,
    RoutingMeta,
    TargetRef,
    Tenant,
)
from orchestrator.db.queries import record_call


@pytest.fixture
def factory(migrated_any: sessionmaker) -> sessionmaker:
    """Each test runs on PostgreSQL and on SQLite (conftest's empty_db_url)."""
    return migrated_any


@pytest.fixture
def published(factory: sessionmaker) -> list[tuple[dict[int, int], int | None]]:
    calls: list[tuple[dict[int, int], int | None]] = []
    add_change_publisher(factory, lambda changed, index: calls.append((changed, index)))
    return calls


def _version(factory: sessionmaker, tenant_id: int) -> int:
    with factory() as s:
        return s.scalar(select(Tenant.routing_version).where(Tenant.id == tenant_id))


def _index(factory: sessionmaker) -> int:
    with factory() as s:
        return s.scalar(select(RoutingMeta.value).where(RoutingMeta.key == INDEX_VERSION))


def _tenant(factory: sessionmaker, domain: str = "a.example") -> int:
    with factory.begin() as s:
        t = Tenant(name="A", sip_domain=domain)
        s.add(t)
        s.flush()
        return t.id


def test_new_tenant_is_published_with_version_1_and_moves_the_index(factory, published) -> None:
    tid = _tenant(factory)
    assert published == [({tid: 1}, 2)]
    assert _index(factory) == 2


def test_routing_change_bumps_once_per_flush_and_publishes_after_commit(factory, published) -> None:
    tid = _tenant(factory)
    published.clear()
    with factory() as s:
        s.add_all([Employee(tenant_id=tid, name="E1", extension="101"),
                   Employee(tenant_id=tid, name="E2", extension="102"),
                   Department(tenant_id=tid, name="D", extension="200")])
        s.flush()
        assert published == []  # nothing is published before the commit
        s.commit()
    assert _version(factory, tid) == 2  # three rows, one flush: one bump
    assert published == [({tid: 2}, None)]  # employees do not move the index

    with factory() as s:
        dep = s.scalars(select(Department)).one()
        emp = s.scalars(select(Employee).where(Employee.extension == "101")).one()
        dep.members.append(DepartmentMember(employee_id=emp.id))
        s.flush()
        dep.no_answer = TargetRef.of("employee", emp.id)
        s.flush()
        s.commit()
    assert _version(factory, tid) == 4  # two flushes
    assert published[-1] == ({tid: 4}, None)


def test_rollback_publishes_nothing_and_keeps_the_version(factory, published) -> None:
    tid = _tenant(factory)
    published.clear()
    with factory() as s:
        s.add(Employee(tenant_id=tid, name="E", extension="101"))
        s.flush()
        s.rollback()
    assert _version(factory, tid) == 1
    assert published == []


def test_numbers_and_domains_move_the_index_version(factory, published) -> None:
    tid = _tenant(factory)
    index = _index(factory)
    with factory.begin() as s:
        s.add(PhoneNumber(tenant_id=tid, e164="+74950000001", work=TargetRef.of("external", "+74951234567")))
    assert published[-1] == ({tid: 2}, index + 1)
    with factory.begin() as s:  # a new target: the snapshot changes, not the index
        s.scalars(select(PhoneNumber)).one().work = TargetRef.of("announcement", "x.wav")
    assert published[-1] == ({tid: 3}, None)
    with factory.begin() as s:
        s.get(Tenant, tid).sip_domain = "b.example"
    assert published[-1] == ({tid: 4}, index + 2)
    with factory.begin() as s:
        s.get(Tenant, tid).enabled = False
    assert published[-1] == ({tid: 5}, index + 3)
    with factory.begin() as s:
        s.get(Tenant, tid).name = "Renamed"
    assert published[-1] == ({tid: 6}, None)


def test_history_rows_do_not_bump_versions(factory, published) -> None:
    from datetime import datetime, timezone

    tid = _tenant(factory)
    published.clear()
    with factory.begin() as s:
        record_call(s, tid, call_uuid="u1", direction="inbound", caller="+79160000009", destination="+74950000001",
                    started_at=datetime.now(timezone.utc), route="number +74950000001 -> department 200")
    assert published == [] and _version(factory, tid) == 1
    with factory() as s:
        assert s.scalars(select(CallRecord)).one().route.startswith("number")


def test_a_failing_publisher_does_not_undo_the_commit(factory, published) -> None:
    def broken(changed: dict[int, int], index: int | None) -> None:
        raise RuntimeError("redis down")

    add_change_publisher(factory, broken)
    tid = _tenant(factory)
    assert _version(factory, tid) == 1 and published  # later publishers still called


def test_deleting_a_tenant_moves_the_index(factory, published) -> None:
    tid = _tenant(factory)
    index = _index(factory)
    with factory.begin() as s:
        s.delete(s.get(Tenant, tid))
    assert published[-1] == ({}, index + 1)
