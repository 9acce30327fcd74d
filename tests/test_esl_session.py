"""The outbound-socket session adapter on the exact bytes a real FreeSWITCH sent.

A replay peer plays FreeSWITCH's side of a recorded transcript: for every command the
recorder sent it reads one command from our session, then writes what FreeSWITCH wrote
until the next command. Our session must parse every message and deliver the same events.
"""
from __future__ import annotations

import gevent
import gevent.socket
import pytest

from orchestrator.errors import CallGone, EslTimeout
from orchestrator.esl import wire
from orchestrator.esl.session import DISCONNECTED, LINGERING, CallSession
from simulator import transcripts


def _read_command(sock) -> bytes:
    buf = b""
    while not buf.endswith(b"\n\n"):
        chunk = sock.recv(1)
        if not chunk:
            return buf
        buf += chunk
    return buf


def replay(name: str, ours: str = "SERVER"):
    """Start a peer replaying FreeSWITCH's side; returns (our socket, peer greenlet, records)."""
    records = [r for r in transcripts.load(name) if r.direction in ("FS->%s" % ours, "%s->FS" % ours)]
    mine, theirs = gevent.socket.socketpair()

    def peer() -> list[bytes]:
        received = []
        for record in records:
            if record.direction == "%s->FS" % ours:
                received.append(_read_command(theirs))
            else:
                theirs.sendall(record.data)
        return received

    return mine, gevent.spawn(peer), records


def drain(session: CallSession, until=DISCONNECTED, timeout: float = 5.0) -> list:
    items = []
    with gevent.Timeout(timeout):
        while True:
            item = session.events.get()
            items.append(item)
            if item == until or (isinstance(item, wire.Event) and item.name == until):
                return items


def names(items) -> list[str]:
    return [i.name if isinstance(i, wire.Event) else i for i in items]


def test_open_sends_connect_myevents_linger_in_one_write_and_reads_the_replies_in_order():
    """FreeSWITCH reads one command at a time (mod_event_socket's read_packet stops at the
    blank line, like this peer) and answers each before the next: written together, the
    three are answered in order, one round trip instead of three."""
    sock, peer, records = replay("outbound_loopback_plain.txt")
    session = CallSession(("127.0.0.1", 0), sock, timeout_s=5)
    data = session.open()
    assert data["Unique-ID"] == "6cd5456b-0703-433b-b46e-472ef36f70c1"
    assert session.open() is data  # once only
    # The peer answered myevents and linger before reading this: its reply is getvar's.
    assert session.send("getvar destination_number").headers["Reply-Text"] == "7000"
    peer.kill()


def test_outbound_loopback_plain_replay():
    sock, peer, records = replay("outbound_loopback_plain.txt")
    session = CallSession(("127.0.0.1", 0), sock, timeout_s=5)
    session.connect()
    data = session.session_data
    assert data["Unique-ID"] == "6cd5456b-0703-433b-b46e-472ef36f70c1"
    assert data["Reply-Text"].startswith("+OK")  # URL-decoded %2BOK%0A
    assert data["variable_current_application_data"] == "127.0.0.1:8084 async full"
    assert session.send("myevents").headers["Reply-Text"] == "+OK Events Enabled"
    assert session.send("linger").headers["Reply-Text"] == "+OK will linger"
    assert session.send("getvar destination_number").headers["Reply-Text"] == "7000"
    sent = [r.data for r in records if r.direction == "SERVER->FS"]
    for raw in sent[4:]:
        text = raw.decode().rstrip("\n")
        if text.startswith("api "):
            # The recorder used 'api' on this socket: its api/response is read by greenswitch.
            session.send(text)
        elif text == "exit":
            break
        else:
            session.send(text)
    items = drain(session, until=LINGERING)
    gevent.sleep(0)
    session.close()
    got = [n for n in names(items) if n != LINGERING]
    assert got[:7] == ["CHANNEL_PARK", "CHANNEL_EXECUTE", "CHANNEL_ANSWER", "CHANNEL_EXECUTE_COMPLETE", "CHANNEL_EXECUTE", "DTMF", "CHANNEL_EXECUTE_COMPLETE"]
    complete = [i for i in items if isinstance(i, wire.Event) and i.name == "CHANNEL_EXECUTE_COMPLETE"]
    assert complete[0].get("Application") == "answer"
    assert complete[0].get("Application-UUID") == "dd766f78-9106-46c3-a374-0b20b903ea1b"
    assert complete[1].get("Application-Response") == "FILE PLAYED"
    dtmf = [i for i in items if isinstance(i, wire.Event) and i.name == "DTMF"][0]
    assert dtmf.get("DTMF-Digit") == "5"  # sent with api uuid_recv_dtmf in the recording


def test_posted_commands_are_written_at_once_and_their_replies_collected_in_order():
    """The call handler writes a decision's commands without waiting for each reply
    (CallSession.post): the replay peer, reading one command at a time as FreeSWITCH
    does, answers them in order, and the events are the recording's."""
    sock, peer, records = replay("outbound_loopback_plain.txt")
    session = CallSession(("127.0.0.1", 0), sock, timeout_s=5)
    session.open()
    rest = [r.data.decode().rstrip("\n") for r in records if r.direction == "SERVER->FS"][3:]  # from getvar
    commands = rest[:rest.index("exit")]
    assert len(commands) >= 3
    posted = [session.post(text, text.split("\n", 1)[0]) for text in commands]
    assert not any(r.ready() for r in posted)  # all written; nothing waited for yet
    session.wait_replies()
    assert all(r.ready() for r in posted)
    assert posted[0].get().headers["Reply-Text"] == "7000"  # getvar's, the first asked
    assert posted[1].get().headers["Reply-Text"] == "+OK"  # the next: a sendmsg's
    got = [n for n in names(drain(session, until=LINGERING)) if n != LINGERING]
    assert got[:7] == ["CHANNEL_PARK", "CHANNEL_EXECUTE", "CHANNEL_ANSWER", "CHANNEL_EXECUTE_COMPLETE", "CHANNEL_EXECUTE", "DTMF", "CHANNEL_EXECUTE_COMPLETE"]
    session.close()
    peer.kill()


def test_posted_commands_without_replies_time_out_or_fail_by_name():
    mine, theirs = gevent.socket.socketpair()
    session = CallSession(("127.0.0.1", 0), mine, timeout_s=0.2)
    session.execute("bridge", "user/102@t.example", "app-1", wait=False)
    with pytest.raises(EslTimeout, match="'bridge'"):
        session.wait_replies()
    session.wait_replies()  # nothing left to wait for
    session.hangup("NORMAL_CLEARING", wait=False)
    theirs.close()  # FreeSWITCH went away before answering
    with pytest.raises(CallGone):
        session.wait_replies()
    with pytest.raises(CallGone):
        session.post("sendmsg")
    session.close()


def test_disconnect_notice_before_the_sendmsg_reply_does_not_break_the_session():
    """outbound_sipp_builtin_uac_caller_hangup: the caller hung up right after answer;
    the linger notice arrives BEFORE the +OK of the in-flight sendmsg."""
    sock, peer, records = replay("outbound_sipp_builtin_uac_caller_hangup.txt")
    session = CallSession(("127.0.0.1", 0), sock, timeout_s=5)
    session.connect()
    for raw in [r.data for r in records if r.direction == "SERVER->FS"][1:]:
        text = raw.decode().rstrip("\n")
        if text == "exit":
            break
        try:
            session.send(text)
        except CallGone:
            pytest.fail("a linger notice must not fail the in-flight command")
    items = drain(session, until="CHANNEL_HANGUP_COMPLETE")
    assert names(items) == [
        "CHANNEL_PARK", "CHANNEL_EXECUTE", "CHANNEL_PROGRESS_MEDIA", "CHANNEL_ANSWER", "CHANNEL_EXECUTE_COMPLETE",
        LINGERING, "CHANNEL_HANGUP", "CHANNEL_UNPARK", "CHANNEL_EXECUTE_COMPLETE", "CHANNEL_STATE", "CHANNEL_STATE",
        "CHANNEL_HANGUP_COMPLETE",
    ]
    session.close()


def test_malformed_message_ends_the_session_with_a_clear_error(caplog):
    mine, theirs = gevent.socket.socketpair()
    session = CallSession(("127.0.0.1", 0), mine, timeout_s=1)
    theirs.sendall(b"Content-Type: text/event-plain\nContent-Length: 5\n\nnot-an-event-at-all")
    theirs.sendall(b"garbage line without colon\n\n")
    with gevent.Timeout(3):
        while session.events.get() != DISCONNECTED:
            pass
    with pytest.raises(CallGone):
        session.send("myevents")
    assert "malformed ESL message" in caplog.text
    session.close()


def test_silent_freeswitch_times_out_instead_of_hanging():
    mine, theirs = gevent.socket.socketpair()
    session = CallSession(("127.0.0.1", 0), mine, timeout_s=0.2)
    with pytest.raises(EslTimeout):
        session.send("connect")
    session.close()
    theirs.close()


def test_unwanted_events_are_dropped_unparsed():
    sock, peer, records = replay("outbound_loopback_plain.txt")
    session = CallSession(("127.0.0.1", 0), sock, timeout_s=5, wanted=frozenset({"CHANNEL_EXECUTE_COMPLETE", "DTMF"}))
    session.connect()
    for raw in [r.data for r in records if r.direction == "SERVER->FS"][1:]:
        text = raw.decode().rstrip("\n")
        if text == "exit":
            break
        session.send(text)
    items = drain(session, until=LINGERING)
    session.close()
    got = [n for n in names(items) if n != LINGERING]
    # answer's completion, the DTMF during playback, playback's completion, then the
    # socket application's (the channel hung up; it is on the wire before the linger
    # notice, and events keep wire order); the 10 CHANNEL_PARK / EXECUTE / ANSWER /
    # HANGUP / STATE ... events were never parsed.
    assert got == ["CHANNEL_EXECUTE_COMPLETE", "DTMF", "CHANNEL_EXECUTE_COMPLETE", "CHANNEL_EXECUTE_COMPLETE"]
    assert [i.get("Application") for i in items if not isinstance(i, str) and i.name == "CHANNEL_EXECUTE_COMPLETE"] == [
        "answer", "playback", "socket"]
    assert items[-1] == LINGERING


def test_completions_of_unwatched_apps_are_dropped_unparsed():
    """answer's EXECUTE_COMPLETE is not waited for: dropped by its Application header;
    playback's (waited for) still arrives, with the DTMF between them."""
    sock, peer, records = replay("outbound_loopback_plain.txt")
    session = CallSession(("127.0.0.1", 0), sock, timeout_s=5, wanted=frozenset({"CHANNEL_EXECUTE_COMPLETE", "DTMF"}),
                          unwatched_apps=frozenset({"answer", "set"}))
    session.connect()
    for raw in [r.data for r in records if r.direction == "SERVER->FS"][1:]:
        text = raw.decode().rstrip("\n")
        if text == "exit":
            break
        session.send(text)
    items = drain(session, until=LINGERING)
    session.close()
    completions = [i for i in items if not isinstance(i, str) and i.name == "CHANNEL_EXECUTE_COMPLETE"]
    assert [e.get("Application") for e in completions] == ["playback", "socket"]
    assert [n for n in names(items) if n != LINGERING] == ["DTMF", "CHANNEL_EXECUTE_COMPLETE", "CHANNEL_EXECUTE_COMPLETE"]


def test_a_closed_session_is_freed_at_once_not_by_the_garbage_collector():
    """No reference cycles: a finished call's session, socket and buffers go when the
    call lets go of them (a full collection used to free ~10 s of calls at once, with
    the hub stopped for 100+ ms), and the socket's descriptor is closed by close()."""
    import gc
    import weakref

    sock, peer, records = replay("outbound_loopback_plain.txt")
    session = CallSession(("127.0.0.1", 0), sock, timeout_s=5)
    session.connect()
    session.close()
    assert sock.fileno() == -1  # closed for real, not only marked closed
    del sock
    ref = weakref.ref(session)
    gc.disable()
    try:
        del session
        assert ref() is None
    finally:
        gc.enable()
    peer.kill()
