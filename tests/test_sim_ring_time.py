"""Leg timeouts in the simulator tick like FreeSWITCH 1.10.12's (whole seconds), and the
dial strings the core builds ring a member at least their configured time.

switch_ivr_originate.c compares ``elapsed = switch_epoch_time_now(NULL) - start`` (whole
seconds): a leg ends when elapsed > leg_timeout (ALLOTTED_TIMEOUT, N..N+1 s of
ringing), the attempt when elapsed >= its timelimit. A LONE user/ leg is rung by the
blocking originate of mod_dptools user_outgoing_channel() with timelimit = leg_timeout,
so it ends NO_ANSWER after N-1..N s: with ring_seconds 3 a real FreeSWITCH rang members
2.1-2.7 s. Re-checked on 1.10.12 (/opt/freeswitch, a user whose dial-string rings a
loopback that never answers): lone leg_timeout=3 -> 2.46-2.80 s NO_ANSWER, lone
leg_timeout=4 -> 3.58-3.88 s NO_ANSWER, two legs leg_timeout=3 -> 3.80-3.88 s
ALLOTTED_TIMEOUT.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.core.dialstrings import Leg, ring_all
from simulator import FreeSwitchSim, NoAnswer

ROOT = Path(__file__).resolve().parent.parent
DOMAIN = "ring.pbx.test"


@pytest.fixture(scope="module")
def sim() -> FreeSwitchSim:
    s = FreeSwitchSim(conf_dir=ROOT / "tests" / "data" / "sim_dialplan" / "basic", time_scale=0.05).start()
    for ext in ("101", "102"):
        s.add_user(ext, DOMAIN, behavior=NoAnswer())
    s.add_external("+79160000001", NoAnswer())
    yield s
    s.stop()


def ring(sim: FreeSwitchSim, dial: str, key: str) -> tuple[float, str]:
    """Bridge ``dial`` from a test call; (simulated seconds from the bridge's start to the
    end of the endpoint ``key``'s leg, its cause). A loaded machine can only make the
    leg end later than FreeSWITCH's rule says, never earlier: lower bounds are exact."""
    before = len(sim.endpoint(key).legs)
    call = sim.place_call("dial", context="tests", variables={"dial": dial}).wait(30)
    (bridge,) = [e for e in call.events if e.name == "CHANNEL_EXECUTE" and e.get("Application") == "bridge"]
    rec = sim.endpoint(key).legs[before]
    assert rec.ended_at is not None
    return sim.clock.epoch(rec.ended_at) - int(bridge.get("Event-Date-Timestamp")) / 1e6, rec.cause or ""


@pytest.mark.parametrize("attempt", range(3))  # different offsets within the second
def test_lone_user_leg_ends_no_answer_a_tick_before_leg_timeout(sim: FreeSwitchSim, attempt: int) -> None:
    rang, cause = ring(sim, "[leg_timeout=3]user/101@%s" % DOMAIN, "101@%s" % DOMAIN)
    assert cause == "NO_ANSWER" and 2.0 <= rang < 3.5


def test_legs_rung_together_end_allotted_timeout_after_leg_timeout(sim: FreeSwitchSim) -> None:
    dial = "[leg_timeout=3]user/101@%s,[leg_timeout=3]user/102@%s" % (DOMAIN, DOMAIN)
    rang, cause = ring(sim, dial, "102@%s" % DOMAIN)
    assert cause == "ALLOTTED_TIMEOUT" and 3.0 <= rang < 4.5


def test_lone_gateway_leg_keeps_the_outer_rule(sim: FreeSwitchSim) -> None:
    rang, cause = ring(sim, "[leg_timeout=3]sofia/gateway/pstn/+79160000001", "+79160000001")
    assert cause == "ALLOTTED_TIMEOUT" and 3.0 <= rang < 4.5


@pytest.mark.parametrize("legs", [1, 2])
def test_the_cores_dial_string_rings_a_member_at_least_ring_seconds(sim: FreeSwitchSim, legs: int) -> None:
    members = [Leg("user/%s@%s" % (ext, DOMAIN), 3, variables=(("origination_uuid", "ring-%s-%d" % (ext, legs)),))
               for ext in ("101", "102")[:legs]]
    dial = ring_all(members, max(m.timeout for m in members) + 2)
    for _ in range(2):
        rang, _cause = ring(sim, dial.replace("ring-", "ring%d-" % _), "101@%s" % DOMAIN)
        assert 3.0 <= rang < 4.5
