"""Employees' outbound calls and nested voice menus end to end: simulated FreeSWITCH (our
dialplan, the ESL wire protocol) -> a real ``pbx-orchestrator`` process -> real
PostgreSQL and Redis. Tenant data: tests/data/e2e/tenant.yaml.
"""
from __future__ import annotations

from simulator import Answer, Busy
from tests.test_e2e_calls import (  # noqa: F401 - fixtures
    DOMAIN,
    app_names,
    e2e_db,
    e2e_redis,
    employee_id,
    members_start_free,
    orchestrator,
    records_for,
    sim,
    wait_until,
)

MENU_NUMBER = "+74951110010"


def history(factory, call):
    wait_until(lambda: records_for(factory, call.uuid), what="call history row")
    (row,) = records_for(factory, call.uuid)
    return row


def test_employee_calls_out_with_their_own_caller_id(sim, e2e_db):  # noqa: F811
    _, factory, tenant_id = e2e_db
    client = sim.add_external("+79165550001", behavior=Answer(after=2, hangup_after=3))
    call = sim.place_call("89165550001", caller_id="101", context="pbx-internal", domain=DOMAIN).wait(timeout=20)
    assert call.answered
    (leg,) = client.legs
    assert leg.answered_at is not None and leg.caller_id == "+74951110001"  # Anna's own caller ID
    row = history(factory, call)
    assert row.direction == "outbound" and row.answered_by_employee_id == employee_id(factory, tenant_id, "101")
    assert row.destination == "+79165550001" and row.caller == "101"
    assert "outbound call from 101 to +79165550001 as +74951110001 (employee's caller ID)" in row.route


def test_department_caller_id_and_the_feature_code_for_another_number(sim, e2e_db):  # noqa: F811
    _, factory, _ = e2e_db
    client = sim.add_external("+79165550002", behavior=Answer(after=1, hangup_after=1))
    # Boris has no caller ID of his own: Sales' number.
    call = sim.place_call("+79165550002", caller_id="102", context="pbx-internal", domain=DOMAIN).wait(timeout=20)
    assert call.answered and client.legs[-1].caller_id == "+74951110002"
    # *79*: with the tenant's number whose dial code is 9.
    call = sim.place_call("*79*89165550002", caller_id="102", context="pbx-internal", domain=DOMAIN).wait(timeout=20)
    assert call.answered and client.legs[-1].caller_id == "+74951110009"
    assert "(dial code 9)" in history(factory, call).route


def test_busy_far_end_reaches_the_phone_as_busy_without_an_announcement(sim, e2e_db):  # noqa: F811
    _, factory, _ = e2e_db
    sim.add_external("+79165550003", behavior=Busy(after=1))
    call = sim.place_call("89165550003", caller_id="101", context="pbx-internal", domain=DOMAIN).wait(timeout=20)
    assert not call.answered and call.hangup_cause == "USER_BUSY"
    assert "playback" not in app_names(call) and "answer" not in app_names(call)
    row = history(factory, call)
    assert row.direction == "outbound" and row.answered_by_employee_id is None


def test_unknown_dial_code_is_refused_without_ringing_anyone(sim, e2e_db):  # noqa: F811
    client = sim.add_external("+79165550004", behavior=Answer(after=1))
    call = sim.place_call("*75*89165550004", caller_id="101", context="pbx-internal", domain=DOMAIN).wait(timeout=20)
    assert call.hangup_cause == "UNALLOCATED_NUMBER" and client.legs == []
    assert "bridge" not in app_names(call)


def prompts(call) -> list[str]:
    """The greetings of the voice menus played so far, in order."""
    return [data.split(" ")[5] for _, name, data in call.apps if name == "play_and_get_digits"]


def test_nested_menu_back_then_an_option_of_the_top_menu(sim, e2e_db):  # noqa: F811
    _, factory, tenant_id = e2e_db
    anna = sim.add_user("101", DOMAIN, behavior=Answer(after=1, hangup_after=1))
    call = sim.place_call(MENU_NUMBER, caller_id="+78125550000")

    def press(digit: str, menus_played: int) -> None:
        wait_until(lambda: len(prompts(call)) >= menus_played, what="voice menu %d" % menus_played)
        call.send_dtmf(digit)

    press("2", 1)   # Main -> Support
    press("*", 2)   # back to Main
    press("2", 3)   # Support again
    press("1", 4)   # Anna
    call.wait(timeout=20)
    assert prompts(call) == ["main.wav", "support.wav", "main.wav", "support.wav"]
    assert call.answered and len(anna.legs) == 1
    row = history(factory, call)
    assert row.answered_by_employee_id == employee_id(factory, tenant_id, "101")
    assert "menu Support: back" in row.route


def test_a_forwarded_call_shows_the_callers_number_on_the_mobile(sim, e2e_db):  # noqa: F811
    desk = sim.add_user("101", DOMAIN, behavior=Answer(after=30))
    mobile = sim.add_external("+79160000011", behavior=Answer(after=1, hangup_after=1))
    call = sim.place_call("+74951110001", caller_id="+78125550001").wait(timeout=20)
    assert call.answered and len(desk.legs) == 1
    (leg,) = mobile.legs
    assert leg.caller_id == "+78125550001"  # the tenant's policy: the caller's own number
