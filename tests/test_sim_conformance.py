"""The simulator against the recorded FreeSWITCH 1.10.12 transcripts.

Each scenario replays the recording client's commands (simulator.replay) with the same
far-end behaviour (callers, answering / busy / ringing legs) and checks, per connection:
the same sequence of message kinds (replies, event names; disconnect notices compared
apart because their position may vary), the same reply texts (uuids aside), the same
header NAMES in the same order for every event (variables aside), the same values of
the variables that carry outcomes, and the timings of the FACTS in simulated seconds.
"""
from __future__ import annotations

import difflib
from pathlib import Path
from typing import Callable

import gevent
import pytest

from orchestrator.esl import wire
from simulator import Answer, Busy, FreeSwitchSim, NoAnswer, SimCall
from simulator.rawclient import RawOutboundServer
from simulator.replay import Replay, fs_messages, kind, norm, start

DATA = Path(__file__).parent / "data" / "sim_dialplan"
OUTCOME_VARS = ("variable_originate_disposition", "variable_DIALSTATUS", "variable_originate_failed_cause",
                "variable_read_result", "variable_digits", "variable_bridge_hangup_cause",
                "variable_last_bridge_hangup_cause", "variable_hangup_after_bridge", "variable_continue_on_fail",
                "Application-Response", "Hangup-Cause", "DTMF-Digit", "DTMF-Duration", "DTMF-Source",
                "Answer-State", "Channel-State", "Bridge-A-Unique-ID", "Bridge-B-Unique-ID",
                "variable_originate_causes", "variable_originated_legs", "variable_last_bridge_to")


def _is_notice(m: wire.Message) -> bool:
    return m.content_type == "text/disconnect-notice"


def header_names(m: wire.Message) -> list[str]:
    if m.content_type.startswith("text/event"):
        return [k for k, _ in wire.parse_event(m).items if not k.startswith("variable_")]
    return [k for k, _ in m.headers if not k.startswith("variable_")]


def check_connection(rp: Replay, conn: str, *, skip_recorded: Callable[[int, wire.Message], bool] | None = None,
                     check_values: bool = True) -> tuple[list[wire.Message], list[wire.Message]]:
    rec = [m for i, m in enumerate(fs_messages(rp.records, conn)) if not (skip_recorded and skip_recorded(i, m))]
    got = list(rp.conns[conn].received)
    rec_notices = [(m.get("Content-Disposition"), [k for k, _ in m.headers]) for m in rec if _is_notice(m)]
    got_notices = [(m.get("Content-Disposition"), [k for k, _ in m.headers]) for m in got if _is_notice(m)]
    assert got_notices == rec_notices, conn
    # Replies and events are compared as two sequences: how they interleave depends on
    # when the client's commands arrive, which the recording does not pin down.
    rec = [m for m in rec if not _is_notice(m)]
    got = [m for m in got if not _is_notice(m)]
    rec = [m for m in rec if not m.content_type.startswith("text/event")] + \
        [m for m in rec if m.content_type.startswith("text/event")]
    got = [m for m in got if not m.content_type.startswith("text/event")] + \
        [m for m in got if m.content_type.startswith("text/event")]
    kinds_rec, kinds_got = [kind(m) for m in rec], [kind(m) for m in got]
    assert kinds_got == kinds_rec, "%s:\n%s" % (conn, "\n".join(difflib.ndiff(kinds_rec, kinds_got)))
    for a, b in zip(rec, got):
        if a.content_type in ("command/reply", "api/response") and a.get("Event-Name") != "CHANNEL_DATA":
            assert norm(b.get("Reply-Text") or "") == norm(a.get("Reply-Text") or ""), (conn, a.headers)
            if a.content_type == "api/response" and not a.body.startswith(b"{") and b"UP " not in a.body:
                assert norm(b.body.decode()) == norm(a.body.decode()) or b"\t" in a.body, (conn, a.body)
        assert header_names(b) == header_names(a), (conn, kind(a))
        if check_values and a.content_type.startswith("text/event"):
            ea, eb = wire.parse_event(a), wire.parse_event(b)
            for key in OUTCOME_VARS:
                va = ea.get(key)
                if va is not None:
                    expect = norm(va)
                    assert norm(eb.get(key) or "<absent>") == expect, (conn, ea.name, key)
                else:
                    assert eb.get(key) is None or key in ("Hangup-Cause",), (conn, ea.name, key, eb.get(key))
    return rec, got


@pytest.fixture()
def server() -> RawOutboundServer:
    srv = RawOutboundServer().start()
    yield srv
    srv.stop()


def make_sim(server: RawOutboundServer, conf: str | None = None, scale: float = 0.05) -> FreeSwitchSim:
    sim = FreeSwitchSim(conf_dir=(DATA / conf) if conf else None,
                        globals={"pbx_orchestrator_socket": server.address}, time_scale=scale)
    sim.orchestrator_address = server.address
    return sim.start()


def on_event(call: SimCall, name: str, nth: int, action: Callable[[], None], delay: float = 0.0,
             pred: Callable[[object], bool] | None = None) -> None:
    """Run ``action`` ``delay`` simulated seconds after the call's nth event ``name``."""
    sim = call.sim

    def watch() -> None:
        seen = 0
        index = 0
        while call.channel.up:
            events = call.channel.events
            while index < len(events):
                ev = events[index]
                index += 1
                if ev.name == name and (pred is None or pred(ev)):
                    seen += 1
                    if seen == nth:
                        sim.clock.sleep(delay)
                        action()
                        return
            call.channel.wake.clear()
            gevent.sleep(0.001)

    sim.spawn(watch)


def a1_a2(sim: FreeSwitchSim, a1: object, a2: object) -> None:
    sim.add_external("a1", a1)  # type: ignore[arg-type]
    sim.add_external("a2", a2)  # type: ignore[arg-type]


# ---------------------------------------------------------------- outbound scenarios
@pytest.mark.parametrize("fmt", ["plain", "json"])
def test_outbound_loopback(server: RawOutboundServer, fmt: str) -> None:
    sim = make_sim(server)
    try:
        rp = start("outbound_loopback_%s.txt" % fmt, sim, server)
        client = __import__("simulator.rawclient", fromlist=["x"]).inbound_client(sim.esl_port)
        assert client.command("api originate loopback/7000/default &park()").body.startswith(b"+OK ")
        rp.run()
        rec, got = check_connection(rp, "SERVER")
        data = got[0].decoded_headers()
        assert data["Channel-Name"] == "loopback/7000-b" and data["Reply-Text"] == "+OK\n"
        assert data["Socket-Mode"] == "async" and data["Control"] == "full"
        client.send("exit")
    finally:
        sim.stop()


def test_outbound_sipp_uac_plain(server: RawOutboundServer) -> None:
    sim = make_sim(server)
    try:
        call = sim.place_call("7000", caller_id="sipp", caller_name="sipp", dtmf=[(0.3, "7")], dtmf_after_answer=True)
        on_event(call, "PLAYBACK_START", 1, lambda: call.send_dtmf("7"), 0.3)
        call._dtmf = []
        rp = start("outbound_sipp_uac_plain.txt", sim, server)
        rp.missing["SERVER"] = 6
        # The recording got 6 events of the stock dialplan (set/export before socket)
        # after 'myevents'; the simulator's built-in dialplan has only the socket action.
        rp.run()
        rec, got = check_connection(rp, "SERVER", skip_recorded=lambda i, m: 5 <= i <= 10)
        connect = got[0]
        assert connect.get("Reply-Text") == "%2BOK%0A" and connect.get("Content-Length") is None
        names = [k for k, _ in connect.headers]
        assert names[-4:] == ["Content-Type", "Reply-Text", "Socket-Mode", "Control"]
        assert len(names) > 120
        call.wait(5)
    finally:
        sim.stop()


def _hangup_after_record(call: SimCall) -> None:
    on_event(call, "RECORD_START", 1, call.hangup, 1.8)


def _p05_digits(call: SimCall) -> None:
    pagd = (lambda ev: ev.get("Application") == "play_and_get_digits")  # type: ignore[attr-defined]
    on_event(call, "CHANNEL_EXECUTE", 1, lambda: call.send_dtmf("1"), 1.49, pred=pagd)
    on_event(call, "CHANNEL_EXECUTE", 2, lambda: call.send_dtmf("2"), 1.50, pred=pagd)
    on_event(call, "CHANNEL_EXECUTE", 2, lambda: call.send_dtmf("3"), 1.82, pred=pagd)


OUTBOUND = {
    "P01_bridge_ring_all_a1_answers": ({"a1": Answer(after=2), "a2": NoAnswer()}, {"hangup_after": 6}, None),
    "P01b_bridge_callee_hangs_up_no_hangup_after_bridge": ({"a1": Answer(after=1, hangup_after=2)}, {}, None),
    "P01c_bridge_callee_hangs_up_hangup_after_bridge_true": ({"a1": Answer(after=1, hangup_after=2)}, {}, None),
    "P01d_bridge_caller_abandons_while_ringing": ({"a1": NoAnswer(), "a2": NoAnswer()}, {"hangup_after": 2}, None),
    "P02_bridge_sequential_leg_timeout": ({"a1": NoAnswer(), "a2": Answer(after=1)}, {"hangup_after": 7}, None),
    "P03_bridge_ring_all_leg_delay_start": ({"a1": NoAnswer(), "a2": Answer(after=1)}, {"hangup_after": 7}, None),
    "P04_bridge_all_fail_continue_on_fail_then_record": ({"a1": Busy(), "a2": NoAnswer()}, {}, _hangup_after_record),
    "P04b_bridge_all_fail_no_continue_on_fail": ({"a1": Busy(), "a2": NoAnswer()}, {}, None),
    "P05_play_and_get_digits": ({}, {}, _p05_digits),
    "P07c_queue_hold_server_uuid_break_then_bridge": ({"agent": Answer(after=1, hangup_after=3)}, {}, None),
    "P07d_queue_hold_bridge_sent_during_playback": ({"agent": Answer(after=1, hangup_after=3)}, {}, None),
}


def run_outbound(server: RawOutboundServer, name: str, dest: str = "7000", conf: str | None = None,
                 scale: float = 0.05) -> tuple[Replay, SimCall, FreeSwitchSim]:
    endpoints, call_kw, script = OUTBOUND.get(name, ({}, {}, None))
    sim = make_sim(server, conf, scale)
    for number, behavior in endpoints.items():
        sim.add_external(number, behavior)
    call = sim.place_call(dest, caller_id="sipp", caller_name="sipp", dtmf_after_answer=True, **call_kw)
    if script:
        script(call)
    rp = start(name + ".txt", sim, server)
    rp.run(timeout=20)
    return rp, call, sim


def _var(rec: list[wire.Message], app: str, name: str) -> str | None:
    for m in rec:
        if m.content_type.startswith("text/event"):
            ev = wire.parse_event(m)
            if ev.name == "CHANNEL_EXECUTE_COMPLETE" and ev.get("Application") == app:
                return ev.get("variable_" + name)
    return None


@pytest.mark.parametrize("name", sorted(OUTBOUND))
def test_outbound_primitives(server: RawOutboundServer, name: str) -> None:
    rp, call, sim = run_outbound(server, name)
    try:
        rec, got = check_connection(rp, "SERVER")
        for var in ("originate_disposition", "DIALSTATUS", "originate_causes", "read_result", "digits",
                    "record_seconds", "originate_failed_cause", "last_bridge_hangup_cause"):
            for app_name in ("bridge", "play_and_get_digits", "record"):
                want = _var(rec, app_name, var)
                if want is not None:
                    assert norm(_var(got, app_name, var) or "") == norm(want), (name, app_name, var)
        call.wait(10)
    finally:
        sim.stop()


def _legs(sim: FreeSwitchSim, key: str) -> list:
    return sim.endpoint(key).legs


def test_p02_sequential_leg_timeout_ticks_and_failover(server: RawOutboundServer) -> None:
    rp, call, sim = run_outbound(server, "P02_bridge_sequential_leg_timeout")
    try:
        (a1,), (a2,) = _legs(sim, "a1"), _legs(sim, "a2")
        assert a1.cause == "ALLOTTED_TIMEOUT"
        assert 3.0 <= a1.ended_at - a1.invited_at <= 4.2  # floor(now)-floor(start) reaches 3+1
        assert 0 <= a2.invited_at - a1.ended_at < 0.2  # a2 only after a1 is gone
        assert a2.answered_at is not None and call.bridged_to == "a2"
    finally:
        sim.stop()


def test_p03_leg_delay_start_delays_only_the_invite(server: RawOutboundServer) -> None:
    rp, call, sim = run_outbound(server, "P03_bridge_ring_all_leg_delay_start")
    try:
        (a1,), (a2,) = _legs(sim, "a1"), _legs(sim, "a2")
        # a2's INVITE waits for the whole-second tick after leg_delay_start, counted from
        # the bridge's start; a1's is sent at once (a loaded machine may send it late, so
        # a2 is measured from the bridge, i.e. from when a1 was due).
        bridge_at = call.started_at + [t for t, name, _ in call.apps if name == "bridge"][0]
        assert 0 <= a1.invited_at - bridge_at < 2.5
        assert 3.0 <= a2.invited_at - bridge_at <= 4.2
        assert a1.cause == "LOSE_RACE" and abs(a1.ended_at - a2.answered_at) < 0.1
    finally:
        sim.stop()


def test_p04_all_fail_reports_first_leg_cause(server: RawOutboundServer) -> None:
    rp, call, sim = run_outbound(server, "P04_bridge_all_fail_continue_on_fail_then_record")
    try:
        (a1,), (a2,) = _legs(sim, "a1"), _legs(sim, "a2")
        assert (a1.cause, a2.cause) == ("USER_BUSY", "ALLOTTED_TIMEOUT")
        assert call.recordings and call.recordings[0]["path"] == "/tmp/vm-test.wav"
        assert 1.5 < float(call.recordings[0]["seconds"]) < 2.5  # type: ignore[arg-type]
        assert call.variables["record_ms"] and call.variables["DIALSTATUS"] == "BUSY"
    finally:
        sim.stop()


@pytest.mark.parametrize("name,dest", [("P08a_socket_resume_server_dies", "7100"),
                                       ("P08b_no_socket_resume_server_dies", "7101"),
                                       ("P08d_socket_only_extension_server_dies", "7000")])
def test_p08_server_dies_dialplan_continues(server: RawOutboundServer, name: str, dest: str) -> None:
    sim = make_sim(server, "p08")
    try:
        call = sim.place_call(dest, caller_id="sipp", caller_name="sipp")
        rp = start(name + ".txt", sim, server)
        rp.close_server_after = True
        rp.run()
        check_connection(rp, "SERVER")
        call.wait(10)
        names = [(e.name, e.get("Application")) for e in call.events
                 if e.name in ("CHANNEL_UNPARK", "CHANNEL_EXECUTE", "CHANNEL_EXECUTE_COMPLETE", "CHANNEL_HANGUP")]
        after = names[names.index(("CHANNEL_UNPARK", None)):]
        expected = [("CHANNEL_UNPARK", None), ("CHANNEL_EXECUTE_COMPLETE", "socket")]
        if dest != "7000":
            expected += [("CHANNEL_EXECUTE", "playback"), ("CHANNEL_EXECUTE_COMPLETE", "playback"),
                         ("CHANNEL_EXECUTE", "hangup"), ("CHANNEL_HANGUP", None), ("CHANNEL_EXECUTE_COMPLETE", "hangup")]
        else:
            expected += [("CHANNEL_HANGUP", None)]
        assert after == expected
        assert call.hangup_cause == "NORMAL_CLEARING"
    finally:
        sim.stop()


def test_p08c_nothing_listening(server: RawOutboundServer) -> None:
    sim = FreeSwitchSim(conf_dir=DATA / "p08", globals={"pbx_orchestrator_socket": "127.0.0.1:1"}, time_scale=0.05)
    sim.start()
    try:
        call = sim.place_call("7102", caller_id="sipp").wait(10)
        ev = [e for e in call.events if e.get("Application") == "socket"]
        assert [e.name for e in ev] == ["CHANNEL_EXECUTE", "CHANNEL_EXECUTE_COMPLETE"]
        # At once (a refused connect), not after a connect timeout of seconds: 2 simulated
        # seconds are 100 ms real at this time scale, room for a loaded machine.
        assert abs(ev[1].t - ev[0].t) < 2.0 and ev[1].get("Application-Response") == "_none_"
        names = call.event_names()
        assert "CHANNEL_PROGRESS_MEDIA" in names and "CHANNEL_ANSWER" not in names
        assert call.hangup_cause == "NORMAL_CLEARING"
        assert call.variables["sip_hangup_disposition"] == "send_refuse"
    finally:
        sim.stop()


# ---------------------------------------------------------------- inbound scenarios
INBOUND = {
    "inbound_01_auth_status_api": {},
    "inbound_02_auth_failure": {},
    "inbound_04_bgapi_originate_sipp_uas_answer": {"agent": Answer(after=0.02)},
    "inbound_05_uuid_bridge_json": {"leg1": Answer(after=0.02), "leg2": Answer(after=0.02)},
    "inbound_07_originate_user_not_registered": {},
    "inbound_08_originate_rejected_486": {"busy": Busy(after=0.02)},
    "inbound_09_originate_no_answer": {"ring": NoAnswer()},
    "inbound_10_misc_api_errors": {},
    "P06_callback_bgapi_originate_uuid_bridge": {"agent": Answer(after=1), "client": Answer(after=2)},
    "P06b_callback_client_no_answer": {"agent": Answer(after=1), "client": NoAnswer()},
}


def run_inbound(server: RawOutboundServer, name: str) -> tuple[Replay, FreeSwitchSim]:
    sim = make_sim(server)
    for number, behavior in INBOUND[name].items():
        sim.add_external(number, behavior)
    sim.add_user("1001", "127.0.0.1", registered=False)
    rp = start(name + ".txt", sim, server)
    rp.run(timeout=20)
    return rp, sim


@pytest.mark.parametrize("name", sorted(INBOUND))
def test_inbound_scenarios(server: RawOutboundServer, name: str) -> None:
    rp, sim = run_inbound(server, name)
    try:
        rec, got = check_connection(rp, "CLIENT")
        rp.conns["CLIENT"].wait_closed(5)
    finally:
        sim.stop()


def test_inbound_02_wrong_password_closes() -> None:
    sim = FreeSwitchSim(time_scale=0.05, esl_password="secret").start()
    try:
        with pytest.raises(PermissionError):
            __import__("simulator.rawclient", fromlist=["x"]).inbound_client(sim.esl_port, "ClueCon")
    finally:
        sim.stop()


def test_p09_show_channels_zero_rows_and_getvar(server: RawOutboundServer) -> None:
    from simulator.rawclient import inbound_client

    sim = make_sim(server)
    try:
        c = inbound_client(sim.esl_port)
        assert c.command("api show channels as json").body == b'{"row_count": 0}\n'
        assert c.command("api show calls as json").body == b'{"row_count": 0}\n'
        assert c.command("api show channels").body == b"uuid,direction,created,created_epoch,name,state,cid_name," \
            b"cid_num,ip_addr,dest,application,application_data,dialplan,context,read_codec,read_rate,read_bit_rate," \
            b"write_codec,write_rate,write_bit_rate,secure,hostname,presence_id,presence_data,accountcode,callstate," \
            b"callee_name,callee_num,callee_direction,call_uuid,sent_callee_name,sent_callee_num,initial_cid_name," \
            b"initial_cid_num,initial_ip_addr,initial_dest,initial_dialplan,initial_context\n\n0 total.\n"
        sim.add_external("p9a", Answer(after=0.1))
        sim.add_external("p9b", Answer(after=0.1))
        ua, ub = "0e3d1447-6f06-4f75-931b-6351df489bea", "2572e16d-97a1-4ba2-98cd-b21a7455f821"
        for u, who in ((ua, "p9a"), (ub, "p9b")):
            body = c.command("api originate {origination_uuid=%s}sofia/internal/%s@127.0.0.1:5171 &park()" % (u, who)).body
            assert body == ("+OK %s\n" % u).encode()
        assert c.command("api uuid_getvar %s no_such_variable" % ua).body == b"_undef_"
        assert c.command("api uuid_setvar %s prim_test hello" % ua).body == b"+OK\n"
        assert c.command("api uuid_getvar %s prim_test" % ua).body == b"hello"
        assert c.command("api uuid_getvar 00000000-0000-0000-0000-000000000000 x").body == b"-ERR No such channel!\n"
        import json

        rows = json.loads(c.command("api show channels as json").body)
        assert rows["row_count"] == 2 and list(rows["rows"][0])[:3] == ["uuid", "direction", "created"]
        assert c.command("api uuid_broadcast %s tone_stream://%%(500,0,600);loops=2 aleg" % ua).body == b"+OK Message sent\n"
        calls = json.loads(c.command("api show calls as json").body)
        assert calls["row_count"] == 2 and calls["rows"][0]["b_uuid"] == ""
        assert c.command("api uuid_bridge %s %s" % (ua, ub)).body == ("+OK %s\n" % ub).encode()
        with gevent.Timeout(5):
            while json.loads(c.command("api show calls as json").body)["row_count"] != 1:
                gevent.sleep(0.01)
        assert c.command("api uuid_kill %s" % ua).body == b"+OK\n"
        with gevent.Timeout(5):
            while c.command("api show channels as json").body != b'{"row_count": 0}\n':
                gevent.sleep(0.01)
        assert c.command("api sofia_contact 1000@127.0.0.1").body == b"error/user_not_registered"
        sim.add_user("1000", "127.0.0.1")
        assert c.command("api sofia_contact 1000@127.0.0.1").body.startswith(b"sofia/internal/sip:1000@127.0.0.1:")
        c.send("exit")
        c.wait_closed(5)
    finally:
        sim.stop()


def test_p07a_uuid_bridge_of_caller_in_playback(server: RawOutboundServer) -> None:
    """uuid_bridge from an inbound client while the outbound session plays MOH."""
    sim = make_sim(server)
    try:
        sim.add_external("agent", Answer(after=1))
        call = sim.place_call("7000", caller_id="sipp", caller_name="sipp")
        rp = start("P07a_queue_hold_uuid_bridge_during_playback.txt", sim, server)
        rp.run(timeout=20)
        rec, got = check_connection(rp, "SERVER")
        check_connection(rp, "CLIENT")
        completes = [wire.parse_event(m) for m in got if kind(m) == "EV:CHANNEL_EXECUTE_COMPLETE"]
        playback = [e for e in completes if e.get("Application") == "playback"][0]
        socket_done = [e for e in completes if e.get("Application") == "socket"][0]
        assert playback.get("Application-Response") == "PLAYBACK ERROR"
        assert socket_done.get("Application-Response") == "PLAYBACK ERROR"
        assert call.hangup_cause == "NORMAL_CLEARING" and call.bridged_to == "agent"
        # the socket app ended but the connection stayed up until the server's exit
        assert any(m.get("Content-Disposition") == "disconnect" for m in got + rp.conns["SERVER"].received)
    finally:
        sim.stop()


def _stamp(m: wire.Message) -> float:
    return int(wire.parse_event(m).get("Event-Date-Timestamp") or 0) / 1e6


def test_p05_timings_follow_the_recording(server: RawOutboundServer) -> None:
    rp, call, sim = run_outbound(server, "P05_play_and_get_digits")
    try:
        def spans(msgs: list[wire.Message]) -> list[float]:
            ev = [m for m in msgs if m.content_type.startswith("text/event")
                  and wire.parse_event(m).get("Application") == "play_and_get_digits"]
            return [_stamp(b) - _stamp(a) for a, b in zip(ev[::2], ev[1::2])]

        recorded = spans(fs_messages(rp.records, "SERVER"))
        simulated = spans(rp.conns["SERVER"].received)
        assert len(simulated) == 3
        # (a)/(b): 1.5 s digit_timeout after the last digit; (c): 2 x (0.2 + 3) + 2 x 0.25 s
        for want, got in zip(recorded, simulated):
            assert abs(got - want) < 0.35, (recorded, simulated)
    finally:
        sim.stop()


def test_p06b_originate_timeout_ticks_on_whole_seconds(server: RawOutboundServer) -> None:
    rp, sim = run_inbound(server, "P06b_callback_client_no_answer")
    try:
        (leg,) = sim.endpoint("client").legs
        assert leg.cause == "NO_ANSWER" and 3.0 <= leg.ended_at - leg.invited_at <= 4.1  # tick N, not N+1
        (agent,) = sim.endpoint("agent").legs
        assert agent.cause == "NORMAL_CLEARING"  # killed by the client's uuid_kill
    finally:
        sim.stop()
