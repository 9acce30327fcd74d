"""Drive one call: FreeSWITCH events in -> call-flow core -> ESL commands out.

The thin adapter between ``esl.session.CallSession`` (wire) and ``core.callflow``
(decisions). It also holds the call's lease in Redis and writes its history.
"""
from __future__ import annotations

import functools
import itertools
import logging
import time
import uuid as uuidlib
from dataclasses import dataclass, field
from typing import Callable, Iterator, Mapping, Protocol

import gevent.queue
import redis

from orchestrator.core import callflow, departments
from orchestrator.core.actions import (
    Action,
    AppCompleted,
    Answered,
    Bridged,
    CallInfo,
    CallerKnown,
    CoreEvent,
    Dtmf,
    Execute,
    Finished,
    Hangup,
    HungUp,
    BreakHold,
    EndOffers,
    JoinQueue,
    LeaveQueue,
    Log,
    LookupCaller,
    LookupMembers,
    LookupPosition,
    QueuePosition,
    RequestCallback,
    ReserveMembers,
    StoreFax,
    StoreVoicemail,
    Unbridged,
    Wake,
)
from orchestrator.caller_lookups import CallerLookups
from orchestrator.core.plan import Announce, Fax, Hold, MenuStep, Policy, Ring, Voicemail
from orchestrator.core.routing import find_tenant
from orchestrator.errors import CallGone, CallRefused, EslTimeout
from orchestrator.esl import wire
from orchestrator.esl.session import DISCONNECTED, LINGERING, CallSession
from orchestrator import metrics
from orchestrator.member_offers import MemberOffers
from orchestrator.member_wakeups import Wakeups

MEMBERS_FREED = "members-freed"  # put in the call's event queue by the wake-up listener
from orchestrator.store.callbacks import CallbackStore
from orchestrator.store.redis_store import CallStore
from orchestrator.store.routing_cache import RoutingCache

log = logging.getLogger("orchestrator.call")


class CallRecorder(Protocol):
    """Where finished calls and voicemails are written (the database adapter)."""

    def call_finished(self, tenant_id: int, call: CallInfo, finished: Finished, started_ms: int, answered_ms: int | None, ended_ms: int) -> None: ...

    def voicemail(self, tenant_id: int, call: CallInfo, message: StoreVoicemail) -> None: ...

    def fax(self, tenant_id: int, call: CallInfo, fax: StoreFax) -> None: ...


def channel_info(data: Mapping[str, str]) -> CallInfo:
    """CallInfo from the ``connect`` reply (CHANNEL_DATA, already URL-decoded)."""
    entry = data.get("variable_pbx_entry") or ("internal" if data.get("Caller-Context") == "pbx-internal" else "public")
    return CallInfo(
        uuid=data["Unique-ID"],  # CallSession.open() refuses a reply without a usable one
        entry=entry,
        destination=data.get("variable_pbx_dialed") or data.get("Caller-Destination-Number", ""),
        caller_number=data.get("Caller-Caller-ID-Number", ""),
        caller_name=data.get("Caller-Caller-ID-Name", ""),
        domain=(data.get("variable_domain_name") or data.get("variable_sip_from_host") or "").lower(),
        caller_user=data.get("variable_user_name") or data.get("variable_sip_from_user") or "",
        answered=data.get("Answer-State") == "answered",
    )


# The channel events the call handler acts on; the session drops the others unparsed.
WANTED_EVENTS = frozenset({
    "CHANNEL_EXECUTE_COMPLETE", "CHANNEL_ANSWER", "CHANNEL_BRIDGE", "CHANNEL_UNBRIDGE",
    "DTMF", "CHANNEL_HANGUP", "CHANNEL_HANGUP_COMPLETE",
})
# Instant applications: the core never waits for their EXECUTE_COMPLETE (Execute with
# wait=False), so the session drops those unparsed (each carries ~150 headers).
UNWATCHED_APPS = frozenset({"set", "unset", "multiset", "export", "answer", "pre_answer"})


class ChannelVariables(Mapping[str, str]):
    """The ``variable_*`` headers of an event as ``{name: value}``, read on demand.

    The core reads two or three of an EXECUTE_COMPLETE's ~100 variables
    (``originate_disposition``, ``record_ms`` ...); copying and decoding them all was
    7-9% of the orchestrator's CPU. Iterating reads them in full, like the dict it
    replaces."""

    __slots__ = ("_headers",)

    def __init__(self, headers: Mapping[str, str]) -> None:
        self._headers = headers

    def __getitem__(self, name: str) -> str:
        return self._headers["variable_" + name]

    def get(self, name: str, default: str | None = None) -> str | None:  # type: ignore[override]
        return self._headers.get("variable_" + name, default)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and ("variable_" + name) in self._headers

    def __iter__(self) -> Iterator[str]:
        return (k[9:] for k in self._headers if k.startswith("variable_"))

    def __len__(self) -> int:
        return sum(1 for _ in self)


def core_event(event: wire.Event) -> CoreEvent | None:
    name = event.name
    if name == "CHANNEL_EXECUTE_COMPLETE":
        variables = ChannelVariables(event.headers)
        return AppCompleted(event.get("Application-UUID", "") or "", event.get("Application", "") or "", event.get("Application-Response", "") or "", variables)
    if name == "CHANNEL_ANSWER":
        return Answered()
    if name == "CHANNEL_BRIDGE":
        return Bridged(event.get("Other-Leg-Unique-ID", "") or "")
    if name == "CHANNEL_UNBRIDGE":
        return Unbridged()
    if name == "DTMF":
        return Dtmf(event.get("DTMF-Digit", "") or "")
    if name == "CHANNEL_HANGUP":
        return HungUp(event.get("Hangup-Cause", "") or "NORMAL_CLEARING")
    return None


def _nothing() -> None:
    return None


def _now_ms() -> int:
    return int(time.time() * 1000)


def live_facts(state: callflow.CallState) -> dict[str, str]:
    """What the live page shows of a call (pure): ``state`` (menu, queue, ringing, talking,
    voicemail, fax, announcement, routing), ``with`` (the employee ids rung or talking, comma
    separated; or ``tel:<number>`` an employee's call out dialled) and ``department`` (an offer's).
    ``talking`` follows the core's Bridged event (FreeSWITCH's CHANNEL_BRIDGE on the caller's
    leg: the member picked up), ringing the members the offer holds (``offer.held``)."""
    offer, step = state.offer, state.current
    department = str(offer.department_id) if offer is not None else ""
    if state.phase == callflow.TALKING:
        # An employee's call out: answered_by is the employee placing it; they talk with the number.
        # A number is written as tel:NUMBER so that it never reads as an employee id (an
        # emergency number such as 112 is digits only).
        who = ("tel:" + state.outbound_to) if state.outbound_to else (
            str(state.answered_by) if state.answered_by is not None else "")
        return {"state": "talking", "with": who, "department": department}
    if offer is not None and offer.waiting and offer.pending is None:
        return {"state": "queue", "with": "", "department": department}
    if isinstance(step, Ring):
        held = offer.held if offer is not None else tuple(sorted(set(step.owners.values())))
        return {"state": "ringing", "with": ("tel:" + state.outbound_to) if state.outbound_to else ",".join(str(e) for e in held),
                "department": department}
    kinds = ((MenuStep, "menu"), (Voicemail, "voicemail"), (Fax, "fax"), (Announce, "announcement"), (Hold, "queue"))
    kind = next((name for cls, name in kinds if isinstance(step, cls)), "routing")
    return {"state": kind, "with": "", "department": department}


@dataclass
class CallHandler:
    cache: RoutingCache
    calls: CallStore
    recorder: CallRecorder
    policy: Policy
    members: MemberOffers
    wakeups: Wakeups = field(default_factory=Wakeups)
    clock: Callable[[], int] = _now_ms
    hold_check_ms: int = 1000  # a caller on hold looks for a member at least this often
    max_call_ms: int = 6 * 3600 * 1000
    linger_wait_s: float = 10.0
    stats: dict[str, int] = field(default_factory=lambda: {"calls": 0, "errors": 0})
    lookups: CallerLookups | None = None  # caller rules' last agent / CRM (None: unknown callers)
    callbacks: CallbackStore | None = None  # callbacks from the queue (None: not offered)

    def __call__(self, session: CallSession) -> None:
        accepted = time.perf_counter()  # the server calls us as it accepts the socket
        self.stats["calls"] += 1
        try:
            data = session.open()  # connect, myevents, linger: one round trip
        except CallRefused:
            return  # the session logged why (one line) and closes the socket
        except (CallGone, EslTimeout) as exc:
            log.warning("call setup failed before routing: %s", exc)
            return
        call = channel_info(data or {})
        run = _CallRun(self, session, call, accepted)
        try:
            run.run()
        except Exception:  # noqa: BLE001 - one call's bug must not take the server down
            self.stats["errors"] += 1
            log.exception("call %s failed; FreeSWITCH continues with the dialplan fallback", call.uuid)
        finally:
            run.release()


class _CallRun:
    """The per-call loop. Lives for one call only; holds no routing decisions."""

    def __init__(self, handler: CallHandler, session: CallSession, call: CallInfo, accepted: float = 0.0) -> None:
        self.h = handler
        self.session = session
        self.call = call
        self.tenant_id: int | None = None
        self.started_ms = handler.clock()
        self.answered_ms: int | None = None
        self.admitted = False
        self.finished: Finished | None = None
        self.finished_ms = 0
        self.gone = False
        counter = itertools.count(1)
        prefix = uuidlib.uuid4().hex[:12]
        self.new_id = lambda: "%s-%s-%04d" % (call.uuid[:8] or "call", prefix, next(counter))
        self.extra = {"call_uuid": call.uuid, "tenant_id": "-"}
        self.hold_key: tuple[int, int] | None = None  # (department, place) while on hold
        self.live: dict[str, str] = {}  # the live facts last written (live_facts)
        self._freed = self._member_freed
        # Metrics (perf_counter s): socket accepted, until the first sendmsg; a free-member
        # notice's arrival, until this caller's bridge (or the end of its handling).
        self.accepted: float | None = accepted or None
        self.freed_at: float | None = None

    def _member_freed(self) -> None:
        if self.freed_at is None:
            self.freed_at = time.perf_counter()
        self.session.events.put(MEMBERS_FREED)

    def log(self, level: int, message: str, *args: object, **fields: object) -> None:
        extra = dict(self.extra)
        extra.update({k: str(v) for k, v in fields.items()})
        suffix = " ".join("%s=%s" % kv for kv in extra.items())
        log.log(level, message + " [" + suffix + "]", *args, extra={"pbx": extra})

    # ------------------------------------------------------------ decisions

    def run(self) -> None:
        h = self.h
        self.tenant_id, snapshot = h.cache.route(functools.partial(find_tenant, call=self.call))
        if snapshot is not None:
            self.extra["tenant_id"] = str(snapshot.tenant_id)
        admitted, refusal = True, ""
        if snapshot is not None and snapshot.enabled:
            admitted, refusal = self._admit(snapshot.tenant_id, snapshot.max_concurrent_calls)
        ctx = callflow.Context(snapshot, h.policy, h.clock(), self.new_id)
        self.snapshot = snapshot
        self.log(logging.INFO, "call from %s to %s (%s)", self.call.caller_number, self.call.destination, self.call.entry)
        state = self._hold_changed(self.settle(callflow.start(self.call, ctx, admitted=admitted, refusal=refusal)))
        deadline = self.started_ms + h.max_call_ms
        renew_every_ms = max(1000, min(h.calls.lease_ms, h.members.agents.lease_ms) // 3)
        last_renew = h.clock()
        while True:
            now = h.clock()
            if now - last_renew >= renew_every_ms:
                self._renew()
                offer = state.offer
                if offer is not None and (offer.held or offer.waiting) and self.tenant_id is not None:
                    h.members.renew(self.tenant_id, self.call.uuid, offer.held, offer.department_id if offer.since_ms else None)
                last_renew = now
            if self.finished is not None and now - self.finished_ms > h.linger_wait_s * 1000:
                self.log(logging.WARNING, "no CHANNEL_HANGUP_COMPLETE %.0f s after the call ended; closing", h.linger_wait_s)
                return
            if now > deadline:
                self.log(logging.ERROR, "call exceeded %d ms; hanging up", h.max_call_ms)
                self.settle(callflow.Decision(state, (Hangup("ALLOTTED_TIMEOUT"),)))
                deadline = now + 60_000
            wait_s = min(renew_every_ms / 1000.0, h.linger_wait_s)
            if self.hold_key is not None:
                wait_s = min(wait_s, h.hold_check_ms / 1000.0)
            # An announcement on hold is due at a time the core chose: wake for it then,
            # not up to a periodic check later (no Redis call unless it is due).
            due = departments.announce_due_ms(state) if self.hold_key is not None else None
            announce = due is not None and (due - now) / 1000.0 < wait_s
            if due is not None and announce:
                wait_s = max(0.0, (due - now) / 1000.0)
            try:
                item = self.session.events.get(timeout=wait_s)
            except gevent.queue.Empty:
                if self.hold_key is not None:  # the periodic check: time limit, lost notices
                    # The first in line also looks for a member (a lost notice costs a
                    # second at most); the others only check the queue's time limit. The
                    # announcement's wake-up only runs the core's timers.
                    first = not announce and self.tenant_id is not None and self.hold_key is not None and self.h.wakeups.is_first(self.tenant_id, self.hold_key[0], self._freed)
                    state = self._hold_changed(self.settle(callflow.handle(state, Wake(freed=first), self._ctx())))
                continue
            ctx = callflow.Context(snapshot, h.policy, h.clock(), self.new_id)
            if item == MEMBERS_FREED:
                state = self._hold_changed(self.settle(callflow.handle(state, Wake(freed=True), ctx)))
                self.freed_at = None  # no bridge came of this notice: the next one starts anew
                continue
            if item == LINGERING:
                continue
            if item == DISCONNECTED:
                self.gone = True
                self.settle(callflow.finish_now(state, "SOCKET_GONE", h.clock()))
                return
            assert isinstance(item, wire.Event)
            if item.name == "CHANNEL_ANSWER" and self.answered_ms is None:
                self.answered_ms = h.clock()
            if item.name == "CHANNEL_HANGUP_COMPLETE":
                self.settle(callflow.finish_now(state, item.get("Hangup-Cause", "NORMAL_CLEARING") or "NORMAL_CLEARING", h.clock()))
                return
            event = core_event(item)
            if event is None:
                continue
            state = self._hold_changed(self.settle(callflow.handle(state, event, ctx)))

    def _ctx(self) -> callflow.Context:
        return callflow.Context(self.snapshot, self.h.policy, self.h.clock(), self.new_id)

    def _hold_changed(self, state: callflow.CallState) -> callflow.CallState:
        """Listen for free members while the caller is on hold (and only then)."""
        offer = state.offer
        on_hold = offer is not None and offer.waiting and offer.pending is None
        key = (offer.department_id, offer.since_ms) if on_hold and offer is not None else None
        if key != self.hold_key and self.tenant_id is not None:
            if self.hold_key is not None:
                self.h.wakeups.unregister(self.tenant_id, self.hold_key[0], self._freed)
            if key is not None:
                self.h.wakeups.register(self.tenant_id, key[0], key[1], self._freed)
            self.hold_key = key
        self._publish(state)
        return state

    def _publish(self, state: callflow.CallState) -> None:
        """The call's live facts (``live_facts``) into its Redis hash when they change: one
        write (the lease renewal carrying them) per change, after the decision's commands
        were sent, never before the first one."""
        if not self.admitted or self.tenant_id is None:
            return
        facts = live_facts(state)
        if facts == self.live:
            return
        self.live = facts
        now = self.h.clock()
        try:
            self.h.calls.renew(self.tenant_id, self.call.uuid, now, {**facts, "state_ms": str(now)})
        except redis.RedisError as exc:
            self.log(logging.WARNING, "could not write the call's live state: %s", exc)

    def settle(self, decision: callflow.Decision) -> callflow.CallState:
        """Carry out a decision's actions; member requests are answered at once and
        their answers handed back to the core, until only FreeSWITCH work remains."""
        pending = [decision]
        state = decision.state
        while pending:
            d = pending.pop(0)
            state = d.state
            for action in d.actions:
                answer = self.apply(action)
                if answer is not None:
                    ctx = callflow.Context(self.snapshot, self.h.policy, self.h.clock(), self.new_id)
                    pending.append(callflow.handle(state, answer, ctx))
        # Commands were written as they were decided, without waiting for their replies
        # in between (CallSession.post): collect the replies once, now.
        self._send(self.session.wait_replies, "the commands' replies")
        return state

    def apply(self, action: Action) -> CoreEvent | None:
        """Carry out one action; a member request or a caller lookup returns the core
        event answering it."""
        if isinstance(action, (LookupMembers, ReserveMembers, EndOffers)):
            return self._members(action)
        if isinstance(action, LookupCaller):
            return self._lookup(action)
        if isinstance(action, LookupPosition):
            if self.tenant_id is None:  # cannot happen: a queue exists only for a tenant's call
                return QueuePosition(action.department_id, 0)
            return self.h.members.position(self.tenant_id, self.call.uuid, action)
        if isinstance(action, (JoinQueue, LeaveQueue)):
            if self.tenant_id is not None:
                self.h.members.queue(self.tenant_id, self.call.uuid, action)
            return None
        if isinstance(action, RequestCallback):
            self._callback(action)
            return None
        if isinstance(action, BreakHold):
            # P07b/P07c: uuid_break <own uuid> all from the call's own socket ends the hold
            # music (or the playback resumed after a bridge nested in it failed,
            # core.departments.ring_failed). Its reply is awaited (one local round trip)
            # before anything else is written: FreeSWITCH runs an api command before it
            # reads the next one, but a peer running api commands concurrently (the
            # simulator does) could let the 'all' flush remove what was queued behind it.
            self._send(functools.partial(self.session.send, "api uuid_break %s all" % self.call.uuid), "uuid_break")
            return None
        if isinstance(action, Execute):
            self._send(functools.partial(self.session.execute, action.app, action.arg, action.app_id, wait=False), action.app)
            if self.accepted is not None:
                metrics.ROUTING.observe(time.perf_counter() - self.accepted)
                self.accepted = None
            if self.freed_at is not None and action.app == "bridge":
                metrics.REOFFER.observe(time.perf_counter() - self.freed_at)
                self.freed_at = None
        elif isinstance(action, Hangup):
            self._send(functools.partial(self.session.hangup, action.cause, wait=False), "hangup")
        elif isinstance(action, Log):
            level = {"warning": logging.WARNING, "error": logging.ERROR}.get(action.level, logging.INFO)
            self.log(level, action.message, **dict(action.fields))
        elif isinstance(action, StoreVoicemail):
            if self.tenant_id is not None:
                self._record(functools.partial(self.h.recorder.voicemail, self.tenant_id, self.call, action), "voicemail")
        elif isinstance(action, StoreFax):
            if self.tenant_id is not None:
                self.log(logging.INFO, "fax received: %d page(s), %s", action.pages, "complete" if action.success else action.result_text)
                self._record(functools.partial(self.h.recorder.fax, self.tenant_id, self.call, action), "fax")
        elif isinstance(action, Finished):
            self.finished = action
            self.finished_ms = self.h.clock()
            self.log(logging.INFO, "call finished: %s; route: %s", action.hangup_cause, action.route)
            if self.tenant_id is not None:
                ended = self.h.clock()
                self._record(functools.partial(self.h.recorder.call_finished, self.tenant_id, self.call, action, self.started_ms, self.answered_ms, ended), "history")
        return None

    def _members(self, action: LookupMembers | ReserveMembers | EndOffers) -> CoreEvent | None:
        members, tenant_id = self.h.members, self.tenant_id
        if tenant_id is None:  # cannot happen: offers exist only for a tenant's call
            return None
        if isinstance(action, LookupMembers):
            return members.lookup(tenant_id, action)
        if isinstance(action, ReserveMembers):
            # A caller on hold who is looking is out of the wake-up line until it is
            # waiting again (``_hold_changed`` after this decision): a notice published
            # while its request or the uuid_break that follows is in flight (its own
            # reserve's "<tenant>:<dept>:<count>", say) must reach the next in line,
            # not this caller, who would ignore it.
            if self.hold_key is not None:
                self.h.wakeups.unregister(tenant_id, self.hold_key[0], self._freed)
                self.hold_key = None
            answer = members.reserve(tenant_id, self.call.uuid, action)
            taken = [str(e) for e, st in answer.statuses.items() if st == "offered"]
            metrics.OFFERS.inc(len(taken))
            self.log(logging.INFO, "offer to members %s", ",".join(taken) or "(none available)", department=action.department_id)
            return answer
        members.end(tenant_id, self.call, action)
        return None

    def _callback(self, action: RequestCallback) -> None:
        if self.tenant_id is None or self.h.callbacks is None:
            self.log(logging.WARNING, "callback requested but callbacks are not wired; the caller's place is lost")
            return
        try:
            cb = self.h.callbacks.request(self.tenant_id, action.department_id, self.call.uuid, action.since_ms,
                                          action.caller_number, action.dialed)
        except redis.RedisError as exc:
            self.log(logging.ERROR, "callback could not be stored: %s", exc, department=action.department_id)
            return
        except ValueError as exc:  # not a number we may dial (the core refuses these first)
            self.log(logging.WARNING, "callback refused: %s", exc, department=action.department_id)
            return
        self.log(logging.INFO, "callback %s requested by %s", cb, action.caller_number, department=action.department_id)

    def _lookup(self, action: LookupCaller) -> CallerKnown:
        """A caller rule's lookup, answered within its own time limit (caller_lookups)."""
        started = self.h.clock()
        if self.h.lookups is None or self.tenant_id is None or self.snapshot is None:
            answer = CallerKnown(action.request_id, action.rule_id, note="lookups are not configured")
        else:
            answer = self.h.lookups.answer(self.tenant_id, self.snapshot.sip_domain, self.call.caller_number, action)
        self.log(logging.INFO, "caller lookup (%s): %s", action.source, answer.note, took_ms=self.h.clock() - started)
        return answer

    def _send(self, fn: Callable[[], None], what: str) -> None:
        if self.gone:
            return
        try:
            fn()
        except CallGone as exc:
            self.gone = True
            self.log(logging.INFO, "call gone while sending %s: %s", what, exc)
        except EslTimeout as exc:
            self.log(logging.ERROR, "FreeSWITCH did not acknowledge %s: %s", what, exc)

    def _record(self, fn: Callable[[], None], what: str) -> None:
        try:
            fn()
        except Exception as exc:  # noqa: BLE001 - a history write must not break the call
            self.log(logging.ERROR, "could not write %s: %s", what, exc)

    # ------------------------------------------------------------ lease

    def _admit(self, tenant_id: int, limit: int) -> tuple[bool, str]:
        facts = {"caller": self.call.caller_number, "destination": self.call.destination, "entry": self.call.entry, "started_ms": str(self.started_ms)}
        try:
            result = self.h.calls.admit(tenant_id, self.call.uuid, self.h.clock(), limit, facts)
        except redis.RedisError as exc:
            # Never refuse a call because Redis is away: the limit is a safeguard.
            self.log(logging.WARNING, "Redis unavailable, admitting without the limit check: %s", exc)
            return True, ""
        self.admitted = result.admitted
        if not result.admitted:
            return False, "tenant limit of %d concurrent calls reached" % limit
        return True, ""

    def _renew(self) -> None:
        if not self.admitted or self.tenant_id is None:
            return
        try:
            self.h.calls.renew(self.tenant_id, self.call.uuid, self.h.clock())
        except redis.RedisError as exc:
            self.log(logging.WARNING, "could not renew the call's lease: %s", exc)

    def release(self) -> None:
        if self.hold_key is not None and self.tenant_id is not None:
            self.h.wakeups.unregister(self.tenant_id, self.hold_key[0], self._freed)
            self.hold_key = None
        self._freed = _nothing  # the lambda held self: freed now, not by the cycle collector
        if self.admitted and self.tenant_id is not None:
            try:
                self.h.calls.release(self.tenant_id, self.call.uuid)
            except redis.RedisError as exc:
                self.log(logging.WARNING, "could not release the call's lease (it expires by itself): %s", exc)
