"""Callbacks from the queue: hand a pending callback whose turn has come to a worker.

One dispatcher runs in each orchestrator process (started by ``pbx-orchestrator``). On
every members-free notice, and every ``interval_s`` anyway, for each tenant with open
callbacks it:

1. sweeps callbacks left ``dialing`` past their lease (a dispatcher or worker died)
   back to ``pending`` at their own place, and hangs up the legs that lost attempt's job
   had originated (a member left parked, a client ringing);
2. for each pending callback at the head of its department's queue: claims it
   (pending -> dialing, with a lease), takes a member with the same reservation as a
   caller on hold (call id ``cb:<id>``, queued: the head of the queue first), and
   enqueues ``workers.jobs.ring_agent_then_client`` (the member first, then the client);
3. for each *talking* callback (see below; at most every ``talk_check_ms``, 2 s), asks
   FreeSWITCH whether the agent's leg still exists (``uuid_exists``, mod_commands:
   ``true`` until the session is destroyed, shortly after its hangup): yes -> the
   member's offer lease is renewed; no -> the offer ends like an answered call's, now:
   wrap-up from the end of the conversation, its talk time (bridge to the first look
   that found the leg gone, so within ~2 s) in the member's statistics. Without this, a
   member talking to a called-back client was free for new offers once the wrap-up
   after the *bridge* ran out, unless the presence watcher was on. FreeSWITCH
   unreachable: nothing is renewed, so the lease frees the member (as for any lost
   owner), and the talk is settled when FreeSWITCH answers again.

The member's offer is taken with a lease long enough for the whole job (both ring times
plus a margin): nobody else is offered that member meanwhile, and a lost job frees them
by itself. The job's RQ callbacks (``job_finished`` / ``job_failed``, module
``orchestrator.callback_results``) run in the worker
process right after the job, with the worker's Redis connection: the agent did not
answer -> a missed offer (and the callback goes back to its place, up to
``max_attempts``); the client did not answer or setup failed -> the member is free;
bridged -> the callback is done, but the member is still talking: the offer is kept and
the callback is listed as *talking* (``CallbackStore.talking``). A job's end that comes
after a newer attempt was claimed (its leases ran out first) changes nothing: the job
carries its attempt number, and the offer and the callback are the newer attempt's.

**Expired callbacks** (the department's ``no_answer_timeout``, counted from the moment
the caller joined the queue, ran out and no member answered; or no member answered
``max_attempts`` offers): the callback leaves the queue and
``workers.apology.apologise_and_record`` calls the client, plays the department's
apology (``queue.callback_apology``, default ``APOLOGY_SOUND``) and records a message
into the box named ``queue.callback_voicemail``, else the department's no-answer target
when that is a voicemail box (stored and
e-mailed like any voicemail, linked to the caller's original call). Settled ``expired``;
a client who does not answer is called again like any callback (below), then the
callback is ``failed`` with "the client did not answer".

**Retries**: an attempt in which a member answered but the client did not
(``client_no_answer``) counts against the department's ``queue.callback_attempts``; until
they run out the callback waits ``queue.callback_retry_delay`` seconds out of the queue
(members go on serving the callers behind it), then takes its own place again.

**Whispers**: the job carries the seconds the caller waited (``waited_s``): the member
hears the client's number and the minutes before the client is dialled; and the
department's ``queue.callback_prompt`` (default ``PROMPT_SOUND``), which the client hears
on answering, before the bridge (``workers.media``).

The job holds plain, checked data and no secret (RQ stores it in Redis, as JSON:
``workers.SERIALIZER``): the member's extension and SIP domain, the client's E.164
number, the tenant's number shown to them. The worker builds the dial strings itself
(``core.dialstrings.callback_endpoints``, with its own ``PBX_EXTERNAL_DIAL_TEMPLATE``)
and takes FreeSWITCH's address and password from its own settings. The dispatcher
builds them too before queueing, so a callback whose numbers cannot be dialled is
settled ``failed`` here, with the reason, and no job is queued.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Callable

import redis

from orchestrator.core.dialstrings import callback_endpoints, e164, external_endpoint, safe_uuid
from orchestrator.core.model import Department, TargetKind, TenantSnapshot
from orchestrator.core.plan import Policy
from orchestrator.core.strategy import eligible
from orchestrator.store.agents import FREED_CHANNEL, AgentStore, Release
from orchestrator.errors import EslError, ProtocolError
from orchestrator.store.callbacks import Callback, CallbackStore, member
# The RQ side (enqueue, end-of-job settlement) lives in callback_results; re-exported
# here, where jobs queued by earlier versions name it.
from orchestrator.callback_results import (APOLOGY_JOB, RING_JOB, _day, apology_failed, apology_finished,  # noqa: F401
                                           job_failed, job_finished, rq_enqueue)

log = logging.getLogger("orchestrator.callbacks")

# Stock sounds of FreeSWITCH's en/us/callie set (installed with FreeSWITCH).
APOLOGY_SOUND = "ivr/ivr-not_available.wav"
PROMPT_SOUND = "ivr/ivr-thank_you.wav"
APOLOGY_PROMPT_S = 60  # the longest the apology and greeting may play, in the job's time limit


@dataclass(frozen=True)
class CallbackSettings:
    agent_timeout_s: int = 20
    client_timeout_s: int = 30
    max_attempts: int = 3
    margin_s: int = 30  # added to both ring times: the job's time limit

    @property
    def job_s(self) -> int:
        """The job's time limit, and how long it may wait for a worker (RQ ``ttl``: a job
        not started by then is dropped, never run late)."""
        return self.agent_timeout_s + self.client_timeout_s + self.margin_s

    @property
    def lease_ms(self) -> int:
        """The member's offer and the callback's ``dialing`` claim: the job may wait
        ``job_s`` for a worker, then run ``job_s``; past that both free themselves."""
        return 2 * self.job_s * 1000


class CallbackDispatcher:
    def __init__(self, client: redis.Redis, snapshot: Callable[[int], TenantSnapshot | None], policy: Policy,
                 settings: CallbackSettings, enqueue: Callable[[dict, dict], Any],
                 leg_exists: Callable[[str], bool | None] = lambda uuid: None, clock: Callable[[], int] | None = None,
                 talk_check_ms: int = 2000, hang_up: Callable[[tuple[str, ...]], None] = lambda uuids: None) -> None:
        self.r = client
        # Hang up legs a lost attempt left in FreeSWITCH (``LegChecker.hang_up``).
        self.hang_up = hang_up
        # Does FreeSWITCH still have this channel? (None: cannot tell now; ``LegChecker``)
        self.leg_exists = leg_exists
        self.clock = clock or (lambda: int(time.time() * 1000))
        # Talking callbacks are looked at once per talk_check_ms at most: passes come on
        # every members-free notice too, many a second on a busy system, and each look is
        # a question to FreeSWITCH per talking callback.
        self.talk_check_ms = talk_check_ms
        self._talks_checked: dict[int, float] = {}
        self.callbacks = CallbackStore(client)
        self.agents = AgentStore(client, lease_ms=settings.lease_ms)
        self.snapshot = snapshot
        self.policy = policy
        self.settings = settings
        self.enqueue = enqueue  # (job data, meta) -> an RQ job (see ``rq_enqueue``)
        self._running = False

    # ------------------------------------------------------------ one pass

    def tick(self) -> int:
        """One pass over every tenant's open callbacks; how many were handed to a worker."""
        started = 0
        for tenant_id in self.callbacks.tenants():
            try:
                started += self._tenant(tenant_id)
            except redis.RedisError as exc:
                log.warning("tenant %d: callbacks not dispatched: %s", tenant_id, exc)
        return started

    def apology_lease_ms(self, max_message_s: int) -> int:
        """The expired callback's ``dialing`` claim: its job may wait for a worker, then ring
        the client, play the apology and record at most ``max_message_s``."""
        return 2 * (self.settings.client_timeout_s + APOLOGY_PROMPT_S + max_message_s + self.settings.margin_s) * 1000

    def _tenant(self, tenant_id: int) -> int:
        self._talks(tenant_id)
        for lost in self.callbacks.sweep(tenant_id):
            log.warning("tenant %d: callback %s: attempt %d was lost (its job did not end within the lease); back at its "
                        "place, hanging up its legs %s", tenant_id, lost.id, lost.attempts, " ".join(lost.legs) or "(none)")
            if lost.legs:
                self.hang_up(lost.legs)
        pending = [cb for cb in self.callbacks.open(tenant_id) if cb.status == "pending"]
        if not pending:
            self.callbacks.forget_tenant_if_idle(tenant_id)
            return 0
        snap = self.snapshot(tenant_id)
        started = 0
        now = self.clock()
        for cb in pending:
            if snap is None or cb.department_id not in snap.departments:
                self.callbacks.settle(tenant_id, cb, "failed", "department gone")
                continue
            dep = snap.departments[cb.department_id]
            if cb.not_before_ms and cb.not_before_ms > now:
                continue  # waiting out the retry delay (out of the queue)
            if cb.mode == "apology" or self._expired(cb, dep, now):
                started += self._apologise(tenant_id, snap, cb)
                continue
            if cb.not_before_ms:  # the retry delay is over: back at its own place
                self.callbacks.requeue(tenant_id, cb)
                got = self.callbacks.get(tenant_id, cb.id)
                if got is None:
                    continue
                cb = got
            if self._dispatch(tenant_id, snap, cb):
                started += 1
        return started

    def _expired(self, cb: Callback, dep: Department, now: int) -> bool:
        """No member answered within the department's no-answer timeout (counted from the
        moment the caller joined the queue) or in ``max_attempts`` offers. A callback
        whose member answered but whose client did not is in its retries instead."""
        if cb.client_tries:
            return False
        return now >= cb.since_ms + dep.no_answer_timeout * 1000 or cb.member_tries >= self.settings.max_attempts

    def _apologise(self, tenant_id: int, snap: TenantSnapshot, cb: Callback) -> int:
        """Hand the expired callback to ``workers.apology``; 1 when its job was queued."""
        dep = snap.departments[cb.department_id]
        # The box named in the queue settings, else the no-answer target's (if it is a box).
        box = snap.voicemail_boxes.get(dep.queue.callback_box_id) if dep.queue.callback_box_id is not None else None
        target = dep.no_answer_target
        if box is None and target is not None and target.kind is TargetKind.VOICEMAIL and target.ref_id is not None:
            box = snap.voicemail_boxes.get(target.ref_id)
        max_message_s = box.max_message_seconds if box is not None else 0
        try:
            external_endpoint(self.policy.external_dial_template, cb.caller)
        except ValueError as exc:
            self.callbacks.settle(tenant_id, cb, "failed", "expired; cannot be dialled: %s" % exc)
            return 0
        attempt = self.callbacks.claim(tenant_id, cb.id, self.apology_lease_ms(max_message_s),
                                       department_id=cb.department_id, apology=True)
        if not attempt:
            return 0
        data = {
            "tenant_id": str(tenant_id),
            "callback_id": cb.id,
            "attempt": attempt,
            "client_number": cb.caller,
            "caller_id_number": e164(cb.dialed) or "",
            "client_timeout_s": self.settings.client_timeout_s,
            "apology": str(dep.queue.callback_apology or APOLOGY_SOUND),
            "box_id": box.id if box is not None else 0,
            "max_message_s": max_message_s,
            "call_uuid": cb.call_uuid,
        }
        meta = {"job": "apology", "tenant_id": tenant_id, "callback_id": cb.id, "department_id": cb.department_id,
                "attempt": attempt, "client_attempts": dep.queue.callback_attempts,
                "retry_delay_ms": dep.queue.callback_retry_delay * 1000,
                "job_s": self.apology_lease_ms(max_message_s) // 2000}
        try:
            self.enqueue(data, meta)
        except Exception as exc:  # noqa: BLE001 - give it back, try again later
            log.error("tenant %d: expired callback %s could not be queued: %s", tenant_id, cb.id, exc)
            self.callbacks.unclaim(tenant_id, cb, "job not queued")
            return 0
        log.info("tenant %d: callback %s expired (no member answered): calling %s back with the apology%s", tenant_id,
                 cb.id, cb.caller, " and box %d" % box.id if box is not None else " (no voicemail box)")
        return 1

    def _talks(self, tenant_id: int) -> None:
        """Keep the members of bridged callbacks busy while their leg lives; end the
        offer like an answered call's when it is gone."""
        now = time.monotonic()
        if (now - self._talks_checked.get(tenant_id, -1e9)) * 1000 < self.talk_check_ms:
            return
        self._talks_checked[tenant_id] = now
        for talk in self.callbacks.talks(tenant_id):
            exists = self.leg_exists(talk.agent_uuid)
            if exists is None:
                continue  # FreeSWITCH cannot say now: no renewal (the lease decides), ask again
            if exists:
                self.agents.renew(tenant_id, member(talk.callback_id), (talk.employee_id,))
                continue
            if not self.callbacks.end_talk(tenant_id, talk.callback_id):
                continue  # another orchestrator's dispatcher settled it
            talk_ms = max(0, self.clock() - talk.since_ms)
            self.agents.release(tenant_id, member(talk.callback_id), talk.department_id,
                                [Release(talk.employee_id, "answered", talk.wrapup_ms, talk_ms)], _day())
            log.info("tenant %d: callback %s: member %d finished the call (%d s)", tenant_id, talk.callback_id,
                     talk.employee_id, talk_ms // 1000)

    def _dispatch(self, tenant_id: int, snap: TenantSnapshot, cb: Callback) -> bool:
        queue = self.agents.queue(tenant_id, cb.department_id)
        if not queue or queue[0][0] != member(cb.id):
            return False  # not its turn
        if cb.member_tries >= self.settings.max_attempts:
            self.callbacks.settle(tenant_id, cb, "failed", "no member answered after %d attempts" % cb.member_tries)
            return False
        dep = snap.departments[cb.department_id]
        candidates = [m.employee_id for m in eligible(dep, snap)]
        attempt = self.callbacks.claim(tenant_id, cb.id, self.settings.lease_ms) if candidates else 0
        if not attempt:
            return False
        _, statuses = self.agents.reserve(tenant_id, member(cb.id), cb.department_id, candidates, 1, queued=True)
        taken = [e for e, st in statuses.items() if st == "offered"]
        if not taken:
            self.callbacks.unclaim(tenant_id, cb, "nobody free")
            return False
        emp = snap.employees[taken[0]]
        try:
            # Built here to refuse what cannot be dialled; the worker builds them again.
            callback_endpoints(self.policy.external_dial_template, emp.extension, snap.sip_domain, cb.caller)
        except ValueError as exc:
            log.warning("tenant %d: callback %s cannot be dialled (%s): settled as failed", tenant_id, cb.id, exc)
            self.agents.release(tenant_id, member(cb.id), cb.department_id, [Release(emp.id, "free")], _day())
            self.callbacks.settle(tenant_id, cb, "failed", "cannot be dialled: %s" % exc)
            return False
        data = {
            "tenant_id": str(tenant_id),
            "callback_id": cb.id,
            "attempt": attempt,
            "agent_extension": emp.extension,
            "agent_domain": snap.sip_domain,
            "client_number": cb.caller,
            "caller_id_number": e164(cb.dialed) or "",
            "agent_timeout_s": self.settings.agent_timeout_s,
            "client_timeout_s": self.settings.client_timeout_s,
            # Whispers (workers.media): the member hears the client's number and how long
            # they waited; the client hears the department's prompt on answering.
            "waited_s": max(0, (self.clock() - cb.since_ms) // 1000),
            "client_prompt": str(dep.queue.callback_prompt or PROMPT_SOUND),
        }
        meta = {"tenant_id": tenant_id, "callback_id": cb.id, "department_id": cb.department_id, "employee_id": emp.id,
                "wrapup_ms": dep.wrapup_seconds * 1000, "pause_after": dep.pause_after_missed,
                "max_attempts": self.settings.max_attempts, "attempt": attempt,
                "client_attempts": dep.queue.callback_attempts, "retry_delay_ms": dep.queue.callback_retry_delay * 1000}
        try:
            self.enqueue(data, meta)
        except Exception as exc:  # noqa: BLE001 - give everything back, try again later
            log.error("tenant %d: callback %s could not be queued: %s", tenant_id, cb.id, exc)
            self.agents.release(tenant_id, member(cb.id), cb.department_id, [Release(emp.id, "free")], _day())
            self.callbacks.unclaim(tenant_id, cb, "job not queued")
            return False
        log.info("tenant %d: callback %s: ringing member %d, then %s", tenant_id, cb.id, emp.id, cb.caller)
        return True

    # ------------------------------------------------------------ loop

    def run(self, interval_s: float = 2.0) -> None:
        """Tick on each members-free notice and every ``interval_s``; until ``stop``
        (which ends it within ``interval_s``: the wait for a notice is that long)."""
        self._running = True
        while self._running:
            pubsub = None
            try:
                pubsub = self.r.pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(FREED_CHANNEL)
                while self._running:
                    pubsub.get_message(timeout=interval_s)  # a notice, or the periodic pass
                    while pubsub.get_message(timeout=0):  # a burst of notices: one pass
                        pass
                    self.tick()
            except redis.RedisError as exc:
                if not self._running:
                    break
                log.warning("callback dispatcher: Redis: %s; retrying", exc)
                time.sleep(interval_s)
            finally:
                if pubsub is not None:
                    try:
                        pubsub.close()
                    except redis.RedisError:
                        pass

    def stop(self) -> None:
        self._running = False


class LegChecker:
    """``uuid_exists`` over one inbound ESL connection, opened when first needed and
    again after it failed; None when FreeSWITCH cannot be asked now."""

    def __init__(self, esl: dict, timeout_s: float = 2.0, retry_after_s: float = 10.0) -> None:
        self.esl = esl
        self.timeout_s = timeout_s
        # After a failure, "cannot tell" at once for a while: a FreeSWITCH that is down
        # must not cost every talking callback a connect timeout on every pass.
        self.retry_after_s = retry_after_s
        self._down_until = 0.0
        self._client: Any = None

    def _connect(self) -> Any:
        from orchestrator.esl.inbound import InboundClient

        if self._client is None or not self._client.connected:
            self.close()
            self._client = InboundClient(self.esl["host"], int(self.esl["port"]), self.esl["password"],
                                         connect_timeout=self.timeout_s, command_timeout=self.timeout_s,
                                         reconnect=False).connect()
        return self._client

    def __call__(self, uuid: str) -> bool | None:
        try:
            safe_uuid(uuid, "agent leg")  # read from Redis: only a uuid goes into the command
        except ValueError as exc:
            log.warning("callback dispatcher: %s; the talk is ended", exc)
            return False
        if time.monotonic() < self._down_until:
            return None
        try:
            answer = self._connect().api("uuid_exists %s" % uuid).strip()
        except (EslError, ProtocolError, OSError) as exc:
            log.warning("callback dispatcher: cannot ask FreeSWITCH about leg %s (again in %.0f s): %s",
                        uuid, self.retry_after_s, exc)
            self.close()
            self._down_until = time.monotonic() + self.retry_after_s
            return None
        if answer not in ("true", "false"):
            log.warning("callback dispatcher: unexpected uuid_exists answer %r", answer[:100])
            return None
        return answer == "true"

    def hang_up(self, uuids: tuple[str, ...]) -> None:
        """``uuid_kill`` each leg (best effort: a leg already gone is fine)."""
        for uuid in uuids:
            try:
                safe_uuid(uuid, "leg")
                self._connect().uuid_kill(uuid)
            except ValueError as exc:
                log.warning("callback dispatcher: not hung up: %s", exc)
            except (EslError, ProtocolError, OSError) as exc:
                log.warning("callback dispatcher: cannot hang up leg %s: %s", uuid, exc)
                self.close()
                return

    def close(self) -> None:
        if self._client is not None:
            try:
                self._client.close()
            except (EslError, OSError):
                pass
            self._client = None
