"""Department strategies, offers and their ends, through the call-flow core alone.

Members' live state comes from ``member_fake.Members`` (the same answers the Redis
adapter gives); the clock is fake, in milliseconds.
"""
from __future__ import annotations

import itertools
import random
import re
from collections import Counter

import pytest

from orchestrator.core import callflow
from orchestrator.core.actions import AppCompleted, Bridged, CallInfo, EndOffers, Execute, Finished, HungUp, LookupMembers, Unbridged
from orchestrator.core.model import Department, Employee, Member, PhoneNumber, Strategy, Target, TargetKind, TenantSnapshot, VoicemailBox
from orchestrator.core.plan import Policy
from orchestrator.core.strategy import MemberView, order
from member_fake import Members, at, step

POLICY = Policy(recordings_dir="/rec")
T0 = 1_790_000_000_000
NUMBER = "+74950000001"


def snap(strategy: Strategy, members=None, **dep) -> TenantSnapshot:
    employees = {i: Employee(i, "E%d" % i, str(100 + i)) for i in range(1, 7)}
    employees[6] = Employee(6, "E6", "106", logged_in=False)
    members = members or tuple(Member(i, order=i) for i in range(1, 7))
    fields = dict(ring_seconds=10, no_answer_timeout=60, no_answer_target=Target(TargetKind.VOICEMAIL, 5))
    fields.update(dep)
    department = Department(10, "Sales", "200", strategy, members=members, **fields)
    return TenantSnapshot(
        7, "Demo", "demo.pbx.local", employees=employees, departments={10: department},
        numbers={NUMBER: PhoneNumber(NUMBER, work_target=Target(TargetKind.DEPARTMENT, 10))},
        voicemail_boxes={5: VoicemailBox(5, "Box")},
    )


def ctx(s: TenantSnapshot, now: int = T0, seed: int = 1) -> callflow.Context:
    counter = itertools.count(1)
    return callflow.Context(s, POLICY, now, lambda: "id%d" % next(counter), random.Random(seed).random)


def call(uuid: str = "c1") -> CallInfo:
    return CallInfo(uuid, "public", NUMBER, "+78120000000")


def bridge_of(d: callflow.Decision) -> Execute:
    (b,) = [a for a in d.actions if isinstance(a, Execute) and a.wait]
    return b


def legs(dial: str) -> list[tuple[str, int, int]]:
    """(extension, leg_delay_start, seconds it rings at least) of each leg of a dial string.

    The ring time is leg_timeout, except for a LONE user/ leg, whose leg_timeout is one
    more: FreeSWITCH ends such a leg a whole-second tick earlier (core/dialstrings.py,
    test_lone_user_leg_gets_one_second_more)."""
    found = list(re.finditer(r"\[([^\]]*)\]user/(\d+)@", dial))
    lone = len(found) == 1 and dial.count("[") == 1
    out = []
    for m in found:
        opts = dict(kv.split("=", 1) for kv in m.group(1).split(","))
        out.append((m.group(2), int(opts.get("leg_delay_start", 0)), int(opts["leg_timeout"]) - (1 if lone else 0)))
    return out


def no_answer(app_id: str, leg_causes: str, cause: str = "NO_ANSWER") -> AppCompleted:
    return AppCompleted(app_id, "bridge", "_none_", {
        "originate_disposition": cause, "originate_failed_cause": cause, "originate_causes": leg_causes})


def results(members: Members) -> list[tuple[int, str]]:
    return [(e.employee_id, e.result) for e in members.ended]


# ------------------------------------------------------------------ parallel shapes


@pytest.mark.parametrize("strategy, expected", [
    (Strategy.RING_ALL, [("101", 0, 10), ("102", 0, 10), ("103", 0, 10), ("104", 0, 10), ("105", 0, 10)]),
    (Strategy.INCREASING, [("101", 0, 60), ("102", 10, 60), ("103", 20, 60), ("104", 30, 60), ("105", 40, 60)]),
])
def test_parallel_strategies_ring_everyone_with_one_bridge(strategy, expected):
    s = snap(strategy)
    c = ctx(s)
    d = Members().drive(callflow.start(call(), c), c)
    assert legs(bridge_of(d).arg) == expected  # 106 is logged out: never rung


def test_escalation_reference_case_managers_then_head_then_administrator():
    # Managers 1-3 at 0 s; head of sales (4) added at 10 s; administrator (5) at 30 s;
    # everyone keeps ringing until the department's 60 s are over.
    members = (Member(1), Member(2), Member(3), Member(4, escalation_offset=10), Member(5, escalation_offset=30))
    s = snap(Strategy.ESCALATION, members)
    c = ctx(s)
    d = Members().drive(callflow.start(call(), c), c)
    assert legs(bridge_of(d).arg) == [("101", 0, 60), ("102", 0, 60), ("103", 0, 60), ("104", 10, 60), ("105", 30, 60)]
    assert "call_timeout=62" in bridge_of(d).arg


def test_increasing_leaves_no_gap_for_a_busy_member():
    s = snap(Strategy.INCREASING)
    c = ctx(s)
    d = Members(busy={2}).drive(callflow.start(call(), c), c)
    assert legs(bridge_of(d).arg) == [("101", 0, 60), ("103", 10, 60), ("104", 20, 60), ("105", 30, 60)]


def test_ring_all_winner_keeps_the_offer_until_the_talk_ends_then_wrap_up():
    s = snap(Strategy.RING_ALL, wrapup_seconds=7)
    c = ctx(s)
    m = Members()
    d = m.drive(callflow.start(call(), c), c)
    d = step(m, d.state, Bridged("id4"), at(c, T0 + 3000, m))  # id4 = leg of 103
    assert sorted(results(m)) == [(1, "lost_race"), (2, "lost_race"), (4, "lost_race"), (5, "lost_race")]
    assert m.offers == {3: "c1"}  # still held while talking
    d = step(m, d.state, Unbridged(), at(c, T0 + 63_000, m))
    (end,) = [a for a in d.actions if isinstance(a, EndOffers)]
    assert end.wrapup_ms == 7000 and end.ends[0].talk_ms == 60_000 and end.ends[0].result == "answered"
    assert m.offers == {} and m.wrapup_until[3] == T0 + 70_000
    # Another call at 69.999 s skips 103 (wrap-up), at 70 s takes it again.
    c2 = ctx(s, T0 + 69_999)
    m.now_ms = T0 + 69_999
    d2 = m.drive(callflow.start(call("c2"), c2), c2)
    assert "103" not in [leg[0] for leg in legs(bridge_of(d2).arg)]
    m.offers.clear()
    m.now_ms = T0 + 70_000
    d3 = m.drive(callflow.start(call("c3"), ctx(s, T0 + 70_000)), ctx(s, T0 + 70_000))
    assert "103" in [leg[0] for leg in legs(bridge_of(d3).arg)]


def test_failed_ring_all_records_each_members_result_and_pauses_after_n_misses():
    s = snap(Strategy.RING_ALL, pause_after_missed=2, members=(Member(1), Member(2), Member(3)))
    m = Members()
    for n, uuid in enumerate(["c1", "c2"]):
        c = ctx(s, T0 + n * 100_000)
        m.now_ms = c.now_ms
        d = m.drive(callflow.start(call(uuid), c), c)
        b = bridge_of(d)
        l1, l2, l3 = re.findall(r"origination_uuid=([^,\]]+)", b.arg)
        # 101 rang out, 102 refused (486), 103 is not registered (no channel: no entry).
        causes = "ARRAY::%s;ALLOTTED_TIMEOUT|:%s;USER_BUSY" % (l1, l2)
        d = step(m, d.state, no_answer(b.app_id, causes, "USER_BUSY"), at(c, c.now_ms + 10_000, m))
    assert results(m) == [(1, "no_answer"), (2, "busy"), (3, "unregistered")] * 2
    assert [e.rang_ms for e in m.ended[:2]] == [10_000, 10_000]
    assert m.paused == {1, 2}  # unregistered phones are recorded but do not pause
    assert m.offers == {}


def test_caller_hanging_up_while_ringing_releases_everyone_without_a_miss():
    s = snap(Strategy.RING_ALL)
    c = ctx(s)
    m = Members()
    d = m.drive(callflow.start(call(), c), c)
    d = step(m, d.state, HungUp("ORIGINATOR_CANCEL"), at(c, T0 + 2000, m))
    assert isinstance(d.actions[-1], Finished)
    assert {r for _, r in results(m)} == {"cancelled"} and m.offers == {}


def test_everyone_busy_goes_to_the_no_answer_target_at_once():
    s = snap(Strategy.RING_ALL)
    c = ctx(s)
    m = Members(busy={1, 2}, paused={3}, wrapup_until={4: T0 + 1}, offers={5: "other-call"})
    d = m.drive(callflow.start(call(), c), c)
    assert bridge_of(d).app == "playback"  # the voicemail greeting
    assert any("nobody available" in r for r in d.state.route)


# ------------------------------------------------------------------ hunt shapes


def test_one_by_one_rings_each_member_in_turn_for_their_ring_time():
    s = snap(Strategy.ONE_BY_ONE, no_answer_timeout=25)
    c = ctx(s)
    m = Members(busy={2})
    d = m.drive(callflow.start(call(), c), c)
    assert legs(bridge_of(d).arg) == [("101", 0, 10)]
    b = bridge_of(d)
    lid = re.search(r"origination_uuid=([^,\]]+)", b.arg).group(1)
    d = step(m, d.state, no_answer(b.app_id, "%s;ALLOTTED_TIMEOUT" % lid), at(c, T0 + 10_000, m))
    # 102 is busy: skipped without ringing; 103 rings for the 10 s... then only 5 s remain.
    assert legs(bridge_of(d).arg) == [("103", 0, 10)]
    b = bridge_of(d)
    d = step(m, d.state, no_answer(b.app_id, "x;NO_ANSWER"), at(c, T0 + 20_000, m))
    assert legs(bridge_of(d).arg) == [("104", 0, 5)]
    b = bridge_of(d)
    d = step(m, d.state, no_answer(b.app_id, "x;NO_ANSWER"), at(c, T0 + 25_000, m))
    assert bridge_of(d).app == "playback"  # 25 s are over: voicemail
    assert results(m) == [(1, "no_answer"), (3, "no_answer"), (4, "no_answer")]


def test_one_by_one_starts_over_while_time_remains():
    s = snap(Strategy.ONE_BY_ONE, members=(Member(1, order=1), Member(2, order=2)), no_answer_timeout=60)
    c = ctx(s)
    m = Members()
    d = m.drive(callflow.start(call(), c), c)
    rung = []
    for t in range(1, 5):
        b = bridge_of(d)
        rung.append(legs(b.arg)[0][0])
        d = step(m, d.state, no_answer(b.app_id, "x;NO_ANSWER"), at(c, T0 + t * 10_000, m))
    assert rung == ["101", "102", "101", "102"]


def test_hunt_over_unregistered_phones_does_not_spin():
    s = snap(Strategy.ONE_BY_ONE, members=(Member(1, order=1), Member(2, order=2)))
    c = ctx(s)
    m = Members()
    d = m.drive(callflow.start(call(), c), c)
    for _ in range(2):
        b = bridge_of(d)
        d = step(m, d.state, no_answer(b.app_id, "", "USER_NOT_REGISTERED"), c)
    assert bridge_of(d).app == "playback"
    assert results(m) == [(1, "unregistered"), (2, "unregistered")]


@pytest.mark.parametrize("strategy, views, last, expected_first", [
    (Strategy.ROUND_ROBIN, {}, 2, "103"),
    (Strategy.ROUND_ROBIN, {}, 5, "101"),
    (Strategy.LONGEST_IDLE, {1: MemberView(1, last_end_ms=500), 2: MemberView(2, last_end_ms=100), 3: MemberView(3, last_end_ms=300),
                             4: MemberView(4, last_end_ms=900), 5: MemberView(5, last_end_ms=400)}, None, "102"),
    (Strategy.LEAST_TALK_TIME, {i: MemberView(i, talk_ms=1000 * (6 - i)) for i in range(1, 6)}, None, "105"),
    (Strategy.FEWEST_CALLS, {i: MemberView(i, calls=abs(3 - i)) for i in range(1, 6)}, None, "103"),
])
def test_state_ordered_strategies_look_members_up_first(strategy, views, last, expected_first):
    s = snap(strategy)
    c = ctx(s)
    m = Members(views=views, last_answered=last)
    d = m.drive(callflow.start(call(), c), c)
    (lookup,) = [a for a in d.actions if isinstance(a, LookupMembers)]
    assert lookup.employee_ids == (1, 2, 3, 4, 5) and lookup.window_days == 1
    assert legs(bridge_of(d).arg)[0][0] == expected_first


def test_weighted_gives_priority_8_proportionally_more_calls_than_5():
    dep = Department(10, "S", "200", Strategy.WEIGHTED, members=(Member(1, weight=8), Member(2, weight=5)))
    rand = random.Random(42).random
    first = Counter(order(dep, dep.members, {}, None, rand)[0].employee_id for _ in range(13_000))
    assert abs(first[1] / 13_000 - 8 / 13) < 0.015


def test_random_uses_every_member_first_sometimes():
    dep = Department(10, "S", "200", Strategy.RANDOM, members=tuple(Member(i) for i in range(1, 5)))
    rand = random.Random(7).random
    first = Counter(order(dep, dep.members, {}, None, rand)[0].employee_id for _ in range(4000))
    assert set(first) == {1, 2, 3, 4} and min(first.values()) > 850


# ------------------------------------------------------------------ queue (hold music)


def queued_snap(**dep) -> TenantSnapshot:
    from orchestrator.core.model import QueueSettings

    return snap(Strategy.RING_ALL, members=(Member(1), Member(2)), queue=QueueSettings(music="local_stream://moh", max_wait=120), **dep)


def waiting_call(m: Members, s: TenantSnapshot, uuid: str, now: int):
    c = ctx(s, now)
    m.now_ms = now
    d = m.drive(callflow.start(call(uuid), c), c)
    hold = bridge_of(d)
    assert hold.app == "playback" and hold.arg == "local_stream://moh"
    assert Execute("answer") in d.actions and uuid in m.queue
    return d, hold


def test_nobody_free_waits_on_hold_then_the_first_free_member_is_rung():
    from orchestrator.core.actions import BreakHold, Wake

    s = queued_snap()
    m = Members(busy={1, 2})
    d, hold = waiting_call(m, s, "c1", T0)
    c = ctx(s, T0 + 1000)
    d = step(m, d.state, Wake(), c)
    assert [a for a in d.actions if isinstance(a, BreakHold)] == []  # still nobody
    m.busy.discard(2)
    d = step(m, d.state, Wake(freed=True), at(c, T0 + 5000, m))
    assert m.offers == {2: "c1"}
    # The bridge is sent at once, nested in the music (P07d), which is not stopped: a
    # uuid_break first made it wait for two frames (departments.member_answer).
    kinds = [type(a).__name__ if not isinstance(a, Execute) else a.app for a in d.actions]
    assert "BreakHold" not in kinds and kinds[-2:] == ["set", "bridge"]
    assert d.state.offer.over_hold
    assert legs(bridge_of(d).arg) == [("102", 0, 10)]
    assert "queue: a member is free after 5 s" in d.state.route
    # The playback's completion that follows is stale: nothing more is sent.
    assert hold.app_id != bridge_of(d).app_id
    assert step(m, d.state, AppCompleted(hold.app_id, "playback", "FILE PLAYED"), at(c, T0 + 5020, m)).actions == ()


def test_unanswered_bridge_nested_in_the_music_stops_the_resumed_music_first():
    """The bridge ran nested in the hold playback; unanswered, FreeSWITCH resumes that
    playback (P07d): its uuid_break comes before anything else is queued."""
    from orchestrator.core.actions import BreakHold, Wake

    s = queued_snap()
    m = Members(busy={1, 2})
    d, hold = waiting_call(m, s, "c1", T0)
    m.busy.discard(1)
    c = ctx(s, T0 + 3000)
    d = step(m, d.state, Wake(freed=True), c)
    b = bridge_of(d)
    assert BreakHold() not in d.actions
    d = step(m, d.state, no_answer(b.app_id, "x;NO_ANSWER"), at(c, T0 + 13_000, m))
    assert isinstance(d.actions[0], BreakHold) and d.actions.count(BreakHold()) == 1
    assert bridge_of(d).arg == "local_stream://moh" and not d.state.offer.over_hold


def test_callers_keep_their_place_in_the_queue():
    from orchestrator.core.actions import Wake

    s = queued_snap()
    m = Members(busy={1, 2})
    first, _ = waiting_call(m, s, "c1", T0)
    second, _ = waiting_call(m, s, "c2", T0 + 1000)
    m.busy.discard(1)
    c = ctx(s, T0 + 2000)
    d2 = step(m, second.state, Wake(freed=True), c)  # the later caller looks first...
    assert m.offers == {} and d2.state.offer.pending is None  # ...but may not jump the queue
    step(m, first.state, Wake(freed=True), c)
    assert m.offers == {1: "c1"}


def test_queue_time_limit_leads_to_the_no_answer_target():
    from orchestrator.core.actions import BreakHold, LeaveQueue, Wake

    s = queued_snap()
    m = Members(busy={1, 2})
    d, hold = waiting_call(m, s, "c1", T0)
    c = at(ctx(s), T0 + 120_000, m)
    d = step(m, d.state, Wake(), c)
    assert LeaveQueue(10) in d.actions and BreakHold() in d.actions and m.queue == {}
    d = step(m, d.state, AppCompleted(hold.app_id, "playback", "FILE PLAYED"), c)
    assert bridge_of(d).arg.startswith("file_string://")  # the voicemail greeting
    assert "queue: nobody free within 120 s" in d.state.route


def test_member_not_answering_puts_the_caller_back_in_the_same_place():
    from orchestrator.core.actions import Wake

    s = queued_snap()
    m = Members(busy={1, 2})
    d, hold = waiting_call(m, s, "c1", T0)
    m.busy.discard(1)
    c = ctx(s, T0 + 3000)
    d = step(m, d.state, Wake(freed=True), c)
    b = bridge_of(d)
    d = step(m, d.state, AppCompleted(hold.app_id, "playback", "FILE PLAYED"), c)
    d = step(m, d.state, no_answer(b.app_id, "x;NO_ANSWER"), at(c, T0 + 13_000, m))
    assert bridge_of(d).arg == "local_stream://moh" and m.queue == {"c1": T0}
    assert "back in the queue" in d.state.route


def test_caller_hanging_up_on_hold_leaves_the_queue():
    s = queued_snap()
    m = Members(busy={1, 2})
    d, _ = waiting_call(m, s, "c1", T0)
    d = step(m, d.state, HungUp("NORMAL_CLEARING"), ctx(s, T0 + 9000))
    assert m.queue == {} and isinstance(d.actions[-1], Finished)


def test_no_answer_chain_department_to_department_to_voicemail():
    s0 = snap(Strategy.RING_ALL, members=(Member(1), Member(2)), no_answer_target=Target(TargetKind.DEPARTMENT, 11))
    second = Department(11, "Support", "201", Strategy.ONE_BY_ONE, ring_seconds=5, no_answer_timeout=5,
                        no_answer_target=Target(TargetKind.VOICEMAIL, 5), members=(Member(3), Member(4)))
    s = TenantSnapshot(7, "Demo", "demo.pbx.local", employees=s0.employees, departments={10: s0.departments[10], 11: second},
                       numbers=s0.numbers, voicemail_boxes=s0.voicemail_boxes)
    c = ctx(s)
    m = Members()
    d = m.drive(callflow.start(call(), c), c)
    assert [leg[0] for leg in legs(bridge_of(d).arg)] == ["101", "102"]
    d = step(m, d.state, no_answer(bridge_of(d).app_id, "ARRAY::id2;ALLOTTED_TIMEOUT|:id3;ALLOTTED_TIMEOUT"), at(c, T0 + 10_000, m))
    assert legs(bridge_of(d).arg) == [("103", 0, 5)]
    d = step(m, d.state, no_answer(bridge_of(d).app_id, "x;NO_ANSWER"), at(c, T0 + 15_000, m))
    assert bridge_of(d).app == "playback"  # 5 s are over for Support: voicemail
    assert results(m) == [(1, "no_answer"), (2, "no_answer"), (3, "no_answer")]
    route = " -> ".join(d.state.route)
    assert "department 200 (Sales), ring all" in route and "department 201 (Support), one by one" in route


# ------------------------------------------------------------------ callback from the queue


def callback_snap(allowed: bool = True, key: str = "1") -> TenantSnapshot:
    from orchestrator.core.model import QueueSettings

    q = QueueSettings(music="local_stream://moh", max_wait=120, callback_allowed=allowed, callback_key=key)
    return snap(Strategy.RING_ALL, members=(Member(1), Member(2)), queue=q)


@pytest.mark.parametrize("allowed, key, pressed, asked", [
    (True, "1", "1", True),
    (True, "5", "5", True),
    (True, "1", "2", False),  # another key: nothing happens
    (False, "1", "1", False),  # callbacks not allowed in the department
])
def test_callback_key_on_hold(allowed, key, pressed, asked):
    from orchestrator.core.actions import BreakHold, Dtmf, Hangup, RequestCallback

    s = callback_snap(allowed, key)
    m = Members(busy={1, 2})
    d, hold = waiting_call(m, s, "c1", T0)
    c = ctx(s, T0 + 7000)
    d = step(m, d.state, Dtmf(pressed), c)
    if not asked:
        assert d.actions == () and d.state.offer.waiting and not d.state.offer.leaving
        return
    assert d.actions == (RequestCallback(10, T0, "+78120000000", NUMBER), BreakHold())
    d = step(m, d.state, AppCompleted(hold.app_id, "playback", "FILE PLAYED"), c)
    thanks = bridge_of(d)
    assert (thanks.app, thanks.arg) == ("playback", "ivr/ivr-thank_you.wav")
    assert d.state.offer is None and not any(isinstance(a, Execute) and a.app == "bridge" for a in d.actions)
    d = step(m, d.state, AppCompleted(thanks.app_id, "playback", "FILE PLAYED"), c)
    assert d.actions == (Hangup("NORMAL_CLEARING"),)
    d = step(m, d.state, HungUp("NORMAL_CLEARING"), c)
    fin = d.actions[-1]
    assert isinstance(fin, Finished) and fin.hangup_cause == "NORMAL_CLEARING"
    assert "callback requested" in fin.route and "queue: callback key pressed after 7 s" in fin.route


def test_callback_key_ignored_once_a_member_is_taken_or_outside_the_hold():
    from orchestrator.core.actions import Dtmf, Wake

    s = callback_snap()
    m = Members(busy={1, 2})
    d, hold = waiting_call(m, s, "c1", T0)
    m.busy.discard(1)
    d = step(m, d.state, Wake(freed=True), ctx(s, T0 + 1000))
    assert bridge_of(d) is not None and not d.state.offer.waiting
    assert step(m, d.state, Dtmf("1"), ctx(s, T0 + 1100)).actions == ()  # the member is being rung
    d = step(m, d.state, AppCompleted(hold.app_id, "playback", "FILE PLAYED"), ctx(s, T0 + 1200))
    assert step(m, d.state, Dtmf("1"), ctx(s, T0 + 1300)).actions == ()  # ringing, not on hold


def test_caller_hanging_up_after_the_callback_key_keeps_the_callback():
    from orchestrator.core.actions import Dtmf, LeaveQueue, RequestCallback

    s = callback_snap()
    m = Members(busy={1, 2})
    d, _ = waiting_call(m, s, "c1", T0)
    d = step(m, d.state, Dtmf("1"), ctx(s, T0 + 2000))
    assert isinstance(d.actions[0], RequestCallback)
    d = step(m, d.state, HungUp("NORMAL_CLEARING"), ctx(s, T0 + 2100))
    # The call's own queue entry is left (already turned into the callback by the adapter).
    assert LeaveQueue(10) in d.actions and isinstance(d.actions[-1], Finished)


# ------------------------------------------------------------------ announcements on hold

YOU_ARE, IN_LINE = "ivr/ivr-you_are_number.wav", "ivr/ivr-in_line.wav"


def announcing_snap(announcement: str | None = "sounds/busy.wav", position: bool = True, every: int = 30,
                    callback: bool = False) -> TenantSnapshot:
    from orchestrator.core.model import QueueSettings

    q = QueueSettings(music="local_stream://moh", max_wait=600, announcement=announcement, announce_position=position,
                      announce_every=every, callback_allowed=callback)
    return snap(Strategy.RING_ALL, members=(Member(1), Member(2)), queue=q)


def played(d: callflow.Decision) -> Execute:
    """The one blocking playback the decision starts."""
    (p,) = [a for a in d.actions if isinstance(a, Execute) and a.wait]
    assert p.app == "playback"
    return p


def position_sound(n: str) -> str:
    return "%s!digits/%s.wav!%s" % (YOU_ARE, n, IN_LINE)


def on_hold_with_music(m: Members, s: TenantSnapshot, uuid: str, now: int, position: str):
    """A caller put on hold: their place first, then the music (returned: decision, music)."""
    from orchestrator.core.actions import JoinQueue, LookupPosition

    c = ctx(s, now)
    m.now_ms = now
    d = m.drive(callflow.start(call(uuid), c), c)
    assert [type(a) for a in d.actions if isinstance(a, (JoinQueue, LookupPosition))] == [JoinQueue, LookupPosition]
    said = played(d)
    assert said.arg == "file_string://" + position_sound(position)
    d = step(m, d.state, AppCompleted(said.app_id, "playback", "FILE PLAYED"), at(c, now + 3000, m))
    music = played(d)
    assert music.arg == "local_stream://moh"
    return d, music


@pytest.mark.parametrize("n, files", [
    (1, ["1"]), (7, ["7"]), (13, ["13"]), (20, ["20"]), (21, ["20", "1"]), (99, ["90", "9"]), (100, ["1", "hundred"]),
    (115, ["1", "hundred", "15"]), (342, ["3", "hundred", "40", "2"]), (1000, ["1", "thousand"]),
    (2019, ["2", "thousand", "19"]), (0, ["0"]),
])
def test_position_numbers_are_said_with_mod_say_en_files(n, files):
    from orchestrator.core.announcements import number_sounds, position_sounds

    assert number_sounds(n) == ["digits/%s.wav" % f for f in files]
    if n:
        assert position_sounds(n) == [YOU_ARE] + number_sounds(n) + [IN_LINE]
    else:
        assert position_sounds(n) == []  # unknown place: nothing said


def test_place_first_then_music_then_announcement_and_place_every_interval():
    from orchestrator.core.actions import BreakHold, LookupPosition, Wake
    from orchestrator.core.departments import announce_due_ms

    s = announcing_snap()
    m = Members(busy={1, 2})
    on_hold_with_music(m, s, "c1", T0, "1")
    d, music = on_hold_with_music(m, s, "c2", T0 + 1000, "2")  # one caller ahead
    assert announce_due_ms(d.state) == T0 + 4000 + 30_000  # 30 s of music from its start
    c = ctx(s)
    assert step(m, d.state, Wake(), at(c, T0 + 33_999, m)).actions == ()
    d = step(m, d.state, Wake(), at(c, T0 + 34_000, m))
    assert d.actions == (LookupPosition(10), BreakHold())
    assert announce_due_ms(d.state) is None  # no second announcement while this one is on its way
    assert step(m, d.state, Wake(), at(c, T0 + 35_000, m)).actions == ()
    d = step(m, d.state, AppCompleted(music.app_id, "playback", "FILE PLAYED"), at(c, T0 + 34_020, m))
    said = played(d)
    assert said.arg == "file_string://sounds/busy.wav!" + position_sound("2")
    m.queue.pop("c1")  # the caller ahead is served meanwhile
    d = step(m, d.state, AppCompleted(said.app_id, "playback", "FILE PLAYED"), at(c, T0 + 44_000, m))
    assert played(d).arg == "local_stream://moh" and announce_due_ms(d.state) == T0 + 74_000
    music = played(d)
    d = step(m, d.state, Wake(), at(c, T0 + 74_000, m))
    d = step(m, d.state, AppCompleted(music.app_id, "playback", "FILE PLAYED"), at(c, T0 + 74_020, m))
    assert played(d).arg == "file_string://sounds/busy.wav!" + position_sound("1")
    assert d.state.offer.waiting and m.queue == {"c2": T0 + 1000}  # kept their place throughout


@pytest.mark.parametrize("announcement, position, first, periodic", [
    ("sounds/busy.wav", False, "local_stream://moh", "sounds/busy.wav"),  # music at once; one file needs no list
    (None, True, "file_string://" + position_sound("1"), "file_string://" + position_sound("1")),
    # the tenant's own file: an absolute path under its sounds directory (core.sounds)
    ("tenant:promo.wav", False, "local_stream://moh", "/rec/7/sounds/promo.wav"),
])
def test_announcement_alone_or_place_alone(announcement, position, first, periodic):
    from orchestrator.core.actions import BreakHold, LookupPosition, Wake

    s = announcing_snap(announcement, position, every=10)
    m = Members(busy={1, 2})
    c = ctx(s, T0)
    d = m.drive(callflow.start(call("c1"), c), c)
    assert played(d).arg == first
    if position:
        d = step(m, d.state, AppCompleted(played(d).app_id, "playback", "FILE PLAYED"), at(c, T0 + 2000, m))
    music = played(d)
    due = T0 + (2000 if position else 0) + 10_000
    d = step(m, d.state, Wake(), at(c, due, m))
    assert d.actions == ((LookupPosition(10),) if position else ()) + (BreakHold(),)
    d = step(m, d.state, AppCompleted(music.app_id, "playback", "FILE PLAYED"), at(c, due + 20, m))
    assert played(d).arg == periodic


def test_no_announcement_configured_is_music_only():
    from orchestrator.core.actions import JoinQueue, Wake
    from orchestrator.core.departments import announce_due_ms

    s = announcing_snap(None, False, every=5)
    m = Members(busy={1, 2})
    d, hold = waiting_call(m, s, "c1", T0)
    assert [a for a in d.actions if isinstance(a, (JoinQueue, Execute))][-3:] == [JoinQueue(10, T0), Execute("answer"), hold]
    assert announce_due_ms(d.state) is None
    for t in (5_000, 30_000, 300_000):
        assert step(m, d.state, Wake(), ctx(s, T0 + t)).actions == ()


def test_member_freed_during_the_announcement_is_rung_at_once():
    from orchestrator.core.actions import BreakHold, Wake

    s = announcing_snap()
    m = Members(busy={1, 2})
    d, music = on_hold_with_music(m, s, "c1", T0, "1")
    c = ctx(s)
    d = step(m, d.state, Wake(), at(c, T0 + 33_000, m))
    d = step(m, d.state, AppCompleted(music.app_id, "playback", "FILE PLAYED"), at(c, T0 + 33_020, m))
    said = played(d)
    m.busy.discard(2)
    d = step(m, d.state, Wake(freed=True), at(c, T0 + 34_000, m))
    assert BreakHold() not in d.actions and m.offers == {2: "c1"}
    assert legs(bridge_of(d).arg) == [("102", 0, 10)]  # nested in the announcement: the ring wins
    assert step(m, d.state, AppCompleted(said.app_id, "playback", "FILE PLAYED"), at(c, T0 + 34_020, m)).actions == ()
    assert "queue: a member is free after 34 s" in d.state.route


def test_member_freed_while_the_music_stops_for_an_announcement_is_rung_instead():
    from orchestrator.core.actions import BreakHold, Wake

    s = announcing_snap()
    m = Members(busy={1, 2})
    d, music = on_hold_with_music(m, s, "c1", T0, "1")
    c = ctx(s)
    d = step(m, d.state, Wake(), at(c, T0 + 33_000, m))
    assert BreakHold() in d.actions
    m.busy.discard(1)
    d = step(m, d.state, Wake(freed=True), at(c, T0 + 33_005, m))
    assert m.offers == {1: "c1"} and BreakHold() not in d.actions  # the break on its way does it
    d = step(m, d.state, AppCompleted(music.app_id, "playback", "FILE PLAYED"), at(c, T0 + 33_020, m))
    assert legs(bridge_of(d).arg) == [("101", 0, 10)]  # no announcement: straight to the member


def test_member_freed_while_the_place_is_said_first_is_rung_at_once():
    from orchestrator.core.actions import BreakHold, Wake

    s = announcing_snap()
    m = Members(busy={1, 2})
    c = ctx(s, T0)
    d = m.drive(callflow.start(call("c1"), c), c)
    said = played(d)
    m.busy.discard(1)
    d = step(m, d.state, Wake(freed=True), at(c, T0 + 1000, m))
    assert BreakHold() not in d.actions
    assert legs(bridge_of(d).arg) == [("101", 0, 10)]
    assert step(m, d.state, AppCompleted(said.app_id, "playback", "FILE PLAYED"), at(c, T0 + 1020, m)).actions == ()


@pytest.mark.parametrize("when", ["announcement", "breaking", "first place"])
def test_callback_key_works_during_announcements(when):
    from orchestrator.core.actions import BreakHold, Dtmf, RequestCallback, Wake

    s = announcing_snap(callback=True)
    m = Members(busy={1, 2})
    c = ctx(s)
    if when == "first place":
        d = m.drive(callflow.start(call("c1"), ctx(s, T0)), ctx(s, T0))
        playing, now = played(d), T0 + 1000
    else:
        d, music = on_hold_with_music(m, s, "c1", T0, "1")
        d = step(m, d.state, Wake(), at(c, T0 + 33_000, m))
        playing, now = music, T0 + 33_010
        if when == "announcement":
            d = step(m, d.state, AppCompleted(music.app_id, "playback", "FILE PLAYED"), at(c, T0 + 33_020, m))
            playing, now = played(d), T0 + 35_000
    d = step(m, d.state, Dtmf("1"), at(c, now, m))
    ask = RequestCallback(10, T0, "+78120000000", NUMBER)
    assert d.actions == ((ask,) if when == "breaking" else (ask, BreakHold()))  # one break per playback
    d = step(m, d.state, AppCompleted(playing.app_id, "playback", "FILE PLAYED"), at(c, now + 20, m))
    assert played(d).arg == "ivr/ivr-thank_you.wav"


def test_time_limit_during_an_announcement_leaves_the_queue():
    from orchestrator.core.actions import BreakHold, LeaveQueue, Wake

    s = announcing_snap()
    m = Members(busy={1, 2})
    d, music = on_hold_with_music(m, s, "c1", T0, "1")
    c = ctx(s)
    d = step(m, d.state, Wake(), at(c, T0 + 33_000, m))  # announcement due: the music is being stopped
    d = step(m, d.state, Wake(), at(c, T0 + 600_000, m))  # ...when the time limit is reached
    assert d.actions == (LeaveQueue(10),)
    d = step(m, d.state, AppCompleted(music.app_id, "playback", "FILE PLAYED"), at(c, T0 + 603_020, m))
    assert bridge_of(d).arg.startswith("file_string://")  # the voicemail greeting, not the announcement
    assert "queue: nobody free within 600 s" in d.state.route


class PlaceUnknown(Members):
    """Redis could not say the caller's place (the adapter answers 0)."""

    place = 0

    def position(self, action, call):
        from orchestrator.core.actions import QueuePosition

        return QueuePosition(action.department_id, self.place)


def test_unknown_place_plays_the_music_and_the_announcement_only():
    from orchestrator.core.actions import BreakHold, LookupPosition, Wake
    from orchestrator.core.departments import announce_due_ms

    s = announcing_snap(None, True)
    m = PlaceUnknown(busy={1, 2})
    c = ctx(s, T0)
    d = m.drive(callflow.start(call("c1"), c), c)
    assert LookupPosition(10) in d.actions and played(d).arg == "local_stream://moh"  # nothing said: music at once
    music = played(d)
    d = step(m, d.state, Wake(), at(c, T0 + 30_000, m))
    assert d.actions == (LookupPosition(10),) and announce_due_ms(d.state) == T0 + 60_000  # the music goes on
    m.place = 4
    d = step(m, d.state, Wake(), at(c, T0 + 60_000, m))
    assert d.actions == (LookupPosition(10), BreakHold())
    d = step(m, d.state, AppCompleted(music.app_id, "playback", "FILE PLAYED"), at(c, T0 + 60_020, m))
    assert played(d).arg == "file_string://" + position_sound("4")


def test_back_in_the_queue_hears_the_music_and_the_interval_starts_again():
    from orchestrator.core.actions import Wake
    from orchestrator.core.departments import announce_due_ms

    s = announcing_snap()
    m = Members(busy={1, 2})
    d, music = on_hold_with_music(m, s, "c1", T0, "1")
    m.busy.discard(1)
    c = ctx(s)
    d = step(m, d.state, Wake(freed=True), at(c, T0 + 10_000, m))
    b = bridge_of(d)
    d = step(m, d.state, no_answer(b.app_id, "x;NO_ANSWER"), at(c, T0 + 20_020, m))
    assert played(d).arg == "local_stream://moh" and "back in the queue" in d.state.route  # no place said again
    assert announce_due_ms(d.state) == T0 + 50_020


def test_lone_user_leg_gets_one_second_more():
    """FreeSWITCH 1.10.12 ends a lone user/ leg when whole seconds elapsed >= leg_timeout
    (user_outgoing_channel's blocking originate): ring_seconds 3 rang 2.1-2.7 s. One
    second more makes it ring 3..4 s; legs rung together keep their value (elapsed >
    leg_timeout already rings N..N+1 s)."""
    from orchestrator.core.dialstrings import Leg, ring_all

    lone = ring_all([Leg("user/101@d", 3)], 5)
    assert lone == "{ignore_early_media=true,call_timeout=5}[leg_timeout=4]user/101@d"
    both = ring_all([Leg("user/101@d", 3), Leg("user/102@d", 3)], 5)
    assert both.count("leg_timeout=3") == 2
    outside = ring_all([Leg("sofia/gateway/pstn/+7916", 3)], 5)
    assert "leg_timeout=3]" in outside
