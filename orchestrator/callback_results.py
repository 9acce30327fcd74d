"""Callbacks from the queue, the RQ side: queue the jobs and settle what they did.

``rq_enqueue`` queues ``workers.jobs.ring_agent_then_client`` (a callback whose turn came)
or ``workers.apology.apologise_and_record`` (an expired one) with their end-of-job RQ
callbacks. Those run in the worker process right after the job, with the worker's Redis
connection, and settle the member's offer and the callback (``CallbackStore``):

* ring job: bridged -> done, the member talks on (``Talk``, ended by the dispatcher);
  the member did not answer (or the job was lost) -> a missed offer, back at its place;
  the client did not answer -> the member is free; the callback waits the department's
  retry delay out of the queue, then takes its place again, until its attempts to reach
  the client run out (then failed);
* apology job: apologised -> expired (with the voicemail's id); the client did not answer
  -> called again after the delay until the attempts run out (then failed).

A job's end that comes after a newer attempt was claimed changes nothing: the job carries
its attempt number (see ``callback_dispatcher``).
"""
from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any, Callable

import redis

from orchestrator.store.agents import AgentStore, Release
from orchestrator.store.callbacks import CallbackStore, Talk, member

if TYPE_CHECKING:
    from orchestrator.callback_dispatcher import CallbackSettings

log = logging.getLogger("orchestrator.callbacks")

APOLOGY_JOB = "workers.apology.apologise_and_record"
RING_JOB = "workers.jobs.ring_agent_then_client"


def _day() -> str:
    return time.strftime("%Y%m%d", time.gmtime())


def rq_enqueue(client: redis.Redis, settings: CallbackSettings) -> Callable[[dict, dict], Any]:
    """Enqueue the callback job with its end-of-job callbacks (run by the worker)."""
    from rq import Callback as RqCallback, Queue

    from workers import CALLBACK_QUEUE, SERIALIZER

    # JSON, not pickle: a job is data, never code (whoever can write Redis could
    # otherwise run code in the worker). The worker reads with the same serializer.
    queue = Queue(CALLBACK_QUEUE, connection=client, serializer=SERIALIZER)

    def enqueue(data: dict, meta: dict) -> Any:
        if meta.get("job") == "apology":
            job_s = int(meta.get("job_s") or settings.job_s)
            return queue.enqueue(APOLOGY_JOB, data, meta=meta, job_timeout=job_s, ttl=job_s,
                                 on_success=RqCallback(apology_finished), on_failure=RqCallback(apology_failed))
        return queue.enqueue(RING_JOB, data, meta=meta, job_timeout=settings.job_s, ttl=settings.job_s,
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
    from workers.jobs import ABANDONED, AGENT_NO_ANSWER, BRIDGED, CLIENT_NO_ANSWER

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
    elif status in (AGENT_NO_ANSWER, "crashed", ABANDONED) and (
            cb.member_tries < int(meta.get("max_attempts") or 3) or not cb.client_tries):
        # Back at its place; when no member answered in time (or in max_attempts
        # offers) the dispatcher calls the client with the apology instead.
        callbacks.settle(tenant_id, cb, "pending", result)
        agents.announce_free(tenant_id)
    elif status == CLIENT_NO_ANSWER and cb.client_tries + 1 < int(meta.get("client_attempts") or 1):
        delay_ms = int(meta.get("retry_delay_ms") or 0)
        # The client keeps the place: out of the queue for the delay, then back at it.
        callbacks.settle(tenant_id, cb, "pending", result, retry_delay_ms=delay_ms, client_missed=True)
        if not delay_ms:
            agents.announce_free(tenant_id)
    elif status == CLIENT_NO_ANSWER:
        callbacks.settle(tenant_id, cb, "failed", "%s; the client did not answer %d attempts" % (result, cb.client_tries + 1),
                         client_missed=True)
    else:
        callbacks.settle(tenant_id, cb, "failed", result)
    log.info("tenant %d: callback %s: %s", tenant_id, cb_id, result)


def apology_finished(job: Any, connection: redis.Redis, result: Any, *args: Any, **kwargs: Any) -> None:
    """The expired callback's job returned: settle it (or call the client again)."""
    res = result if isinstance(result, dict) else {}
    _settle_apology(job.meta, connection, str(res.get("status") or "failed"), str(res.get("cause") or ""),
                    res.get("voicemail_id"))


def apology_failed(job: Any, connection: redis.Redis, *exc_info: Any, **kwargs: Any) -> None:
    _settle_apology(job.meta, connection, "crashed", repr(exc_info[1]) if len(exc_info) > 1 else "", None)


def _settle_apology(meta: dict, connection: redis.Redis, status: str, cause: str, voicemail_id: Any) -> None:
    from workers.apology import APOLOGISED
    from workers.jobs import ABANDONED, CLIENT_NO_ANSWER

    tenant_id, cb_id = int(meta["tenant_id"]), str(meta["callback_id"])
    callbacks = CallbackStore(connection)
    cb = callbacks.get(tenant_id, cb_id)
    if cb is None:
        return
    if int(meta.get("attempt") or 0) != cb.attempts:
        log.warning("tenant %d: expired callback %s: attempt %s ended (%s) after attempt %d began; left to it",
                    tenant_id, cb_id, meta.get("attempt"), status, cb.attempts)
        return
    if status == APOLOGISED:
        result = "expired: apologised; " + ("voicemail %s recorded" % voicemail_id if voicemail_id else
                                            cause or "no message left")
        callbacks.settle(tenant_id, cb, "expired", result)
    elif status in ("crashed", ABANDONED):
        callbacks.settle(tenant_id, cb, "pending", "expired: %s: %s" % (status, cause))  # the apology is tried again
    elif status == CLIENT_NO_ANSWER and cb.client_tries + 1 < int(meta.get("client_attempts") or 1):
        callbacks.settle(tenant_id, cb, "pending", "expired: the client did not answer (%s)" % cause,
                         retry_delay_ms=int(meta.get("retry_delay_ms") or 0), client_missed=True)
    elif status == CLIENT_NO_ANSWER:
        callbacks.settle(tenant_id, cb, "failed", "expired: the client did not answer %d calls (%s)"
                         % (cb.client_tries + 1, cause), client_missed=True)
    else:
        callbacks.settle(tenant_id, cb, "failed", "expired: %s" % cause)
    log.info("tenant %d: expired callback %s: %s (%s)", tenant_id, cb_id, status, cause or voicemail_id or "")
