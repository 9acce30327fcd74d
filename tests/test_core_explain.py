"""The routing explainer on the demo tenant, built in code; table-driven, fake clock."""
from __future__ import annotations

import json
from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest

from orchestrator.core import callflow
from orchestrator.core.actions import CallInfo, Execute
from orchestrator.core.explain import explain
from orchestrator.core.model import (
    Department,
    Employee,
    Interval,
    Member,
    MenuOption,
    NumberMode,
    PhoneNumber,
    Schedule,
    ScheduleException,
    Strategy,
    Target,
    TargetKind,
    TenantSnapshot,
    VoicemailBox,
    VoiceMenu,
)
from orchestrator.core.plan import Policy

POLICY = Policy(recordings_dir="/rec")
SALES, SUPPORT = Target(TargetKind.DEPARTMENT, 200), Target(TargetKind.DEPARTMENT, 300)
CALLER = "+78121234567"


def ms(local: str, tz: str = "Europe/Moscow") -> int:
    return int(datetime.fromisoformat(local).replace(tzinfo=ZoneInfo(tz)).timestamp() * 1000)


def demo(**over) -> TenantSnapshot:
    """orchestrator/demo/demo-tenant.yaml as the core sees it (ids chosen here)."""
    employees = {
        1: Employee(1, "Ivan Petrov", "101", mobile="+79160000001", forward_to_mobile_after=10),
        2: Employee(2, "Maria Ivanova", "102"),
        3: Employee(3, "Sergey Smirnov", "103"),
        4: Employee(4, "Olga Kuznetsova", "104"),
        5: Employee(5, "Alexey Popov", "105"),
    }
    departments = {
        200: Department(200, "Sales", "200", ring_seconds=20, no_answer_timeout=30,
                        no_answer_target=Target(TargetKind.VOICEMAIL, 800),
                        members=(Member(1), Member(2), Member(3))),
        300: Department(300, "Support", "300", Strategy.LONGEST_IDLE, ring_seconds=15, no_answer_timeout=120,
                        no_answer_target=Target(TargetKind.VOICEMAIL, 801), members=(Member(4), Member(5))),
        # not in the YAML: a no-answer chain Support-line -> Sales, and a cycle
        400: Department(400, "Night desk", "400", ring_seconds=10, no_answer_timeout=10,
                        no_answer_target=SALES, members=(Member(5),)),
        500: Department(500, "Loop A", "500", no_answer_target=Target(TargetKind.DEPARTMENT, 501)),
        501: Department(501, "Loop B", "501", no_answer_target=Target(TargetKind.DEPARTMENT, 500)),
    }
    office = tuple(Interval(d, s, e) for d in range(5) for s, e in ((9 * 60, 13 * 60), (14 * 60, 18 * 60)))
    fields = dict(
        tenant_id=1, name="Demo Trading LLC", sip_domain="demo.pbx.local", timezone="Europe/Moscow",
        employees=employees, departments=departments,
        numbers={
            "+74950000001": PhoneNumber("+74950000001", work_target=SALES),
            "+74950000002": PhoneNumber("+74950000002", work_target=Target(TargetKind.EMPLOYEE, 1)),
            "+74950000003": PhoneNumber("+74950000003", NumberMode.SCHEDULE, Target(TargetKind.MENU, 7),
                                        Target(TargetKind.VOICEMAIL, 800)),
            "+74950000004": PhoneNumber("+74950000004", work_target=Target(TargetKind.DEPARTMENT, 400)),
            "+74950000005": PhoneNumber("+74950000005", work_target=Target(TargetKind.DEPARTMENT, 500)),
        },
        schedules={1: Schedule(1, "Office hours", office, (
            ScheduleException(date(2026, 1, 1), True, (), "New Year"),
            ScheduleException(date(2026, 5, 9), True, (), "Victory Day"),
            ScheduleException(date(2026, 12, 31), False, ((10 * 60, 15 * 60),), "New Year's Eve"),
        ), is_default=True)},
        menus={7: VoiceMenu(7, "Main", greeting="ivr/ivr-welcome_to_freeswitch.wav",
                            options=(MenuOption("1", SALES), MenuOption("2", SUPPORT)), default_target=SALES)},
        voicemail_boxes={
            800: VoicemailBox(800, "Sales voicemail", "800", email="sales@demo.example", owner_employee_ids=(1,)),
            801: VoicemailBox(801, "Support voicemail", "801", email="support@demo.example", owner_employee_ids=(4,)),
        },
    )
    fields.update(over)
    return TenantSnapshot(**fields)


CASES = [
    # (name, dialed, local time, chain must mention, target, step kinds)
    ("saturday evening: after hours voicemail", "+74950000003", "2026-11-28 21:00",
     ["Saturday", "closed: no work hours on Saturday", "after hours (Office hours)"],
     "voicemail Sales voicemail", ["voicemail"]),
    ("tuesday morning: the menu", "+74950000003", "2026-11-24 11:00",
     ["open: Tuesday interval 09:00-13:00", "work hours (Office hours)"], "voice menu Main", ["menu"]),
    ("tuesday lunch break: closed", "+74950000003", "2026-11-24 13:30",
     ["closed: outside Tuesday's work hours (09:00-13:00, 14:00-18:00)"], "voicemail Sales voicemail",
     ["voicemail"]),
    ("holiday on a weekday", "+74950000003", "2026-05-09 11:00",
     ["closed all day: Victory Day"], "voicemail Sales voicemail", ["voicemail"]),
    ("special hours", "+74950000003", "2026-12-31 11:00",
     ["open: special hours of New Year's Eve", "10:00-15:00"], "voice menu Main", ["menu"]),
    ("24/7 department with its no-answer chain", "+74950000004", "2026-11-28 21:00",
     ["24/7"], "department 400 (Night desk)", ["ring", "ring", "voicemail"]),
    ("employee: desk, then mobile", "+74950000002", "2026-11-24 11:00",
     ["24/7"], "employee 101 (Ivan Petrov)", ["ring", "announce"]),
    ("a cycle is capped", "+74950000005", "2026-11-24 11:00",
     ["24/7"], "department 500 (Loop A)", ["announce"]),
    ("unknown number", "+74990000000", "2026-11-24 11:00",
     ["number +74990000000 is not assigned"], "", ["announce"]),
]


@pytest.mark.parametrize("name, dialed, when, mentions, target, kinds", CASES, ids=[c[0] for c in CASES])
def test_explain_reference_cases(name, dialed, when, mentions, target, kinds):
    result = explain(demo(), POLICY, CALLER, dialed, ms(when))
    chain = "\n".join(result.chain)
    for text in mentions:
        assert text in chain, chain
    assert result.target == target
    assert [s.kind for s in result.steps] == kinds
    text = result.render()
    assert CALLER in text and dialed in text
    json.dumps(result.to_dict())  # JSON-ready


@pytest.mark.parametrize("dialed, when", [(c[1], c[2]) for c in CASES])
def test_explain_follows_the_live_call_path(dialed, when):
    """Same labels in the same order as the route the live call starts with."""
    c = callflow.Context(demo(), POLICY, ms(when), lambda: "x")
    first = callflow.start(CallInfo("c1", "public", dialed, CALLER), c)
    result = explain(demo(), POLICY, CALLER, dialed, ms(when))
    assert first.state.route[-1] == result.steps[0].label
    assert len(first.state.plan) + 1 == len(result.steps)
    assert [s.label for s in result.steps[1:]] == [getattr(s, "label") for s in first.state.plan]


def test_menu_lists_its_options_with_what_each_does():
    result = explain(demo(), POLICY, CALLER, "+74950000003", ms("2026-11-24 11:00"))
    (menu,) = result.steps
    assert [(o.key, o.target) for o in menu.options] == [
        ("1", "department 200 (Sales)"), ("2", "department 300 (Support)"), ("no input", "department 200 (Sales)"),
    ]
    support = menu.options[1]
    assert [s.kind for s in support.steps] == ["ring", "voicemail"]
    assert support.steps[0].label == "department 300 (Support), longest idle"
    assert "order decided at call time: longest without a call first" in support.steps[0].details
    assert [(leg.delay, leg.timeout) for leg in support.steps[0].legs] == [(0, 15), (15, 30)]
    assert [leg.who for leg in support.steps[0].legs] == ["Olga Kuznetsova (104)", "Alexey Popov (105)"]
    assert any("support@demo.example" in d for d in support.steps[1].details)
    assert any("extension" in d for d in menu.details)
    text = result.render()
    assert "[2] -> department 300 (Support)" in text and "waits 5 s" in text


def test_department_chain_says_who_rings_in_what_order():
    result = explain(demo(), POLICY, CALLER, "+74950000004", ms("2026-11-28 21:00"))
    night, sales, voicemail = result.steps
    assert [(leg.who, leg.timeout) for leg in night.legs] == [("Alexey Popov (105)", 10)]
    assert [leg.employee_id for leg in sales.legs] == [1, 2, 3]
    assert sales.label == "department 200 (Sales), ring all"
    assert "nobody answers within 30 s: the no-answer target" in sales.details
    assert voicemail.label == "voicemail Sales voicemail"
    assert "2. if not answered: ring: department 200 (Sales)" in result.render()


def test_employee_mobile_leg_is_delayed():
    result = explain(demo(), POLICY, CALLER, "+74950000002", ms("2026-11-24 11:00"))
    ring = result.steps[0]
    assert [(leg.phone, leg.delay, leg.timeout) for leg in ring.legs] == [("desk 101", 0, 30), ("mobile +79160000001", 10, 30)]
    assert "after 10 s" in result.render()


def test_cycle_cap_and_refusals():
    capped = explain(demo(), POLICY, CALLER, "+74950000005", ms("2026-11-24 11:00"))
    assert "stopped" in capped.steps[0].label
    suspended = explain(demo(enabled=False), POLICY, CALLER, "+74950000001", ms("2026-11-24 11:00"))
    assert any("suspended" in line for line in suspended.chain) and suspended.target == ""


def test_internal_call_by_extension():
    result = explain(demo(), POLICY, "101", "300", ms("2026-11-24 11:00"), entry="internal")
    assert result.target == "department 300 (Support)"
    assert [s.kind for s in result.steps] == ["ring", "voicemail"]


def test_plan_ring_legs_do_not_change_the_dial_string():
    """The structured legs sit next to the unchanged dial string."""
    c = callflow.Context(demo(), POLICY, ms("2026-11-24 11:00"), iter(["a", "b", "c"]).__next__)
    d = callflow.start(CallInfo("c1", "public", "+74950000002", CALLER), c)
    bridge = [a for a in d.actions if isinstance(a, Execute) and a.app == "bridge"][0]
    assert bridge.arg == (
        "{ignore_early_media=true,call_timeout=32}"
        "[origination_uuid=a,leg_timeout=30]user/101@demo.pbx.local,"
        "[origination_uuid=b,origination_caller_id_number=%s,leg_timeout=30,leg_delay_start=10]sofia/gateway/pstn/+79160000001" % CALLER
    )


# ------------------------------------------------------------------ caller-based rules

from orchestrator.core.actions import CallerKnown, LookupCaller  # noqa: E402
from orchestrator.core.model import CallerMatch, CallerRule  # noqa: E402

RULES = (
    CallerRule(1, "Block list", CallerMatch.LIST, ("+79990000000",), block=True, order=0),
    CallerRule(2, "Petersburg", CallerMatch.CITY, ("Saint Petersburg",), target=SUPPORT, order=1),
    CallerRule(3, "Foreign", CallerMatch.COUNTRY, ("RU",), negate=True, target=SUPPORT,
               numbers=("+74950000001",), order=2),
    CallerRule(4, "CRM", CallerMatch.CRM, crm_url="http://crm.local/who", crm_timeout_ms=1500, target=SALES, order=3),
)


def crm_says(**known: object):
    asked: list[LookupCaller] = []

    def lookups(ask: LookupCaller) -> CallerKnown:
        asked.append(ask)
        return CallerKnown(ask.request_id, ask.rule_id, **known)  # type: ignore[arg-type]

    return lookups, asked


RULE_CASES = [
    # (name, caller, dialed, crm answer, chain must mention, target, step kinds)
    ("Petersburg caller on Saturday 21:00: the city rule, no schedule", "+78121234567", "+74950000003", None,
     ["caller +78121234567: Russia (RU), St Petersburg", "caller rule 1 'Block list' (list of 1 number, block): no match",
      "caller rule 2 'Petersburg' (city Saint Petersburg): matches (city St Petersburg)",
      "decision: caller rule 'Petersburg': city St Petersburg"],
     "department 300 (Support)", ["ring", "voicemail"]),
    ("block list: refused with CALL_REJECTED", "+79990000000", "+74950000001", None,
     ["matches (+79990000000 is on the list): the call is refused", "refused: caller blocked by rule 'Block list'"],
     "", ["announce"]),
    ("foreign caller on the number the rule is for", "+493012345678", "+74950000001", None,
     ["Germany (DE), Berlin", "caller rule 3 'Foreign' (not country RU): matches (country DE)"],
     "department 300 (Support)", ["ring", "voicemail"]),
    ("foreign caller on another number: the CRM is asked", "+493012345678", "+74950000002",
     {"note": "CRM: unknown caller"},
     ["caller rule 3 'Foreign' (not country RU): not for +74950000002 (only +74950000001)",
      "caller rule 4 'CRM' (CRM lookup, up to 1500 ms): matches: CRM: unknown caller -> the rule's target"],
     "department 200 (Sales)", ["ring", "voicemail"]),
    ("Moscow caller unknown to the CRM: every manager at once", "+74991234567", "+74950000003",
     {"note": "CRM: unknown caller"}, ["Russia (RU), Moscow", "CRM: unknown caller -> the rule's target"],
     "department 200 (Sales)", ["ring", "voicemail"]),
    ("the CRM times out: the rule's target", "+74991234567", "+74950000003",
     {"note": "CRM did not answer within 1500 ms"}, ["CRM did not answer within 1500 ms -> the rule's target"],
     "department 200 (Sales)", ["ring", "voicemail"]),
    ("the CRM names Maria: she rings first, then Sales", "+74991234567", "+74950000003",
     {"extension": "102", "note": "CRM names extension 102"},
     ["CRM names extension 102, rings 102 (Maria Ivanova) first, then the rule's target"],
     "employee 102 (Maria Ivanova), then department 200 (Sales)", ["ring", "ring", "voicemail"]),
]


@pytest.mark.parametrize("name, caller, dialed, known, mentions, target, kinds", RULE_CASES, ids=[c[0] for c in RULE_CASES])
def test_explain_caller_rules_reference_cases(name, caller, dialed, known, mentions, target, kinds):
    lookups, asked = crm_says(**(known or {}))
    result = explain(demo(caller_rules=RULES), POLICY, caller, dialed, ms("2026-11-28 21:00"), lookups=lookups)
    chain = "\n".join(result.chain)
    for text in mentions:
        assert text in chain, chain
    assert result.target == target
    assert [s.kind for s in result.steps] == kinds
    assert bool(asked) == (known is not None)
    assert "follows the company schedule" not in chain  # a rule decided: the schedule is not consulted
    json.dumps(result.to_dict())


def test_explain_reference_case_unknown_to_the_crm_rings_all_managers_at_once():
    lookups, _ = crm_says(note="CRM: unknown caller")
    result = explain(demo(caller_rules=RULES), POLICY, "+74991234567", "+74950000003", ms("2026-11-28 21:00"),
                     lookups=lookups)
    sales = result.steps[0]
    assert sales.label == "department 200 (Sales), ring all"
    assert [(leg.who, leg.delay) for leg in sales.legs] == [
        ("Ivan Petrov (101)", 0), ("Maria Ivanova (102)", 0), ("Sergey Smirnov (103)", 0)]
    text = result.render()
    assert "caller rule 4 'CRM'" in text and "1. ring: department 200 (Sales), ring all" in text


def test_explain_without_lookups_treats_the_caller_as_unknown_to_the_crm():
    result = explain(demo(caller_rules=RULES), POLICY, "+74991234567", "+74950000003", ms("2026-11-24 11:00"))
    assert any("not looked up here" in line for line in result.chain)
    assert result.target == "department 200 (Sales)"


def test_explain_no_rule_matched_then_the_schedule():
    rules = RULES[:3]
    result = explain(demo(caller_rules=rules), POLICY, "+74991234567", "+74950000003", ms("2026-11-28 21:00"))
    chain = "\n".join(result.chain)
    assert "no caller-based rule matched; the schedule decides" in chain
    assert "closed: no work hours on Saturday" in chain and result.target == "voicemail Sales voicemail"


@pytest.mark.parametrize("caller, known", [
    ("+78121234567", None), ("+79990000000", None), ("+74991234567", {"extension": "102", "note": "CRM names 102"}),
])
def test_explain_caller_rules_follow_the_live_call_path(caller, known):
    lookups, _ = crm_says(**(known or {"note": "unknown"}))
    snap = demo(caller_rules=RULES)
    c = callflow.Context(snap, POLICY, ms("2026-11-28 21:00"), lambda: "x")
    d = callflow.start(CallInfo("c1", "public", "+74950000003", caller), c)
    for action in d.actions:
        if isinstance(action, LookupCaller):
            d = callflow.handle(d.state, lookups(action), c)
    result = explain(snap, POLICY, caller, "+74950000003", ms("2026-11-28 21:00"), lookups=lookups)
    assert d.state.route[-1] == result.steps[0].label
    assert [s.label for s in result.steps[1:]] == [getattr(s, "label") for s in d.state.plan]
