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
by itself. The job's RQ callbacks (``job_finished`` / ``job_failed``) run in the worker
process right after the job, with the worker's Redis connection: the agent did not
answer -> a missed offer (and the callback goes back to its place, up to
``max_attempts``); the client did not answer or setup failed -> the member is free;
bridged -> the callback is done, but the member is still talking: the offer is kept and
the callback is listed as *talking* (``CallbackStore.talking``). A job's end that comes
after a newer attempt was claimed (its leases ran out first) changes nothing: the job
carries its attempt number, and the offer and the callback are the newer attempt's.

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

from orchestrator.core.dialstrings import callback_endpoints, e164, safe_uuid
from orchestrator.core.model import TenantSnapshot
from orchestrator.core.plan import Policy
from orchestrator.core.strategy import eligible
from orchestrator.store.agents import FREED_CHANNEL, AgentStore, Release
from orchestrator.errors import EslError, ProtocolError
from orchestrator.store.callbacks import Callback, CallbackStore, Talk, member

log = logging.getLogger("orchestrator.callbacks")


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
        for cb in pending:
            if snap is None or cb.department_id not in snap.departments:
                self.callbacks.settle(tenant_id, cb, "failed", "department gone")
                continue
            if self._dispatch(tenant_id, snap, cb):
                started += 1
        return started

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
        if cb.attempts >= self.settings.max_attempts:
            self.callbacks.settle(tenant_id, cb, "failed", "no member answered after %d attempts" % cb.attempts)
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
        }
        meta = {"tenant_id": tenant_id, "callback_id": cb.id, "department_id": cb.department_id, "employee_id": emp.id,
                "wrapup_ms": dep.wrapup_seconds * 1000, "pause_after": dep.pause_after_missed,
                "max_attempts": self.settings.max_attempts, "attempt": attempt}
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


def _day() -> str:
    return time.strftime("%Y%m%d", time.gmtime())


# ------------------------------------------------------------------ RQ side


def rq_enqueue(client: redis.Redis, settings: CallbackSettings) -> Callable[[dict, dict], Any]:
    """Enqueue the callback job with its end-of-job callbacks (run by the worker)."""
    from rq import Callback as RqCallback, Queue

    from workers import CALLBACK_QUEUE, SERIALIZER

    # JSON, not pickle: a job is data, never code (whoever can write Redis could
    # otherwise run code in the worker). The worker reads with the same serializer.
    queue = Queue(CALLBACK_QUEUE, connection=client, serializer=SERIALIZER)

    def enqueue(data: dict, meta: dict) -> Any:
        return queue.enqueue("workers.jobs.ring_agent_then_client", data, meta=meta, job_timeout=settings.job_s, ttl=settings.job_s,
                             on_success=RqCallback(job_finished), on_failure=RqCallback(job_failed))

    return enqueue


def job_finished(job: Any, connection: redis.Redis, result: Any, *args: Any, **kwargs: Any) -> None:
    """The job returned: end the member's offer (or keep it while they talk) and settle
    the callback."""
    status = result.get("status") if isinstance(result, dict) else "failed"
    _settle(job.meta, connection, str(status), str((result or {}).get("cause") or "") if isinstance(result, dict) else "",
            str(result.get("agent_uuid") or "") if isinstance(result, dict) else "")


def job_failed(job: Any, connection: redis.Redis, *exc_info: Any, **kwargs: Any) -> None:
    """The job raised (or timed out): the member is free, the callback tries again."""
    _settle(job.meta, connection, "crashed", repr(exc_info[1]) if len(exc_info) > 1 else "")


def _settle(meta: dict, connection: redis.Redis, status: str, cause: str, agent_uuid: str = "") -> None:
    from workers.jobs import ABANDONED, AGENT_NO_ANSWER, BRIDGED

    tenant_id, cb_id = int(meta["tenant_id"]), str(meta["callback_id"])
    dept, emp = int(meta["department_id"]), int(meta["employee_id"])
    agents, callbacks = AgentStore(connection), CallbackStore(connection)
    wrapup_ms = int(meta.get("wrapup_ms") or 0)
    cb = callbacks.get(tenant_id, cb_id)
    attempt = int(meta.get("attempt") or 0)
    if cb is not None and attempt and cb.attempts != attempt:
        # This job outlived its claim: the callback went back to its place and a newer
        # attempt took it (same offer id ``cb:<id>``). Its offer and the callback are
        # the newer attempt's to end, not this one's.
        log.warning("tenant %d: callback %s: attempt %d ended (%s) after attempt %d began; left to the newer attempt",
                    tenant_id, cb_id, attempt, status, cb.attempts)
        return
    if status == BRIDGED and agent_uuid:
        # The member talks now: the offer stays theirs (its lease, then the dispatcher's
        # renewals) until their leg is gone (CallbackDispatcher._talks).
        callbacks.talking(tenant_id, Talk(cb_id, agent_uuid, emp, dept, wrapup_ms, int(time.time() * 1000)))
    else:
        if status == BRIDGED:
            release = Release(emp, "answered", wrapup_ms, 0)
        elif status == AGENT_NO_ANSWER:
            release = Release(emp, "missed", 0, 0, int(meta.get("pause_after") or 0))
        else:
            release = Release(emp, "free")
        agents.release(tenant_id, member(cb_id), dept, [release], _day())
    if cb is None:
        return
    result = status + (": " + cause if cause else "")
    if status == BRIDGED:
        callbacks.settle(tenant_id, cb, "done", result)
    elif status in (AGENT_NO_ANSWER, "crashed", ABANDONED) and cb.attempts < int(meta.get("max_attempts") or 3):
        callbacks.settle(tenant_id, cb, "pending", result)  # back at its place
        agents.announce_free(tenant_id)
    else:
        callbacks.settle(tenant_id, cb, "failed", result)
    log.info("tenant %d: callback %s: %s", tenant_id, cb_id, result)


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
