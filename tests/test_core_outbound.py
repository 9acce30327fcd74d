"""Employees' outbound calls in the core: the number dialled, the caller ID shown (only
ever one of the tenant's own numbers), the feature code, refusals and the bridge's cause."""
from __future__ import annotations

from dataclasses import replace

import pytest

from orchestrator.core import callflow
from orchestrator.core.actions import AppCompleted, Bridged, CallInfo, Finished, Hangup, HungUp
from orchestrator.core.model import Department, Employee, Member, PhoneNumber
from orchestrator.core.outbound import decide, dialled_number
from test_core_callflow import DEP, POLICY, blocking, ctx, failed_bridge, snapshot


def tenant(**over):
    """Demo tenant: Anna (101) has her own caller ID; Boris (102) and Vera (103) are in
    Sales, whose caller ID is +74950000002; Gleb (104) is in no department."""
    base = snapshot()
    employees = dict(base.employees)
    employees[1] = replace(employees[1], outbound_caller_id="+74950000003")
    employees[4] = Employee(4, "Gleb", "104")
    departments = dict(base.departments)
    departments[10] = replace(departments[10], outbound_caller_id="+74950000002")
    departments[13] = Department(13, "Support", "203", members=(Member(2),), outbound_caller_id="+74950000004")
    numbers = dict(base.numbers)
    numbers["+74950000004"] = replace(numbers["+74950000004"], dial_code="4")
    numbers["+78120000009"] = PhoneNumber("+78120000009", work_target=DEP, dial_code="12")
    fields = dict(employees=employees, departments=departments, numbers=numbers)
    fields.update(over)
    return replace(base, **fields)


def internal(dest: str, user: str = "101", uuid: str = "o1") -> CallInfo:
    return CallInfo(uuid, "internal", dest, user, domain="demo.pbx.local", caller_user=user)


@pytest.mark.parametrize("user, dialled, number, caller_id", [
    ("101", "89161234567", "+79161234567", "+74950000003"),       # her own caller ID; Russian national form
    ("101", "+79161234567", "+79161234567", "+74950000003"),
    ("101", "0049301234567", "+49301234567", "+74950000003"),     # 00 international prefix
    ("101", "81049301234567", "+49301234567", "+74950000003"),    # 810: Russia's international prefix
    ("102", "84951112233", "+74951112233", "+74950000002"),       # Sales (id 10) before Support (id 13)
    ("103", "+79161234567", "+79161234567", "+74950000002"),      # her department's
    ("104", "+79161234567", "+79161234567", "+74950000001"),      # no setting: the tenant's first number
    ("101", "*74*89161234567", "+79161234567", "+74950000004"),   # feature code: number with dial code 4
    ("103", "*712*88121234567", "+78121234567", "+78120000009"),
    ("101", "112", "112", "+74950000003"),                        # emergency number, dialled as is
])
def test_number_and_caller_id(user, dialled, number, caller_id):
    out = decide(tenant(), user, dialled)
    assert out is not None and (out.number, out.caller_id, out.cause) == (number, caller_id, "")


def test_a_caller_id_the_tenant_no_longer_has_is_never_used():
    snap = tenant()
    employees = dict(snap.employees)
    employees[1] = replace(employees[1], outbound_caller_id="+74990000000")  # another tenant's number now
    out = decide(tenant(employees=employees), "101", "89161234567")
    assert out is not None and out.caller_id == "+74950000002"  # Sales' instead
    departments = dict(snap.departments)
    departments[10] = replace(departments[10], outbound_caller_id="+74990000000")
    out = decide(tenant(departments=departments), "102", "89161234567")
    assert out is not None and out.caller_id == "+74950000004"  # Support's, the next department


@pytest.mark.parametrize("user, dialled, cause, note", [
    ("101", "*79*89161234567", "UNALLOCATED_NUMBER", "no number of the tenant has dial code 9"),
    ("101", "*7*89161234567", "INVALID_NUMBER_FORMAT", "feature code"),
    ("101", "*7489161234567", "INVALID_NUMBER_FORMAT", "feature code"),
    ("101", "8916123", "INVALID_NUMBER_FORMAT", "8916123 is not a valid phone number"),
    ("555", "89161234567", "CALL_REJECTED", "not an employee's phone"),
])
def test_refused(user, dialled, cause, note):
    out = decide(tenant(), user, dialled)
    assert out is not None and out.number == "" and out.cause == cause and note in out.note


def test_short_unknown_digits_are_a_missing_extension_not_an_outbound_call():
    assert decide(tenant(), "101", "999") is None
    assert decide(tenant(), "101", "4321") is None
    assert decide(tenant(), "101", "sales") is None


def test_tenant_without_numbers_cannot_call_out():
    out = decide(tenant(numbers={}), "104", "+79161234567")
    assert out is not None and out.cause == "CALL_REJECTED" and "no number" in out.note


def test_dialled_number_reads_national_forms_in_the_caller_ids_country():
    assert dialled_number("89161234567", "RU") == "+79161234567"
    assert dialled_number("030 1234567", "DE") is None  # phones send digits only
    assert dialled_number("0301234567", "DE") == "+49301234567"
    assert dialled_number("12ab", "RU") is None


def test_outbound_call_bridges_through_the_gateway_with_the_caller_id_and_carrier_early_media():
    d = callflow.start(internal("89161234567"), ctx(tenant()))
    bridge = blocking(d.actions)
    assert bridge.app == "bridge"
    assert bridge.arg == (
        "{call_timeout=62,origination_caller_id_number=+74950000003,origination_caller_id_name=+74950000003}"
        "[origination_uuid=id1,leg_timeout=60]sofia/gateway/pstn/+79161234567"
    )
    assert "ignore_early_media" not in bridge.arg
    assert d.state.route[0].startswith("outbound call from 101 to +79161234567 as +74950000003")
    # Answered: the employee is on the call (history: the last agent of that client).
    d = callflow.handle(d.state, Bridged("id1"), ctx(tenant()))
    d = callflow.handle(d.state, HungUp("NORMAL_CLEARING"), ctx(tenant()))
    (finished,) = [a for a in d.actions if isinstance(a, Finished)]
    assert (finished.answered_by_employee_id, finished.outbound, finished.outbound_to) == (1, True, "+79161234567")


@pytest.mark.parametrize("cause", ["USER_BUSY", "NO_ANSWER", "UNALLOCATED_NUMBER"])
def test_failed_outbound_call_hangs_up_with_the_carriers_cause(cause):
    d = callflow.start(internal("89161234567"), ctx(tenant()))
    bridge = blocking(d.actions)
    d = callflow.handle(d.state, failed_bridge(bridge.app_id, cause), ctx(tenant()))
    assert [a for a in d.actions if isinstance(a, Hangup)] == [Hangup(cause)]
    assert not [a for a in d.actions if getattr(a, "wait", False)]  # no announcement
    d = callflow.handle(d.state, HungUp(cause), ctx(tenant()))
    (finished,) = [a for a in d.actions if isinstance(a, Finished)]
    assert finished.answered_by_employee_id is None and finished.outbound


def test_refused_outbound_call_is_rejected_without_answering():
    d = callflow.start(internal("*79*89161234567"), ctx(tenant()))
    play = blocking(d.actions)
    assert play.app == "playback" and play.arg == POLICY.sound_unavailable
    assert not [a for a in d.actions if getattr(a, "app", "") == "answer"]
    d = callflow.handle(d.state, AppCompleted(play.app_id, "playback", "FILE PLAYED", {}), ctx(tenant()))
    assert [a for a in d.actions if isinstance(a, Hangup)] == [Hangup("UNALLOCATED_NUMBER")]


def test_extensions_still_win_over_outbound_numbers():
    d = callflow.start(internal("102"), ctx(tenant()))
    assert "user/102@demo.pbx.local" in blocking(d.actions).arg
    employees = dict(tenant().employees)
    employees[4] = Employee(4, "Long", "89161")  # a 5-digit extension that looks like digits
    d = callflow.start(internal("89161"), ctx(tenant(employees=employees)))
    assert "user/89161@demo.pbx.local" in blocking(d.actions).arg


def test_explainer_shows_the_outbound_number_and_caller_id():
    from orchestrator.core.explain import explain
    from test_core_callflow import ms
    e = explain(tenant(), POLICY, "102", "*74*89161234567", ms("2026-11-24T12:00:00"), entry="internal")
    assert e.target == "external +79161234567, shown as +74950000004"
    assert "decision: outbound call from 102 to +79161234567 as +74950000004 (dial code 4)" in e.chain
    assert e.steps[0].label == "outbound +79161234567 as +74950000004"
    refused = explain(tenant(), POLICY, "102", "*79*89161234567", ms("2026-11-24T12:00:00"), entry="internal")
    assert "decision: outbound call refused: no number of the tenant has dial code 9" in refused.chain
    assert refused.steps[0].details == ("plays without answering %s, then hangs up (UNALLOCATED_NUMBER)" % POLICY.sound_unavailable,)


# ------------------------------------------------------------------ forwarded calls' caller ID


def mobile_leg(d) -> str:
    return [leg for leg in blocking(d.actions).arg.split(",[") if "pstn" in leg][0]


@pytest.mark.parametrize("policy, caller, shown", [
    ("caller", "+78120000000", "+78120000000"),    # the caller's own number
    ("number", "+78120000000", "+74950000002"),    # the company number that was called
    ("caller", "anonymous", "+74950000002"),       # no plain number to show: the company's
    ("caller", "", "+74950000002"),
])
def test_forwarded_call_shows_the_tenants_caller_id_policy(policy, caller, shown):
    snap = replace(tenant(), forward_caller_id=policy)
    call = CallInfo("f1", "public", "+74950000002", caller)  # Anna, desk then mobile
    d = callflow.start(call, ctx(snap))
    assert "origination_caller_id_number=%s," % shown in mobile_leg(d)


def test_an_employees_call_forwarded_to_a_mobile_shows_their_outbound_caller_id():
    d = callflow.start(internal("101", user="102"), ctx(tenant()))  # Boris calls Anna: her mobile joins
    assert "origination_caller_id_number=+74950000002," in mobile_leg(d)  # Sales' number, not "102"
