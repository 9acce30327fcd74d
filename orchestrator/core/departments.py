"""Department steps of a call: offering to members, ringing them, the queue. Pure.

``callflow`` hands these the call's state; ``offering`` holds the offer's own rules.
FreeSWITCH behaviour relied on: ``uuid_break <uuid> all`` ends the hold music's
``playback`` with EXECUTE_COMPLETE ('FILE PLAYED'), after which the next app runs
normally (transcripts P07b/P07c); ``local_stream://`` music plays until broken. An
announcement on hold is one more ``playback`` (a ``file_string://`` list, see
``announcements``): the music is broken, the announcement plays to its end (or is
broken in turn when a member is taken or the caller leaves), then the music starts
again; DTMF events reach us during any playback. ``uuid_break`` only sets CF_BREAK on
the channel (mod_commands ``break_function``) and the playback running clears it: one
arriving when nothing plays would cut the next playback short, so at most one is sent
per playback (``_stop``). A member taken for a caller on hold is bridged nested in the
playing music (P07d; ``member_answer``), which resumes, and is stopped, if the bridge ends
unanswered (``ring_failed``). The music and the announcements reach ``playback`` only through
``core.sounds`` (checked against the sound grammar; the rules relied on are there).
"""
from __future__ import annotations

from dataclasses import replace

from orchestrator.core import announcements, dialstrings, offering, sounds
from orchestrator.core.actions import (Action, AppCompleted, BreakHold, Dtmf, Execute, JoinQueue, LeaveQueue, LookupPosition, MembersReserved,
                                       Log, MembersSeen, QueuePosition, RequestCallback)
from orchestrator.core.callstate import CallState, Context, Decision, RunSteps, blocking
from orchestrator.core.model import Department
from orchestrator.core.offering import OfferRun
from orchestrator.core.plan import Announce, Hold, Offer, Ring

def start(state: CallState, step: Offer, ctx: Context, actions: list[Action], run_steps: RunSteps) -> Decision:
    snap = ctx.snapshot
    dep = snap.departments.get(step.department_id) if snap else None
    run, asks = offering.begin(dep, snap, step.label, ctx.now_ms, ctx.new_id, ctx.rand) if dep and snap else (None, [])
    if run is None:
        state = replace(state, route=state.route + ("%s: nobody logged in" % step.label,))
        return run_steps(state, list(state.plan), ctx, actions + asks)
    return Decision(replace(state, offer=run), tuple(actions + asks))


def member_answer(state: CallState, event: MembersSeen | MembersReserved, ctx: Context, run_steps: RunSteps) -> Decision:
    (run, dep), snap = _queued(state, ctx), ctx.snapshot
    if run is None or snap is None or dep is None or event.request_id != run.request_id:
        return Decision(state, ())
    if isinstance(event, MembersSeen):
        run, asks = offering.seen(run, event, dep, snap, ctx.rand, ctx.new_id)
        return Decision(replace(state, offer=run), tuple(asks))
    run, ring, actions = offering.reserved(run, event, dep, snap, ctx.now_ms, ctx.new_id)
    if ring is not None and run.waiting:
        # Taken for a caller on hold: the bridge is sent while the music plays, without
        # stopping it. FreeSWITCH 1.10.12 runs it nested in the playback: the playback
        # loop runs queued applications at its next frame (switch_ivr_play_file:
        # switch_ivr_parse_all_events each frame; P07d: the bridge started 20 ms later,
        # the playback's EXECUTE_COMPLETE only after the bridge's). Stopping the music
        # first (uuid_break, then the bridge) cost two frames: the playback notices
        # CF_BREAK at its next frame, and the socket app's park loop runs the queued
        # bridge only at ITS next frame (measured with bench/realfs_bench.py: playback
        # done +11 ms after the break, bridge +20 ms after that). Answered, the caller is
        # hung up after the bridge (hangup_after_bridge) and the playback never resumes;
        # unanswered, it resumes: ``ring_failed`` stops it first (``over_hold``).
        waited = (ctx.now_ms - run.since_ms) // 1000
        note = "queue: a member is free after %d s" % waited
        state = replace(state, route=state.route + (note,))
        if not run.announce_next:
            return ring_members(state, replace(run, waiting=False, pending=None, over_hold=True), ring, list(actions), ctx)
        # A uuid_break is already on its way (the music is being stopped for an
        # announcement): the ring starts at the playback's completion (hold_ended).
        return Decision(replace(state, offer=replace(run, pending=ring)), tuple(actions))
    if ring is not None:
        return ring_members(state, run, ring, actions, ctx)
    if run.waiting:
        return Decision(replace(state, offer=run), tuple(actions))  # still nobody: keep waiting
    if offering.can_wait(dep) and (not run.since_ms or ctx.now_ms < run.wait_until_ms):
        return hold(state, run, dep, ctx, actions)
    note = "%s: nobody available" % run.label if run.tried == 0 else "%s: nobody else available" % run.label
    state = replace(state, offer=None, route=state.route + (note,))
    return run_steps(state, list(state.plan), ctx, actions)


def ring_members(state: CallState, run: OfferRun, ring: Ring, actions: list[Action], ctx: Context) -> Decision:
    state = replace(state, offer=run, current=ring)
    actions.append(Execute("set", "pbx_fallback_dial=%s" % ring.dial))
    return blocking(state, actions, "bridge", ring.dial, ctx)


# ------------------------------------------------------------------ department queue


def hold(state: CallState, run: OfferRun, dep: Department, ctx: Context, actions: list[Action]) -> Decision:
    """Nobody is free: the caller waits on hold, keeping their place in the queue.

    The music is one blocking ``playback``; when a member is taken for the caller the
    adapter breaks it (``uuid_break``, P07b/c) and the bridge follows its completion.
    Put on hold for the first time in a department that announces places, the caller
    first hears their place, then the music: ``LookupPosition`` is answered at once and
    ``position_known`` plays it.
    """
    first = not run.since_ms
    since = run.since_ms or ctx.now_ms
    until = run.wait_until_ms or ctx.now_ms + dep.queue.max_wait * 1000
    run = replace(run, waiting=True, since_ms=since, wait_until_ms=until, pending=None, leaving=False, held=(),
                  announce_at_ms=0, announce_next="", announcing="")
    # The music as FreeSWITCH gets it, checked once here (core.sounds): a value that is
    # not a sound of the grammar plays the stock music on hold instead, logged.
    music, refused = sounds.playable(dep.queue.music, sounds.DEFAULT_MUSIC, "queue.music", *_where(ctx))
    hold = Hold(dep.id, music, "queue of %s" % run.label)
    note = "waiting in the queue (up to %d s)" % dep.queue.max_wait if first else "back in the queue"
    state = replace(state, offer=run, current=hold, route=state.route + (note,))
    actions = actions + list(refused) + [JoinQueue(dep.id, since), Execute("answer")]
    if first and dep.queue.announce_position:
        return Decision(state, tuple(actions) + (LookupPosition(dep.id),))
    return _music(state, run, dep, hold.sound, ctx, actions)


def _music(state: CallState, run: OfferRun, dep: Department, sound: str, ctx: Context, actions: list[Action],
           restart: bool = True) -> Decision:
    """The hold music; ``restart``: a new stretch of it, the next announcement is due
    ``announce_every`` seconds from now (otherwise the music only ended by itself)."""
    if restart:
        due = ctx.now_ms + announcements.every_ms(dep.queue) if announcements.has_any(dep.queue) else 0
        run = replace(run, announce_at_ms=due)
    return blocking(replace(state, offer=replace(run, announcing="")), actions, "playback", sound, ctx)


def announce_due_ms(state: CallState) -> int | None:
    """When the caller on hold needs a ``Wake`` for the next announcement (None: no
    announcement is waiting for the clock). The adapter times its wait with it."""
    run = state.offer
    if run is None or not run.waiting or run.pending is not None or run.leaving:
        return None
    return run.announce_at_ms or None


def wake(state: CallState, ctx: Context, freed: bool) -> Decision:
    """The time limit, the next announcement, and (``freed``: a member may be free)
    another look for a member. A look for a member goes first: an announcement still
    due is made on the next ``Wake`` (never two requests answered in one decision)."""
    run, dep = _queued(state, ctx)
    if run is None or dep is None or not run.waiting or run.pending is not None or run.leaving:
        return Decision(state, ())
    if ctx.now_ms >= run.wait_until_ms:
        note = "queue: nobody free within %d s" % dep.queue.max_wait
        run = replace(run, leaving=True)
        return Decision(replace(state, offer=run, route=state.route + (note,)), (LeaveQueue(dep.id),) + _stop(run))
    if freed:
        run, asks = offering.retry(run, dep, ctx.now_ms, ctx.new_id)
        return Decision(replace(state, offer=run), tuple(asks))
    due = announce_due_ms(state)
    if due is None or ctx.now_ms < due:
        return Decision(state, ())
    if dep.queue.announce_position:  # answered at once: position_known
        return Decision(replace(state, offer=replace(run, announce_at_ms=0)), (LookupPosition(dep.id),))
    return _announce(state, run, dep, 0, ctx)


def position_known(state: CallState, event: QueuePosition, ctx: Context) -> Decision:
    """The caller's place, asked for an announcement (first on hold, or due)."""
    run, dep = _queued(state, ctx)
    if (run is None or dep is None or dep.id != event.department_id or not isinstance(state.current, Hold) or not run.waiting
            or run.pending is not None or run.leaving or run.announce_next or run.announcing):
        return Decision(state, ())
    return _announce(state, run, dep, event.position, ctx)


def _announce(state: CallState, run: OfferRun, dep: Department, position: int, ctx: Context) -> Decision:
    """Nothing playing yet (just put on hold): say the place now, then the music.
    Otherwise stop the music (``uuid_break``); ``hold_ended`` plays the announcement."""
    assert isinstance(state.current, Hold)
    first = not state.awaiting
    sound, refused = announcements.sounds(dep.queue, position, periodic=not first, tenant_id=_where(ctx)[0],
                                          recordings_dir=_where(ctx)[1])
    if first and sound:
        return blocking(replace(state, offer=replace(run, announcing=sound, announce_at_ms=0)), list(refused), "playback", sound, ctx)
    if first:
        return _music(state, run, dep, state.current.sound, ctx, list(refused))
    if not sound:  # the place could not be read and there is nothing else to say
        return Decision(replace(state, offer=replace(run, announce_at_ms=ctx.now_ms + announcements.every_ms(dep.queue))), refused)
    return Decision(replace(state, offer=replace(run, announce_next=sound, announce_at_ms=0)), refused + (BreakHold(),))


def key_pressed(state: CallState, event: Dtmf, ctx: Context) -> Decision:
    """A key pressed on hold (music or announcement): the department's callback key turns
    the caller's place into a callback (kept at the same place), stops the playback,
    thanks them and hangs up."""
    run, dep = _queued(state, ctx)
    if (run is None or dep is None or not isinstance(state.current, Hold) or not run.waiting or run.pending is not None
            or run.leaving or not dep.queue.callback_allowed or not event.digit or event.digit != dep.queue.callback_key):
        return Decision(state, ())
    # Only a number we can dial back becomes a callback (its number reaches an
    # originate, dialstrings.e164): an anonymous or malformed Caller-ID keeps its place.
    number = dialstrings.e164(state.call.caller_number, dialstrings.region_of(state.call.destination))
    if number is None:
        return Decision(state, (Log("callback key refused", "warning", {
            "reason": "the caller's number is not a number we can call back (anonymous or not E.164); they stay in the queue",
            "caller": state.call.caller_number[:40]}),))
    thanks = Announce(ctx.policy.sound_callback_requested, "callback requested", "NORMAL_CLEARING", answer=False)
    waited = (ctx.now_ms - run.since_ms) // 1000
    note = "queue: callback key pressed after %d s" % waited
    # leaving: hold_ended runs the plan, which is now only the thank-you announcement.
    state = replace(state, offer=replace(run, leaving=True), plan=(thanks,), route=state.route + (note,))
    ask = RequestCallback(dep.id, run.since_ms, number, state.call.destination)
    return Decision(state, (ask,) + _stop(run))


def hold_ended(state: CallState, step: Hold, ctx: Context, run_steps: RunSteps) -> Decision:
    """The playback on hold completed: a member taken wins, then leaving the queue, then
    the announcement the music was stopped for; otherwise the music (again)."""
    run, dep = _queued(state, ctx)
    if run is not None and run.pending is not None:
        ring = run.pending
        return ring_members(state, replace(run, waiting=False, pending=None), ring, [], ctx)
    if run is None or dep is None or run.leaving:
        return run_steps(replace(state, offer=None), list(state.plan), ctx, [])
    if run.announce_next:
        run = replace(run, announcing=run.announce_next, announce_next="")
        return blocking(replace(state, offer=run), [], "playback", run.announcing, ctx)
    return _music(state, run, dep, step.sound, ctx, [], restart=bool(run.announcing))


def _stop(run: OfferRun | None) -> tuple[Action, ...]:
    """Stop what plays on hold, unless a ``uuid_break`` is already on its way (the music
    is being stopped for an announcement): at most one break per playback, so that none
    is left over for the next one."""
    return () if run is not None and run.announce_next else (BreakHold(),)


def _where(ctx: Context) -> tuple[int, str]:
    """The tenant id and recordings directory a tenant's own sound is played from."""
    return (ctx.snapshot.tenant_id if ctx.snapshot is not None else 0), ctx.policy.recordings_dir


def _queued(state: CallState, ctx: Context) -> tuple[OfferRun | None, Department | None]:
    """The department offer in progress and its department."""
    run, snap = state.offer, ctx.snapshot
    return run, snap.departments.get(run.department_id) if run is not None and snap is not None else None


def ring_failed(state: CallState, step: Ring, event: AppCompleted, ctx: Context, prefix: list[Action], run_steps: RunSteps) -> Decision:
    """Nobody answered the members' bridge: end their offers, then the next member (hunt),
    back on hold (a caller from the queue keeps their place), or the plan goes on."""
    assert state.offer is not None
    if state.offer.over_hold:
        # The bridge ran nested in the hold playback, which resumed when it ended: stop
        # it before anything else is queued ('uuid_break ... all' flushes queued messages).
        prefix = [BreakHold()] + prefix
    offer, ended = offering.failed(replace(state.offer, over_hold=False), step, event.variables, ctx.now_ms)
    prefix = prefix + ended
    dep = ctx.snapshot.departments.get(offer.department_id) if ctx.snapshot else None
    nxt = offering.next_attempt(offer, dep, ctx.now_ms, ctx.new_id) if dep is not None else None
    if nxt is not None:
        offer, asks = nxt
        return Decision(replace(state, offer=offer), tuple(prefix + asks))
    if dep is not None and offer.since_ms and ctx.now_ms < offer.wait_until_ms:
        return hold(state, offer, dep, ctx, prefix)
    return run_steps(replace(state, offer=None), list(state.plan), ctx, prefix)
