"""Simulator behaviour beyond single transcripts: dial strings, endpoints and their
logs, ring strategies, the XML dialplan interpreter, fallback after the socket app,
linger/JSON on the outbound socket, and the pbx-fssim command."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.esl import wire, wire_fs
from simulator import Answer, Busy, FreeSwitchSim, NoAnswer, Reject
from simulator.dialstring import parse
from simulator.rawclient import RawOutboundServer, inbound_client

ROOT = Path(__file__).resolve().parent.parent
BASIC = Path(__file__).parent / "data" / "sim_dialplan" / "basic"


@pytest.fixture()
def sim() -> FreeSwitchSim:
    os.environ["SIM_TEST_ENV_VALUE"] = "from-env"
    s = FreeSwitchSim(conf_dir=BASIC, time_scale=0.02).start()
    yield s
    s.stop()


def call(sim: FreeSwitchSim, dest: str, **kw: object):  # type: ignore[no-untyped-def]
    kw.setdefault("context", "tests")
    return sim.place_call(dest, **kw).wait(10)  # type: ignore[arg-type]


# ---------------------------------------------------------------- dial strings
def test_dial_string_groups_and_variables() -> None:
    groups = parse("{a=1,call_timeout=20}[leg_timeout=3]user/1@d,sofia/gateway/gw/123|[x=y\\,z]error/USER_BUSY")
    assert [[leg.target for leg in g] for g in groups] == [["user/1@d", "sofia/gateway/gw/123"], ["error/USER_BUSY"]]
    assert groups[0][0].vars == {"a": "1", "call_timeout": "20", "leg_timeout": "3"}
    assert groups[0][1].vars == {"a": "1", "call_timeout": "20"}
    assert groups[1][0].vars == {"a": "1", "call_timeout": "20", "x": "y,z"}
    with pytest.raises(ValueError):
        parse("{a=1")


# ---------------------------------------------------------------- dialplan interpreter
def test_captures_anti_actions_and_continue(sim: FreeSwitchSim) -> None:
    c = call(sim, "bn", caller_id="+74951234567")
    assert c.variables["area"] == "495"
    assert c.variables.get("anti") == "1" and "should_not" not in c.variables  # break="never"
    c2 = call(sim, "bn", caller_id="1001")
    assert c2.variables["area"] == "none"


def test_inline_actions_run_at_hunt_time(sim: FreeSwitchSim) -> None:
    c = call(sim, "inline")
    assert c.variables["seen_early"] == "yes"


def test_variable_field_and_globals(sim: FreeSwitchSim) -> None:
    c = call(sim, "vf", variables={"route_to": "busy"})
    assert c.hangup_cause == "USER_BUSY" and c.variables["matched"] == "busy"
    c2 = call(sim, "vf", variables={"route_to": "other"})
    # only the continue="true" extension ran: out of actions -> NORMAL_CLEARING
    assert c2.hangup_cause == "NORMAL_CLEARING" and "matched" not in c2.variables
    c3 = call(sim, "vf", context="no_such_context")
    assert c3.hangup_cause == "NO_ROUTE_DESTINATION"
    g = call(sim, "globals")
    assert g.variables["g1"] == "tone_stream://%(300,0,440)"
    assert g.variables["g2"] == "from-env|kept|exec-ok"
    (_, _, played), = [a for a in g.apps if a[1] == "playback"]
    assert played == "tone_stream://%(300,0,440)"


def test_unknown_application_hangs_up_destination_out_of_order(sim: FreeSwitchSim) -> None:
    c = call(sim, "bogus")
    assert c.hangup_cause == "DESTINATION_OUT_OF_ORDER"
    assert "not_reached" not in c.variables
    assert not [e for e in c.events if e.get("Application") == "no_such_app"]


def test_transfer_and_execute_extension(sim: FreeSwitchSim) -> None:
    c = call(sim, "xfer")
    assert c.variables["landed"] == "other" and c.variables["helped"] == "yes"
    assert "not_reached" not in c.variables
    assert c.channel.profile["context"] == "other" and c.channel.profile["profile_index"] == "2"


# ---------------------------------------------------------------- endpoints
def test_user_registered_answers_and_logs_its_leg(sim: FreeSwitchSim) -> None:
    ep = sim.add_user("1001", "acme.example", behavior=Answer(after=2, hangup_after=3))
    c = call(sim, "1001")
    assert c.bridged_to == "1001@acme.example" and c.answered
    (leg,) = ep.legs
    assert leg.a_uuid == c.uuid and leg.cause == "NORMAL_CLEARING"
    assert 1.9 <= leg.answered_at - leg.invited_at <= 2.5
    assert 2.9 <= leg.ended_at - leg.answered_at <= 3.5
    assert c.hangup_cause == "NORMAL_CLEARING"  # hangup_after_bridge=true


@pytest.mark.parametrize("setup,cause", [
    (lambda s: s.add_user("1002", "acme.example", registered=False), "USER_NOT_REGISTERED"),
    (lambda s: s.add_user("1003", "acme.example"), "SUBSCRIBER_ABSENT"),  # 1002 unknown in a known domain
    (lambda s: s.add_user("1002", "acme.example", behavior=Busy(after=1)), "USER_BUSY"),
    (lambda s: s.add_user("1002", "acme.example", behavior=Reject("CALL_REJECTED")), "CALL_REJECTED"),
])
def test_bridge_failures_continue_on_fail(sim: FreeSwitchSim, setup, cause: str) -> None:  # type: ignore[no-untyped-def]
    setup(sim)
    c = call(sim, "1002")
    assert c.variables["after_bridge"] == cause and c.hangup_cause == cause
    assert c.variables["originate_failed_cause"] == cause


def test_ring_all_winner_and_loser(sim: FreeSwitchSim) -> None:
    slow = sim.add_external("+100", Answer(after=3))
    fast = sim.add_external("+200", Answer(after=1, hangup_after=1))
    c = call(sim, "dial", variables={"dial": "sofia/gateway/gw/+100,sofia/gateway/gw/+200"})
    assert c.bridged_to == "+200"
    assert slow.legs[0].cause == "LOSE_RACE" and fast.legs[0].answered_at is not None
    assert c.variables["originate_causes"].startswith("ARRAY::") and c.variables["DIALSTATUS"] == "SUCCESS"


def test_call_timeout_is_no_answer_on_whole_seconds(sim: FreeSwitchSim) -> None:
    ep = sim.add_external("+300", NoAnswer())
    c = call(sim, "dial", variables={"dial": "{call_timeout=4}sofia/gateway/gw/+300"})
    (leg,) = ep.legs
    assert leg.cause == "NO_ANSWER" and 3.0 <= leg.ended_at - leg.invited_at <= 4.1
    assert c.hangup_cause == "NO_ANSWER" and c.variables["DIALSTATUS"] == "NOANSWER"
    assert c.variables["originate_causes"] == "%s;NO_ANSWER" % leg.leg_uuid  # one leg: no ARRAY::


def test_caller_hangup_while_ringing_cancels_legs(sim: FreeSwitchSim) -> None:
    a = sim.add_external("+401", NoAnswer())
    b = sim.add_external("+402", NoAnswer())
    c = call(sim, "dial", variables={"dial": "+401,+402".replace("+4", "sofia/gateway/gw/+4")}, hangup_after=2)
    assert [a.legs[0].cause, b.legs[0].cause] == ["ORIGINATOR_CANCEL", "ORIGINATOR_CANCEL"]
    assert c.variables["originate_disposition"] == "ORIGINATOR_CANCEL" and c.variables["DIALSTATUS"] == "CANCEL"


def test_concurrent_legs_on_one_endpoint(sim: FreeSwitchSim) -> None:
    ep = sim.add_external("+500", Answer(after=1, hangup_after=2))
    calls = [sim.place_call("dial", context="tests", variables={"dial": "sofia/gateway/gw/+500"}) for _ in range(3)]
    for c in calls:
        c.wait(10)
    assert len(ep.legs) == 3 and len({leg.a_uuid for leg in ep.legs}) == 3
    assert all(leg.answered_at is not None for leg in ep.legs)


def test_dtmf_pagd_playback_and_fax(sim: FreeSwitchSim) -> None:
    c = call(sim, "ivr", dtmf=[(1.0, "42")], dtmf_after_answer=True)
    assert c.variables["choice"] == "42" and c.variables["read_result"] == "timeout"
    assert c.variables["fax_success"] == "1" and c.recordings[0]["path"] == "/tmp/fax.tif"
    # '*' (default playback_terminators) ends a playback; other digits do not
    c2 = call(sim, "ivr", dtmf=[(1.0, "1"), (3.0, "5"), (4.0, "*")], dtmf_after_answer=True)
    pb = [e for e in c2.events if e.name == "CHANNEL_EXECUTE_COMPLETE" and e.get("Application") == "playback"][0]
    assert pb.var("playback_terminator_used") == "*" and pb.get("Application-Response") == "FILE PLAYED"
    assert int(pb.var("playback_ms") or 0) < 4000


# ---------------------------------------------------------------- outbound socket details
def test_socket_fallback_with_the_project_dialplan() -> None:
    s = FreeSwitchSim(conf_dir=ROOT / "freeswitch-conf", time_scale=0.02,
                      globals={"pbx_orchestrator_socket": "127.0.0.1:1", "recordings_dir": "/rec"}).start()
    try:
        ep = s.add_external("+79160000001", Answer(after=1, hangup_after=2))
        c = s.place_call("+74951110001", variables={"pbx_fallback_dial": "sofia/gateway/pstn/+79160000001"}).wait(10)
        apps = [name for _, name, _ in c.apps]
        assert apps[:4] == ["set", "set", "socket", "transfer"] and "bridge" in apps
        assert c.bridged_to == "+79160000001" and ep.legs[0].answered_at is not None
        c2 = s.place_call("+74951110001", hangup_after=9).wait(10)
        assert c2.recordings and c2.recordings[0]["path"] == "/rec/pbx-fallback-+74951110001-%s.wav" % c2.uuid
    finally:
        s.stop()


def test_myevents_json_linger_seconds_and_no_linger() -> None:
    srv = RawOutboundServer().start()
    s = FreeSwitchSim(time_scale=0.02).start()
    s.orchestrator_address = srv.address
    try:
        c = s.place_call("7000")
        conn = srv.accept()
        conn.command("connect")
        assert conn.command("myevents json").get("Reply-Text") == "+OK Events Enabled"
        assert conn.command("linger 2").get("Reply-Text") == "+OK will linger 2 seconds"
        conn.command("sendmsg", [("call-command", "hangup"), ("hangup-cause", "USER_BUSY")])
        conn.wait_closed(5)
        kinds = [m.content_type for m in conn.received]
        assert "text/event-json" in kinds and "text/event-plain" not in kinds
        notices = [m for m in conn.received if m.content_type == "text/disconnect-notice"]
        assert [n.get("Content-Disposition") for n in notices] == ["linger", "disconnect"]
        assert notices[0].get("Linger-Time") == "2" and notices[1].body == wire_fs.GOODBYE.encode()
        last_event = [m for m in conn.received if m.content_type == "text/event-json"][-1]
        assert wire.parse_event(last_event).name == "CHANNEL_HANGUP_COMPLETE"
        assert conn.received.index(last_event) < conn.received.index(notices[0])
        c.wait(5)
        assert c.hangup_cause == "USER_BUSY"
        # without linger: the disconnect notice right after CHANNEL_HANGUP, then EOF
        c = s.place_call("7000")
        conn = srv.accept()
        conn.command("connect")
        conn.command("myevents")
        conn.command("sendmsg", [("call-command", "hangup")])
        conn.wait_closed(5)
        tail = [m.content_type if m.content_type != "text/event-plain" else wire.parse_event(m).name
                for m in conn.received][-2:]
        assert tail == ["CHANNEL_HANGUP", "text/disconnect-notice"]
        c.wait(5)
    finally:
        s.stop()
        srv.stop()


def test_inbound_events_filters_and_unknown_commands() -> None:
    s = FreeSwitchSim(time_scale=0.02).start()
    try:
        s.add_external("agent", Answer(after=0.5))
        c = inbound_client(s.esl_port)
        assert c.command("event plain CHANNEL_ANSWER CHANNEL_HANGUP_COMPLETE").get("Reply-Text") == \
            "+OK event listener enabled plain"
        uuid = c.command("api originate sofia/internal/agent@127.0.0.1 &park()").body.decode().split()[1]
        assert c.event("CHANNEL_ANSWER").get("Unique-ID") == uuid
        assert c.command("filter Unique-ID %s" % uuid).get("Reply-Text") == "+OK filter added. [Unique-ID]=[%s]" % uuid
        assert c.command("api uuid_kill %s" % uuid).body == b"+OK\n"
        assert c.event("CHANNEL_HANGUP_COMPLETE").get("Unique-ID") == uuid
        assert c.command("bogus").get("Reply-Text") == "-ERR command not found"
        assert c.command("api bogus x").body == b"-ERR bogus Command not found!\n"
        c.send("exit")
        c.wait_closed(5)
    finally:
        s.stop()


def test_cli_places_a_call_through_the_fallback() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "simulator.cli", "--conf", str(ROOT / "freeswitch-conf"), "--esl-port", "0",
         "--orchestrator", "127.0.0.1:1", "--call", "+74951234567", "--time-scale", "0.01",
         "--hangup-after", "8", "--set", "recordings_dir=/rec"],
        capture_output=True, text=True, timeout=60, cwd=ROOT, check=False)
    assert out.returncode == 0, out.stderr
    assert "CHANNEL_EXECUTE            socket" in out.stdout and "ended: NORMAL_CLEARING" in out.stdout
    assert "recording /rec/pbx-fallback-+74951234567-" in out.stdout
