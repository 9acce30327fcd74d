"""Presence watcher: which department members' phones are on a call, seen by FreeSWITCH.

One inbound event-socket connection per FreeSWITCH server (``event plain CHANNEL_CREATE
CHANNEL_HANGUP CHANNEL_HANGUP_COMPLETE``). A channel on an employee's phone is recorded in
Redis (``AgentStore.channel_up``, with a TTL) when it is created and removed when it ends,
whoever placed the call; the offer script never offers a call to a member with a live
channel.

When a channel "ends" for the phone (FreeSWITCH 1.10.12, measured with
bench/realfs_bench.py):

* The phone ended it itself (its BYE, its error answer to our INVITE, the end of its
  own call's dialog): sofia.c sets ``sip_term_cause`` (and ``sip_term_status``) BEFORE it
  hangs the channel up (``sofia_handle_sip_i_bye``; ``nua_callstate_terminated`` while
  the channel is still up), so the CHANNEL_HANGUP event carries
  ``variable_sip_term_cause``. (``sip_hangup_disposition=recv_bye`` is set only AFTER that
  hang-up: it is not there.) The phone's dialog is over: nothing more is sent to it for
  that channel, and the member is free at CHANNEL_HANGUP. CHANNEL_HANGUP_COMPLETE comes
  after the channel's session thread has run its hangup state, which can be tens of ms
  later on a loaded machine.
* FreeSWITCH ended it (we hung up, LOSE_RACE, ORIGINATOR_CANCEL, leg timeout): no
  ``sip_term_cause`` on CHANNEL_HANGUP; the BYE / CANCEL goes to the phone from sofia's
  on_hangup afterwards; the member is free at CHANNEL_HANGUP_COMPLETE, as before, so no
  new INVITE overtakes the CANCEL of the old one.

Recorded (tests/data/freeswitch-transcripts/primitives): P01c, the callee's BYE:
CHANNEL_HANGUP with sip_term_status 200 and sip_term_cause 16; P04, a 486: sip_term_cause
17; P01 LOSE_RACE, P01d ORIGINATOR_CANCEL, P02/P04 ALLOTTED_TIMEOUT and the legs
FreeSWITCH sent a BYE to: none.

Which phone a channel is on (FreeSWITCH 1.10 source):

* A leg dialled as ``user/<ext>@<domain>`` (our bridges and callbacks, an employee's
  internal call): mod_dptools.c ``user_outgoing_channel()`` puts ``dialed_user``,
  ``dialed_domain`` and, unless the directory's dial-string sets one (ours does, with the
  same value: admin/directory.py), ``presence_id=<ext>@<domain>`` among the new leg's
  variables; Call-Direction ``outbound``. It also sets dialed_user on the CALLING
  channel, so those variables are only believed on outbound legs. Other outbound legs
  count by ``presence_id``: the user whose BLF FreeSWITCH itself lights for the channel.
* A call placed by a registered phone: sofia_reg.c ``sofia_reg_parse_auth()`` sets
  ``user_name`` / ``domain_name`` on the digest-authenticated channel (Call-Direction
  ``inbound``); such a call ends the member's automatic pause. Sofia sets ``presence_id``
  from the From header of EVERY inbound call (transcript P01: ``sipp@127.0.0.1``), which
  anyone can write, so an inbound leg without ``user_name`` never counts.
* Events carry channel variables as ``variable_<name>`` and presence_id also as
  ``Channel-Presence-ID``.

Robustness: every channel has a TTL (180 s). A resync (``show channels as json``, every
60 s and after each (re)connect) refreshes the live channels, adds the ones we missed and
drops the ones we knew that FreeSWITCH no longer lists (a HANGUP lost while we were
disconnected); a dead watcher's entries expire with their TTL. ``show channels`` reads
the core db, whose row is inserted by the SQL thread just after CHANNEL_CREATE and
deleted only on CHANNEL_DESTROY (switch_core_sqldb.c), so rows in hangup states and
channels that ended a moment ago are not re-added, and channels seen less than
``grace_s`` ago are not dropped. Rows carry no user_name: an inbound row counts only in
the context a phone's own calls enter (``pbx-internal``, the directory's user_context).
"""
from __future__ import annotations

import json
import logging
import random
import time
from dataclasses import dataclass
from typing import Callable, Mapping

import gevent.event
import redis

from orchestrator.core.model import TargetKind
from orchestrator.errors import EslError, ProtocolError
from orchestrator.esl.inbound import InboundClient
from orchestrator.esl.wire import Event
from orchestrator.store.agents import AgentStore, Release
from orchestrator.store.routing_cache import RoutingCache

log = logging.getLogger("orchestrator.presence")

EVENTS = ("CHANNEL_CREATE", "CHANNEL_HANGUP", "CHANNEL_HANGUP_COMPLETE")

INTERNAL_CONTEXT = "pbx-internal"  # admin/directory.py USER_CONTEXT
ENDED_STATES = frozenset({"CS_HANGUP", "CS_REPORTING", "CS_DESTROY"})

Owner = tuple[int, int]  # (tenant id, employee id)


@dataclass(frozen=True)
class Phone:
    """The phone a channel is on (``extension@domain``) and whether that phone placed it."""

    extension: str
    domain: str
    placed_by_member: bool


def _phone(user: str, domain: str, placed: bool) -> Phone | None:
    user, domain = user.strip(), domain.strip().lower()
    return Phone(user, domain, placed) if user and domain else None


def _split(presence_id: str | None) -> tuple[str, str]:
    user, _, domain = (presence_id or "").partition("@")
    return user, domain


def phone_of_event(event: Event) -> Phone | None:
    """The member phone a CHANNEL_* event's channel is on, if any (see the module doc)."""
    direction = event.get("Call-Direction")
    if direction == "outbound":
        user, domain = event.var("dialed_user") or "", event.var("dialed_domain") or ""
        if not (user.strip() and domain.strip()):
            user, domain = _split(event.get("Channel-Presence-ID") or event.var("presence_id"))
        return _phone(user, domain, False)
    if direction == "inbound":
        return _phone(event.var("user_name") or "", event.var("domain_name") or "", True)
    return None


def phone_of_row(row: Mapping[str, str]) -> Phone | None:
    """The member phone of one ``show channels as json`` row, if any."""
    user, domain = _split(row.get("presence_id"))
    if row.get("direction") == "outbound":
        return _phone(user, domain, False)
    if row.get("direction") == "inbound" and INTERNAL_CONTEXT in (row.get("context"), row.get("initial_context")):
        return _phone(user, domain, True)
    return None


def _int(value: str | None) -> int:
    try:
        return int(value or "0")
    except ValueError:
        return 0


def phone_ended(event: Event) -> bool:
    """Did the phone's side end this channel? CHANNEL_HANGUP carries the SIP side's
    ``sip_term_cause`` then (module doc), and the member is free at once."""
    return bool((event.var("sip_term_cause") or "").strip())


def parse_channels(body: str) -> list[dict[str, str]] | None:
    """The rows of ``show channels as json`` (``{"row_count":N,"rows":[...]}``, or
    ``{"row_count": 0}\\n`` with no rows, P09); None for anything else (``-ERR ...``)."""
    try:
        doc = json.loads(body)
    except ValueError:
        return None
    if not isinstance(doc, dict) or "row_count" not in doc or not isinstance(doc.get("rows", []), list):
        return None
    rows = [{k: v for k, v in r.items() if isinstance(v, str)} for r in doc.get("rows", []) if isinstance(r, dict)]
    return [r for r in rows if r.get("uuid")]


@dataclass
class _Known:
    owner: Owner
    seen: float  # when FreeSWITCH last showed us the channel (watcher clock, s)


class PresenceWatcher:
    """Keeps members' live channels in Redis in step with one FreeSWITCH server.

    ``client`` must subscribe to :data:`EVENTS` with ``reconnect=False``: the watcher
    reconnects it itself (with the client's backoff settings) so that it knows when to
    resync. Run :meth:`run` in a greenlet; :meth:`stop` ends it. Times in seconds except
    ``ttl_ms``.
    """

    def __init__(self, client: InboundClient, agents: AgentStore, cache: RoutingCache, *, ttl_ms: int = 180_000,
                 resync_s: float = 60.0, grace_s: float = 5.0, tick_s: float = 0.5,
                 clock: Callable[[], float] = time.monotonic, rng: Callable[[], float] = random.random) -> None:
        if client.reconnect:
            raise ValueError("PresenceWatcher reconnects its client itself: build the InboundClient with reconnect=False")
        missing = set(EVENTS) - set(client.events)
        if missing:
            raise ValueError("the presence client must subscribe to %s" % " ".join(sorted(missing)))
        self.client, self.agents, self.cache = client, agents, cache
        self.ttl_ms, self.resync_s, self.grace_s, self.tick_s = ttl_ms, resync_s, grace_s, tick_s
        self.clock, self.rng = clock, rng
        self._known: dict[str, _Known] = {}
        self._ended: dict[str, float] = {}  # channel uuid -> when its HANGUP_COMPLETE came
        self._stop = gevent.event.Event()
        self.stats = {"connects": 0, "resyncs": 0, "redis_errors": 0}
        self._log = {"esl_host": client.host, "esl_port": client.port}

    # ------------------------------------------------------------ lifecycle

    def run(self) -> None:
        """Until :meth:`stop`: stay connected; resync after each connect and every ``resync_s``."""
        unsubscribe = self.client.subscribe(self.handle_event)
        attempt, next_resync = 0, 0.0
        try:
            while not self._stop.is_set():
                if not self.client.connected:
                    if not self._connect(attempt):
                        attempt += 1
                        continue
                    attempt, next_resync = 0, 0.0
                if self.clock() >= next_resync:
                    try:
                        self.resync()
                    except Exception:  # noqa: BLE001 - a bug here must not end presence for good
                        log.exception("presence resync crashed", extra=self._log)
                    next_resync = self.clock() + self.resync_s
                self._stop.wait(max(0.0, min(self.tick_s, next_resync - self.clock())))
        finally:
            unsubscribe()
            self.client.close()

    def stop(self) -> None:
        self._stop.set()
        self.client.close()

    def _connect(self, attempt: int) -> bool:
        try:
            self.client.connect()
        except (EslError, ProtocolError) as exc:
            delay = min(self.client.backoff_max, self.client.backoff_initial * 2 ** min(attempt, 16))
            delay = delay / 2 + self.rng() * delay / 2  # "equal jitter", as InboundClient does
            log.warning("presence watcher cannot reach FreeSWITCH; retrying",
                        extra={**self._log, "error": str(exc), "retry_in_s": round(delay, 2)})
            self._stop.wait(delay)
            return False
        self.stats["connects"] += 1
        log.info("presence watcher connected", extra={**self._log, "connects": self.stats["connects"]})
        return True

    # ------------------------------------------------------------ events

    def handle_event(self, event: Event) -> None:
        uuid = event.get("Unique-ID") or ""
        if not uuid:
            return
        if event.name == "CHANNEL_CREATE":
            phone = phone_of_event(event)
            if phone is not None:
                self._up(uuid, phone)
        elif event.name == "CHANNEL_HANGUP":
            # The phone ended it (module doc): free now, not at HANGUP_COMPLETE.
            if phone_ended(event) and uuid not in self._ended:
                owner = self._down(uuid, phone_of_event(event), why="phone hung up")
                if owner is not None:
                    self._end_answered_offer(event, owner, uuid)
        elif event.name == "CHANNEL_HANGUP_COMPLETE":
            if uuid not in self._ended:
                self._down(uuid, phone_of_event(event))

    def _up(self, uuid: str, phone: Phone) -> None:
        owner = self._owner(phone, uuid)
        if owner is None or uuid in self._ended:  # (it may have ended while we looked)
            return
        self._known[uuid] = _Known(owner, self.clock())
        self._write("channel_up", owner, uuid, lambda: self.agents.channel_up(
            owner[0], owner[1], uuid, self.ttl_ms, placed_by_member=phone.placed_by_member))
        log.info("member phone on a call", extra={**self._log, "tenant_id": owner[0], "employee_id": owner[1],
                                                  "channel_uuid": uuid, "placed_by_member": phone.placed_by_member})

    def _down(self, uuid: str, phone: Phone | None, why: str = "hangup") -> Owner | None:
        self._ended[uuid] = self.clock()
        known = self._known.pop(uuid, None)
        owner = known.owner if known is not None else (self._owner(phone, uuid) if phone is not None else None)
        if owner is None:
            return None
        self._write("channel_down", owner, uuid, lambda: self.agents.channel_down(owner[0], owner[1], uuid))
        log.info("member phone call ended", extra={**self._log, "tenant_id": owner[0], "employee_id": owner[1],
                                                   "channel_uuid": uuid, "why": why})
        return owner

    def _end_answered_offer(self, event: Event, owner: Owner, uuid: str) -> None:
        """The member hung up a department call they had answered: end that offer now.

        The call holding the offer (the caller's channel, ``Other-Leg-Unique-ID`` of the
        member's leg: the leg's originator) ends it too, at its CHANNEL_UNBRIDGE; but
        FreeSWITCH's bridge loop of the caller notices the member's hang-up only at its
        next frame (measured 15 ms after the member's CHANNEL_HANGUP, bench/realfs_bench.py),
        and the next waiting caller waited for that. The release is the same (answered:
        wrap-up, statistics, talk time from the leg's own answer and hang-up times) and
        touches only an offer still held by that call, so whichever of the two comes
        second changes nothing."""
        tenant_id, employee_id = owner
        call_uuid = event.get("Other-Leg-Unique-ID") or ""
        answered_us = _int(event.get("Caller-Channel-Answered-Time"))
        ended_us = _int(event.get("Event-Date-Timestamp"))
        if event.get("Call-Direction") != "outbound" or not call_uuid or answered_us <= 0:
            return  # not our leg of a call, or never answered (a refusal is the caller's to record)
        try:
            department_id = self.agents.offer_department(tenant_id, employee_id, call_uuid)
            if department_id is None:
                return  # the call released it already, or the member was not offered by it
            snap = self.cache.snapshot(tenant_id)
            dep = snap.departments.get(department_id) if snap is not None else None
            wrapup_ms = dep.wrapup_seconds * 1000 if dep is not None else 0
            talk_ms = max(0, (ended_us - answered_us) // 1000) if ended_us else 0
            day = time.strftime("%Y%m%d", time.gmtime(ended_us / 1e6 if ended_us else time.time()))
            self.agents.release(tenant_id, call_uuid, department_id, [Release(employee_id, "answered", wrapup_ms, talk_ms)], day)
        except redis.RedisError as exc:
            self.stats["redis_errors"] += 1
            log.error("presence: answered offer not ended (its call ends it)", extra={
                **self._log, "tenant_id": tenant_id, "employee_id": employee_id, "channel_uuid": uuid, "error": str(exc)})
            return
        except Exception as exc:  # noqa: BLE001 - routing data unreachable: the call ends the offer itself
            log.warning("presence: answered offer not ended (its call ends it)", extra={
                **self._log, "tenant_id": tenant_id, "employee_id": employee_id, "channel_uuid": uuid, "error": str(exc)})
            return
        log.info("member hung up an answered call: offer ended", extra={
            **self._log, "tenant_id": tenant_id, "employee_id": employee_id, "channel_uuid": uuid, "call_uuid": call_uuid,
            "department_id": department_id})

    def _owner(self, phone: Phone, uuid: str) -> Owner | None:
        """(tenant, employee) whose extension@domain the phone is, or None."""
        try:
            tenant_id = self.cache.index().domains.get(phone.domain)
            snap = self.cache.snapshot(tenant_id) if tenant_id is not None else None
        except Exception as exc:  # noqa: BLE001 - routing data unreachable: skip; the resync retries
            log.warning("presence: routing data unavailable", extra={**self._log, "channel_uuid": uuid, "error": str(exc)})
            return None
        target = snap.target_for_extension(phone.extension) if snap is not None else None
        if target is None or target.kind is not TargetKind.EMPLOYEE or target.ref_id is None or tenant_id is None:
            return None
        return tenant_id, target.ref_id

    def _write(self, what: str, owner: Owner, uuid: str, call: Callable[[], None]) -> None:
        try:
            call()
        except redis.RedisError as exc:
            self.stats["redis_errors"] += 1
            log.error("presence not written to Redis", extra={**self._log, "tenant_id": owner[0], "employee_id": owner[1],
                                                              "channel_uuid": uuid, "op": what, "error": str(exc)})

    # ------------------------------------------------------------ resync

    def resync(self) -> bool:
        """Make Redis match ``show channels``; False when FreeSWITCH gave no usable answer."""
        started = self.clock()
        try:
            body = self.client.api("show channels as json")
        except EslError as exc:
            log.warning("presence resync failed", extra={**self._log, "error": str(exc)})
            return False
        rows = parse_channels(body)
        if rows is None:
            log.warning("presence resync: unexpected answer to show channels", extra={**self._log, "answer": body[:200]})
            return False
        keep = 2 * self.resync_s + self.grace_s
        self._ended = {u: t for u, t in self._ended.items() if t > started - keep}
        listed: set[str] = set()
        for row in rows:
            uuid = row["uuid"]
            if row.get("state") in ENDED_STATES or row.get("callstate") == "HANGUP":
                continue
            listed.add(uuid)
            known = self._known.get(uuid)
            if uuid in self._ended:
                continue
            if known is None:
                phone = phone_of_row(row)
                if phone is not None:
                    self._up(uuid, phone)
                continue
            known.seen = self.clock()
            owner = known.owner
            self._write("channel_up", owner, uuid, lambda: self.agents.channel_up(owner[0], owner[1], uuid, self.ttl_ms))
        for uuid, known in list(self._known.items()):
            if uuid not in listed and known.seen < started - self.grace_s:
                self._down(uuid, None, why="gone from show channels")
        self.stats["resyncs"] += 1
        log.debug("presence resynced", extra={**self._log, "channels": len(rows), "members_busy": len(self._known)})
        return True


__all__ = ["EVENTS", "Phone", "PresenceWatcher", "parse_channels", "phone_ended", "phone_of_event", "phone_of_row"]
