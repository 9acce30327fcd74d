"""Caller-based rules and the fax target in the call-flow core: tables, a fake clock,
no sockets. Lookups (last agent, CRM) are answered here as the adapter would."""
from __future__ import annotations

import itertools
from dataclasses import replace
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from orchestrator.core import callflow
from orchestrator.core.actions import (
    AppCompleted,
    CallerKnown,
    CallInfo,
    Execute,
    Finished,
    Hangup,
    HungUp,
    Log,
    LookupCaller,
    StoreFax,
)
from orchestrator.core.caller_rules import caller_facts, normalize_place
from orchestrator.core.model import (
    CallerMatch,
    CallerRule,
    Department,
    Employee,
    Member,
    PhoneNumber,
    Target,
    TargetKind,
    TenantSnapshot,
    VoicemailBox,
)
from orchestrator.core.plan import Policy
from member_fake import Members

POLICY = Policy(recordings_dir="/rec")
MOSCOW_SALES, PETERSBURG, ENGLISH, MANAGERS = (Target(TargetKind.DEPARTMENT, i) for i in (200, 210, 300, 400))
MAIN, SECOND, FAX_LINE = "+74950000001", "+74950000002", "+74950000009"


def ms(local: str) -> int:
    return int(datetime.fromisoformat(local).replace(tzinfo=ZoneInfo("Europe/Moscow")).timestamp() * 1000)


def snapshot(*rules: CallerRule) -> TenantSnapshot:
    employees = {
        1: Employee(1, "Anna", "101"),
        2: Employee(2, "Boris", "102", ring_seconds=15, voicemail_box_id=5),
        3: Employee(3, "Vera", "103", logged_in=False),
        4: Employee(4, "Gleb", "104"),
    }
    dep = lambda i, name, ext, *members: Department(  # noqa: E731
        i, name, ext, ring_seconds=20, no_answer_timeout=30, no_answer_target=Target(TargetKind.VOICEMAIL, 5),
        members=tuple(Member(m) for m in members))
    return TenantSnapshot(
        tenant_id=7, name="Demo", sip_domain="demo.pbx.local", timezone="Europe/Moscow",
        employees=employees,
        departments={200: dep(200, "Moscow sales", "200", 1, 2), 210: dep(210, "Petersburg", "210", 4),
                     300: dep(300, "English desk", "300", 4), 400: dep(400, "Managers", "400", 1, 2, 4)},
        numbers={MAIN: PhoneNumber(MAIN, work_target=MOSCOW_SALES), SECOND: PhoneNumber(SECOND, work_target=MOSCOW_SALES),
                 FAX_LINE: PhoneNumber(FAX_LINE, work_target=Target(TargetKind.FAX, 5))},
        voicemail_boxes={5: VoicemailBox(5, "Office box", email="office@demo.example")},
        caller_rules=rules,
    )


GEO_RULES = (
    CallerRule(1, "VIP", CallerMatch.LIST, ("+79161112233",), target=Target(TargetKind.EMPLOYEE, 1), order=0),
    CallerRule(2, "Block list", CallerMatch.LIST, ("+79990000000",), block=True,
               target=Target(TargetKind.ANNOUNCEMENT, sound="ivr/blocked.wav"), order=1),
    CallerRule(3, "Petersburg office", CallerMatch.CITY, ("Saint Petersburg",), target=PETERSBURG, numbers=(MAIN,), order=2),
    CallerRule(4, "Moscow", CallerMatch.CITY, ("Moscow",), target=MOSCOW_SALES, order=3),
    CallerRule(5, "Foreign", CallerMatch.COUNTRY, ("RU",), negate=True, target=ENGLISH, order=4),
)


def ctx(snap: TenantSnapshot, now: str = "2026-11-24T12:00:00") -> callflow.Context:
    counter = itertools.count(1)
    return callflow.Context(snap, POLICY, ms(now), lambda: "id%d" % next(counter))


def call(caller: str, dialed: str = MAIN, uuid: str = "c1") -> CallInfo:
    return CallInfo(uuid=uuid, entry="public", destination=dialed, caller_number=caller)


def blocking(actions) -> Execute:
    waits = [a for a in actions if isinstance(a, Execute) and a.wait]
    assert len(waits) == 1, actions
    return waits[0]


def lookups(actions) -> list[LookupCaller]:
    return [a for a in actions if isinstance(a, LookupCaller)]


def rang(decision: callflow.Decision) -> list[str]:
    """Extensions rung by the decision's bridge (desk phones)."""
    arg = blocking(decision.actions).arg
    return [part.split("user/")[1].split("@")[0] for part in arg.split(",") if "user/" in part]


@pytest.mark.parametrize("caller, dialed, extensions, route", [
    ("+79161112233", MAIN, ["101"], "caller rule 'VIP'"),  # VIP list -> employee
    ("+78121234567", MAIN, ["104"], "caller rule 'Petersburg office': city St Petersburg"),
    ("88121234567", MAIN, ["104"], "caller rule 'Petersburg office'"),  # national form, read in RU
    ("+78121234567", SECOND, ["101", "102"], "number +74950000002 (24/7)"),  # rule limited to MAIN
    ("+74991234567", MAIN, ["101", "102"], "caller rule 'Moscow': city Moscow"),
    ("+74951234567", MAIN, ["101", "102"], "caller rule 'Moscow'"),
    ("+493012345678", MAIN, ["104"], "caller rule 'Foreign': country DE"),  # the English desk
    ("+79161234567", MAIN, ["101", "102"], "number +74950000001 (24/7)"),  # a mobile: no city, Russian
    ("anonymous", MAIN, ["101", "102"], "number +74950000001 (24/7)"),  # nothing known
])
def test_value_rules_in_order(caller, dialed, extensions, route):
    c = ctx(snapshot(*GEO_RULES))
    d = Members().drive(callflow.start(call(caller, dialed), c), c)
    assert lookups(d.actions) == []
    assert rang(d) == extensions
    assert d.state.route[0].startswith(route), d.state.route


def test_block_list_refuses_with_an_announcement_and_call_rejected():
    c = ctx(snapshot(*GEO_RULES))
    d = callflow.start(call("+79990000000"), c)
    play = blocking(d.actions)
    assert play.app == "playback" and play.arg == "ivr/blocked.wav"
    assert Execute("answer") not in d.actions  # early media only, like an unknown number
    assert any(isinstance(a, Log) and a.message == "caller blocked" for a in d.actions)
    d = callflow.handle(d.state, AppCompleted(play.app_id, "playback", "FILE PLAYED"), c)
    assert d.actions == (Hangup("CALL_REJECTED"),)


def test_rule_order_decides_and_can_be_changed():
    """Moscow first, then VIP: a VIP calling from Moscow now goes to Moscow sales."""
    vip = replace(GEO_RULES[0], values=("+74991112233",), order=9)
    c = ctx(snapshot(vip, GEO_RULES[3]))
    d = Members().drive(callflow.start(call("+74991112233"), c), c)
    assert rang(d) == ["101", "102"] and "'Moscow'" in d.state.route[0]
    c = ctx(snapshot(replace(vip, order=0), GEO_RULES[3]))
    assert rang(Members().drive(callflow.start(call("+74991112233"), c), c)) == ["101"]


@pytest.mark.parametrize("raw, e164, country, city", [
    ("+78121234567", "+78121234567", "RU", "St Petersburg"),
    ("0078121234567", "+78121234567", "RU", "St Petersburg"),
    ("78121234567", "+78121234567", "RU", "St Petersburg"),
    ("+77272123456", "+77272123456", "KZ", "Almaty"),
    ("+16502530000", "+16502530000", "US", "Mountain View"),
    ("101", "101", "", ""),
])
def test_caller_facts(raw, e164, country, city):
    facts = caller_facts(raw, MAIN)
    assert (facts.number, facts.country, facts.city) == (e164, country, city)


def test_place_names_compare_loosely():
    assert normalize_place("Saint-Petersburg") == normalize_place("St. Petersburg") == "st petersburg"


def test_region_matches_the_whole_place_or_its_last_part():
    tatarstan = CallerRule(1, "Tatarstan", CallerMatch.REGION, ("Republic of Tatarstan",), target=ENGLISH)
    california = CallerRule(2, "California", CallerMatch.REGION, ("CA",), target=PETERSBURG, order=1)
    c = ctx(snapshot(tatarstan, california))
    assert rang(Members().drive(callflow.start(call("+78432123456"), c), c)) == ["104"]
    d = Members().drive(callflow.start(call("+16502530000"), c), c)
    assert "region Mountain View, CA" in d.state.route[0]


# ------------------------------------------------------------------ lookups


LAST_AGENT = CallerRule(10, "Last agent", CallerMatch.LAST_AGENT, days=30, target=MOSCOW_SALES)
CRM = CallerRule(11, "CRM", CallerMatch.CRM, crm_url="http://crm.local/who", crm_timeout_ms=1500, target=MANAGERS)


def answered(d: callflow.Decision, c: callflow.Context, **known) -> callflow.Decision:
    (ask,) = lookups(d.actions)
    return Members().drive(callflow.handle(d.state, CallerKnown(ask.request_id, ask.rule_id, **known), c), c)


def test_lookup_is_requested_before_anything_runs_on_the_channel():
    c = ctx(snapshot(CRM))
    d = callflow.start(call("88121234567"), c)
    (ask,) = lookups(d.actions)
    assert ask == LookupCaller(ask.request_id, 11, "crm", "+78121234567", MAIN, 30, "http://crm.local/who", 1500)
    assert not [a for a in d.actions if isinstance(a, Execute) and a.wait]  # no app yet, caller not answered
    assert d.state.lookup == ask.request_id and d.state.route == ()


@pytest.mark.parametrize("rule, known, extensions, route", [
    # last agent: the employee who talked with the caller, if logged in; else the fallback
    (LAST_AGENT, {"employee_id": 2, "note": "last talked with #2"}, ["102"], "-> employee 102 first"),
    (LAST_AGENT, {"employee_id": 3, "note": "last talked with #3"}, ["101", "102"], "103 (Vera) is logged out"),
    (LAST_AGENT, {"note": "no call with this caller in 30 days"}, ["101", "102"], "no call with this caller"),
    (LAST_AGENT, {"employee_id": 99, "note": "x"}, ["101", "102"], "employee #99 no longer exists"),
    # CRM: the responsible employee's extension; unknown -> the rule's target (ring all managers)
    (CRM, {"extension": "102", "note": "CRM names extension 102"}, ["102"], "-> employee 102 first"),
    (CRM, {"note": "CRM: unknown caller"}, ["101", "102", "104"], "CRM: unknown caller"),
    (CRM, {"note": "CRM did not answer within 1500 ms"}, ["101", "102", "104"], "did not answer within 1500 ms"),
    (CRM, {"note": "CRM failed: HTTP 500"}, ["101", "102", "104"], "HTTP 500"),
    (CRM, {"extension": "999", "note": "CRM names extension 999"}, ["101", "102", "104"], "no employee with extension 999"),
])
def test_lookup_rules(rule, known, extensions, route):
    c = ctx(snapshot(rule))
    d = answered(callflow.start(call("+78121234567"), c), c, **known)
    assert rang(d) == extensions
    assert route in d.state.route[0], d.state.route


def test_crm_employee_rings_first_then_the_rule_target_not_their_voicemail():
    c = ctx(snapshot(CRM))
    d = answered(callflow.start(call("+78121234567"), c), c, extension="102", note="CRM names extension 102")
    assert blocking(d.actions).arg.startswith("{ignore_early_media=true,call_timeout=17}")  # Boris: 15 s
    assert d.state.route[-1] == "employee 102 (Boris), named by the CRM"
    no_answer = AppCompleted(blocking(d.actions).app_id, "bridge", "_none_",
                             {"originate_disposition": "NO_ANSWER", "originate_failed_cause": "NO_ANSWER"})
    d = Members().drive(callflow.handle(d.state, no_answer, c), c)
    assert rang(d) == ["101", "102", "104"]  # the managers all at once, not Boris' voicemail


def test_last_agent_without_fallback_goes_on_with_the_schedule():
    rule = replace(LAST_AGENT, target=None)
    c = ctx(snapshot(rule, GEO_RULES[4]))
    d = answered(callflow.start(call("+493012345678"), c), c, note="unknown caller")
    assert rang(d) == ["104"] and "'Foreign'" in d.state.route[0]  # the next rule decided
    d = answered(callflow.start(call("+78121234567"), c), c, employee_id=1, note="last talked with #1")
    assert rang(d) == ["101"]
    assert d.state.route[0].endswith("then number +74950000001 (24/7)")
    assert [s.label for s in d.state.plan][0] == "department 200 (Moscow sales), ring all"


def test_earlier_rule_decides_without_a_lookup():
    c = ctx(snapshot(GEO_RULES[0], replace(CRM, order=5)))
    d = Members().drive(callflow.start(call("+79161112233"), c), c)
    assert lookups(d.actions) == [] and rang(d) == ["101"]


def test_anonymous_caller_is_not_looked_up():
    c = ctx(snapshot(CRM))
    d = Members().drive(callflow.start(call("anonymous"), c), c)
    assert lookups(d.actions) == [] and rang(d) == ["101", "102", "104"]
    assert "no caller number to look up" in d.state.route[0]


def test_two_lookup_rules_are_asked_in_turn():
    c = ctx(snapshot(replace(LAST_AGENT, target=None), replace(CRM, order=1)))
    d = callflow.start(call("+78121234567"), c)
    assert lookups(d.actions)[0].source == "last_agent"
    (ask,) = lookups(d.actions)
    d = callflow.handle(d.state, CallerKnown(ask.request_id, ask.rule_id, note="unknown caller"), c)
    (ask2,) = lookups(d.actions)
    assert ask2.source == "crm" and ask2.request_id != ask.request_id
    d = Members().drive(callflow.handle(d.state, CallerKnown(ask2.request_id, ask2.rule_id, extension="101", note="CRM names 101"), c), c)
    assert rang(d) == ["101"]


def test_stale_or_late_lookup_answers_are_ignored():
    c = ctx(snapshot(CRM))
    d = callflow.start(call("+78121234567"), c)
    (ask,) = lookups(d.actions)
    same = callflow.handle(d.state, CallerKnown("not-ours", ask.rule_id, extension="101"), c)
    assert same.actions == () and same.state == d.state
    gone = callflow.handle(d.state, HungUp("NORMAL_CLEARING"), c)
    assert isinstance(gone.actions[-1], Finished)
    assert callflow.handle(gone.state, CallerKnown(ask.request_id, ask.rule_id, extension="101"), c).actions == ()


# ------------------------------------------------------------------ fax


def fax_done(app_id: str, ok: bool = True, pages: str = "2") -> AppCompleted:
    # The variables mod_spandsp's phase_e_handler sets (see core/callflow.py).
    return AppCompleted(app_id, "rxfax", "_none_", {
        "fax_success": "1" if ok else "0", "fax_result_code": "0" if ok else "49",
        "fax_result_text": "OK" if ok else "The call dropped prematurely",
        "fax_document_transferred_pages": pages, "fax_remote_station_id": " +7 812 555 ",
    })


def test_fax_target_answers_receives_and_stores_the_document():
    c = ctx(snapshot())
    d = callflow.start(call("+78121234567", FAX_LINE), c)
    rx = blocking(d.actions)
    assert Execute("answer") in d.actions
    assert rx.app == "rxfax" and rx.arg == "/rec/fax-7-c1.tif"
    assert d.state.route == ("number +74950000009 (24/7)", "fax to Office box")
    d = callflow.handle(d.state, fax_done(rx.app_id), c)
    assert d.actions == (StoreFax(5, "/rec/fax-7-c1.tif", 2, "+78121234567", True, 0, "OK", "+7 812 555"), Hangup("NORMAL_CLEARING"))


def test_fax_sender_hangs_up_first_the_result_still_counts():
    """A fax machine hangs up once it has sent the document: CHANNEL_HANGUP comes before
    rxfax's EXECUTE_COMPLETE, which carries the outcome."""
    c = ctx(snapshot())
    d = callflow.start(call("+78121234567", FAX_LINE), c)
    rx = blocking(d.actions)
    d = callflow.handle(d.state, HungUp("NORMAL_CLEARING"), c)
    assert d.actions == ()
    d = callflow.handle(d.state, fax_done(rx.app_id, ok=False, pages="1"), c)
    store, finished = d.actions
    assert isinstance(store, StoreFax) and store.pages == 1 and not store.success and store.result_code == 49
    assert isinstance(finished, Finished)


def test_fax_with_no_page_is_logged_not_stored():
    c = ctx(snapshot())
    d = callflow.start(call("+78121234567", FAX_LINE), c)
    d = callflow.handle(d.state, fax_done(blocking(d.actions).app_id, ok=False, pages="0"), c)
    log, hangup = d.actions
    assert isinstance(log, Log) and log.message == "fax not received" and "49" in log.fields["result"]
    assert hangup == Hangup("NORMAL_CLEARING")
