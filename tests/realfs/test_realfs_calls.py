"""Calls through a real FreeSWITCH 1.10.12: a sipp carrier calls the tenant's numbers,
sipp phones registered through our directory ring and answer, the orchestrator routes.

Timings come from FreeSWITCH's own events (Event-Date-Timestamp of CHANNEL_CREATE /
CHANNEL_PROGRESS / CHANNEL_ANSWER / CHANNEL_HANGUP, see fs_harness.EslEvents); waits are
on those events, bounded by generous timeouts for a loaded 2-core machine.
"""
from __future__ import annotations

import time

from sqlalchemy import select

from orchestrator.db.history import CallRecord
from orchestrator.db.models import Employee, Tenant
from tests.realfs.conftest import DOMAIN, Stack
from tests.realfs.fs_harness import Leg, wait_until

SETTLE = 60.0  # seconds: the longest any wait of a call may take on a loaded machine


def inbound(stack: Stack, number: str) -> Leg:
    (leg,) = stack.esl.wait_for(lambda: stack.esl.legs_where(lambda l: l.direction == "inbound" and l.destination == number),
                                SETTLE, "the carrier's call to %s" % number)
    return leg


def to_user(stack: Stack, ext: str) -> list[Leg]:
    return stack.esl.legs_where(lambda l: l.direction == "outbound" and l.name.startswith("sofia/pbx/%s@" % ext))


def to_number(stack: Stack, number: str) -> list[Leg]:
    # FreeSWITCH's log writes the "+" of a sofia/ dial string's user part as %2B; the
    # events' Channel-Name may carry either form.
    names = ("/%s@" % number, "/%s@" % number.replace("+", "%2B"))
    return stack.esl.legs_where(lambda l: l.direction == "outbound" and any(n in l.name for n in names))


def ended(stack: Stack, leg: Leg) -> None:
    stack.esl.wait_for(lambda: leg.hungup is not None, SETTLE, "hangup of %s" % leg.name)


def employee_id(stack: Stack, ext: str) -> int:
    with stack.session_factory() as session:  # type: ignore[operator]
        return session.scalar(select(Employee.id).join(Tenant, Tenant.id == Employee.tenant_id)
                              .where(Tenant.sip_domain == DOMAIN, Employee.extension == ext))


def history(stack: Stack, uuid: str) -> CallRecord:
    def row() -> CallRecord | None:
        with stack.session_factory() as session:  # type: ignore[operator]
            return session.scalar(select(CallRecord).where(CallRecord.call_uuid == uuid))

    found = wait_until(row, SETTLE, "the call's history row")
    assert isinstance(found, CallRecord)
    return found


def test_number_to_employee_who_answers(realfs_stack: Stack, phones, carrier) -> None:
    stack = realfs_stack
    phones("101", answer_after_ms=1000)
    call = carrier("+74951110001", hold_ms=2000)
    a = inbound(stack, "+74951110001")
    assert a.context == "public"
    desk = stack.esl.wait_for(lambda: to_user(stack, "101"), SETTLE, "the desk phone's leg")[0]
    ended(stack, a)
    ended(stack, desk)
    assert call.wait(timeout=SETTLE) == 0, call.errors()
    # The desk phone rang (180 -> CHANNEL_PROGRESS) and answered about 1 s later.
    assert desk.progress is not None and desk.answered is not None
    assert 0.8 <= desk.answered - desk.progress <= 3.0
    assert a.answered is not None and a.answered >= desk.answered - 0.05  # the caller is answered by the bridge
    assert a.cause == desk.cause == "NORMAL_CLEARING"
    # Answered before forward_to_mobile_after (3 s): the mobile never rang. FreeSWITCH
    # creates the delayed leg (leg_delay_start) at once and, when another leg wins
    # before the delay is over, hangs it up (LOSE_RACE, in state CS_INIT) without
    # sending an INVITE and without a CHANNEL_CREATE event.
    assert to_number(stack, "+79160000011") == [], stack.esl.describe()
    row = history(stack, a.uuid)
    assert row.answered_by_employee_id == employee_id(stack, "101")
    assert row.destination == "+74951110001" and row.caller == "+78121234567"


def test_ring_all_every_member_rings_first_answer_wins(realfs_stack: Stack, phones, carrier) -> None:
    stack = realfs_stack
    phones("102", answer_after_ms=1500)
    phones("103", answer_after_ms=None)
    call = carrier("+74951110002", hold_ms=1500)
    a = inbound(stack, "+74951110002")
    legs = stack.esl.wait_for(lambda: len(to_user(stack, "102")) == 1 and len(to_user(stack, "103")) == 1 and
                              [to_user(stack, "102")[0], to_user(stack, "103")[0]], SETTLE, "both members' legs")
    boris, vera = legs
    ended(stack, a)
    assert call.wait(timeout=SETTLE) == 0, call.errors()
    assert abs(boris.created - vera.created) < 1.0  # rung together
    assert boris.progress is not None and vera.progress is not None  # both phones got the INVITE and rang
    assert boris.answered is not None and vera.answered is None
    ended(stack, vera)
    assert vera.hungup is not None and vera.hungup - boris.answered < 2.0  # cancelled when Boris answered
    assert vera.cause == "LOSE_RACE"  # FreeSWITCH's cause for the other legs of a won bridge
    row = history(stack, a.uuid)
    assert row.answered_by_employee_id == employee_id(stack, "102")


def test_one_by_one_rings_each_member_for_ring_seconds(realfs_stack: Stack, phones, carrier) -> None:
    stack = realfs_stack
    phones("102", answer_after_ms=None)  # never answers
    phones("103", answer_after_ms=1000)
    call = carrier("+74951110003", hold_ms=1000)
    a = inbound(stack, "+74951110003")
    (vera,) = stack.esl.wait_for(lambda: to_user(stack, "103"), SETTLE, "the second member's leg")
    ended(stack, a)
    assert call.wait(timeout=SETTLE) == 0, call.errors()
    (boris,) = to_user(stack, "102")
    # Department 300: one_by_one, ring_seconds 3. leg_timeout fires on FreeSWITCH's
    # whole-second tick, so 3..4 s; the next member's leg follows at once.
    assert boris.progress is not None and boris.answered is None
    assert boris.hungup is not None and 2.9 <= boris.hungup - boris.created <= 4.2
    assert 0 <= vera.created - boris.hungup <= 1.5
    assert vera.answered is not None and vera.created > boris.created
    row = history(stack, a.uuid)
    assert row.answered_by_employee_id == employee_id(stack, "103")


def test_mobile_joins_after_forward_to_mobile_after(realfs_stack: Stack, phones, mobile, carrier) -> None:
    stack = realfs_stack
    phones("101", answer_after_ms=None)
    mobile(1000)
    call = carrier("+74951110001", hold_ms=1000)
    a = inbound(stack, "+74951110001")
    (cell,) = stack.esl.wait_for(lambda: to_number(stack, "+79160000011"), SETTLE, "the mobile's leg")
    ended(stack, a)
    assert call.wait(timeout=SETTLE) == 0, call.errors()
    (desk,) = to_user(stack, "101")
    # forward_to_mobile_after 3 s (leg_delay_start: whole-second tick, 3..4 s) while the
    # desk keeps ringing; the mobile answers, the desk loses the race.
    assert cell.progress is not None and 2.9 <= cell.progress - desk.created <= 4.5
    # FreeSWITCH fires the delayed leg's CHANNEL_CREATE when the delay is over, not when
    # the bridge starts (the simulator creates it at once and delays only the INVITE).
    assert 2.9 <= cell.created - desk.created <= 4.5
    assert cell.answered is not None and desk.answered is None
    assert desk.progress is not None and desk.cause == "LOSE_RACE"
    assert desk.hungup is not None and abs(desk.hungup - cell.answered) < 1.0


def test_queue_holds_the_caller_and_reoffers_when_the_member_is_free(realfs_stack: Stack, phones, carrier) -> None:
    """Department 500 (one member, hold music): A talks to 102; B waits on hold; when A
    ends, B is offered to 102 at once."""
    stack = realfs_stack
    phones("102", answer_after_ms=1000)
    call_a = carrier("+74951110005", hold_ms=3000, caller="+79990000001")
    a = inbound(stack, "+74951110005")
    first = stack.esl.wait_for(lambda: [l for l in to_user(stack, "102") if l.answered], SETTLE, "102 answering A")[0]
    call_b = carrier("+74951110005", hold_ms=8000, caller="+79990000002")
    b = stack.esl.wait_for(lambda: [l for l in stack.esl.legs_where(lambda l: l.direction == "inbound") if l.uuid != a.uuid],
                           SETTLE, "B's call")[0]
    # B hears the hold music while 102 is busy with A.
    stack.esl.wait_for(lambda: "playback" in stack.esl.apps.get(b.uuid, []), SETTLE, "B on hold")
    assert len(to_user(stack, "102")) == 1
    second = stack.esl.wait_for(lambda: len(to_user(stack, "102")) == 2 and to_user(stack, "102")[1], SETTLE,
                                "B offered to 102")
    ended(stack, a)
    ended(stack, b)
    assert call_a.wait(timeout=SETTLE) == 0, call_a.errors()
    assert call_b.wait(timeout=SETTLE) == 0, call_b.errors()
    assert first.hungup is not None and 0 <= second.created - first.hungup <= 2.0  # re-offered as soon as 102 is free
    assert second.answered is not None
    apps = stack.esl.apps[b.uuid]
    assert apps.index("playback") < apps.index("bridge")
    row = history(stack, b.uuid)
    assert row.answered_by_employee_id == employee_id(stack, "102")
    assert "queue" in row.route


def test_callback_from_the_queue_rings_the_member_then_the_client(realfs_stack: Stack, phones, mobile, carrier) -> None:
    """A talks to 102; B, on hold in department 500, presses 1 (SIP INFO) and hangs up
    with a callback request; when A ends, pbx-worker rings 102 first, then B's number
    (the "mobile" sipp at PBX_EXTERNAL_DIAL_TEMPLATE), and bridges them."""
    stack = realfs_stack
    phones("102", answer_after_ms=1000)
    client = mobile(1000)
    call_a = carrier("+74951110005", hold_ms=4000, caller="+79990000001")
    a = inbound(stack, "+74951110005")
    stack.esl.wait_for(lambda: [l for l in to_user(stack, "102") if l.answered], SETTLE, "102 answering A")
    call_b = carrier("+74951110005", hold_ms=None, caller="+79990000002", dtmf="1", dtmf_after_ms=1500)
    b = stack.esl.wait_for(lambda: [l for l in stack.esl.legs_where(lambda l: l.direction == "inbound") if l.uuid != a.uuid],
                           SETTLE, "B's call")[0]
    ended(stack, b)  # the orchestrator thanks B and hangs up
    assert call_b.wait(timeout=SETTLE) == 0, call_b.errors()
    assert "bridge" not in stack.esl.apps.get(b.uuid, [])
    ended(stack, a)
    assert call_a.wait(timeout=SETTLE) == 0, call_a.errors()
    legs = stack.esl.wait_for(lambda: len(to_user(stack, "102")) == 2 and to_number(stack, "+79990000002"),
                              2 * SETTLE, "the callback's legs")
    client_leg = legs[0]
    agent_leg = to_user(stack, "102")[1]
    stack.esl.wait_for(lambda: "CHANNEL_BRIDGE" in agent_leg.events + client_leg.events, SETTLE,
                       "the worker's uuid_bridge")
    assert agent_leg.answered is not None and client_leg.answered is not None
    assert client_leg.created >= agent_leg.answered - 0.05  # the member first, then the client
    # uuid_bridge'd legs hang up together (P06): the member hangs up, so does the client.
    stack.esl.api("uuid_kill %s" % agent_leg.uuid)
    ended(stack, client_leg)
    client.stop()


def test_voicemail_is_recorded_and_emailed(realfs_stack: Stack, carrier) -> None:
    """Employee 104 has no registered phone: FreeSWITCH fails the user/ leg at once
    (USER_NOT_REGISTERED, no channel is created), and the call goes to voicemail."""
    import email
    import email.policy

    from orchestrator.db.history import VoicemailMessage

    stack = realfs_stack
    stack.esl.clear()
    assert stack.inbox is not None
    seen = len(stack.inbox.received)
    call = carrier("+74951110004", hold_ms=5000, speak=True)  # a tone from the answer on
    a = inbound(stack, "+74951110004")
    ended(stack, a)
    assert call.wait(timeout=SETTLE) == 0, call.errors()
    assert to_user(stack, "104") == []
    apps = stack.esl.apps[a.uuid]
    assert apps.index("answer") < apps.index("record"), apps
    recordings = list((stack.fs.recordings / "pbx").glob("vm-*-%s.wav" % a.uuid))
    assert len(recordings) == 1 and recordings[0].stat().st_size > 44, recordings  # more than a WAV header

    def message() -> VoicemailMessage | None:
        with stack.session_factory() as session:  # type: ignore[operator]
            return session.scalar(select(VoicemailMessage).where(VoicemailMessage.call_uuid == a.uuid))

    stored = wait_until(message, SETTLE, "the voicemail message row")
    assert isinstance(stored, VoicemailMessage) and stored.recording_path == str(recordings[0])
    assert stored.duration_ms > 1000
    stack.inbox.wait_for(lambda: len(stack.inbox.received) > seen, SETTLE, "the voicemail e-mail")
    mail_from, rcpt, raw = stack.inbox.received[seen]
    assert sorted(rcpt) == ["box@realfs.example", "gleb@realfs.example"]
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert "+78121234567" in str(msg["Subject"]) + msg.get_body(("plain",)).get_content()


def test_orchestrator_killed_mid_call_falls_back_to_the_dialplan(realfs_stack: Stack, phones, carrier) -> None:
    """Kept last: it kills the orchestrator (and starts a new one for any later test)."""
    stack = realfs_stack
    phones("101", answer_after_ms=None)
    call = carrier("+74951110001", hold_ms=None)  # stays until the fallback hangs up
    a = inbound(stack, "+74951110001")
    stack.esl.wait_for(lambda: any(l.progress for l in to_user(stack, "101")), SETTLE, "the desk phone ringing")
    stack.orchestrator.kill()
    killed = time.time()
    try:
        # The socket application returns as soon as the orchestrator's socket closes and
        # the dialplan goes on (seen on 1.10.12): transfer to pbx-fallback, which rings
        # the routed target once more (pbx_fallback_dial; ring_seconds 8 + whole-second
        # tick), then answers, plays the prompts and records.
        stack.esl.wait_for(lambda: "record" in stack.esl.apps.get(a.uuid, []) or a.hungup, 2 * SETTLE,
                           "the fallback's record")
        apps = stack.esl.apps[a.uuid]
        assert "transfer" in apps, apps
        after = apps[apps.index("transfer"):]
        assert "bridge" in after and "record" in after, after
        assert after.index("bridge") < after.index("answer") < after.index("playback") < after.index("record")
        ended(stack, a)
        assert call.wait(timeout=SETTLE) == 0, call.errors()
        desk = to_user(stack, "101")
        assert desk and all(leg.answered is None for leg in desk)
        assert a.answered is not None and a.answered > killed
        assert a.answered >= max(leg.hungup or 0 for leg in desk) - 0.05  # answered after the last ring gave up
        recordings = list(stack.fs.recordings.rglob("*%s*.wav" % a.uuid))
        assert recordings, "no fallback recording under %s" % stack.fs.recordings
    finally:
        stack.start_orchestrator()
