"""The presence watcher: FreeSWITCH channel events (the simulator's real inbound ESL)
-> members' live channels in a real Redis.

The simulator runs a small dialplan: from ``public``, ``1xx`` / ``800`` / ``999`` are
bridged to ``user/<ext>@<domain>`` (a member rung by us) and ``+...`` numbers are
answered and parked; from ``pbx-internal`` (a registered phone's own call) ``1xx`` is an
internal call to that user and anything else an outside call that is answered and parked.
Waits poll with a deadline; nothing sleeps for a fixed time.
"""
from __future__ import annotations

import json
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import gevent
import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from orchestrator.config import from_env
from orchestrator.core.model import Employee, RoutingIndex, TenantSnapshot, VoicemailBox
from orchestrator.errors import ConfigError
from orchestrator.esl.inbound import InboundClient
from orchestrator.esl.wire import Event
from orchestrator.presence import EVENTS, Phone, PresenceWatcher, parse_channels, phone_ended, phone_of_event, phone_of_row
from orchestrator.store.agents import AgentStore, agent_key, channels_key
from orchestrator.store.redis_store import RoutingVersions
from orchestrator.store.routing_cache import RoutingCache
from simulator import Answer, FreeSwitchSim
from simulator.events import SimEvent
from simulator.transcripts import load

DOMAIN = "presence.pbx.test"
TENANT = 7
ANNA, BORIS, VERA = 1, 2, 3  # extensions 101, 102, 103
SNAPSHOT = TenantSnapshot(
    tenant_id=TENANT, name="Presence Co", sip_domain=DOMAIN, version=1,
    employees={ANNA: Employee(ANNA, "Anna", "101"), BORIS: Employee(BORIS, "Boris", "102"), VERA: Employee(VERA, "Vera", "103")},
    voicemail_boxes={5: VoicemailBox(5, "Sales box", extension="800")},
)
DIALPLAN = """<include>
  <context name="public">
    <extension name="ring_user"><condition field="destination_number" expression="^(1\\d\\d|800|999)$">
      <action application="bridge" data="user/$1@%(domain)s"/></condition></extension>
    <extension name="park"><condition field="destination_number" expression="^\\+\\d+$">
      <action application="answer"/><action application="park"/></condition></extension>
  </context>
  <context name="pbx-internal">
    <extension name="internal_call"><condition field="destination_number" expression="^(1\\d\\d)$">
      <action application="bridge" data="user/$1@%(domain)s"/></condition></extension>
    <extension name="outside_call"><condition field="destination_number" expression="^(.+)$">
      <action application="answer"/><action application="park"/></condition></extension>
  </context>
</include>
""" % {"domain": DOMAIN}


def wait_until(predicate: Callable[[], object], timeout: float = 5.0, what: str = "condition") -> None:
    with gevent.Timeout(timeout, AssertionError("timed out waiting for %s" % what)):
        while not predicate():
            gevent.sleep(0.005)


@pytest.fixture(scope="module")
def conf(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("presence-conf")
    (base / "dialplan").mkdir()
    (base / "dialplan" / "presence.xml").write_text(DIALPLAN)
    return base


def new_sim(conf: Path, port: int = 0) -> FreeSwitchSim:
    sim = FreeSwitchSim(conf_dir=conf, time_scale=0.02, esl_port=port)
    for ext in ("101", "102", "103", "800", "999"):
        sim.add_user(ext, DOMAIN, behavior=Answer(after=0.5))
    sim.add_user("101", "other.example", behavior=Answer(after=0.5))
    return sim


@pytest.fixture
def sim(conf) -> Iterator[FreeSwitchSim]:
    s = new_sim(conf).start()
    yield s
    s.stop()


@pytest.fixture
def r(redis_url) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url, socket_timeout=5)
    yield client
    client.close()


@pytest.fixture
def agents(r) -> AgentStore:
    return AgentStore(r)


@pytest.fixture
def cache(r) -> RoutingCache:
    return RoutingCache(RoutingVersions(r), lambda: RoutingIndex(domains={DOMAIN: TENANT}, version=1),
                        lambda tid: SNAPSHOT if tid == TENANT else None)


def client_for(port: int) -> InboundClient:
    return InboundClient("127.0.0.1", port, "ClueCon", events=EVENTS, reconnect=False, connect_timeout=2.0,
                         command_timeout=2.0, backoff_initial=0.02, backoff_max=0.2)


@contextmanager
def running(port: int, agents: AgentStore, cache: RoutingCache, **kw) -> Iterator[tuple[PresenceWatcher, gevent.Greenlet]]:
    """A watcher greenlet, connected and past its first resync."""
    kw.setdefault("tick_s", 0.02)
    watcher = PresenceWatcher(client_for(port), agents, cache, **kw)
    greenlet = gevent.spawn(watcher.run)
    try:
        wait_until(lambda: watcher.stats["resyncs"] >= 1, what="first resync")
        yield watcher, greenlet
    finally:
        watcher.stop()
        greenlet.join(timeout=5)
        assert greenlet.dead


def channels(r: redis.Redis, employee_id: int) -> set[str]:
    """The member's live (unexpired) channels, as the offer script counts them."""
    sec, usec = r.time()
    now_ms = sec * 1000 + usec // 1000
    return {m.decode() for m in r.zrangebyscore(channels_key(TENANT, employee_id), now_ms + 1, "+inf")}


def offer_status(agents: AgentStore, employee_id: int) -> str:
    """What the department offer script says of the member right now (then undone)."""
    _, statuses = agents.reserve(TENANT, "probe-call", 200, [employee_id], 1)
    agents.r.hdel(agent_key(TENANT, employee_id), "offer", "offer_until", "offer_dept")
    return statuses[employee_id]


def member_call(sim: FreeSwitchSim, ext: str, dest: str = "+74950001122", domain: str = DOMAIN):
    """A call placed by the registered phone ``ext`` (authenticated: user_name/domain_name)."""
    return sim.place_call(dest, caller_id=ext, context="pbx-internal", domain=domain)


# ----------------------------------------------------------------- through the wire


def test_member_leg_rung_via_user_is_busy_until_hangup(sim, agents, cache, r):
    desk = sim.endpoint("101@%s" % DOMAIN)
    with running(sim.esl_port, agents, cache):
        call = sim.place_call("101", caller_id="+78121234567")
        wait_until(lambda: desk.legs and channels(r, ANNA) == {desk.legs[0].leg_uuid}, what="Anna's leg")
        assert offer_status(agents, ANNA) == "busy"
        # The caller's own channel carries dialed_user=101 too (mod_dptools sets it on the
        # calling channel) but it is not Anna's phone.
        assert call.uuid not in channels(r, ANNA)
        # Hang up once bridged: the simulator leaves a leg that answered just as the caller
        # hung up (before the bridge) up for ever, which FreeSWITCH does not.
        wait_until(lambda: call.bridged_to is not None, what="bridged")
        call.hangup()
        wait_until(lambda: channels(r, ANNA) == set(), what="Anna free after hangup")
        assert offer_status(agents, ANNA) == "offered"


def test_member_phone_placing_a_call_is_busy_and_ends_its_pause(sim, agents, cache, r):
    r.hset(agent_key(TENANT, BORIS), mapping={"paused": 1, "missed": 3})
    with running(sim.esl_port, agents, cache):
        call = member_call(sim, "102")
        wait_until(lambda: channels(r, BORIS) == {call.uuid}, what="Boris busy")
        state = agents.states(TENANT, [BORIS])[BORIS]
        assert not state.paused and state.missed == 0 and state.channels == 1
        assert offer_status(agents, BORIS) == "busy"
        call.hangup()
        wait_until(lambda: channels(r, BORIS) == set(), what="Boris free")


def test_internal_call_makes_both_members_busy(sim, agents, cache, r):
    vera = sim.endpoint("103@%s" % DOMAIN)
    with running(sim.esl_port, agents, cache):
        call = member_call(sim, "102", dest="103")
        wait_until(lambda: vera.legs and channels(r, VERA) == {vera.legs[0].leg_uuid}, what="Vera's leg")
        assert channels(r, BORIS) == {call.uuid}
        wait_until(lambda: call.bridged_to is not None, what="bridged")  # (see above)
        call.hangup()
        wait_until(lambda: channels(r, BORIS) == channels(r, VERA) == set(), what="both free")


def test_unknown_domain_extension_and_unauthenticated_callers_are_ignored(sim, agents, cache, r):
    with running(sim.esl_port, agents, cache) as (watcher, _):
        calls = [
            member_call(sim, "101", domain="other.example"),  # not a tenant's domain
            sim.place_call("999", caller_id="+78120000001"),  # user/999: no such employee
            sim.place_call("800", caller_id="+78120000002"),  # user/800: a voicemail box
            # Unauthenticated caller whose From says 101@<tenant domain>: presence_id only.
            sim.place_call("+74950009999", caller_id="101", variables={"presence_id": "101@" + DOMAIN}),
        ]
        control = member_call(sim, "103")  # events are handled in order: once this one shows...
        wait_until(lambda: channels(r, VERA) == {control.uuid}, what="control call")
        assert watcher.resync()  # ...and the resync (show channels) adds nothing either
        assert channels(r, ANNA) == set() and channels(r, BORIS) == set()
        assert sorted(k.decode() for k in r.keys("*:ch")) == [channels_key(TENANT, VERA)]
        for call in calls + [control]:
            call.hangup()


def test_missed_hangup_is_dropped_by_the_next_resync(sim, agents, cache, r):
    with running(sim.esl_port, agents, cache, resync_s=3600, grace_s=0) as (watcher, _):
        call = member_call(sim, "102")
        wait_until(lambda: channels(r, BORIS) == {call.uuid}, what="Boris busy")
        # From now on FreeSWITCH sends this connection only CHANNEL_CREATE: the HANGUP is lost.
        watcher.client.command("filter Event-Name CHANNEL_CREATE")
        call.hangup()
        call.wait_hangup()
        assert channels(r, BORIS) == {call.uuid}
        assert watcher.resync()
        assert channels(r, BORIS) == set()


def test_resync_keeps_a_long_call_busy_and_a_dead_watcher_frees_it_within_the_ttl(sim, agents, cache, r):
    ttl_ms = 1000
    with running(sim.esl_port, agents, cache, ttl_ms=ttl_ms, resync_s=0.1) as (watcher, greenlet):
        call = member_call(sim, "102")
        wait_until(lambda: channels(r, BORIS) == {call.uuid}, what="Boris busy")
        first_expiry = r.zscore(channels_key(TENANT, BORIS), call.uuid)
        # The resync refreshes the channel: it outlives its first TTL while the call lasts.
        wait_until(lambda: r.zscore(channels_key(TENANT, BORIS), call.uuid) > first_expiry + ttl_ms,
                   what="refreshed past the first TTL")
        assert channels(r, BORIS) == {call.uuid}
        greenlet.kill()  # the watcher dies (its connection closes with it)
        call.hangup()
        call.wait_hangup()
        assert channels(r, BORIS) == {call.uuid}  # nobody saw the hangup...
        wait_until(lambda: channels(r, BORIS) == set(), timeout=ttl_ms / 1000 + 1.0, what="TTL expiry")


def test_freeswitch_restart_reconnect_and_resync(conf, agents, cache, r):
    first = new_sim(conf).start()
    port = first.esl_port
    r.hset(agent_key(TENANT, VERA), mapping={"paused": 1, "missed": 2})
    with running(port, agents, cache, resync_s=3600, grace_s=0) as (watcher, _):
        old = member_call(first, "102")
        wait_until(lambda: channels(r, BORIS) == {old.uuid}, what="Boris busy")
        first.stop()  # event socket closed first: the hangups of its channels are never sent
        wait_until(lambda: not watcher.client.connected, what="disconnect")
        assert channels(r, BORIS) == {old.uuid}
        second = new_sim(conf, port=port)  # same address, event socket not listening yet
        try:
            new = member_call(second, "103")
            wait_until(lambda: new.answered, what="Vera's call up before we reconnect")
            second.start()
            wait_until(lambda: watcher.stats["connects"] >= 2, what="reconnect")
            wait_until(lambda: channels(r, VERA) == {new.uuid}, what="Vera's call found by the resync")
            assert channels(r, BORIS) == set()  # gone with the old FreeSWITCH: freed at once
            assert not agents.states(TENANT, [VERA])[VERA].paused  # her own call ended the pause
            new.hangup()
            wait_until(lambda: channels(r, VERA) == set(), what="Vera free")
        finally:
            second.stop()


def test_malformed_events_and_garbage_bytes_do_not_stop_the_watcher(sim, agents, cache, r):
    with running(sim.esl_port, agents, cache) as (watcher, greenlet):
        bogus = [
            [("Call-Direction", "outbound"), ("Channel-Presence-ID", "101@" + DOMAIN)],  # no Unique-ID
            [("Unique-ID", "u1"), ("Call-Direction", "outbound"), ("Channel-Presence-ID", "@@")],
            [("Unique-ID", "u2"), ("Call-Direction", "sideways"), ("variable_user_name", "101")],
            [("Unique-ID", "u3"), ("Call-Direction", "inbound"), ("variable_user_name", "101")],  # no domain
            [("Unique-ID", "u4"), ("Call-Direction", "outbound"), ("variable_dialed_user", "\u2603"),
             ("variable_dialed_domain", "\u00e9.example")],
        ]
        for headers in bogus:
            sim.bus.fire(SimEvent("CHANNEL_CREATE", sim.bus.common("CHANNEL_CREATE") + headers))
        sim.bus.fire(SimEvent("CHANNEL_HANGUP_COMPLETE", sim.bus.common("CHANNEL_HANGUP_COMPLETE") + [("Unique-ID", "nobody")]))
        sim.bus.fire_plain("BACKGROUND_JOB", [("Job-UUID", "not-ours")], "+OK ???\n")
        # Bytes that are not ESL at all: the client drops the connection, the watcher
        # reconnects. (Written on the simulator's side of the watcher's own connection.)
        (conn,) = [c for c in sim._inbound.connections if "CHANNEL_CREATE" in c.names and not c.closed.is_set()]
        conn.send(b"this is not\nESL at all\n\n")
        wait_until(lambda: watcher.stats["connects"] >= 2, what="reconnect after garbage")
        call = member_call(sim, "102")
        wait_until(lambda: channels(r, BORIS) == {call.uuid}, what="still working")
        assert not greenlet.dead and sorted(k.decode() for k in r.keys("*:ch")) == [channels_key(TENANT, BORIS)]
        call.hangup()


def test_redis_errors_are_logged_and_survived(sim, cache, caplog):
    # Nothing listens on port 1; no client-side retries (production's client has a few).
    dead = AgentStore(redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2, socket_timeout=0.2,
                                  retry=Retry(NoBackoff(), 0)))
    with running(sim.esl_port, dead, cache, resync_s=0.05) as (watcher, greenlet):
        call = member_call(sim, "102")
        wait_until(lambda: watcher.stats["redis_errors"] >= 2 and watcher.stats["resyncs"] >= 3, what="errors")
        assert not greenlet.dead
        assert any(rec.getMessage() == "presence not written to Redis" and rec.employee_id == BORIS for rec in caplog.records)
        call.hangup()


def test_watcher_wants_a_client_it_can_reconnect_itself(agents, cache):
    with pytest.raises(ValueError, match="reconnect=False"):
        PresenceWatcher(InboundClient("127.0.0.1", 1, "x", events=EVENTS), agents, cache)
    with pytest.raises(ValueError, match="CHANNEL_HANGUP_COMPLETE"):
        PresenceWatcher(InboundClient("127.0.0.1", 1, "x", events=["CHANNEL_CREATE"], reconnect=False), agents, cache)


# ----------------------------------------------------------------- resync races (canned answers)


class CannedShowChannels(InboundClient):
    """An unconnected client whose ``api`` answers with the next canned body: for the
    windows real FreeSWITCH has and the simulator does not (core-db rows live until
    CHANNEL_DESTROY; a resync answer can predate a HANGUP we already handled)."""

    def __init__(self) -> None:
        super().__init__("127.0.0.1", 1, "ClueCon", events=EVENTS, reconnect=False)
        self.bodies: list[str] = []

    def api(self, cmd: str, timeout: float | None = None, check: bool = False) -> str:
        assert cmd == "show channels as json"
        return self.bodies.pop(0)


def rows(*rows: dict[str, str]) -> str:
    return json.dumps({"row_count": len(rows), "rows": list(rows)}, separators=(",", ":")) if rows else '{"row_count": 0}\n'


def boris_row(uuid: str, state: str = "CS_EXECUTE", callstate: str = "ACTIVE") -> dict[str, str]:
    return {"uuid": uuid, "direction": "inbound", "state": state, "callstate": callstate,
            "presence_id": "102@" + DOMAIN, "context": "pbx-internal", "initial_context": "pbx-internal"}


def boris_event(name: str, uuid: str) -> Event:
    return event(Event_Name=name, Unique_ID=uuid, Call_Direction="inbound", variable_user_name="102",
                 variable_domain_name=DOMAIN)


def test_resync_does_not_bring_back_ended_channels_nor_drop_new_ones(agents, cache, r):
    now = [100.0]
    client = CannedShowChannels()
    watcher = PresenceWatcher(client, agents, cache, grace_s=5.0, clock=lambda: now[0])
    watcher.handle_event(boris_event("CHANNEL_CREATE", "gone"))
    watcher.handle_event(boris_event("CHANNEL_HANGUP_COMPLETE", "gone"))
    assert channels(r, BORIS) == set()
    # A stale row of the ended channel, and rows kept until CHANNEL_DESTROY in hangup states.
    client.bodies.append(rows(boris_row("gone"), boris_row("reporting", "CS_REPORTING", "HANGUP"),
                              boris_row("hanging", "CS_HANGUP")))
    assert watcher.resync()
    assert channels(r, BORIS) == set()
    # Created a moment ago but not in the core db yet (the SQL thread lags): kept...
    watcher.handle_event(boris_event("CHANNEL_CREATE", "new"))
    client.bodies.append(rows())
    now[0] += 1
    assert watcher.resync() and channels(r, BORIS) == {"new"}
    # ...until FreeSWITCH has had ``grace_s`` to list it.
    now[0] += 5
    client.bodies.append(rows())
    assert watcher.resync() and channels(r, BORIS) == set()
    # An answer that is not ``show channels`` output changes nothing.
    watcher.handle_event(boris_event("CHANNEL_CREATE", "other"))
    now[0] += 60
    client.bodies.append("-ERR no reply\n")
    assert not watcher.resync() and channels(r, BORIS) == {"other"}


# ----------------------------------------------------------------- pure parts


def event(**headers: str) -> Event:
    return Event(headers={k.replace("_", "-") if not k.startswith("variable_") else k: v for k, v in headers.items()})


@pytest.mark.parametrize("ev, phone", [
    # user/ leg (mod_dptools user_outgoing_channel): dialed_user / dialed_domain
    (event(Call_Direction="outbound", variable_dialed_user="101", variable_dialed_domain="Presence.PBX.test"),
     Phone("101", DOMAIN, False)),
    # other outbound leg: presence_id, as FreeSWITCH's BLF uses it
    (event(Call_Direction="outbound", Channel_Presence_ID="102@" + DOMAIN), Phone("102", DOMAIN, False)),
    (event(Call_Direction="outbound", variable_presence_id="103@" + DOMAIN), Phone("103", DOMAIN, False)),
    (event(Call_Direction="outbound"), None),
    # a registered phone's own call (sofia_reg_parse_auth): user_name / domain_name
    (event(Call_Direction="inbound", variable_user_name="102", variable_domain_name=DOMAIN,
           Channel_Presence_ID="102@" + DOMAIN), Phone("102", DOMAIN, True)),
    # inbound without authentication: presence_id comes from the From header; not trusted
    (event(Call_Direction="inbound", Channel_Presence_ID="101@" + DOMAIN), None),
    # the caller's channel of a user/ bridge also carries dialed_user (inbound): not the member's
    (event(Call_Direction="inbound", variable_dialed_user="101", variable_dialed_domain=DOMAIN), None),
    (event(variable_user_name="101", variable_domain_name=DOMAIN), None),
])
def test_phone_of_event(ev, phone):
    assert phone_of_event(ev) == phone


def recorded_show_channels() -> list[str]:
    """Bodies FreeSWITCH 1.10.12 answered to ``api show channels as json`` (P09): api
    commands on a connection are answered in order, one api/response each."""
    records = load("P09_uuid_broadcast_getvar_setvar_show_channels_sofia.txt")
    commands = [rec.data.decode().split("\n", 1)[0] for rec in records
                if rec.direction == "CLIENT->FS" and rec.data.startswith(b"api ")]
    bodies = [rec.data.decode().split("\n\n", 1)[1] for rec in records
              if rec.direction == "FS->CLIENT" and b"Content-Type: api/response" in rec.data]
    assert len(commands) == len(bodies)
    return [body for command, body in zip(commands, bodies) if command == "api show channels as json"]


def test_parse_channels_real_bodies_and_junk():
    real = recorded_show_channels()
    full = [parse_channels(b) for b in real]
    assert [len(rows) for rows in full if rows is not None] == [2, 2, 0] and None not in full
    row = full[0][0]
    assert row["direction"] == "outbound" and row["state"] == "CS_EXECUTE" and row["presence_id"] == ""
    assert phone_of_row(row) is None  # sofia/ legs originated directly have no presence_id
    assert parse_channels('{"row_count": 0}\n') == []
    for junk in ("-ERR no reply\n", "", "{bad", "[]", '{"rows": []}', '{"row_count":1,"rows":7}'):
        assert parse_channels(junk) is None
    assert parse_channels('{"row_count":2,"rows":[{"uuid":""},{"uuid":"a","x":1}, 5]}') == [{"uuid": "a"}]


@pytest.mark.parametrize("row, phone", [
    ({"uuid": "b", "direction": "outbound", "presence_id": "101@" + DOMAIN}, Phone("101", DOMAIN, False)),
    ({"uuid": "a", "direction": "inbound", "presence_id": "102@" + DOMAIN, "context": "pbx-internal"},
     Phone("102", DOMAIN, True)),
    ({"uuid": "a", "direction": "inbound", "presence_id": "102@" + DOMAIN, "context": "x",
      "initial_context": "pbx-internal"}, Phone("102", DOMAIN, True)),
    ({"uuid": "a", "direction": "inbound", "presence_id": "101@" + DOMAIN, "context": "public"}, None),
    ({"uuid": "a", "direction": "outbound", "presence_id": ""}, None),
])
def test_phone_of_row(row, phone):
    assert phone_of_row(row) == phone


def test_presence_esl_setting():
    assert from_env({}).presence_esl == ()
    assert from_env({"PBX_PRESENCE_ESL": " fs1.example:8021, 10.0.0.2:8022 ,"}).presence_esl == (
        ("fs1.example", 8021), ("10.0.0.2", 8022))
    with pytest.raises(ConfigError, match="PBX_PRESENCE_ESL must look like HOST:PORT"):
        from_env({"PBX_PRESENCE_ESL": "fs1.example"})


def anna_leg(name: str, uuid: str, term_cause: str = "") -> Event:
    """An event of the leg we rang to Anna's phone (``user/101@...``: dialed_user)."""
    fields = dict(Event_Name=name, Unique_ID=uuid, Call_Direction="outbound", variable_dialed_user="101",
                  variable_dialed_domain=DOMAIN)
    if term_cause:
        fields["variable_sip_term_cause"] = term_cause
    return event(**fields)


def test_member_is_free_at_channel_hangup_when_the_phone_hung_up(agents, cache, r):
    """sofia.c sets sip_term_cause before it hangs a channel up for the phone's BYE or
    error answer: the phone's dialog is over at CHANNEL_HANGUP, and the next waiting
    caller must not wait for CHANNEL_HANGUP_COMPLETE."""
    assert "CHANNEL_HANGUP" in EVENTS
    watcher = PresenceWatcher(CannedShowChannels(), agents, cache)
    for n, cause in enumerate(("16", "17")):  # the phone's BYE; its 486
        uuid = "leg-%d" % n
        watcher.handle_event(anna_leg("CHANNEL_CREATE", uuid))
        assert channels(r, ANNA) == {uuid} and offer_status(agents, ANNA) == "busy"
        watcher.handle_event(anna_leg("CHANNEL_HANGUP", uuid, cause))
        assert channels(r, ANNA) == set() and offer_status(agents, ANNA) == "offered"
        watcher.handle_event(anna_leg("CHANNEL_HANGUP_COMPLETE", uuid, cause))
        assert channels(r, ANNA) == set()


def test_member_stays_busy_until_hangup_complete_when_freeswitch_hung_up(agents, cache, r):
    """Our side ended the leg (LOSE_RACE, ORIGINATOR_CANCEL, our BYE, a leg timeout): the
    phone gets its BYE or CANCEL after CHANNEL_HANGUP, so the member is busy until
    HANGUP_COMPLETE."""
    watcher = PresenceWatcher(CannedShowChannels(), agents, cache)
    watcher.handle_event(anna_leg("CHANNEL_CREATE", "ours"))
    watcher.handle_event(anna_leg("CHANNEL_HANGUP", "ours"))
    assert channels(r, ANNA) == {"ours"} and offer_status(agents, ANNA) == "busy"
    watcher.handle_event(anna_leg("CHANNEL_HANGUP_COMPLETE", "ours"))
    assert channels(r, ANNA) == set()


def recorded_hangups(name: str) -> dict[str, tuple[str, bool]]:
    """Channel-Name -> (Hangup-Cause, phone_ended) of every CHANNEL_HANGUP FreeSWITCH
    1.10.12 sent the observer in transcript ``name``."""
    from orchestrator.esl.wire import Parser, parse_event

    parser, out = Parser(), {}
    for rec in load(name):
        if rec.direction != "FS->OBSERVER":
            continue
        for msg in parser.feed(rec.data):
            if msg.content_type == "text/event-plain":
                ev = parse_event(msg)
                if ev.name == "CHANNEL_HANGUP":
                    out[ev.get("Channel-Name") or ""] = (ev.get("Hangup-Cause") or "", phone_ended(ev))
    return out


def test_phone_ended_on_recorded_hangups():
    """The callee's BYE (P01c) and its 486 (P04) carry sip_term_cause on CHANNEL_HANGUP;
    legs FreeSWITCH ended (LOSE_RACE, ORIGINATOR_CANCEL, ALLOTTED_TIMEOUT, its own BYE) do not."""
    p01c = recorded_hangups("P01c_bridge_callee_hangs_up_hangup_after_bridge_true.txt")
    assert p01c["sofia/internal/a1@127.0.0.1:5171"] == ("NORMAL_CLEARING", True)  # a1 sent BYE
    p04 = recorded_hangups("P04_bridge_all_fail_continue_on_fail_then_record.txt")
    assert p04["sofia/internal/a1@127.0.0.1:5171"] == ("USER_BUSY", True)
    assert p04["sofia/internal/a2@127.0.0.1:5172"] == ("ALLOTTED_TIMEOUT", False)
    p01 = recorded_hangups("P01_bridge_ring_all_a1_answers.txt")
    assert p01["sofia/internal/a2@127.0.0.1:5172"] == ("LOSE_RACE", False)
    assert p01["sofia/internal/a1@127.0.0.1:5171"] == ("NORMAL_CLEARING", False)  # FreeSWITCH sent the BYE
    p01d = recorded_hangups("P01d_bridge_caller_abandons_while_ringing.txt")
    assert {v for k, v in p01d.items() if "/a" in k} == {("ORIGINATOR_CANCEL", False)}


def answered_leg_hangup(uuid: str, call_uuid: str, answered_us: int, ended_us: int) -> Event:
    """The CHANNEL_HANGUP of Anna's answered leg when her phone sent BYE (P01c's headers)."""
    return event(Event_Name="CHANNEL_HANGUP", Unique_ID=uuid, Call_Direction="outbound", variable_dialed_user="101",
                 variable_dialed_domain=DOMAIN, variable_sip_term_cause="16", Other_Leg_Unique_ID=call_uuid,
                 Caller_Channel_Answered_Time=str(answered_us), Event_Date_Timestamp=str(ended_us))


def test_member_hanging_up_an_answered_call_ends_its_offer_at_once(agents, cache, r):
    """The caller's channel sees the member's hang-up (CHANNEL_UNBRIDGE) a frame later;
    the watcher ends the answered offer at the member's CHANNEL_HANGUP, exactly once."""
    _, statuses = agents.reserve(TENANT, "call-1", 200, [ANNA], 1)
    assert statuses == {ANNA: "offered"}
    watcher = PresenceWatcher(CannedShowChannels(), agents, cache)
    watcher.handle_event(anna_leg("CHANNEL_CREATE", "leg-a"))
    assert agents.states(TENANT, [ANNA])[ANNA].offer == "call-1"
    watcher.handle_event(answered_leg_hangup("leg-a", "call-1", 1_796_000_000_000_000, 1_796_000_042_500_000))
    state = agents.states(TENANT, [ANNA], [time.strftime("%Y%m%d", time.gmtime(1_796_000_042.5))])[ANNA]
    assert state.offer == "" and state.calls_today == 1 and state.talk_ms_today == 42_500 and state.last_end_ms > 0
    assert offer_status(agents, ANNA) == "offered"  # free for the next caller now
    # The call's own release at its CHANNEL_UNBRIDGE, later, changes nothing.
    from orchestrator.store.agents import Release
    agents.release(TENANT, "call-1", 200, [Release(ANNA, "answered", 0, 40_000)],
                   time.strftime("%Y%m%d", time.gmtime(1_796_000_042.5)))
    again = agents.states(TENANT, [ANNA], [time.strftime("%Y%m%d", time.gmtime(1_796_000_042.5))])[ANNA]
    assert again.calls_today == 1 and again.talk_ms_today == 42_500


def test_a_leg_that_never_answered_or_another_calls_offer_is_left_alone(agents, cache, r):
    agents.reserve(TENANT, "call-2", 200, [ANNA], 1)
    watcher = PresenceWatcher(CannedShowChannels(), agents, cache)
    watcher.handle_event(anna_leg("CHANNEL_CREATE", "leg-b"))
    watcher.handle_event(answered_leg_hangup("leg-b", "call-2", 0, 1_796_000_001_000_000))  # refused (486), never answered
    assert agents.states(TENANT, [ANNA])[ANNA].offer == "call-2"
    watcher.handle_event(anna_leg("CHANNEL_CREATE", "leg-c"))
    watcher.handle_event(answered_leg_hangup("leg-c", "other-call", 1, 1_796_000_001_000_000))  # not call-2's leg
    assert agents.states(TENANT, [ANNA])[ANNA].offer == "call-2"
