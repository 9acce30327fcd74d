"""The inbound ESL client against replays of a real FreeSWITCH 1.10.12.

Each test serves the recorded FreeSWITCH bytes of one transcript (tests/esl_replay.py)
and checks that the client sends the recorded commands (its own Job-UUIDs and
origination_uuids aside) and makes the right sense of the answers. Failure modes
(a dropped connection, a silent server, a restart, garbage bytes) use hand-made
scripts built from the same recorded bytes.
"""
from __future__ import annotations

import logging
import time

import gevent
import pytest

from orchestrator.errors import EslAuthError, EslCommandError, EslConnectionError, EslTimeout
from orchestrator.esl.inbound import AUTH_REFUSED, InboundClient, with_channel_variables
from tests.esl_replay import ReplayServer, Script, Step

PLAIN_BGJOB = b"event plain BACKGROUND_JOB\n\n"


def client_for(server: ReplayServer, **kwargs) -> InboundClient:
    kwargs.setdefault("password", "ClueCon")
    kwargs.setdefault("connect_timeout", 2.0)
    kwargs.setdefault("command_timeout", 2.0)
    kwargs.setdefault("reconnect", False)
    return InboundClient("127.0.0.1", server.port, **kwargs)


def handshake() -> Script:
    """Greeting, auth, ``event plain BACKGROUND_JOB`` as FreeSWITCH answered them."""
    return Script.from_transcript("inbound_07_originate_user_not_registered.txt").only("event plain BACKGROUND_JOB")


# ----------------------------------------------------------------- inbound_01


def test_auth_api_and_bgapi_plain() -> None:
    script = (
        Script.from_transcript("inbound_01_auth_status_api.txt")
        .without("nixevent", "event json", "bgapi global_getvar", "noevents", "no_such_esl_command")
        .move_to("event plain BACKGROUND_JOB", after="auth ")
    )
    with ReplayServer(script) as server:
        client = client_for(server).connect()
        status = client.api("status")
        assert status.startswith("UP 0 years") and "FreeSWITCH (Version 1.10.12" in status
        assert client.api("version").startswith("FreeSWITCH Version 1.10.12")
        assert "internal\tprofile" in client.api("sofia status").replace(" ", "")
        assert client.api("no_such_command foo") == "-ERR no_such_command Command not found!\n"
        body = client.bgapi("status")
        assert body.startswith("UP 0 years")
        assert client.bgapi("version", job_uuid="0b7e8a7c-5b52-4a4e-9d8a-3f1f3f9b2c11").startswith("FreeSWITCH Version")
        client.close()
    assert server.errors == []
    assert server.commands(0) == [
        "auth ClueCon",
        "event plain BACKGROUND_JOB",
        "api status",
        "api version",
        "api sofia status",
        "api no_such_command foo",
        "bgapi status",
        "bgapi version",
        "exit",
    ]
    # Our Job-UUID travelled as a header.
    assert b"Job-UUID: 0b7e8a7c-5b52-4a4e-9d8a-3f1f3f9b2c11\n" in server.received[0][7]


def test_api_check_raises_with_the_cause() -> None:
    script = Script.from_transcript("inbound_01_auth_status_api.txt").only("event plain", "api no_such_command")
    script = script.move_to("event plain BACKGROUND_JOB", after="auth ")
    with ReplayServer(script) as server:
        with client_for(server) as client:
            with pytest.raises(EslCommandError) as err:
                client.api("no_such_command foo", check=True)
    assert err.value.cause == "no_such_command Command not found!"
    assert server.errors == []


def test_bgapi_json_background_job() -> None:
    script = Script.from_transcript("inbound_01_auth_status_api.txt").only("event json", "bgapi global_getvar")
    script = script.move_to("event json BACKGROUND_JOB", after="auth ")
    with ReplayServer(script) as server:
        client = client_for(server, event_format="json").connect()
        assert client.bgapi("global_getvar domain") == "127.0.0.1"
        client.close()
    assert server.errors == []


# ----------------------------------------------------------------- inbound_02


def test_auth_failure_is_a_clear_auth_error() -> None:
    script = Script.from_transcript("inbound_02_auth_failure.txt")
    with ReplayServer(script) as server:
        client = client_for(server, password="WrongPassword", reconnect=True)
        with pytest.raises(EslAuthError) as err:
            client.connect()
        assert str(err.value) == AUTH_REFUSED
        assert "PBX_ESL_PASSWORD" in str(err.value)
        assert not client.connected
    assert server.errors == []


def test_password_is_never_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with ReplayServer(Script.from_transcript("inbound_02_auth_failure.txt")) as server:
        with pytest.raises(EslAuthError):
            client_for(server, password="WrongPassword").connect()
    with ReplayServer(handshake()) as server:
        client_for(server).connect().close()
    for record in caplog.records:
        text = record.getMessage() + repr(record.__dict__)
        assert "WrongPassword" not in text and "ClueCon" not in text


# ----------------------------------------------------------------- originate


def test_originate_success_inbound_04() -> None:
    script = Script.from_transcript("inbound_04_bgapi_originate_sipp_uas_answer.txt")
    events = ["CHANNEL_ANSWER", "CHANNEL_HANGUP", "CHANNEL_HANGUP_COMPLETE"]
    with ReplayServer(script, ignore_channel_vars=True) as server:
        client = client_for(server, events=events).connect()
        stream = client.events_stream()
        leg = client.originate(
            "sofia/internal/agent@127.0.0.1:5070",
            variables={"origination_caller_id_number": "5551000", "origination_caller_id_name": "ESLTest"},
        )
        answer = stream.wait_for(lambda e: e.name == "CHANNEL_ANSWER", timeout=2)
        assert client.uuid_kill(leg) is True
        hangup = stream.wait_for(lambda e: e.name == "CHANNEL_HANGUP_COMPLETE", timeout=2)
        client.close()
    assert server.errors == []
    assert answer.get("Unique-ID") == hangup.get("Unique-ID")
    sent = server.received[0]
    assert sent[1] == b"event plain BACKGROUND_JOB CHANNEL_ANSWER CHANNEL_HANGUP CHANNEL_HANGUP_COMPLETE\n\n"
    originate = sent[2].decode()
    assert originate.startswith("bgapi originate {origination_uuid=%s," % leg)
    assert "origination_caller_id_number=5551000,origination_caller_id_name=ESLTest,originate_timeout=60}" in originate
    assert "}sofia/internal/agent@127.0.0.1:5070 &park()\nJob-UUID: " in originate
    assert server.commands(0)[3:] == ["api uuid_kill %s" % leg, "exit"]


@pytest.mark.parametrize(
    "transcript, dial, cause",
    [
        ("inbound_07_originate_user_not_registered.txt", "user/1001", "USER_NOT_REGISTERED"),
        ("inbound_08_originate_rejected_486.txt", "sofia/internal/busy@127.0.0.1:5070", "USER_BUSY"),
        ("inbound_09_originate_no_answer.txt", "{originate_timeout=4}sofia/internal/ring@127.0.0.1:5070", "NO_ANSWER"),
        ("inbound_10_misc_api_errors.txt", "foo/bar", "CHAN_NOT_IMPLEMENTED"),
    ],
)
def test_originate_failure_causes(transcript: str, dial: str, cause: str) -> None:
    script = Script.from_transcript(transcript).only("event plain", "bgapi originate")
    events = [e for e in script.steps[2].command_line.split()[3:]]
    with ReplayServer(script, ignore_channel_vars=True) as server:
        client = client_for(server, events=events).connect()
        with pytest.raises(EslCommandError) as err:
            client.originate(dial, timeout_s=4)
        client.close()
    assert err.value.cause == cause
    assert server.errors == []
    assert server.commands(0)[-1] == "exit"


def test_api_originate_errors_keep_their_bodies() -> None:
    script = Script.from_transcript("inbound_07_originate_user_not_registered.txt").only("event plain", "api originate")
    with ReplayServer(script) as server:
        client = client_for(server).connect()
        assert client.api("originate user/1001 &park()") == "-ERR USER_NOT_REGISTERED\n"
        with pytest.raises(EslCommandError) as err:
            client.api("originate user/9999@127.0.0.1 &park()", check=True)
        client.close()
    assert err.value.cause == "SUBSCRIBER_ABSENT"
    assert server.errors == []


def test_misc_api_errors_inbound_10() -> None:
    script = Script.from_transcript("inbound_10_misc_api_errors.txt").only("event plain", "api uuid_")
    zero, one = "00000000-0000-0000-0000-000000000000", "00000000-0000-0000-0000-000000000001"
    with ReplayServer(script) as server:
        client = client_for(server).connect()
        assert client.uuid_kill(zero) is False  # "-ERR No such channel!" = already gone
        with pytest.raises(EslCommandError) as err:
            client.uuid_bridge(zero, one)
        assert err.value.cause == "Invalid uuid"
        with pytest.raises(EslCommandError) as err:
            client.uuid_transfer(zero, "7001", "XML", "default")
        assert err.value.cause == "No such channel!"
        client.close()
    assert server.errors == []


# ----------------------------------------------------------------- P09: vars, show channels


def test_getvar_setvar_and_show_channels_p09() -> None:
    script = Script.from_transcript(
        "P09_uuid_broadcast_getvar_setvar_show_channels_sofia.txt", subscribe=PLAIN_BGJOB
    ).only("event plain", "api uuid_getvar", "api uuid_setvar", "api show channels as json")
    a = "0e3d1447-6f06-4f75-931b-6351df489bea"
    with ReplayServer(script) as server:
        client = client_for(server).connect()
        assert client.uuid_getvar(a, "sip_to_user") == "p9a"
        assert client.uuid_getvar(a, "no_such_variable") is None
        with pytest.raises(EslCommandError):
            client.uuid_getvar("00000000-0000-0000-0000-000000000000", "sip_to_user")
        client.uuid_setvar(a, "prim_test", "hello")
        assert client.uuid_getvar(a, "prim_test") == "hello"
        client.uuid_setvar(a, "prim_test")
        assert client.uuid_getvar(a, "prim_test") is None
        two = client.show_channels()
        two_again = client.show_channels()
        none = client.show_channels()
        client.close()
    assert server.errors == []
    assert [r["uuid"] for r in two] == [a, "2572e16d-97a1-4ba2-98cd-b21a7455f821"]
    assert two[0]["direction"] == "outbound" and two[0]["name"] == "sofia/internal/p9a@127.0.0.1:5171"
    assert len(two_again) == 2
    assert none == []  # '{"row_count": 0}\n'


# ----------------------------------------------------------------- failure modes


def _status_step(close_after: bool = False, replies: list[bytes] | None = None) -> Step:
    return Step(b"api status\n\n", replies or [], close_after=close_after)


def test_connection_dropped_mid_command_fails_at_once() -> None:
    with ReplayServer(handshake().then(_status_step(close_after=True))) as server:
        client = client_for(server, command_timeout=10).connect()
        started = time.monotonic()
        with pytest.raises(EslConnectionError):
            client.api("status")
        assert time.monotonic() - started < 1.0
        assert not client.connected
        with pytest.raises(EslConnectionError):  # fail fast while disconnected
            client.api("status")
        client.close()


def test_pending_bgapi_fails_when_the_connection_drops() -> None:
    script = Script.from_transcript("inbound_09_originate_no_answer.txt").only("event plain", "bgapi originate")
    # The bgapi is accepted, then FreeSWITCH goes away before the BACKGROUND_JOB.
    step = script.steps[3]
    script.steps[3] = Step(step.expect, step.replies[:1], close_after=True)
    with ReplayServer(script, ignore_channel_vars=True) as server:
        client = client_for(server, events=["CHANNEL_PROGRESS", "CHANNEL_HANGUP_COMPLETE"]).connect()
        started = time.monotonic()
        with pytest.raises(EslConnectionError):
            client.originate("sofia/internal/ring@127.0.0.1:5070", timeout_s=4)
        assert time.monotonic() - started < 1.0
        client.close()


def test_silent_server_times_out_and_resets() -> None:
    with ReplayServer(handshake().then(_status_step())) as server:
        client = client_for(server).connect()
        started = time.monotonic()
        with pytest.raises(EslTimeout):
            client.api("status", timeout=0.3)
        assert 0.25 < time.monotonic() - started < 1.5
        assert not client.connected  # nothing came back at all: the connection was reset
        client.close()


def test_connect_refused_and_connect_timeout() -> None:
    server = ReplayServer(handshake()).start()
    port = server.port
    server.stop()
    with pytest.raises(EslConnectionError) as err:
        InboundClient("127.0.0.1", port, "x", connect_timeout=1).connect()
    assert "PBX_ESL_ADDRESS" in str(err.value)
    # A server that accepts but never greets.
    silent = ReplayServer(Script([Step(b"never\n\n")])).start()
    try:
        started = time.monotonic()
        with pytest.raises(EslTimeout):
            InboundClient("127.0.0.1", silent.port, "x", connect_timeout=0.3).connect()
        assert time.monotonic() - started < 1.5
    finally:
        silent.stop()


def test_reconnects_after_the_server_restarts_and_resubscribes() -> None:
    events = ["CHANNEL_ANSWER"]
    first = Script.from_transcript("inbound_04_bgapi_originate_sipp_uas_answer.txt").only("event plain")
    second = first.then(_status_step(replies=[Script.from_transcript("inbound_01_auth_status_api.txt").steps[2].replies[0]]))
    subscribe = b"event plain BACKGROUND_JOB CHANNEL_ANSWER\n\n"
    first.steps[2] = Step(subscribe, first.steps[2].replies)
    second.steps[2] = Step(subscribe, second.steps[2].replies)
    server = ReplayServer(first).start()
    port = server.port
    client = client_for(server, events=events, reconnect=True, backoff_initial=0.05, backoff_max=0.2)
    client.connect()
    server.stop()  # FreeSWITCH restarts: the connection drops, the port is closed a while
    gevent.sleep(0.3)
    assert not client.connected
    restarted = ReplayServer(second, port=port).start()
    try:
        assert client.wait_connected(5.0)
        assert client.api("status").startswith("UP 0 years")
        client.close()
    finally:
        restarted.stop()
    assert server.errors == [] and restarted.errors == []
    assert restarted.commands(0)[:2] == ["auth ClueCon", "event plain BACKGROUND_JOB CHANNEL_ANSWER"]


def test_start_keeps_trying_until_freeswitch_is_up() -> None:
    probe = ReplayServer(handshake()).start()
    port = probe.port
    probe.stop()
    client = InboundClient("127.0.0.1", port, "ClueCon", connect_timeout=1, backoff_initial=0.05, backoff_max=0.2)
    client.start()  # nothing listens yet: no exception, retries in the background
    assert not client.connected
    with pytest.raises(EslConnectionError):
        client.api("status")
    server = ReplayServer(handshake(), port=port).start()
    try:
        assert client.wait_connected(5.0)
        client.close()
    finally:
        server.stop()
    assert server.errors == []


def test_malformed_bytes_reset_the_connection(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="orchestrator.esl.inbound")
    garbage = b"this is not ESL at all\n\n"
    with ReplayServer(handshake().then(_status_step(replies=[garbage]))) as server:
        client = client_for(server, command_timeout=5).connect()
        started = time.monotonic()
        with pytest.raises(EslConnectionError) as err:
            client.api("status")
        assert time.monotonic() - started < 1.0
        assert "protocol error" in str(err.value)
        assert not client.connected
        client.close()
    assert any("protocol error" in r.getMessage() for r in caplog.records)


def test_event_handler_and_stream_with_timeout() -> None:
    script = Script.from_transcript("inbound_04_bgapi_originate_sipp_uas_answer.txt")
    seen: list[str] = []
    with ReplayServer(script, ignore_channel_vars=True) as server:
        client = client_for(
            server, events=["CHANNEL_ANSWER", "CHANNEL_HANGUP", "CHANNEL_HANGUP_COMPLETE"]
        ).connect()
        unsubscribe = client.subscribe(lambda e: seen.append(e.name))
        with client.events_stream() as stream:
            leg = client.originate(
                "sofia/internal/agent@127.0.0.1:5070",
                variables={"origination_caller_id_number": "5551000", "origination_caller_id_name": "ESLTest"},
            )
            client.uuid_kill(leg)
            names = [e.name for e in stream.iter(timeout=0.3)]
            with pytest.raises(EslTimeout):
                stream.get(timeout=0.05)
        gevent.sleep(0.05)
        unsubscribe()
        client.close()
    assert names == ["CHANNEL_ANSWER", "BACKGROUND_JOB", "CHANNEL_HANGUP", "CHANNEL_HANGUP_COMPLETE"]
    assert seen == names


def test_channel_variables_prefix() -> None:
    assert with_channel_variables("user/1001", {"a": "1"}) == "{a=1}user/1001"
    assert with_channel_variables("{b=2}user/1001", {"a": "1"}) == "{a=1,b=2}user/1001"
    assert with_channel_variables("x", {"n": "Doe, John"}) == "{n='Doe\\, John'}x"
