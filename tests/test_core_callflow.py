"""The call-flow core, table-driven, with a fake clock and no sockets."""
from __future__ import annotations

import itertools
from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest

from orchestrator.core import callflow
from orchestrator.core.actions import (
    AppCompleted,
    Bridged,
    CallInfo,
    Execute,
    Finished,
    Hangup,
    HungUp,
    StoreVoicemail,
)
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
    Target,
    TargetKind,
    TenantSnapshot,
    VoicemailBox,
    VoiceMenu,
)
from orchestrator.core.plan import Policy
from orchestrator.core.routing import number_candidates
from orchestrator.core.schedule import is_open
from member_fake import Members

POLICY = Policy(recordings_dir="/rec")
DEP = Target(TargetKind.DEPARTMENT, 10)
EMP1 = Target(TargetKind.EMPLOYEE, 1)


def ms(local: str, tz: str = "Europe/Moscow") -> int:
    return int(datetime.fromisoformat(local).replace(tzinfo=ZoneInfo(tz)).timestamp() * 1000)


def snapshot(**over) -> TenantSnapshot:
    employees = {
        1: Employee(1, "Anna", "101", mobile="+79160000001", forward_to_mobile_after=10, ring_seconds=15, voicemail_box_id=5),
        2: Employee(2, "Boris", "102"),
        3: Employee(3, "Vera", "103", logged_in=False),
    }
    departments = {
        10: Department(10, "Sales", "200", ring_seconds=20, no_answer_timeout=30, no_answer_target=Target(TargetKind.VOICEMAIL, 5),
                       members=(Member(2, order=2), Member(1, order=1), Member(3, order=3))),
        11: Department(11, "Loop A", "201", no_answer_target=Target(TargetKind.DEPARTMENT, 12), members=()),
        12: Department(12, "Loop B", "202", no_answer_target=Target(TargetKind.DEPARTMENT, 11), members=()),
    }
    weekdays = tuple(Interval(d, 9 * 60, 18 * 60) for d in range(5))
    fields = dict(
        tenant_id=7, name="Demo", sip_domain="demo.pbx.local", timezone="Europe/Moscow", version=3,
        employees=employees, departments=departments,
        numbers={
            "+74950000001": PhoneNumber("+74950000001", work_target=DEP),
            "+74950000002": PhoneNumber("+74950000002", work_target=EMP1),
            "+74950000003": PhoneNumber("+74950000003", NumberMode.SCHEDULE, Target(TargetKind.MENU, 20), Target(TargetKind.VOICEMAIL, 5)),
            "+74950000004": PhoneNumber("+74950000004", work_target=Target(TargetKind.DEPARTMENT, 11)),
        },
        schedules={1: Schedule(1, "Office", weekdays, (ScheduleException(date(2026, 12, 31), True, (), "New Year"),), is_default=True)},
        menus={20: VoiceMenu(20, "Main", greeting="main.wav", options=(MenuOption("1", DEP), MenuOption("2", EMP1)), default_target=DEP)},
        voicemail_boxes={5: VoicemailBox(5, "Sales box", greeting="sales-vm.wav", max_message_seconds=90)},
    )
    fields.update(over)
    return TenantSnapshot(**fields)


def ctx(snap=None, now="2026-11-24T12:00:00"):
    counter = itertools.count(1)
    return callflow.Context(snap, POLICY, ms(now), lambda: "id%d" % next(counter))


def public(dest: str, uuid: str = "c1") -> CallInfo:
    return CallInfo(uuid=uuid, entry="public", destination=dest, caller_number="+78120000000")


def blocking(actions) -> Execute:
    waits = [a for a in actions if isinstance(a, Execute) and a.wait]
    assert len(waits) == 1, "exactly one blocking app at a time (FreeSWITCH nests the rest, P07d)"
    return waits[0]


def failed_bridge(app_id: str, cause: str = "NO_ANSWER") -> AppCompleted:
    return AppCompleted(app_id, "bridge", "_none_", {"originate_disposition": cause, "originate_failed_cause": cause, "DIALSTATUS": "NOANSWER"})


def test_number_to_employee_rings_desk_then_adds_mobile():
    d = callflow.start(public("+74950000002"), ctx(snapshot()))
    bridge = blocking(d.actions)
    assert bridge.app == "bridge"
    assert bridge.arg == (
        "{ignore_early_media=true,call_timeout=27}"
        "[origination_uuid=id1,leg_timeout=25]user/101@demo.pbx.local,"
        # the mobile sees the caller's number (the tenant's default forward_caller_id policy)
        "[origination_uuid=id2,origination_caller_id_number=+78120000000,leg_timeout=25,leg_delay_start=10]"
        "sofia/gateway/pstn/+79160000001"
    )
    sets = [a.arg for a in d.actions if isinstance(a, Execute) and a.app == "set"]
    (multiset,) = [a.arg for a in d.actions if isinstance(a, Execute) and a.app == "multiset"]
    assert multiset == "continue_on_fail=true hangup_after_bridge=true pbx_tenant_id=7"
    assert "pbx_fallback_dial=%s" % bridge.arg in sets


def test_employee_no_answer_goes_to_voicemail_and_stores_the_message():
    c = ctx(snapshot())
    d = callflow.start(public("+74950000002"), c)
    d = callflow.handle(d.state, failed_bridge(blocking(d.actions).app_id), c)
    greeting = blocking(d.actions)
    assert greeting.app == "playback" and greeting.arg.startswith("file_string://sales-vm.wav!")
    assert Execute("answer") in d.actions
    d = callflow.handle(d.state, AppCompleted(greeting.app_id, "playback", "FILE PLAYED"), c)
    record = blocking(d.actions)
    assert record.app == "record" and record.arg == "/rec/vm-7-5-c1.wav 90 200 3"
    # The caller hangs up while recording: HANGUP comes before the record's completion (P04).
    d = callflow.handle(d.state, HungUp("NORMAL_CLEARING"), c)
    assert d.actions == ()
    d = callflow.handle(d.state, AppCompleted(record.app_id, "record", "_none_", {"record_ms": "1800"}), c)
    assert StoreVoicemail(5, "/rec/vm-7-5-c1.wav", 1800, "+78120000000") in d.actions
    assert isinstance(d.actions[-1], Finished)


def test_department_ring_all_skips_logged_out_members_in_order():
    c = ctx(snapshot())
    d = Members().drive(callflow.start(public("+74950000001"), c), c)
    bridge = blocking(d.actions)
    assert bridge.arg == (
        "{ignore_early_media=true,call_timeout=22}"
        "[origination_uuid=id2,leg_timeout=20]user/101@demo.pbx.local,"
        "[origination_uuid=id3,leg_timeout=20]user/102@demo.pbx.local"
    )


def test_department_answer_is_attributed_to_the_member_and_finishes_on_hangup():
    c = ctx(snapshot())
    members = Members()
    d = members.drive(callflow.start(public("+74950000001"), c), c)
    d = members.drive(callflow.handle(d.state, Bridged("id3"), c), c)
    assert d.state.answered_by == 2
    d = members.drive(callflow.handle(d.state, HungUp("NORMAL_CLEARING"), c), c)
    fin = d.actions[-1]
    assert isinstance(fin, Finished) and fin.answered_by_employee_id == 2
    assert "department 200 (Sales), ring all" in fin.route and "answered by employee #2" in fin.route
    assert [(e.employee_id, e.result) for e in members.ended] == [(1, "lost_race"), (2, "answered")]
    assert members.offers == {}


def test_department_no_answer_goes_to_its_no_answer_target():
    c = ctx(snapshot())
    members = Members()
    d = members.drive(callflow.start(public("+74950000001"), c), c)
    d = members.drive(callflow.handle(d.state, failed_bridge(blocking(d.actions).app_id, "USER_BUSY"), c), c)
    assert Execute("unset", "pbx_fallback_dial") in d.actions
    assert blocking(d.actions).app == "playback"  # voicemail greeting of box 5
    assert "not answered (USER_BUSY)" in " ".join(d.state.route)


def test_route_cycle_is_stopped_at_run_time():
    d = callflow.start(public("+74950000004"), ctx(snapshot()))
    app = blocking(d.actions)
    assert app.app == "playback" and app.arg == POLICY.sound_unavailable
    assert any("stopped" in r for r in d.state.route)


@pytest.mark.parametrize(
    "dest, expected_cause",
    [("+74990000000", "UNALLOCATED_NUMBER")],
)
def test_unknown_number_is_announced_then_hung_up(dest, expected_cause):
    c = ctx(None)
    d = callflow.start(public(dest), c)
    play = blocking(d.actions)
    assert play.arg == POLICY.sound_unknown_number
    assert Execute("answer") not in d.actions  # playback pre-answers: early media only
    d = callflow.handle(d.state, AppCompleted(play.app_id, "playback", "FILE PLAYED"), c)
    assert d.actions == (Hangup(expected_cause),)


def test_tenant_over_its_call_limit_hears_busy():
    d = callflow.start(public("+74950000001"), ctx(snapshot()), admitted=False, refusal="limit 2")
    assert blocking(d.actions).arg == POLICY.sound_busy_limit


def test_suspended_tenant_is_refused():
    d = callflow.start(public("+74950000001"), ctx(snapshot(enabled=False)))
    assert blocking(d.actions).arg == POLICY.sound_unavailable


def test_internal_call_by_extension():
    call = CallInfo("c2", "internal", "102", "101", domain="demo.pbx.local", caller_user="101")
    d = callflow.start(call, ctx(snapshot()))
    assert blocking(d.actions).arg.endswith("user/102@demo.pbx.local")


def test_internal_call_to_missing_extension():
    call = CallInfo("c2", "internal", "999", "101", domain="demo.pbx.local")
    d = callflow.start(call, ctx(snapshot()))
    assert blocking(d.actions).arg == POLICY.sound_unknown_number
    assert d.state.route[0] == "extension 999 does not exist"


@pytest.mark.parametrize(
    "now, expected",
    [
        ("2026-11-24T12:00:00", "play_and_get_digits"),  # Tuesday noon: menu
        ("2026-11-24T20:00:00", "playback"),  # Tuesday evening: voicemail greeting
        ("2026-11-28T12:00:00", "playback"),  # Saturday
        ("2026-12-31T12:00:00", "playback"),  # holiday exception
    ],
)
def test_schedule_picks_work_or_after_hours_target(now, expected):
    d = callflow.start(public("+74950000003"), ctx(snapshot(), now))
    assert blocking(d.actions).app == expected


@pytest.mark.parametrize(
    "digits, expect_in_dial",
    [("1", "user/102@"), ("2", "user/101@"), ("102", "user/102@"), ("", "user/101@")],
)
def test_menu_options_direct_dial_and_default(digits, expect_in_dial):
    c = ctx(snapshot())
    d = callflow.start(public("+74950000003"), c)
    menu = blocking(d.actions)
    variables = {"pbx_menu_digits": digits} if digits else {"read_result": "failure"}
    d = Members().drive(callflow.handle(d.state, AppCompleted(menu.app_id, "play_and_get_digits", "_none_", variables), c), c)
    assert expect_in_dial in blocking(d.actions).arg


def test_menu_invalid_input_replays_then_default():
    c = ctx(snapshot())
    d = callflow.start(public("+74950000003"), c)
    for _ in range(2):
        menu = blocking(d.actions)
        assert menu.app == "play_and_get_digits"
        d = callflow.handle(d.state, AppCompleted(menu.app_id, "play_and_get_digits", "_none_", {"pbx_menu_digits": "9"}), c)
    d = Members().drive(callflow.handle(d.state, AppCompleted(blocking(d.actions).app_id, "play_and_get_digits", "_none_", {"pbx_menu_digits": "9"}), c), c)
    assert blocking(d.actions).app == "bridge"  # default target after max_invalid=3


def test_stale_completion_is_ignored():
    c = ctx(snapshot())
    d = Members().drive(callflow.start(public("+74950000001"), c), c)
    same = callflow.handle(d.state, AppCompleted("not-ours", "bridge", "_none_", {"originate_disposition": "NO_ANSWER"}), c)
    assert same.actions == () and same.state == d.state


@pytest.mark.parametrize(
    "local, open_",
    [
        ("2026-11-23T09:00:00", True),  # Monday opening minute
        ("2026-11-23T08:59:00", False),
        ("2026-11-23T18:00:00", False),  # end is exclusive
        ("2026-11-29T10:00:00", False),  # Sunday
    ],
)
def test_schedule_weekly_intervals(local, open_):
    sched = snapshot().schedules[1]
    assert is_open(sched, "Europe/Moscow", ms(local)) is open_


def test_schedule_interval_spanning_midnight_and_dst():
    night = Schedule(2, "Night", (Interval(4, 22 * 60, 26 * 60),))  # Friday 22:00 - Saturday 02:00
    assert is_open(night, "Europe/Berlin", ms("2026-03-27T23:30:00", "Europe/Berlin"))
    assert is_open(night, "Europe/Berlin", ms("2026-03-28T01:30:00", "Europe/Berlin"))
    assert not is_open(night, "Europe/Berlin", ms("2026-03-28T02:30:00", "Europe/Berlin"))
    # 09:00 local stays 09:00 local across the DST change (Berlin, 29 March 2026).
    office = Schedule(3, "Office", (Interval(0, 9 * 60, 18 * 60),))
    assert is_open(office, "Europe/Berlin", ms("2026-03-30T09:00:00", "Europe/Berlin"))
    assert not is_open(office, "Europe/Berlin", ms("2026-03-30T08:59:00", "Europe/Berlin"))


def test_number_candidates():
    assert number_candidates("74950000001") == ("74950000001", "+74950000001")
    assert number_candidates("+74950000001") == ("+74950000001",)
    assert number_candidates("0074950000001") == ("0074950000001", "+74950000001")
    assert number_candidates("1001") == ("1001", "+1001")


# ------------------------------------------------------------------ nested menus, "back"


def nested_menus() -> TenantSnapshot:
    """Main: 1 -> Sales, 2 -> Support menu. Support: 1 -> Anna, 3 -> Billing menu,
    * back. Billing: 1 -> Boris, 0 back."""
    menus = {
        20: VoiceMenu(20, "Main", greeting="main.wav", options=(MenuOption("1", DEP), MenuOption("2", Target(TargetKind.MENU, 21))),
                      default_target=DEP, back_digit="*"),
        21: VoiceMenu(21, "Support", greeting="support.wav", options=(MenuOption("1", EMP1), MenuOption("3", Target(TargetKind.MENU, 22))),
                      default_target=DEP, back_digit="*"),
        22: VoiceMenu(22, "Billing", greeting="billing.wav", options=(MenuOption("1", Target(TargetKind.EMPLOYEE, 2)),),
                      default_target=DEP, back_digit="0", direct_dial=False),
    }
    return snapshot(menus=menus)


def press(d, digits: str, snap):
    prompt = blocking(d.actions)
    assert prompt.app == "play_and_get_digits"
    variables = {"pbx_menu_digits": digits} if digits else {}
    return callflow.handle(d.state, AppCompleted(prompt.app_id, "play_and_get_digits", "_none_", variables), ctx(snap))


def greeting_of(d) -> str:
    return blocking(d.actions).arg.split(" ")[5]


def test_nested_menus_back_returns_to_the_menu_the_caller_came_from():
    snap = nested_menus()
    d = callflow.start(public("+74950000003"), ctx(snap))  # work hours: menu Main
    assert greeting_of(d) == "main.wav"
    d = press(d, "2", snap)
    assert greeting_of(d) == "support.wav"
    d = press(d, "3", snap)
    assert greeting_of(d) == "billing.wav"
    d = press(d, "0", snap)  # Billing's back digit
    assert greeting_of(d) == "support.wav"
    d = press(d, "*", snap)
    assert greeting_of(d) == "main.wav"
    d = press(d, "*", snap)  # at the top: Main again
    assert greeting_of(d) == "main.wav"
    # Up and down many times never runs into the route-hop cap (8).
    for _ in range(6):
        d = press(press(d, "2", snap), "*", snap)
    assert greeting_of(d) == "main.wav"
    d = press(press(d, "2", snap), "1", snap)
    assert "user/101@demo.pbx.local" in blocking(d.actions).arg
    assert "menu Support: back" in d.state.route and "menu Main: back, at the top: again" in d.state.route


def test_back_digit_star_is_accepted_by_the_digit_regexp_only_when_configured():
    snap = nested_menus()
    d = callflow.start(public("+74950000003"), ctx(snap))
    assert blocking(d.actions).arg.split(" ")[8] == "^(\\d+|\\*)$"
    d = press(press(d, "2", snap), "3", snap)
    assert blocking(d.actions).arg.split(" ")[8] == "\\d+"  # Billing's back digit is 0


def test_back_digit_absent_keeps_digits_as_options_or_extensions():
    d = callflow.start(public("+74950000003"), ctx(snapshot()))  # Main without a back digit
    d = press(d, "*", snapshot())
    assert "menu Main: invalid *" in d.state.route
