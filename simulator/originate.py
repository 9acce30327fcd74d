"""switch_ivr_originate(): creating, ringing and racing outbound legs.

Behaviour reproduced (transcripts P01-P04, P06, inbound_07-10, and switch_ivr_originate.c):

* Leg channel: CHANNEL_OUTGOING, STATE CS_INIT, CHANNEL_CREATE, CHANNEL_ORIGINATE, STATE
  CS_ROUTING, STATE CS_CONSUME_MEDIA at once; the INVITE (CHANNEL_PROGRESS when the far
  end rings) waits for ``leg_delay_start`` (P03: only the INVITE is delayed).
* Timeouts tick on whole seconds of the clock: ``leg_timeout=N`` and
  ``leg_delay_start=N`` act when floor(now) - floor(start) reaches N+1;
  ``originate_timeout``/``call_timeout`` (default 60) when it reaches N. A LONE
  ``user/`` leg (one leg, no ``|``, no forked_dial) is the blocking originate of
  mod_dptools user_outgoing_channel(): its ``leg_timeout=N`` acts when the difference
  reaches N, with NO_ANSWER (it rings N-1..N s).
* Outcomes: the first leg to answer wins, the others are cancelled LOSE_RACE; the caller
  hanging up cancels every leg ORIGINATOR_CANCEL; leg_timeout -> ALLOTTED_TIMEOUT;
  originate timeout -> NO_ANSWER; a 486 -> USER_BUSY (sip_hangup_disposition=recv_refuse).
  When every leg fails, the cause is that of the FIRST leg in dial-string order (P04:
  USER_BUSY reported although the last leg ended ALLOTTED_TIMEOUT). ``|`` groups are
  tried in order; the last group's cause is the result.
* ``user/U@D``: D unknown or U not in D -> SUBSCRIBER_ABSENT; U not registered ->
  USER_NOT_REGISTERED; no channel is created. Unknown endpoint type ->
  CHAN_NOT_IMPLEMENTED. ``error/CAUSE`` fails with CAUSE.
"""
from __future__ import annotations

import uuid as uuidlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from gevent.event import Event as GEvent

from simulator.dialstring import LegSpec
from simulator.endpoints import Answer, Busy, Endpoint, LegRecord, NoAnswer, Reject
from simulator.profiles import CAUSE_SIP, media_vars, sofia_outbound_answer_vars, sofia_outbound_vars

if TYPE_CHECKING:
    from simulator.channel import Channel
    from simulator.server import FreeSwitchSim


@dataclass
class Leg:
    spec: LegSpec
    ch: Channel | None = None
    cause: str | None = None
    endpoint: Endpoint | None = None
    record: LegRecord | None = None
    answered_at: float | None = None
    dest: str = ""
    unreachable: str | None = None  # cause the far end gives as soon as it is INVITEd
    started: bool = True  # CHANNEL_CREATE fired (a leg_delay_start leg: only once its delay is over)

    @property
    def answered(self) -> bool:
        return self.answered_at is not None or bool(self.ch is not None and self.ch.times["answered"])

    @property
    def pending(self) -> bool:
        return self.ch is not None and self.ch.up and not self.answered


@dataclass
class OriginateResult:
    winner: Leg | None
    cause: str
    legs: list[Leg] = field(default_factory=list)


def resolve(sim: FreeSwitchSim, spec: LegSpec) -> tuple[str, Endpoint | None, str, str | None]:
    """(channel name, endpoint, destination user, failure cause without a channel)."""
    target = spec.target
    kind, _, rest = target.partition("/")
    if kind == "error":
        return "", None, "", (rest or "NORMAL_CLEARING").upper()
    if kind == "user":
        user, _, domain = rest.partition("@")
        domain = domain or sim.default_domain
        ep = sim.directory_users.get("%s@%s" % (user, domain))
        if ep is None or domain not in sim.dir.domains:
            return "", None, user, "SUBSCRIBER_ABSENT"
        if not ep.registered:
            return "", None, user, "USER_NOT_REGISTERED"
        return "sofia/internal/%s@%s" % (user, ep.contact_host), ep, user, None
    if kind == "sofia" and rest.startswith("gateway/"):
        _, gw, number = (rest.split("/", 2) + ["", ""])[:3]
        ep = sim.dir.externals.get(number)
        return "sofia/gateway/%s/%s" % (gw, number), ep, number, None
    if kind == "sofia":
        _, _, who = rest.partition("/")
        ep = sim.dir.find(who)
        return "sofia/%s" % rest, ep, who.split("@", 1)[0], None
    if kind == "loopback":
        return "loopback/%s-a" % rest.split("/", 1)[0], None, rest.split("/", 1)[0], None
    return "", None, "", "CHAN_NOT_IMPLEMENTED"


def create_leg(sim: FreeSwitchSim, spec: LegSpec, caller: Channel | None) -> Leg:
    from simulator.channel import Channel

    name, ep, dest, failure = resolve(sim, spec)
    leg = Leg(spec, endpoint=ep, dest=dest, cause=failure)
    if failure:
        return leg
    v = spec.vars
    uuid = v.get("origination_uuid") or str(uuidlib.uuid4())
    cid_num = v.get("origination_caller_id_number") or (caller.profile["caller_id_number"] if caller else "0000000000")
    cid_name = v.get("origination_caller_id_name") or (caller.profile["caller_id_name"] if caller else "")
    # Without a calling channel (api originate) the profile comes from switch_ivr_originate
    # itself: no username/dialplan, Source 'src/switch_ivr_originate.c' (inbound_09).
    profile = {
        "username": caller.profile["username"] if caller else "",
        "dialplan": caller.profile["dialplan"] if caller else "", "caller_id_name": cid_name,
        "caller_id_number": cid_num, "orig_caller_id_name": cid_name, "orig_caller_id_number": cid_num,
        "callee_id_name": "Outbound Call", "callee_id_number": dest,
        "network_addr": caller.profile["network_addr"] if caller else sim.fs_host, "ani": cid_num,
        "destination_number": dest, "context": caller.profile["context"] if caller else "default",
        "source": "mod_loopback" if name.startswith("loopback/") else (
            "mod_sofia" if caller else "src/switch_ivr_originate.c"),
    }
    ch = Channel(sim, uuid, name, "outbound", profile, hit_dialplan=False)
    sim.register(ch)
    leg.ch = ch
    contact = "%s@%s" % (dest, ep.contact_host) if ep else dest
    ch.set_vars(sofia_outbound_vars(ch, dest, contact, caller, sim.fs_host))
    if spec.target.startswith("user/"):
        # mod_dptools.c user_outgoing_channel() (1.10): the new leg's variables get
        # dialed_user (the directory user id), dialed_domain and, unless the directory's
        # dial-string sets one, presence_id=<user>@<domain>; the calling channel also gets
        # dialed_user / dialed_domain (to expand the dial-string). Explicit [presence_id=]
        # leg variables below still win, as they do in FreeSWITCH.
        domain = spec.target.partition("@")[2] or sim.default_domain
        ch.set_vars([("dialed_user", dest), ("dialed_domain", domain), ("presence_id", "%s@%s" % (dest, domain))])
        if caller is not None:
            caller.set_vars([("dialed_user", dest), ("dialed_domain", domain)])
    if caller is not None:
        ch.link(caller, "originator")
        ch.set_var("call_uuid", caller.uuid)
        for name_ in (caller.variables.get("export_vars") or "").split(","):
            if name_ and name_ in caller.variables:
                ch.set_var(name_, caller.variables[name_])
        ch.set_var("export_vars", caller.variables.get("export_vars"))
    for key, value in v.items():
        if not key.startswith("origination_"):
            ch.set_var(key, value)
    ch.set_vars([("originate_early_media", "false")]
                + ([("originating_leg_uuid", caller.uuid)] if caller else [])
                + [("originate_endpoint", name.split("/", 1)[0])])
    ch.running_state, ch.state = "CS_NONE", "CS_INIT"
    ch.fire("CHANNEL_OUTGOING")
    # A leg with leg_delay_start is created at once (CHANNEL_OUTGOING) but its session
    # starts - CHANNEL_CREATE, CHANNEL_ORIGINATE - only when its delay is over (transcript
    # P03: OUTGOING at +0.04 s, CREATE/ORIGINATE at +3.7 s; checked again on 1.10.12 by
    # tests/realfs/test_realfs_vs_simulator.py); a leg that loses the race before then
    # hangs up without ever firing CHANNEL_CREATE.
    leg.started = _int(v.get("leg_delay_start"), 0) <= 0
    if leg.started:
        start_leg_session(leg)
    sim.spawn(run_bleg, ch)
    if name.startswith("loopback/"):
        sim.start_loopback_peer(ch, spec.target)
    elif ep is None:
        leg.unreachable = "UNALLOCATED_NUMBER" if "/gateway/" in name else "NORMAL_TEMPORARY_FAILURE"
    return leg


def _invite(sim: FreeSwitchSim, leg: Leg, caller: Channel | None, wake: GEvent, ignore_early: bool) -> None:
    """The far end's side of one leg: 180, then what its behaviour says."""
    ch = leg.ch
    assert ch is not None
    if not ch.up:
        return
    if leg.unreachable:
        sim.clock.sleep(0.02)
        fail_leg(leg, leg.unreachable, "recv_refuse")
        wake.set()
        return
    ep = leg.endpoint
    if ep is None:
        # loopback: mod_loopback reports the a-leg ready at once (inbound_03: +OK after
        # 46 ms, CHANNEL_ANSWER only when the b-leg's dialplan answers, 4 s later).
        leg.answered_at = sim.clock.now()
        wake.set()
        return
    rec = LegRecord(ch.uuid, caller.uuid if caller else None, sim.clock.now(), caller_id=ch.profile["caller_id_number"])
    ep.legs.append(rec)
    sim.leg_endpoints[ch.uuid] = ep.key
    leg.record = rec

    def ended(c: Channel) -> None:
        rec.ended_at = sim.clock.now()
        rec.cause = c.hangup_cause
        wake.set()

    ch.on_hangup.append(ended)
    behavior = ep.behavior
    ch.ring_ready()
    if caller is not None and not ignore_early and not caller.times["answered"]:
        caller.ring_ready()
    if isinstance(behavior, NoAnswer):
        return
    sim.clock.sleep(behavior.after)
    if not ch.up or leg.answered_at is not None:
        return
    if isinstance(behavior, Busy):
        fail_leg(leg, "USER_BUSY", "recv_refuse")
    elif isinstance(behavior, Reject):
        fail_leg(leg, behavior.cause.upper(), "recv_refuse")
    elif isinstance(behavior, Answer):
        ch.set_vars(sofia_outbound_answer_vars(ch, leg.dest, "127.0.0.1", ep.port))
        ch.set_vars(media_vars(ch, "127.0.0.1", ep.port + 11000, sim.fs_host))
        ch.set_var("endpoint_disposition", "ANSWER")
        leg.answered_at = sim.clock.now()
        rec.answered_at = leg.answered_at
        ch.answer()
        wake.set()
        if behavior.hangup_after is not None:
            sim.clock.sleep(behavior.hangup_after)
            if ch.up:
                ch.set_vars([("sip_term_status", "200"), ("proto_specific_hangup_cause", "sip:200"),
                             ("sip_term_cause", "16")])
                ch.hangup("NORMAL_CLEARING", "recv_bye")
    wake.set()


def fail_leg(leg: Leg, cause: str, disposition: str) -> None:
    ch = leg.ch
    if ch is None or not ch.up:
        return
    leg.cause = cause
    if disposition == "recv_refuse":
        code = CAUSE_SIP.get(cause, 480)
        ch.set_vars([("sip_invite_failure_status", str(code)), ("sip_term_status", str(code)),
                     ("proto_specific_hangup_cause", "sip:%d" % code)])
    ch.hangup(cause, disposition)


def originate(sim: FreeSwitchSim, groups: list[list[LegSpec]], caller: Channel | None,
              default_timeout: int = 60) -> OriginateResult:
    all_legs: list[Leg] = []
    cause = "NORMAL_CLEARING"
    for group in groups:
        result = _originate_group(sim, group, caller, default_timeout, all_legs, forked=len(groups) > 1)
        all_legs += result.legs
        cause = result.cause
        if result.winner is not None:
            return OriginateResult(result.winner, "SUCCESS", all_legs)
        if caller is not None and not caller.up:
            return OriginateResult(None, "ORIGINATOR_CANCEL", all_legs)
    return OriginateResult(None, cause, all_legs)


def _int(value: str | None, default: int) -> int:
    try:
        return int(value) if value not in (None, "") else default
    except ValueError:
        return default


def start_leg_session(leg: Leg) -> None:
    """The leg's session starts: CHANNEL_CREATE, CHANNEL_ORIGINATE, its first states."""
    ch = leg.ch
    assert ch is not None
    leg.started = True
    ch.set_running_state("CS_INIT")
    ch.fire("CHANNEL_CREATE")
    ch.fire("CHANNEL_ORIGINATE")
    ch.set_running_state("CS_ROUTING")
    ch.set_running_state("CS_CONSUME_MEDIA")


def _originate_group(sim: FreeSwitchSim, group: list[LegSpec], caller: Channel | None,
                     default_timeout: int, earlier: list[Leg], forked: bool = False) -> OriginateResult:
    clock = sim.clock
    start = clock.now()
    wake = GEvent()
    legs = [create_leg(sim, spec, caller) for spec in group]
    created = [lg for lg in legs if lg.ch is not None]
    if caller is not None and created:
        # Set as the legs are created: the caller's CHANNEL_HANGUP while ringing shows them (P01d).
        caller.set_var("originated_legs", leg_entries(earlier + legs, None, with_names=True))
        caller.set_var("originate_signal_bond", created[-1].ch.uuid if created[-1].ch else None)
    gvars = group[0].vars
    timeout = _int(gvars.get("originate_timeout") or gvars.get("call_timeout"), default_timeout)
    overall = clock.tick_deadline(start, timeout) if timeout > 0 else None
    ignore_early = (gvars.get("ignore_early_media") or "").lower() == "true"
    deadlines: dict[int, float] = {}
    timeout_causes: dict[int, str] = {}
    forked = forked or len(group) > 1 or (gvars.get("forked_dial") or "").lower() == "true"
    for i, leg in enumerate(legs):
        if leg.ch is None:
            continue
        lt = _int(leg.spec.vars.get("leg_timeout"), 0)
        if lt > 0 and leg.spec.target.startswith("user/") and not forked:
            # A lone user/ leg: mod_dptools user_outgoing_channel() runs a BLOCKING
            # originate of the directory's dial-string with timelimit = leg_timeout
            # (call_timeout of the calling channel first); that originate gives up when
            # elapsed >= timelimit, i.e. one whole-second tick EARLIER than a leg's own
            # elapsed > leg_timeout, with NO_ANSWER. Several legs (SOF_FORKED_DIAL ->
            # SOF_NOBLOCK) return at once and the outer per-leg check applies.
            # FreeSWITCH 1.10.12: ring_seconds 3 rang 2.1-2.7 s, NO_ANSWER.
            deadlines[i] = clock.tick_deadline(start, lt)
            timeout_causes[i] = "NO_ANSWER"
        elif lt > 0:
            deadlines[i] = clock.tick_deadline(start, lt + 1)
        delay = _int(leg.spec.vars.get("leg_delay_start"), 0)
        at = clock.tick_deadline(start, delay + 1) if delay > 0 else start
        sim.spawn(_delayed_invite, sim, leg, caller, wake, ignore_early, at)
    hangup_hook = (lambda c: wake.set())
    if caller is not None:
        caller.on_hangup.append(hangup_hook)
    try:
        while True:
            if caller is not None and not caller.up:
                for leg in legs:
                    if leg.pending:
                        fail_leg(leg, "ORIGINATOR_CANCEL", "send_cancel")
                return OriginateResult(None, "ORIGINATOR_CANCEL", legs)
            answered = sorted((lg for lg in legs if lg.answered and lg.ch and lg.ch.up),
                              key=lambda lg: lg.ch.times["answered"] if lg.ch else 0)
            if answered:
                winner = answered[0]
                for leg in legs:
                    if leg is not winner and leg.ch is not None and leg.ch.up:
                        fail_leg(leg, "LOSE_RACE", "send_cancel")
                return OriginateResult(winner, "SUCCESS", legs)
            now = clock.now()
            if not any(lg.pending for lg in legs):
                first = next((lg.cause for lg in legs if lg.cause), "NORMAL_CLEARING")
                return OriginateResult(None, first, legs)
            if overall is not None and now >= overall:
                for leg in legs:
                    if leg.pending:
                        fail_leg(leg, "NO_ANSWER", "send_cancel")
                return OriginateResult(None, "NO_ANSWER", legs)
            for i, at in list(deadlines.items()):
                if now >= at:
                    del deadlines[i]
                    if legs[i].pending:
                        fail_leg(legs[i], timeout_causes.get(i, "ALLOTTED_TIMEOUT"), "send_cancel")
            nxt = [t for t in [overall, *deadlines.values()] if t is not None]
            wait = (min(nxt) - now) if nxt else 3600.0
            wake.clear()
            if any(lg.pending for lg in legs) and not (caller is not None and not caller.up):
                clock.wait(wake, max(0.0, wait))
    finally:
        if caller is not None and hangup_hook in caller.on_hangup:
            caller.on_hangup.remove(hangup_hook)


def run_bleg(ch: Channel) -> None:
    """Session of an outbound leg until someone adopts it (api originate): when it is hung
    up (lost race, timeout, the bridge ended) it reports and is destroyed."""
    from simulator.execution import idle

    try:
        idle(ch, None, nested=False, breakable=False, stop=lambda: ch.adopted)
    finally:
        if not ch.adopted:
            ch.finish()
            ch.destroy()


def _delayed_invite(sim: FreeSwitchSim, leg: Leg, caller: Channel | None, wake: GEvent,
                    ignore_early: bool, at: float) -> None:
    if at > sim.clock.now():
        sim.clock.sleep_until(at)
    if leg.ch is not None and leg.ch.up:
        if not leg.started:
            start_leg_session(leg)
        _invite(sim, leg, caller, wake, ignore_early)


def leg_entries(legs: list[Leg], winner: Leg | None, with_names: bool) -> str | None:
    """originate_causes / originated_legs: 'ARRAY::a|:b' for several legs, plain for one."""
    items = []
    for leg in legs:
        if leg.ch is None:
            continue
        if with_names:
            items.append("%s;Outbound Call;%s" % (leg.ch.uuid, leg.dest))
        else:
            cause = "NONE" if leg is winner else (leg.cause or leg.ch.hangup_cause or "NONE")
            items.append("%s;%s" % (leg.ch.uuid, cause))
    if not items:
        return None
    return items[0] if len(items) == 1 else "ARRAY::" + "|:".join(items)
