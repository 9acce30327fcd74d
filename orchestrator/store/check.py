"""Consistency of one tenant's live state in Redis (``pbx-inspect check``): what is read,
what counts as a fault, and how each fault is repaired with the store's own operations.

What is read (``read_state``, one tenant; key names stay in ``store.*``):

* live calls ``{t:T}:calls`` (call uuid -> lease expiry, ms),
* members ``{t:T}:agent:<emp>``: the offer (call uuid or ``cb:<id>``), its lease
  ``offer_until`` and department ``offer_dept``; busy channels ``{t:T}:agent:<emp>:ch``,
* queues ``{t:T}:queue:<dept>`` with their leases ``{t:T}:queue:<dept>:lease``,
* open callbacks ``{t:T}:callback:<id>`` and talking ones ``{t:T}:callbacks:talking``.

Faults (``find_faults``, pure: state + the channels FreeSWITCH has, or None when it could
not be asked). ``now`` is Redis's clock (``TIME``), the clock every lease is written on
except the calls' (the orchestrator's clock, NTP-close to Redis's).

Redis alone can tell (always checked):

    call_lease_expired        a live-call entry whose lease ended (its orchestrator died)
    offer_lease_expired       a member's offer whose lease ended
    queue_lease_expired       a queue entry whose lease ended (caller's orchestrator died)
    callback_dialing_expired  a callback left ``dialing`` past its lease (its job was lost)

Only FreeSWITCH can tell (checked only with ``channels`` known; never guessed):

    call_without_channel      a live-call entry (lease running) with no channel
    offer_without_call        a member offered a call whose channel is gone
    talk_leg_gone             a member held by a bridged callback whose leg is gone
    busy_without_channel      a member marked busy on a channel that is gone
    queue_caller_gone         a caller in a queue whose channel is gone

Redis alone, for callback offers: ``offer_without_callback``: a member offered
``cb:<id>`` while that callback is neither being dialled nor talking.

Repairs (``Repairs.fix``) are the same operations the orchestrator, the dispatcher and
the worker use, so freed members get the same treatment: ``CallStore.release``;
``AgentStore.release`` with outcome ``free`` (offer ended without an answer: no wrap-up,
no statistics, members-free notice published by the script); for a talk whose leg is
gone the dispatcher's own ending (``end_talk`` + ``answered``: wrap-up from now, talk time
in the statistics); ``AgentStore.channel_down``; ``AgentStore.leave_queue``;
``CallbackStore.sweep`` (back at its place). A repair re-reads what it changes first
(the Lua scripts only end an offer still held by that call), so a state that moved on
meanwhile is left alone.
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable

import redis

from orchestrator.store.agents import (
    AgentStore,
    Release,
    agent_key,
    channels_key,
    queue_key,
    queue_lease_key,
)
from orchestrator.store.callbacks import Callback, CallbackStore, Talk, member
from orchestrator.store.redis_store import CallStore, calls_key, tenant_tag

log = logging.getLogger("orchestrator.check")

REDIS_KINDS = ("call_lease_expired", "offer_lease_expired", "queue_lease_expired", "callback_dialing_expired",
               "offer_without_callback")
FREESWITCH_KINDS = ("call_without_channel", "offer_without_call", "talk_leg_gone", "busy_without_channel",
                    "queue_caller_gone")
CALLBACK_PREFIX = "cb:"


def _s(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _int(value: object) -> int:
    try:
        return int(float(_s(value)))
    except (TypeError, ValueError):
        return 0


def scan_ids(client: redis.Redis, tenant_id: int, kind: str) -> list[int]:
    """Ids in the tenant's ``{t:T}:<kind>:<id>`` and ``{t:T}:<kind>:<id>:...`` keys
    (``agent``: members, also those with only busy channels; ``queue``: departments),
    found with SCAN (never KEYS)."""
    pattern = "%s:%s:*" % (tenant_tag(tenant_id).replace("{", "\\{").replace("}", "\\}"), kind)
    ids = set()
    for key in client.scan_iter(match=pattern, count=500):
        tail = _s(key).split(":%s:" % kind, 1)[1].split(":", 1)[0]
        if tail.isdigit():
            ids.add(int(tail))
    return sorted(ids)


def redis_now_ms(client: redis.Redis) -> int:
    sec, usec = client.time()  # type: ignore[misc]
    return int(sec) * 1000 + int(usec) // 1000


@dataclass(frozen=True)
class Offer:
    call: str  # call uuid, or cb:<id> for a callback
    until_ms: int
    department_id: int


@dataclass(frozen=True)
class LiveState:
    """One tenant's live state as Redis held it at ``now_ms`` (Redis's clock)."""

    tenant_id: int
    now_ms: int
    calls: dict[str, int] = field(default_factory=dict)  # call uuid -> lease expiry
    offers: dict[int, Offer] = field(default_factory=dict)  # employee id -> offer
    channels: dict[int, dict[str, int]] = field(default_factory=dict)  # employee id -> {channel uuid: expiry}
    queues: dict[int, list[tuple[str, int]]] = field(default_factory=dict)  # dept -> [(entry, lease expiry; 0 none)]
    callbacks: dict[str, Callback] = field(default_factory=dict)  # open callbacks by id
    talks: dict[str, Talk] = field(default_factory=dict)  # talking callbacks by id

    def channel_uuids(self) -> set[str]:
        """Every channel uuid whose existence in FreeSWITCH some check depends on."""
        out = {uuid for uuid, until in self.calls.items() if until > self.now_ms}
        out |= {o.call for o in self.offers.values() if o.until_ms > self.now_ms and not o.call.startswith(CALLBACK_PREFIX)}
        out |= {uuid for chans in self.channels.values() for uuid, until in chans.items() if until > self.now_ms}
        out |= {entry for q in self.queues.values() for entry, until in q
                if until > self.now_ms and not entry.startswith(CALLBACK_PREFIX)}
        out |= {t.agent_uuid for t in self.talks.values()}
        out |= {leg for cb in self.lost_dialing() for leg in cb.legs}
        return out

    def lost_dialing(self) -> list[Callback]:
        """Callbacks left ``dialing`` past their lease (their job was lost)."""
        return [cb for cb in self.callbacks.values() if cb.status == "dialing" and cb.until_ms <= self.now_ms]


@dataclass(frozen=True)
class Fault:
    kind: str
    subject: str  # the call / channel uuid, queue entry or callback id concerned
    detail: str
    employee_id: int | None = None
    department_id: int | None = None

    @property
    def key(self) -> tuple[str, str, int | None, int | None]:
        return (self.kind, self.subject, self.employee_id, self.department_id)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def read_state(client: redis.Redis, tenant_id: int) -> LiveState:
    """The tenant's live state (a few round trips; SCAN for members and queues)."""
    now = redis_now_ms(client)
    emps = scan_ids(client, tenant_id, "agent")
    deps = scan_ids(client, tenant_id, "queue")
    pipe = client.pipeline(transaction=False)
    pipe.zrange(calls_key(tenant_id), 0, -1, withscores=True)
    for emp in emps:
        pipe.hmget(agent_key(tenant_id, emp), "offer", "offer_until", "offer_dept")
        pipe.zrange(channels_key(tenant_id, emp), 0, -1, withscores=True)
    for dep in deps:
        pipe.zrange(queue_key(tenant_id, dep), 0, -1, withscores=True)
        pipe.zrange(queue_lease_key(tenant_id, dep), 0, -1, withscores=True)
    out = pipe.execute()
    calls = {_s(k): int(v) for k, v in out[0]}
    offers: dict[int, Offer] = {}
    channels: dict[int, dict[str, int]] = {}
    for i, emp in enumerate(emps):
        offer, until, dept = out[1 + 2 * i]
        if offer is not None and _s(offer):
            offers[emp] = Offer(_s(offer), _int(until), _int(dept))
        chans = {_s(k): int(v) for k, v in out[2 + 2 * i]}
        if chans:
            channels[emp] = chans
    base = 1 + 2 * len(emps)
    queues: dict[int, list[tuple[str, int]]] = {}
    for j, dep in enumerate(deps):
        rows, leases = out[base + 2 * j], out[base + 2 * j + 1]
        lease = {_s(k): int(v) for k, v in leases}
        if rows:
            queues[dep] = [(_s(k), lease.get(_s(k), 0)) for k, _ in rows]
    callbacks = CallbackStore(client)
    return LiveState(
        tenant_id, now, calls, offers, channels, queues,
        callbacks={cb.id: cb for cb in callbacks.open(tenant_id)},
        talks={t.callback_id: t for t in callbacks.talks(tenant_id)},
    )


def find_faults(state: LiveState, gone_channels: set[str] | None) -> list[Fault]:
    """The faults of ``state``. ``gone_channels``: the channel uuids FreeSWITCH was asked
    about and does not have; None when it could not be asked: then only what Redis alone
    tells. A uuid FreeSWITCH was not asked about is never taken for gone."""
    now = state.now_ms
    faults: list[Fault] = []

    def gone(uuid: str) -> bool:
        return gone_channels is not None and uuid in gone_channels

    for uuid, until in sorted(state.calls.items()):
        if until <= now:
            faults.append(Fault("call_lease_expired", uuid, "live-call entry whose lease ended %d s ago" % ((now - until) // 1000)))
        elif gone(uuid):
            faults.append(Fault("call_without_channel", uuid, "live-call entry with no channel in FreeSWITCH"))
    for emp, offer in sorted(state.offers.items()):
        if offer.until_ms <= now:
            faults.append(Fault("offer_lease_expired", offer.call, "offer whose lease ended %d s ago" % ((now - offer.until_ms) // 1000),
                                emp, offer.department_id))
        elif offer.call.startswith(CALLBACK_PREFIX):
            cb_id = offer.call[len(CALLBACK_PREFIX):]
            talk = state.talks.get(cb_id)
            cb = state.callbacks.get(cb_id)
            if talk is not None and talk.employee_id == emp:
                if gone(talk.agent_uuid):
                    faults.append(Fault("talk_leg_gone", talk.agent_uuid, "held by callback %s whose leg is gone from FreeSWITCH" % cb_id,
                                        emp, talk.department_id))
            elif cb is None or cb.status != "dialing":
                faults.append(Fault("offer_without_callback", offer.call, "offered callback %s, which is neither being dialled nor talking"
                                    % cb_id, emp, offer.department_id))
        elif gone(offer.call):
            faults.append(Fault("offer_without_call", offer.call, "offered a call that has no channel in FreeSWITCH", emp, offer.department_id))
    for emp, chans in sorted(state.channels.items()):
        for uuid, until in sorted(chans.items()):
            if until > now and gone(uuid):
                faults.append(Fault("busy_without_channel", uuid, "marked busy on a channel FreeSWITCH does not have", emp))
    for dep, entries in sorted(state.queues.items()):
        for entry, until in entries:
            if until <= now:
                faults.append(Fault("queue_lease_expired", entry, "queue entry whose lease ended", None, dep))
            elif not entry.startswith(CALLBACK_PREFIX) and gone(entry):
                faults.append(Fault("queue_caller_gone", entry, "waiting caller whose channel is gone from FreeSWITCH", None, dep))
    for cb_id, cb in sorted(state.callbacks.items()):
        if cb.status == "dialing" and cb.until_ms <= now:
            legs = " (legs %s)" % " ".join(cb.legs) if cb.legs else ""
            faults.append(Fault("callback_dialing_expired", cb_id, "callback dialing past its lease, attempt %d%s" % (cb.attempts, legs),
                                None, cb.department_id))
    return faults


class Repairs:
    """Repairs one tenant's faults with the store's own operations (see the module doc)."""

    def __init__(self, client: redis.Redis, tenant_id: int, day: str) -> None:
        self.r = client
        self.tenant_id = tenant_id
        self.day = day  # UTC yyyymmdd: the statistics day of an ended talk
        self.calls = CallStore(client)
        self.agents = AgentStore(client)
        self.callbacks = CallbackStore(client)
        self.freed = False  # a member or a place may have become free: announce once at the end

    def fix(self, fault: Fault, state: LiveState) -> str:
        """Repair one fault; what changed ("" when Redis had moved on: nothing done)."""
        t = self.tenant_id
        kind = fault.kind
        if kind in ("call_lease_expired", "call_without_channel"):
            if self.r.zscore(calls_key(t), fault.subject) is None:
                return ""
            self.calls.release(t, fault.subject)
            return "released live-call entry %s" % fault.subject
        if kind in ("offer_lease_expired", "offer_without_call", "offer_without_callback"):
            assert fault.employee_id is not None
            before = self.r.hget(agent_key(t, fault.employee_id), "offer")
            if before is None or _s(before) != fault.subject:
                return ""
            self.agents.release(t, fault.subject, fault.department_id or 0, [Release(fault.employee_id, "free")], self.day)
            self.freed = True
            return "ended offer of %s to member %d (free now)" % (fault.subject, fault.employee_id)
        if kind == "talk_leg_gone":
            assert fault.employee_id is not None
            talk = next((x for x in state.talks.values() if x.agent_uuid == fault.subject and x.employee_id == fault.employee_id), None)
            if talk is None or not self.callbacks.end_talk(t, talk.callback_id):
                return ""
            talk_ms = max(0, state.now_ms - talk.since_ms)
            # As CallbackDispatcher._talks does: the offer ends like an answered call's.
            self.agents.release(t, member(talk.callback_id), talk.department_id,
                                [Release(talk.employee_id, "answered", talk.wrapup_ms, talk_ms)], self.day)
            self.freed = True
            return "ended callback %s's talk of member %d (%d s; wrap-up %d s)" % (
                talk.callback_id, talk.employee_id, talk_ms // 1000, talk.wrapup_ms // 1000)
        if kind == "busy_without_channel":
            assert fault.employee_id is not None
            if self.r.zscore(channels_key(t, fault.employee_id), fault.subject) is None:
                return ""
            self.agents.channel_down(t, fault.employee_id, fault.subject)
            self.freed = True
            return "removed busy channel %s of member %d" % (fault.subject, fault.employee_id)
        if kind in ("queue_lease_expired", "queue_caller_gone"):
            assert fault.department_id is not None
            if self.r.zscore(queue_key(t, fault.department_id), fault.subject) is None:
                return ""
            self.agents.leave_queue(t, fault.department_id, fault.subject)
            self.freed = True
            return "removed %s from the queue of department %d" % (fault.subject, fault.department_id)
        if kind == "callback_dialing_expired":
            cb = self.callbacks.get(t, fault.subject)
            if cb is None or not self.callbacks.settle(t, cb, "pending", "dialing lease expired (pbx-inspect check --fix)",
                                                       only_expired=True):
                return ""
            self.freed = True
            return "callback %s back at its place in department %d" % (fault.subject, cb.department_id)
        raise ValueError("unknown fault kind %r" % kind)

    def announce(self) -> None:
        """One members-free notice, so that waiting callers (and callbacks) look again."""
        if self.freed:
            self.agents.announce_free(self.tenant_id)


def confirmed(first: Iterable[Fault], second: Iterable[Fault]) -> list[Fault]:
    """The faults of ``second`` that ``first`` found too (a repair acts only on a fault
    seen by two reads of Redis: an entry caught between two writes of one orchestrator
    step is not a fault)."""
    seen = {f.key for f in first}
    return [f for f in second if f.key in seen]

