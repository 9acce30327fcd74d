"""The ``bridge`` application and ``uuid_bridge`` (mod_dptools, switch_ivr_bridge.c).

Relied on (FACTS in the primitives README):

* bridge: sets originate_disposition=failure / DIALSTATUS=INVALIDARGS first (the
  caller's CHANNEL_HANGUP during ringing still shows them, P01d), originates, then
  sets originated_legs, last_bridge_hangup_cause (the last leg that ended: LOSE_RACE
  in P01, ALLOTTED_TIMEOUT in P04), originate_disposition, DIALSTATUS, originate_causes
  (``ARRAY::`` only with several legs) and on failure originate_failed_cause.
  EXECUTE_COMPLETE always says ``_none_``.
* Failure: continue_on_fail unset -> the caller is hung up with the cause before
  EXECUTE_COMPLETE (P04b); ``true`` (or a list containing the cause) -> the app just
  returns (P04).
* Success: CHANNEL_BRIDGE on the A leg only (Bridge-A/B-Unique-ID), the B leg goes to
  CS_EXCHANGE_MEDIA; when the B leg hangs up: CHANNEL_UNBRIDGE, and with
  hangup_after_bridge=true the caller's CHANNEL_HANGUP before EXECUTE_COMPLETE (P01c),
  else nothing (P01b); when the caller hangs up the B leg is hung up NORMAL_CLEARING.
* uuid_bridge A B on two legs that are busy elsewhere: each leg leaves what it runs
  (park -> UNPARK + EXECUTE_COMPLETE; playback -> 'PLAYBACK ERROR'; socket ends), goes
  CS_HIBERNATE, CS_RESET, CS_SOFT_EXECUTE, fires EXECUTE uuid_bridge; CHANNEL_BRIDGE on
  A only. When either leg hangs up the other is hung up NORMAL_CLEARING (P06, P07a).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from simulator import dialstring
from simulator.execution import idle
from simulator.originate import Leg, leg_entries, originate

if TYPE_CHECKING:
    from simulator.channel import Channel

DIALSTATUS = {"SUCCESS": "SUCCESS", "ORIGINATOR_CANCEL": "CANCEL", "USER_BUSY": "BUSY",
              "NO_ANSWER": "NOANSWER", "INVALID_NUMBER_FORMAT": "INVALIDARGS",
              "INVALID_PROFILE": "INVALIDARGS", "CALL_REJECTED": "DONTCALL"}


def _truthy(value: str | None) -> bool:
    return (value or "").lower() in ("true", "yes", "on", "1")


def bridge_app(caller: Channel, data: str) -> None:
    sim = caller.sim
    caller.set_var("originate_disposition", "failure")
    caller.set_var("DIALSTATUS", "INVALIDARGS")
    try:
        groups = dialstring.parse(data)
    except ValueError:
        groups = []
    if not groups:
        return
    result = originate(sim, groups, caller, default_timeout=60)
    winner = result.winner
    caller.set_var("originated_legs", leg_entries(result.legs, winner, with_names=True))
    ended = sorted((lg for lg in result.legs if lg.ch is not None and not lg.ch.up),
                   key=lambda lg: lg.ch.times["hangup"] if lg.ch else 0)
    if winner is None and ended:
        last = ended[-1]
        assert last.ch is not None
        caller.set_var("originate_signal_bond", last.ch.uuid)
        busy = [lg for lg in ended if lg.ch and lg.ch.variables.get("sip_term_status")]
        if busy and busy[-1].ch is not None:
            code = busy[-1].ch.variables["sip_term_status"]
            caller.set_vars([("sip_invite_failure_status", code),
                             ("last_bridge_proto_specific_hangup_cause", "sip:%s" % code)])
    if ended and result.cause != "ORIGINATOR_CANCEL":
        last_cause = ended[-1].ch.hangup_cause if ended[-1].ch else None
        caller.set_var("last_bridge_hangup_cause", last_cause)
    cause = result.cause
    caller.set_var("originate_disposition", cause)
    caller.set_var("DIALSTATUS", DIALSTATUS.get(cause, cause))
    caller.set_var("originate_causes", leg_entries(result.legs, winner, with_names=False))
    if winner is None or winner.ch is None:
        caller.set_var("originate_failed_cause", cause)
        cof = caller.get_var("continue_on_fail")
        keep = _truthy(cof) or (cof is not None and cause in [c.strip().upper() for c in cof.split(",")])
        if caller.up and not keep:
            caller.hangup(cause, disposition="send_bye" if caller.times["answered"] else "send_refuse")
        return
    _bridge(caller, winner.ch)


def _set_bridge_vars(a: Channel, b: Channel) -> None:
    a.set_vars([("last_bridge_to", b.uuid), ("bridge_channel", b.name), ("bridge_uuid", b.uuid),
                ("signal_bond", b.uuid), ("last_sent_callee_id_name", b.profile["callee_id_name"] or "Outbound Call"),
                ("last_sent_callee_id_number", b.profile["callee_id_number"] or b.profile["destination_number"])])
    b.set_vars([("last_bridge_to", a.uuid), ("bridge_channel", a.name), ("bridge_uuid", a.uuid),
                ("signal_bond", a.uuid), ("last_sent_callee_id_name", a.profile["caller_id_name"]),
                ("last_sent_callee_id_number", a.profile["caller_id_number"])])


def _start(a: Channel, b: Channel, originated: bool = True) -> None:
    now = a.sim.clock.usec()
    if originated:
        # The caller's profile takes the callee id of the answering leg (recorded
        # Caller-Callee-ID-Name 'Outbound Call' / -Number 'a1' on CHANNEL_BRIDGE).
        a.profile["callee_id_name"] = b.profile["callee_id_name"] or "Outbound Call"
        a.profile["callee_id_number"] = b.profile["callee_id_number"] or b.profile["destination_number"]
    a.link(b, "originatee")
    if b.other is None:
        b.link(a, "originator")
    a.times["bridged"] = b.times["bridged"] = now
    a.set_var("signal_bond", b.uuid)  # the rest only after CHANNEL_BRIDGE (recorded P01)
    a.fire("CHANNEL_BRIDGE", before=[("Bridge-A-Unique-ID", a.uuid), ("Bridge-B-Unique-ID", b.uuid)])
    _set_bridge_vars(a, b)


def _unbridge(a: Channel, b: Channel) -> None:
    a.fire("CHANNEL_UNBRIDGE", before=[("Bridge-A-Unique-ID", a.uuid), ("Bridge-B-Unique-ID", b.uuid)])


def _wake_on_hangup(waiter: Channel, other: Channel) -> None:
    other.on_hangup.append(lambda c: waiter.signal())


def _bridge(a: Channel, b: Channel) -> None:
    _wake_on_hangup(a, b)
    if not a.times["answered"]:
        a.answer()  # the bridge answers an unanswered caller (switch_ivr_multi_threaded_bridge)
    _start(a, b)
    b.set_running_state("CS_EXCHANGE_MEDIA")
    a.sim.calls_bridged(a, b)
    idle(a, None, nested=False, breakable=False, stop=lambda: not b.up)
    if not a.up:  # the caller hung up first
        a.set_vars([("sip_term_status", "200"), ("proto_specific_hangup_cause", "sip:200"),
                    ("sip_term_cause", "16"), ("last_bridge_role", "originator"),
                    ("sip_hangup_disposition", "recv_bye"), ("bridge_hangup_cause", a.hangup_cause)])
        _unbridge(a, b)
        b.set_var("last_bridge_role", "originatee")
        b.hangup("NORMAL_CLEARING", disposition="send_bye")
        return
    if b.up:  # interrupted (uuid_transfer / uuid_bridge of the caller)
        _unbridge(a, b)
        b.hangup("NORMAL_CLEARING", disposition="send_bye")
        return
    a.set_vars([("last_bridge_hangup_cause", b.hangup_cause), ("last_bridge_role", "originator"),
                ("bridge_hangup_cause", b.hangup_cause)])
    _unbridge(a, b)
    if _truthy(a.get_var("hangup_after_bridge")):
        a.hangup("NORMAL_CLEARING", disposition="send_bye")


# ------------------------------------------------------------------ uuid_bridge
@dataclass
class UuidBridge:
    a: Channel
    b: Channel
    ready: set[str] = field(default_factory=set)


def uuid_bridge(a: Channel, b: Channel) -> None:
    pair = UuidBridge(a, b)
    # The legs know each other at once: the A leg's events while it leaves its apps
    # (P07a: EXECUTE_COMPLETE playback) already carry Other-Leg-* and a callee number.
    a.link(b, "originatee")
    b.link(a, "originator")
    a.profile["callee_id_number"] = b.profile["orig_caller_id_number"] or b.profile["caller_id_number"]
    for ch, other in ((a, b), (b, a)):
        source = "%d:%s:uuid_br:%s" % (int(ch.sim.clock.epoch()), ch.uuid, other.uuid)
        ch.profile.update(transfer_source=source, profile_index=str(int(ch.profile.get("profile_index") or "1") + 1))
    for ch, role in ((a, "A"), (b, "B")):
        ch.interrupt = ("uuid_bridge", (pair, role))
        ch.break_pending = False
        ch.signal()


def run_uuid_bridge_leg(ch: Channel, payload: tuple[UuidBridge, str]) -> None:
    pair, role = payload
    other = pair.b if role == "A" else pair.a
    sim = ch.sim
    for state in ("CS_HIBERNATE", "CS_RESET", "CS_SOFT_EXECUTE"):
        ch.set_running_state(state)
    ch.set_var("transfer_source", ch.profile["transfer_source"])
    _wake_on_hangup(ch, other)
    pair.ready.add(role)
    other.signal()
    idle(ch, 5.0, nested=False, breakable=False, stop=lambda: len(pair.ready) == 2 or not other.up)
    ch.fire("CHANNEL_EXECUTE", after=[("Application", "uuid_bridge"), ("Application-Data", other.uuid)],
            calling=("switch_ivr_bridge.c", "uuid_bridge_on_soft_execute", 1236 if role == "A" else 1243))
    if role == "A":
        _start(ch, other, originated=False)
        sim.calls_bridged(ch, other)
    else:
        ch.link(other, "originator") if ch.other is None else None
        ch.set_running_state("CS_EXCHANGE_MEDIA")
    idle(ch, None, nested=False, breakable=False, stop=lambda: not other.up)
    ended_by = other.hangup_cause or ch.hangup_cause or "NORMAL_CLEARING"
    # Recorded (inbound_05, P06, P07a): the side whose peer hung up gets
    # last_bridge_hangup_cause; the A side gets last_bridge_role=originator and
    # bridge_hangup_cause.
    if not other.up and ch.up:
        ch.set_var("last_bridge_hangup_cause", ended_by)
    if role == "A":
        ch.set_vars([("last_bridge_role", "originator"), ("bridge_hangup_cause", ended_by)])
        _unbridge(ch, other)
    if ch.up:
        ch.set_running_state("CS_EXECUTE")
        ch.hangup("NORMAL_CLEARING", disposition="send_bye")


__all__ = ["Leg", "bridge_app", "run_uuid_bridge_leg", "uuid_bridge"]
