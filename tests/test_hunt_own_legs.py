"""A hunt that starts over must not take the leg it just rang for the member's live call.

Seen on a real FreeSWITCH (7 of 8 tries): a one-member one_by_one department; the
member's leg ends NO_ANSWER, the bridge returns, the core reserves the member again at
once, and the presence watcher learns of the leg's CHANNEL_HANGUP_COMPLETE a few ms
later. The reservation saw the leg as the member's live call ("busy"), so the call went
to the no-answer target after one ring instead of hunting for the whole timeout.

Here the same order of events, deterministically: the presence watcher (fed the events
directly) and the department store on a real Redis, the call-flow core in between.
"""
from __future__ import annotations

import itertools
from typing import Iterator

import pytest
import redis

from orchestrator.core import callflow
from orchestrator.core.actions import (AppCompleted, CallInfo, EndOffers, Execute, Finished, MembersReserved,
                                       ReserveMembers)
from orchestrator.core.model import (Department, Employee, Member, PhoneNumber, RoutingIndex, Strategy, Target,
                                     TargetKind, TenantSnapshot, VoicemailBox)
from orchestrator.core.plan import Policy
from orchestrator.esl.inbound import InboundClient
from orchestrator.esl.wire import Event
from orchestrator.member_offers import MemberOffers
from orchestrator.presence import EVENTS, PresenceWatcher
from orchestrator.store.agents import AgentStore, agent_key, channels_key, offers_key
from orchestrator.store.redis_store import RoutingVersions
from orchestrator.store.routing_cache import RoutingCache

TENANT, ANNA, DEPT = 41, 1, 300
DOMAIN = "hunt.pbx.test"
SNAPSHOT = TenantSnapshot(
    tenant_id=TENANT, name="Hunt Co", sip_domain=DOMAIN, version=1,
    employees={ANNA: Employee(ANNA, "Anna", "101")},
    departments={DEPT: Department(DEPT, "Support", "300", strategy=Strategy.ONE_BY_ONE, ring_seconds=3,
                                  no_answer_timeout=12, no_answer_target=Target(TargetKind.VOICEMAIL, 5),
                                  members=(Member(ANNA, order=1),))},
    numbers={"+74950003000": PhoneNumber("+74950003000", work_target=Target(TargetKind.DEPARTMENT, DEPT))},
    voicemail_boxes={5: VoicemailBox(5, "Support box")},
)


@pytest.fixture
def r(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url, socket_timeout=5)
    for emp in (ANNA,):
        client.delete(agent_key(TENANT, emp), channels_key(TENANT, emp))
    client.delete(offers_key(TENANT))
    yield client
    client.close()


def watcher_for(agents: AgentStore, r: redis.Redis) -> PresenceWatcher:
    cache = RoutingCache(RoutingVersions(r), lambda: RoutingIndex(domains={DOMAIN: TENANT}, version=1),
                         lambda tid: SNAPSHOT if tid == TENANT else None)
    client = InboundClient("127.0.0.1", 1, "ClueCon", events=EVENTS, reconnect=False)  # never connected: fed below
    return PresenceWatcher(client, agents, cache)


def leg_event(name: str, uuid: str) -> Event:
    """A member leg's CHANNEL_* event as FreeSWITCH sends it (user/101@domain, outbound)."""
    return Event(headers={"Event-Name": name, "Unique-ID": uuid, "Call-Direction": "outbound",
                          "variable_dialed_user": "101", "variable_dialed_domain": DOMAIN,
                          "Channel-Presence-ID": "101@%s" % DOMAIN})


def no_answer(app_id: str, leg_uuid: str) -> AppCompleted:
    return AppCompleted(app_id, "bridge", "_none_", {"originate_disposition": "NO_ANSWER",
                                                     "originate_failed_cause": "NO_ANSWER",
                                                     "originate_causes": "%s;NO_ANSWER" % leg_uuid})


def test_hunt_starting_over_rings_the_member_again_before_the_watcher_sees_the_hangup(r: redis.Redis) -> None:
    agents = AgentStore(r)
    watcher = watcher_for(agents, r)
    members = MemberOffers(agents, None, clock=lambda: 0)
    now = [1_000_000]
    ids = itertools.count(1)
    ctx = lambda: callflow.Context(SNAPSHOT, Policy(recordings_dir="/rec"), now[0], lambda: "id%d" % next(ids))  # noqa: E731
    call = CallInfo(uuid="hunt-call-1", entry="public", destination="+74950003000", caller_number="+78120000000")

    def run(decision: callflow.Decision) -> tuple[callflow.Decision, list[Execute]]:
        """Answer the member requests at once, as the call handler does; the bridges started."""
        bridges: list[Execute] = []
        while True:
            reserve = [a for a in decision.actions if isinstance(a, ReserveMembers)]
            for a in decision.actions:
                if isinstance(a, EndOffers):
                    members.end(TENANT, call, a)
                if isinstance(a, Execute) and a.app == "bridge":
                    bridges.append(a)
            if not reserve:
                return decision, bridges
            decision = callflow.handle(decision.state, members.reserve(TENANT, call.uuid, reserve[0]), ctx())

    d, bridges = run(callflow.start(call, ctx()))
    rings = 0
    while bridges:
        (bridge,) = bridges
        rings += 1
        leg = [leg.uuid for leg in d.state.current.legs][0]
        # FreeSWITCH: the member's leg is created (the watcher records it) ...
        watcher.handle_event(leg_event("CHANNEL_CREATE", leg))
        assert r.zscore(channels_key(TENANT, ANNA), leg) is not None
        # ... rings out; the bridge returns and the hunt starts over at once, BEFORE the
        # watcher has the leg's CHANNEL_HANGUP_COMPLETE (the failing order).
        now[0] += 3_500
        d, bridges = run(callflow.handle(d.state, no_answer(bridge.app_id, leg), ctx()))
        watcher.handle_event(leg_event("CHANNEL_HANGUP_COMPLETE", leg))
        assert r.zscore(channels_key(TENANT, ANNA), leg) is None
    # 12 s of department timeout, 3.5 s a ring: Anna rang 4 times, then the voicemail.
    assert rings == 4
    assert not any(isinstance(a, Finished) for a in d.actions)
    assert "voicemail Support box" in d.state.route


def test_reserve_ignores_only_this_calls_own_ended_legs(r: redis.Redis) -> None:
    agents = AgentStore(r)
    agents.channel_up(TENANT, ANNA, "own-leg", 60_000)
    _, st = agents.reserve(TENANT, "call-a", DEPT, [ANNA], 1)
    assert st == {ANNA: "busy"}  # as before: a live channel is a live call
    _, st = agents.reserve(TENANT, "call-a", DEPT, [ANNA], 1, own_channels=["other-leg"])
    assert st == {ANNA: "busy"}
    _, st = agents.reserve(TENANT, "call-a", DEPT, [ANNA], 1, own_channels=["x", "own-leg"])
    assert st == {ANNA: "offered"}
    r.hdel(agent_key(TENANT, ANNA), "offer", "offer_until", "offer_dept")
    # a second, real call on the phone still makes the member busy
    agents.channel_up(TENANT, ANNA, "real-call", 60_000)
    _, st = agents.reserve(TENANT, "call-a", DEPT, [ANNA], 1, own_channels=["own-leg"])
    assert st == {ANNA: "busy"}


def test_each_reservation_after_a_ring_names_the_legs_rung() -> None:
    ids = itertools.count(1)
    ctx = callflow.Context(SNAPSHOT, Policy(recordings_dir="/rec"), 1_000_000, lambda: "id%d" % next(ids))
    call = CallInfo(uuid="c1", entry="public", destination="+74950003000", caller_number="+78120000000")
    d = callflow.start(call, ctx)
    (first,) = [a for a in d.actions if isinstance(a, ReserveMembers)]
    assert first.own_channels == ()
    d = callflow.handle(d.state, MembersReserved(first.request_id, {ANNA: "offered"}), ctx)
    (bridge,) = [a for a in d.actions if isinstance(a, Execute) and a.app == "bridge"]
    leg = d.state.current.legs[0].uuid
    d = callflow.handle(d.state, no_answer(bridge.app_id, leg), ctx)
    (again,) = [a for a in d.actions if isinstance(a, ReserveMembers)]
    assert again.own_channels == (leg,)
