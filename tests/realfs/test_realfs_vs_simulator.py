"""The simulator checked against the real FreeSWITCH: the same originate through each
one's inbound event socket, the same events compared.

Scenarios, each an ``api originate`` of a dial string the orchestrator builds:
* a ``user/`` leg to a known but unregistered user (104): reply, cause, no channel, at once;
* a ``user/`` leg to a phone that answers 486 Busy Here (102): reply, cause, events;
* "desk, then the mobile after N s": the desk phone (user/101, registered) rings and
  never answers, the mobile leg has ``leg_delay_start=2`` and answers after 1 s.

The simulator runs in a process of its own (``pbx-fssim``'s library, gevent) so that its
clock and this test's threads do not share a hub; it is started with real time
(time_scale 1).
"""
from __future__ import annotations

import subprocess
import sys
import time

import pytest

from tests.realfs.conftest import DOMAIN, Stack
from tests.realfs.fs_harness import EslEvents, Leg

SIM_SCRIPT = """
import sys, gevent
from simulator import FreeSwitchSim, NoAnswer, Answer, Busy
sim = FreeSwitchSim(conf_dir=sys.argv[1], esl_password=sys.argv[2], time_scale=1.0).start()
sim.add_user("101", sys.argv[3], behavior=NoAnswer())
sim.add_user("102", sys.argv[3], behavior=Busy())
sim.add_user("104", sys.argv[3], registered=False)
sim.add_external("+79160000011", behavior=Answer(after=1))
print(sim.esl_port, flush=True)
gevent.get_hub().threadpool.apply(sys.stdin.read)  # serve until the test closes our standard input
sim.stop()
"""


def dial_string(mobile: str) -> str:
    return ("{ignore_early_media=true,originate_timeout=20}[leg_timeout=10]user/101@%s,"
            "[leg_delay_start=2,leg_timeout=10]%s" % (DOMAIN, mobile))


def run(esl: EslEvents, dial: str) -> tuple[str, list[tuple[str, str]], dict[str, Leg]]:
    esl.clear()
    started = time.time()
    reply = esl.api("originate %s &park()" % dial, timeout=60)
    uuid = reply.strip().split()[-1]
    esl.api("uuid_kill %s" % uuid)
    esl.wait_for(lambda: all(leg.hungup for leg in esl.legs.values()), 60, "every leg hung up")
    kinds = {u: ("desk" if "/101@" in leg.name else "mobile") for u, leg in esl.legs.items()}
    order = [(name, kinds[u]) for name, u in esl.order if name in ("CHANNEL_CREATE", "CHANNEL_ANSWER", "CHANNEL_HANGUP")]
    by_kind = {kinds[u]: leg for u, leg in esl.legs.items()}
    for leg in by_kind.values():
        leg.created -= started
    return reply.split()[0], order, by_kind


@pytest.fixture
def simulator_esl(realfs_stack: Stack):
    from tests.realfs.conftest import HERE

    password = "sim-%d" % time.time_ns()
    proc = subprocess.Popen([sys.executable, "-c", SIM_SCRIPT, str(HERE.parent.parent / "freeswitch-conf"), password, DOMAIN],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        port = int(proc.stdout.readline())  # type: ignore[union-attr]
        esl = EslEvents(port, password)
        yield esl
        esl.close()
    finally:
        proc.stdin.close()  # type: ignore[union-attr]
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_delayed_leg_events_match_the_real_freeswitch(realfs_stack: Stack, phones, mobile, simulator_esl) -> None:
    stack = realfs_stack
    phones("101", answer_after_ms=None)
    mobile(1000)
    real_reply, real_order, real = run(stack.esl, dial_string("sofia/pbx/+79160000011@127.0.0.1:%d" % stack.mobile_port))
    sim_reply, sim_order, sim = run(simulator_esl, dial_string("sofia/gateway/pstn/+79160000011"))
    # Outcomes and causes agree (checked first, so that a difference there shows).
    assert real_reply == sim_reply == "+OK"
    assert (real["desk"].cause, real["mobile"].answered is not None) == ("LOSE_RACE", True)
    assert (sim["desk"].cause, sim["mobile"].answered is not None) == ("LOSE_RACE", True)
    # Timing and order of the events.
    assert 1.9 <= real["mobile"].created - real["desk"].created <= 3.5
    assert 1.9 <= sim["mobile"].created - sim["desk"].created <= 3.5, sim_order
    assert sim_order == real_order


def originate_failure(esl: EslEvents, dial: str) -> tuple[str, float, list[tuple[str, str]]]:
    esl.clear()
    started = time.monotonic()
    reply = esl.api("originate %s &park()" % dial, timeout=60).strip()
    elapsed = time.monotonic() - started
    esl.wait_for(lambda: all(leg.hungup for leg in esl.legs.values()), 60, "every leg hung up")
    return reply, elapsed, [(name, esl.legs[u].cause or "") for name, u in esl.order
                            if name in ("CHANNEL_CREATE", "CHANNEL_ANSWER", "CHANNEL_HANGUP")]


def test_user_leg_to_an_unregistered_user_fails_at_once_like_the_real_freeswitch(realfs_stack: Stack, simulator_esl) -> None:
    dial = "{originate_timeout=20}user/104@%s" % DOMAIN  # 104 is in the directory, no phone registered
    real = originate_failure(realfs_stack.esl, dial)
    sim = originate_failure(simulator_esl, dial)
    assert real[0] == sim[0] == "-ERR USER_NOT_REGISTERED"
    assert real[2] == sim[2] == []  # no channel is created
    assert real[1] < 2.0 and sim[1] < 2.0  # at once, not after a timeout


def test_user_leg_to_a_busy_phone_like_the_real_freeswitch(realfs_stack: Stack, phones, simulator_esl) -> None:
    phones("102", answer_after_ms=None, busy=True)
    dial = "{originate_timeout=20}user/102@%s" % DOMAIN
    real = originate_failure(realfs_stack.esl, dial)
    sim = originate_failure(simulator_esl, dial)
    assert real[0] == sim[0] == "-ERR USER_BUSY"
    assert real[2] == sim[2] == [("CHANNEL_CREATE", "USER_BUSY"), ("CHANNEL_HANGUP", "USER_BUSY")]
    assert real[1] < 5.0 and sim[1] < 5.0
