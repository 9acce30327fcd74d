"""The call-flow state machine: (state, event) -> (new state, actions). No I/O.

``start`` decides what to do with a new call; ``handle`` takes every later event. The
state is a frozen value; nothing is mutated in place.

FreeSWITCH behaviour this relies on (transcripts in shared/freeswitch):
* ``sendmsg execute`` while an application is running does not queue behind it: it runs
  nested inside it at once (P07d). So at most one *blocking* application (bridge,
  playback, record, play_and_get_digits) is in flight; the next is sent only after its
  CHANNEL_EXECUTE_COMPLETE. Instant ones (set, unset, answer) may precede it.
* The bridge outcome is only in variables (``originate_disposition``), never in
  Application-Response (P01-P04); with ``continue_on_fail=true`` the caller stays up
  after a failed bridge, with ``hangup_after_bridge=true`` it is hung up after a
  successful one (P01c).
* When the caller hangs up during ``record``, CHANNEL_HANGUP comes BEFORE the record's
  EXECUTE_COMPLETE, which carries ``record_ms`` (P04): wait for it before finishing.
  ``rxfax`` is waited for the same way: a fax machine hangs up when it has sent the
  document, and the outcome is only in the variables of rxfax's EXECUTE_COMPLETE.
* ``record`` and ``rxfax`` create NO folder (switch_ivr_record_file_event opens the file
  with switch_core_file_open only; only record_session makes folders, with
  switch_dir_make_recursive). Seen on FreeSWITCH 1.10.12: ``record`` into a missing
  folder logs "mod_sndfile.c:281 Error Opening File", hangs up DESTINATION_OUT_OF_ORDER
  in the same millisecond (CHANNEL_HANGUP, then an EXECUTE_COMPLETE without
  ``record_ms``); ``rxfax`` negotiates, then returns ``fax_result_code`` 41 "TIFF/F file
  cannot be opened" with the channel up. Hence flat file names in PBX_RECORDINGS_DIR,
  a folder the FreeSWITCH install creates (freeswitch-conf/README.md).
* ``rxfax`` (mod_spandsp, signalwire/freeswitch src/mod/applications/mod_spandsp/
  mod_spandsp_fax.c, ``phase_e_handler`` and ``mod_spandsp_fax_process_fax``): answers
  the channel if needed, receives until the T.30 session ends (phase E) or the channel
  goes, then sets ``fax_success`` ("1" only for T30_ERR_OK), ``fax_result_code`` /
  ``fax_result_text`` (49 "The call dropped prematurely" when the line went first),
  ``fax_remote_station_id`` and ``fax_document_transferred_pages`` before the app returns.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Mapping

from orchestrator.core.actions import (
    Action,
    AppCompleted,
    Answered,
    Bridged,
    CallerKnown,
    CallInfo,
    CoreEvent,
    Dtmf,
    Execute,
    Finished,
    Hangup,
    HungUp,
    EndOffers,
    Log,
    LookupCaller,
    MembersReserved,
    MembersSeen,
    OfferEnd,
    QueuePosition,
    StoreFax,
    StoreVoicemail,
    Unbridged,
    Wake,
)
from orchestrator.core import departments, offering, sounds
from orchestrator.core.callstate import DONE, ENDING, RUNNING, TALKING, CallState, Context, Decision, blocking
from orchestrator.core.model import CallerMatch, TargetKind
from orchestrator.core.plan import (Announce, Fax, Hold, MenuStep, Offer, Policy, Ring, Step, Voicemail, agent_first,
                                    plan_outbound, plan_target)
from orchestrator.core.routing import Entry, entry_target, find_number, forward_caller_id

__all__ = ["CallState", "Context", "Decision", "Opening", "finish_now", "handle", "opening", "start"]

@dataclass(frozen=True)
class Opening:
    """How a new call is routed before any event: the steps ``start`` runs.

    ``entry`` is None when the call is refused before routing (no tenant, suspended,
    over the limit). ``lookup`` set: a caller rule needs the adapter's answer first
    (``CallerKnown``); ``opening`` runs again with it. The routing explainer
    (``core.explain``) reads the same value.
    """

    steps: tuple[Step, ...]
    entry: Entry | None = None
    log: Log | None = None
    lookup: LookupCaller | None = None


def opening(call: CallInfo, ctx: Context, *, admitted: bool = True, refusal: str = "",
            answers: tuple[CallerKnown, ...] = ()) -> Opening:
    snap = ctx.snapshot
    if snap is None:
        step = Announce(ctx.policy.sound_unknown_number, "no tenant owns %s" % call.destination, "UNALLOCATED_NUMBER", answer=False)
        return Opening((step,), None, Log("unknown number", "warning", {"reason": step.label}))
    if not snap.enabled:
        step = Announce(ctx.policy.sound_unavailable, "tenant %s is suspended" % snap.name, "CALL_REJECTED", answer=False)
        return Opening((step,), None, Log("tenant suspended", "warning", {"reason": step.label}))
    if not admitted:
        step = Announce(ctx.policy.sound_busy_limit, refusal or "concurrent call limit reached", "NORMAL_CIRCUIT_CONGESTION", answer=False)
        return Opening((step,), None, Log("call refused", "warning", {"reason": step.label}))
    entry = entry_target(snap, call, ctx.now_ms, {a.rule_id: a for a in answers})
    verdict = entry.rules
    if verdict is not None and verdict.rule is not None and verdict.pending:
        rule, number = verdict.rule, find_number(snap, call.destination)
        lookup = LookupCaller(ctx.new_id(), rule.id, rule.match.value, verdict.facts.number,
                              number.e164 if number else call.destination, rule.days, rule.crm_url, rule.crm_timeout_ms)
        return Opening((), entry, None, lookup)
    if verdict is not None and verdict.rule is not None and verdict.block:
        target = verdict.target
        sound = target.sound if target is not None and target.kind is TargetKind.ANNOUNCEMENT and target.sound else ctx.policy.sound_unavailable
        step = Announce(sound, "caller blocked by rule '%s'" % verdict.rule.name, "CALL_REJECTED", answer=False)
        return Opening((step,), entry, Log("caller blocked", "info", {"rule": verdict.rule.name, "caller": call.caller_number}))
    if entry.outbound is not None:
        out = entry.outbound
        if not out.number:
            step = Announce(ctx.policy.sound_unavailable, out.note, out.cause or "CALL_REJECTED", answer=False)
            return Opening((step,), entry, Log("outbound call refused", "info", {"reason": out.note}))
        return Opening(tuple(plan_outbound(out.number, out.caller_id, ctx.policy, ctx.new_id)), entry)
    agent = verdict.agent if verdict is not None else None
    if entry.target is None and agent is None:
        step = Announce(ctx.policy.sound_unknown_number, entry.note, "UNALLOCATED_NUMBER", answer=False)
        return Opening((step,), entry, Log("no route", "warning", {"reason": entry.note}))
    policy = call_policy(call, ctx)
    steps = plan_target(entry.target, snap, policy, ctx.new_id)
    if agent is not None and verdict is not None and verdict.rule is not None:
        why = "named by the CRM" if verdict.rule.match is CallerMatch.CRM else "last talked with the caller"
        steps = agent_first(agent, why, steps, snap, policy, ctx.new_id)
    return Opening(tuple(steps), entry)


def call_policy(call: CallInfo, ctx: Context) -> Policy:
    """The deployment's policy with this call's own part: the caller ID its forwarded
    legs show (``routing.forward_caller_id``)."""
    if ctx.snapshot is None:
        return ctx.policy
    return replace(ctx.policy, forward_caller_id=forward_caller_id(ctx.snapshot, call))


def start(call: CallInfo, ctx: Context, *, admitted: bool = True, refusal: str = "") -> Decision:
    """First decision for a new call. ``snapshot`` None means no tenant owns it."""
    state = CallState(call)
    first = opening(call, ctx, admitted=admitted, refusal=refusal)
    if first.entry is None or ctx.snapshot is None:
        return _run_steps(state, list(first.steps), ctx, [first.log] if first.log is not None else [])
    # One multiset instead of three sets: one command and one EXECUTE/EXECUTE_COMPLETE
    # pair instead of three (mod_dptools multiset: "multiset [^^<delim>]<var>=<val>
    # <var2>=<val2>", space-separated by default; none of these values has a space).
    setup: list[Action] = [
        Execute("multiset", "continue_on_fail=true hangup_after_bridge=true pbx_tenant_id=%d" % ctx.snapshot.tenant_id),
    ]
    return _opened(state, first, ctx, setup)


def _opened(state: CallState, first: Opening, ctx: Context, prefix: list[Action]) -> Decision:
    """Run a tenant's opening: ask for a caller lookup, or walk its steps."""
    logs: list[Action] = [first.log] if first.log is not None else []
    if first.lookup is not None:
        return Decision(replace(state, lookup=first.lookup.request_id), tuple(prefix + logs) + (first.lookup,))
    note = first.entry.note if first.entry is not None else ""
    out = first.entry.outbound if first.entry is not None else None
    if out is not None and out.number:
        state = replace(state, outbound_to=out.number, employee_id=out.employee_id)
    return _run_steps(replace(state, lookup="", route=(note,)), list(first.steps), ctx, prefix + logs)


def _caller_known(state: CallState, event: CallerKnown, ctx: Context) -> Decision:
    """A caller lookup answered: route again with it (the call is still unanswered)."""
    if not state.lookup or event.request_id != state.lookup or state.current is not None:
        return Decision(state, ())
    state = replace(state, answers=state.answers + (event,))
    return _opened(state, opening(state.call, ctx, answers=state.answers), ctx, [])


def handle(state: CallState, event: CoreEvent, ctx: Context) -> Decision:
    if state.phase == DONE:
        if isinstance(event, MembersReserved):
            # Taken after the call ended (cannot happen with a synchronous adapter,
            # but never leave a member held): give them back.
            taken = tuple(OfferEnd(e, "cancelled") for e, st in event.statuses.items() if st == "offered")
            return Decision(state, (EndOffers(state.offer.department_id if state.offer else 0, taken),) if taken else ())
        return Decision(state, ())
    if isinstance(event, CallerKnown):
        return _caller_known(state, event, ctx)
    if isinstance(event, HungUp):
        if state.awaiting and state.awaiting_app in ("record", "rxfax"):
            return Decision(replace(state, phase=ENDING, hangup_cause=event.cause), ())
        return _finish(state, event.cause, ctx.now_ms)
    if isinstance(event, Bridged):
        owners = state.current.owners if isinstance(state.current, Ring) else {}
        who = owners.get(event.other_uuid) if not state.outbound_to else state.employee_id
        note = "answered" + (" by employee #%d" % who if who is not None else "")
        ended: list[Action] = []
        offer = state.offer
        if offer is not None and isinstance(state.current, Ring):
            offer, ended = offering.bridged(offer, state.current, event.other_uuid, ctx.now_ms)
        return Decision(replace(state, phase=TALKING, answered_by=who, route=state.route + (note,), offer=offer), tuple(ended))
    if isinstance(event, Unbridged):
        if state.offer is not None:
            offer, ended = offering.talk_ended(state.offer, ctx.now_ms)
            return Decision(replace(state, offer=offer), tuple(ended))
        return Decision(state, ())
    if isinstance(event, (MembersSeen, MembersReserved)):
        return departments.member_answer(state, event, ctx, _run_steps)
    if isinstance(event, Wake):
        return departments.wake(state, ctx, event.freed)
    if isinstance(event, QueuePosition):
        return departments.position_known(state, event, ctx)
    if isinstance(event, Dtmf):
        if isinstance(state.current, Hold) and state.offer is not None:
            return departments.key_pressed(state, event, ctx)
        return Decision(state, ())
    if isinstance(event, Answered):
        return Decision(state, ())
    if isinstance(event, AppCompleted):
        if event.app_id != state.awaiting:
            return Decision(state, ())  # an instant app, or a stale completion
        state = replace(state, awaiting="", awaiting_app="")
        return _completed(state, event, ctx)
    return Decision(state, ())


def finish_now(state: CallState, cause: str, now_ms: int = 0) -> Decision:
    """The channel is gone (HANGUP_COMPLETE or the socket closed) whatever we awaited."""
    if state.phase == DONE:
        return Decision(state, ())
    return _finish(state, cause, now_ms)


# ------------------------------------------------------------------ internals


def _finish(state: CallState, cause: str, now_ms: int) -> Decision:
    route = " -> ".join(state.route)
    ended = offering.abandon(state.offer, now_ms) if state.offer is not None else []
    done = Finished(state.answered_by, cause, route, outbound=bool(state.outbound_to), outbound_to=state.outbound_to)
    return Decision(replace(state, phase=DONE, offer=None), tuple(ended) + (done,))


def _completed(state: CallState, event: AppCompleted, ctx: Context) -> Decision:
    step = state.current
    if state.phase == ENDING:
        # The history keeps the cause FreeSWITCH gave (DESTINATION_OUT_OF_ORDER when
        # record could not open its file), not a cause of our own.
        actions = _voicemail_saved(state, event) + _fax_received(state, event)
        cause = state.hangup_cause or "NORMAL_CLEARING"
        return Decision(replace(state, phase=DONE), tuple(actions) + _finish(state, cause, ctx.now_ms).actions)
    if isinstance(step, Ring):
        disposition = event.variables.get("originate_disposition", "")
        if disposition == "SUCCESS" or state.phase == TALKING:
            # hangup_after_bridge=true: FreeSWITCH hangs the caller up next.
            return Decision(state, ())
        cause = event.variables.get("originate_failed_cause") or disposition or "UNKNOWN"
        state = replace(state, route=state.route + ("%s: not answered (%s)" % (step.label, cause),))
        prefix: list[Action] = [Execute("unset", "pbx_fallback_dial")]
        if step.final:  # an outbound call: the phone gets the carrier's cause (busy ...)
            return Decision(replace(state, plan=()), tuple(prefix) + (Hangup(cause),))
        if state.offer is not None:
            return departments.ring_failed(state, step, event, ctx, prefix, _run_steps)
        return _run_steps(state, list(state.plan), ctx, prefix)
    if isinstance(step, Voicemail):
        if event.app == "playback":
            return _record(state, step, ctx)
        actions = _voicemail_saved(state, event)
        return Decision(replace(state, recording=""), tuple(actions) + (Hangup("NORMAL_CLEARING"),))
    if isinstance(step, Announce):
        return Decision(state, (Hangup(step.cause),))
    if isinstance(step, Fax):
        actions = _fax_received(state, event)
        return Decision(replace(state, recording=""), tuple(actions) + (Hangup("NORMAL_CLEARING"),))
    if isinstance(step, MenuStep):
        return _menu_result(state, step, event, ctx)
    if isinstance(step, Hold):
        return departments.hold_ended(state, step, ctx, _run_steps)
    return Decision(state, ())


def _run_steps(state: CallState, steps: list[Step], ctx: Context, prefix: list[Action]) -> Decision:
    if not steps:
        return Decision(state, tuple(prefix) + (Hangup("NORMAL_CLEARING"),))
    step, rest = steps[0], tuple(steps[1:])
    state = replace(state, current=step, plan=rest, route=state.route + (step.label,), phase=RUNNING)
    actions = list(prefix)
    if isinstance(step, Ring):
        actions.append(Execute("set", "pbx_fallback_dial=%s" % step.dial))
        return blocking(state, actions, "bridge", step.dial, ctx)
    # Sounds reach FreeSWITCH only through sounds.playable: checked against the grammar
    # (no $, blank, quote, backslash or "!"), else the default plays, logged (core.sounds).
    where = (ctx.snapshot.tenant_id if ctx.snapshot else 0, ctx.policy.recordings_dir)
    if isinstance(step, Voicemail):
        greeting, refused = sounds.playable(step.greeting, ctx.policy.sound_voicemail_greeting, "voicemail greeting", *where)
        beep, _ = sounds.playable(ctx.policy.sound_voicemail_beep, "silence_stream://250", "voicemail beep", *where)
        actions += list(refused) + [Execute("answer")]
        return blocking(state, actions, "playback", "file_string://%s!%s" % (greeting, beep), ctx)
    if isinstance(step, Announce):
        sound, refused = sounds.playable(step.sound, ctx.policy.sound_unavailable, "announcement", *where)
        actions += list(refused)
        if step.answer:
            actions.append(Execute("answer"))
        # playback on an unanswered channel pre-answers it (183, early media; P08c).
        return blocking(state, actions, "playback", sound, ctx)
    if isinstance(step, MenuStep):
        return _menu_prompt(state, step, ctx, actions)
    if isinstance(step, Fax):
        return _receive_fax(state, step, ctx, actions)
    if isinstance(step, Offer):
        return departments.start(state, step, ctx, actions, _run_steps)
    raise AssertionError("unknown step %r" % (step,))


def _record(state: CallState, step: Voicemail, ctx: Context) -> Decision:
    box = "general" if step.box_id is None else str(step.box_id)
    tenant = ctx.snapshot.tenant_id if ctx.snapshot else 0
    # A flat name in PBX_RECORDINGS_DIR, which the FreeSWITCH install creates: record
    # creates NO folder (module doc), and FreeSWITCH may run on another host.
    path = "%s/vm-%s-%s-%s.wav" % (ctx.policy.recordings_dir, tenant, box, state.call.uuid)
    # record <path> <max seconds> <silence threshold> <silence hits>: stops after 3 s
    # of silence, or at the limit, or when the caller hangs up.
    state = replace(state, recording=path)
    return blocking(state, [], "record", "%s %d 200 3" % (path, step.max_seconds), ctx)


def _voicemail_saved(state: CallState, event: AppCompleted) -> list[Action]:
    step = state.current
    if event.app != "record" or not isinstance(step, Voicemail) or not state.recording:
        return []
    if "record_ms" not in event.variables:
        # record sets record_ms once the file was open; without it FreeSWITCH could not
        # open the file (and hung the call up with DESTINATION_OUT_OF_ORDER).
        return [Log("voicemail NOT recorded: FreeSWITCH could not open the file; check that the folder exists on "
                    "the FreeSWITCH host and that FreeSWITCH may write there (PBX_RECORDINGS_DIR)", "error",
                    {"box": str(step.box_id), "path": state.recording, "cause": state.hangup_cause or "?"})]
    try:
        duration = int(event.variables.get("record_ms", "0") or 0)
    except ValueError:
        duration = 0
    if duration <= 0:
        return [Log("voicemail left empty", "info", {"box": str(step.box_id)})]
    if step.box_id is None:
        return [Log("voicemail recorded without a box", "warning", {"path": state.recording})]
    return [StoreVoicemail(step.box_id, state.recording, duration, state.call.caller_number)]


# ------------------------------------------------------------------ fax

# spandsp's T30_ERR_FILEERROR, "TIFF/F file cannot be opened": what rxfax reports when
# the TIFF's folder does not exist (FreeSWITCH 1.10.12, after the negotiation; the
# channel stays up).
FAX_FILE_ERROR = "41"


def _receive_fax(state: CallState, step: Fax, ctx: Context, actions: list[Action]) -> Decision:
    tenant = ctx.snapshot.tenant_id if ctx.snapshot else 0
    path = "%s/fax-%s-%s.tif" % (ctx.policy.recordings_dir, tenant, state.call.uuid)  # flat, like voicemail
    actions.append(Execute("answer"))  # rxfax answers by itself too; explicit like voicemail
    return blocking(replace(state, recording=path), actions, "rxfax", path, ctx)


def _int_var(variables: Mapping[str, str], name: str) -> int:
    try:
        return int(variables.get(name, "0") or 0)
    except ValueError:
        return 0


def _fax_received(state: CallState, event: AppCompleted) -> list[Action]:
    """The fax's outcome from rxfax's EXECUTE_COMPLETE variables (mod_spandsp's
    phase_e_handler sets them before the app returns; see the module doc)."""
    step = state.current
    if event.app != "rxfax" or not isinstance(step, Fax) or not state.recording:
        return []
    v = event.variables
    pages = _int_var(v, "fax_document_transferred_pages")
    success = v.get("fax_success") == "1"
    result = "%s %s" % (v.get("fax_result_code", "?"), v.get("fax_result_text", ""))
    if v.get("fax_result_code") == FAX_FILE_ERROR:
        return [Log("fax NOT stored: FreeSWITCH could not open the file; check that the folder exists on the "
                    "FreeSWITCH host and that FreeSWITCH may write there (PBX_RECORDINGS_DIR)", "error",
                    {"box": str(step.box_id), "path": state.recording, "result": result.strip()})]
    if pages <= 0:
        return [Log("fax not received", "warning", {"box": str(step.box_id), "result": result.strip()})]
    if step.box_id is None:
        return [Log("fax received without a box", "warning", {"path": state.recording})]
    return [StoreFax(step.box_id, state.recording, pages, state.call.caller_number, success,
                     _int_var(v, "fax_result_code"), v.get("fax_result_text", ""), v.get("fax_remote_station_id", "").strip())]


# ------------------------------------------------------------------ voice menus


def _menu_prompt(state: CallState, step: MenuStep, ctx: Context, actions: list[Action]) -> Decision:
    menu = ctx.snapshot.menus[step.menu_id] if ctx.snapshot else None
    assert menu is not None
    # The greeting is ONE blank-free field of play_and_get_digits' argument (split on
    # blanks, see core.sounds): only sounds of the grammar get there, else the default.
    where = (ctx.snapshot.tenant_id if ctx.snapshot else 0, ctx.policy.recordings_dir)
    greeting, refused = sounds.playable(menu.greeting, ctx.policy.sound_unavailable, "menu greeting", *where)
    actions += list(refused)
    if step.invalid_count:
        invalid, refused = sounds.playable(menu.invalid_sound, ctx.policy.sound_menu_invalid, "menu invalid_sound", *where)
        actions += list(refused)
        greeting = "file_string://%s!%s" % (invalid, greeting)
    max_digits = 6 if menu.direct_dial else max([len(o.digit) for o in menu.options] or [1])
    actions.append(Execute("answer"))
    # play_and_get_digits <min> <max> <tries> <timeout ms> <terminators> <file>
    #   <invalid file> <var> <regexp> <digit timeout ms>; the result is only in the
    #   variable (P05): absent when nothing was typed. The regexp is matched with
    #   switch_regex_match (PCRE): digits, or "*" alone when that is the back digit.
    regexp = "^(\\d+|\\*)$" if menu.back_digit == "*" else "\\d+"
    arg = "1 %d 1 %d # %s silence_stream://250 pbx_menu_digits %s %d" % (
        max_digits, menu.timeout_seconds * 1000, greeting, regexp, ctx.policy.menu_digit_timeout_ms)
    return blocking(state, actions, "play_and_get_digits", arg, ctx)


def _menu_result(state: CallState, step: MenuStep, event: AppCompleted, ctx: Context) -> Decision:
    snap = ctx.snapshot
    assert snap is not None
    menu = snap.menus[step.menu_id]
    digits = event.variables.get("pbx_menu_digits", "")
    target = None
    if digits and digits == menu.back_digit:
        return _menu_back(state, step, menu.name, ctx)
    if not digits:
        target, note = menu.default_target, "menu %s: no input, default" % menu.name
    else:
        for option in menu.options:
            if option.digit == digits:
                target, note = option.target, "menu %s: pressed %s" % (menu.name, digits)
                break
        else:
            if menu.direct_dial and snap.target_for_extension(digits) is not None:
                target, note = snap.target_for_extension(digits), "menu %s: dialled extension %s" % (menu.name, digits)
            elif step.invalid_count + 1 < menu.max_invalid:
                again = replace(step, invalid_count=step.invalid_count + 1)
                state = replace(state, route=state.route + ("menu %s: invalid %s" % (menu.name, digits),))
                return _run_steps(state, [again] + list(state.plan), ctx, [])
            else:
                target, note = menu.default_target, "menu %s: invalid input, default" % menu.name
    state = replace(state, route=state.route + (note,))
    steps = plan_target(target, snap, call_policy(state.call, ctx), ctx.new_id, step.hops + 1)
    if steps and isinstance(steps[0], MenuStep) and steps[0].menu_id != step.menu_id:
        # A nested menu: remember where the caller came from, for its "back" digit.
        steps[0] = replace(steps[0], came_from=step.came_from + ((step.menu_id, step.hops),))
    return _run_steps(state, steps, ctx, [])


def _menu_back(state: CallState, step: MenuStep, name: str, ctx: Context) -> Decision:
    """The "back" digit: the menu the caller came from, with the hop count it had there
    (walking up and down never runs into the chain limit); at the top, this menu again."""
    if step.came_from:
        (parent_id, hops), came_from = step.came_from[-1], step.came_from[:-1]
        parent = ctx.snapshot.menus.get(parent_id) if ctx.snapshot else None
        if parent is not None:
            again = MenuStep(parent.id, "voice menu %s" % parent.name, 0, hops, came_from)
            state = replace(state, route=state.route + ("menu %s: back" % name,))
            return _run_steps(state, [again] + list(state.plan), ctx, [])
    state = replace(state, route=state.route + ("menu %s: back, at the top: again" % name,))
    return _run_steps(state, [replace(step, invalid_count=0)] + list(state.plan), ctx, [])
