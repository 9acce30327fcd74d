"""load_tenant_snapshot / load_routing_index build exactly the core model (PostgreSQL)."""
from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Iterator

import pytest
from sqlalchemy import event, select
from sqlalchemy.orm import sessionmaker

from orchestrator.core.model import (
    CallerMatch,
    CallerRule,
    Department,
    Employee,
    Interval,
    Member,
    MenuOption,
    NumberMode,
    PhoneNumber,
    QueueSettings,
    Role,
    Schedule,
    ScheduleException,
    Strategy,
    Target,
    TargetKind,
    TenantSnapshot,
    VoiceMenu,
    VoicemailBox,
)
from orchestrator.db import schema as db
from orchestrator.db.engine import make_engine, make_session_factory
from orchestrator.db.migrate import upgrade
from orchestrator.db.snapshot import load_routing_index, load_tenant_snapshot
from orchestrator.tenant_doc import import_tenant

DEMO = Path(__file__).resolve().parents[1] / "orchestrator" / "demo" / "demo-tenant.yaml"
OTHER = """
tenant: {name: Other, sip_domain: other.example}
employees: [{name: Solo, extension: "10"}]
numbers: [{number: "+74957770000", work: {employee: "10"}}]
"""


@pytest.fixture
def factory(fresh_pg_url: str) -> Iterator[sessionmaker]:
    upgrade(fresh_pg_url)
    engine = make_engine(fresh_pg_url)
    yield make_session_factory(engine)
    engine.dispose()


def test_demo_tenant_snapshot_is_exactly_the_core_model(factory: sessionmaker) -> None:
    with factory.begin() as s:
        tid = import_tenant(s, DEMO.read_text())
    with factory() as s:
        emp = {e.extension: e.id for e in s.scalars(select(db.Employee))}
        dep = {d.extension: d.id for d in s.scalars(select(db.Department))}
        box = {b.name: b.id for b in s.scalars(select(db.VoicemailBox))}
        menu_id = s.scalars(select(db.VoiceMenu.id)).one()
        sched_id = s.scalars(select(db.Schedule.id)).one()
        rule = {r.name: r.id for r in s.scalars(select(db.CallerRule))}
        version = s.get(db.Tenant, tid).routing_version
        statements: list[str] = []
        event.listen(s.get_bind(), "before_cursor_execute", lambda *a: statements.append(a[2]))
        snap = load_tenant_snapshot(s, tid)
        assert len(statements) <= 13  # one query per table, not one per row

    def employee(ext: str, name: str, **kw: object) -> Employee:
        return Employee(id=emp[ext], name=name, extension=ext, email="%s@demo.example" % name.lower().replace(" ", "."),
                        **kw)  # type: ignore[arg-type]

    sales_vm = Target(TargetKind.VOICEMAIL, box["Sales voicemail"])
    expected = TenantSnapshot(
        tenant_id=tid, name="Demo Trading LLC", sip_domain="demo.pbx.local", timezone="Europe/Moscow",
        enabled=True, max_concurrent_calls=20, version=version,
        employees={e.id: e for e in [
            employee("101", "Ivan Petrov", role=Role.ADMINISTRATOR, mobile="+79160000001",
                     forward_to_mobile_after=10, outbound_caller_id="+74950000001"),
            employee("102", "Maria Ivanova", outbound_caller_id="+74950000001"),
            employee("103", "Sergey Smirnov", outbound_caller_id="+74950000001"),
            employee("104", "Olga Kuznetsova"),
            employee("105", "Alexey Popov", role=Role.RESTRICTED),
        ]},
        departments={
            dep["200"]: Department(
                id=dep["200"], name="Sales", extension="200", strategy=Strategy.RING_ALL, ring_seconds=20,
                no_answer_timeout=30, no_answer_target=sales_vm,
                members=tuple(Member(employee_id=emp[x], order=i) for i, x in enumerate(["101", "102", "103"])),
            ),
            dep["300"]: Department(
                id=dep["300"], name="Support", extension="300", strategy=Strategy.LONGEST_IDLE, ring_seconds=15,
                no_answer_timeout=120, no_answer_target=Target(TargetKind.VOICEMAIL, box["Support voicemail"]),
                wrapup_seconds=7,
                queue=QueueSettings(music="local_stream://moh", announce_position=True, callback_allowed=True),
                members=tuple(Member(employee_id=emp[x], order=i) for i, x in enumerate(["104", "105"])),
            ),
        },
        numbers={
            "+74950000001": PhoneNumber("+74950000001", NumberMode.ALWAYS, Target(TargetKind.DEPARTMENT, dep["200"])),
            "+74950000002": PhoneNumber("+74950000002", NumberMode.ALWAYS, Target(TargetKind.EMPLOYEE, emp["101"])),
            "+74950000003": PhoneNumber("+74950000003", NumberMode.SCHEDULE, Target(TargetKind.MENU, menu_id),
                                        sales_vm),
        },
        schedules={sched_id: Schedule(
            id=sched_id, name="Office hours", is_default=True,
            intervals=tuple(Interval(d, s, e) for d in range(5) for s, e in ((540, 780), (840, 1080))),
            exceptions=(ScheduleException(date(2026, 1, 1), name="New Year"),
                        ScheduleException(date(2026, 5, 9), name="Victory Day")),
        )},
        menus={menu_id: VoiceMenu(
            id=menu_id, name="Main", greeting="ivr/ivr-welcome_to_freeswitch.wav",
            options=(MenuOption("1", Target(TargetKind.DEPARTMENT, dep["200"])),
                     MenuOption("2", Target(TargetKind.DEPARTMENT, dep["300"]))),
            timeout_seconds=5, default_target=Target(TargetKind.DEPARTMENT, dep["200"]), direct_dial=True,
        )},
        voicemail_boxes={
            box["Sales voicemail"]: VoicemailBox(box["Sales voicemail"], "Sales voicemail", "800",
                                                 email="sales@demo.example", owner_employee_ids=(emp["101"],)),
            box["Support voicemail"]: VoicemailBox(box["Support voicemail"], "Support voicemail", "801",
                                                   email="support@demo.example", owner_employee_ids=(emp["104"],)),
        },
        caller_rules=(
            CallerRule(rule["Block list"], "Block list", CallerMatch.LIST, ("+79990000000",), block=True, order=0),
            CallerRule(rule["Foreign callers"], "Foreign callers", CallerMatch.COUNTRY, ("RU",), negate=True,
                       target=Target(TargetKind.DEPARTMENT, dep["300"]), numbers=("+74950000001",), order=1),
        ),
    )
    assert snap == expected
    assert snap.target_for_extension("200") == Target(TargetKind.DEPARTMENT, dep["200"])
    assert snap.default_schedule().id == sched_id


def test_unknown_tenant_has_no_snapshot(factory: sessionmaker) -> None:
    with factory() as s:
        assert load_tenant_snapshot(s, 12345) is None


def test_routing_index_lists_enabled_tenants_only(factory: sessionmaker) -> None:
    with factory.begin() as s:
        demo = import_tenant(s, DEMO.read_text())
        other = import_tenant(s, OTHER)
    with factory() as s:
        index = load_routing_index(s)
    assert dict(index.domains) == {"demo.pbx.local": demo, "other.example": other}
    assert dict(index.numbers) == {"+74950000001": demo, "+74950000002": demo, "+74950000003": demo,
                                   "+74957770000": other}
    with factory.begin() as s:
        s.get(db.Tenant, other).enabled = False
    with factory() as s:
        later = load_routing_index(s)
    assert dict(later.domains) == {"demo.pbx.local": demo}
    assert "+74957770000" not in later.numbers
    assert later.version > index.version
