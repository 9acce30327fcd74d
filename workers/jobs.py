"""Job functions run by ``pbx-worker``. Plain functions of plain JSON data (RQ stores
the arguments with ``workers.SERIALIZER``), importable by any RQ worker process.

``ring_agent_then_client`` is the ESL part of a callback from a queue: ring the agent
first, and only once the agent has answered ring the client, then bridge the two legs.
Whether to re-queue a callback whose agent did not answer is the caller's decision; the
job only reports what happened.

What a job says is checked before anything reaches FreeSWITCH (anyone who can write
Redis can write a job): the member's extension and domain are dial-string tokens, the
client's number and the caller ID are E.164 (``core.dialstrings``), the dial strings are
built here with this worker's own ``PBX_EXTERNAL_DIAL_TEMPLATE``, FreeSWITCH's address
and password are this worker's own (``PBX_ESL_ADDRESS`` / ``PBX_ESL_PASSWORD``), and the
uuids put into ``uuid_bridge`` / ``uuid_kill`` are uuids. A job whose data is wrong
ends ``failed`` with the reason; nothing is dialled.

At most one client call per attempt, even if a worker dies mid-job (kill -9) and the
job or the callback is run again: before each originate the job asks the callback
(``CallbackStore.leg``) whether its attempt is still the current one and, for the
client, whether this attempt has not dialled them yet; the leg's uuid is recorded
first, so the dispatcher hangs up what a lost attempt left behind (its sweep).

FreeSWITCH behaviour relied on (transcripts P06 / P06b, inbound_04 .. inbound_09):
* ``bgapi originate {...}<dial> &park()`` answers the BACKGROUND_JOB ``+OK <uuid>`` once
  the leg ANSWERED (it stays parked), or ``-ERR <cause>`` (NO_ANSWER after
  ``originate_timeout``, USER_BUSY, USER_NOT_REGISTERED ...).
* A failed second originate leaves the parked first leg untouched (P06b): the job must
  hang the agent up itself.
* ``uuid_bridge <agent> <client>`` answers ``+OK <client>``; from then on the legs live
  on their own and hanging one up hangs up the other (P06).
* Whispers (``workers.media``): with ``waited_s`` in the job, the parked member hears the
  client's number and the minutes they waited (stock ``digits/N.wav`` and
  ``time/minute(s).wav`` prompts in one ``file_string://`` playback, sent with
  ``sendmsg``) before the client is dialled; with ``client_prompt``, the client hears that
  sound ("this is your callback") on answering, before the bridge. The job then needs
  CHANNEL_EXECUTE_COMPLETE / CHANNEL_HANGUP_COMPLETE on its connection.
"""
from __future__ import annotations

import logging
import uuid as uuidlib
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import redis

from orchestrator.config import Settings, from_env
from orchestrator.core import sounds
from orchestrator.core.dialstrings import callback_endpoints, e164, safe_uuid
from orchestrator.errors import ConfigError, EslCommandError, EslError, ProtocolError
from orchestrator.esl.inbound import InboundClient
from workers import media

log = logging.getLogger(__name__)

BRIDGED = "bridged"
AGENT_NO_ANSWER = "agent_no_answer"
CLIENT_NO_ANSWER = "client_no_answer"
FAILED = "failed"
# The job's attempt is no longer the callback's current one, or it already dialled the
# client (a re-run after a crash): nothing more is dialled; the callback tries again.
ABANDONED = "abandoned"

# Originate causes that say the dial string or the setup is wrong, not that nobody
# picked up: retrying the callback would fail the same way.
SETUP_CAUSES = frozenset(
    {
        "CHAN_NOT_IMPLEMENTED",
        "INVALID_GATEWAY",
        "INVALID_NUMBER_FORMAT",
        "MANDATORY_IE_MISSING",
        "INCOMPATIBLE_DESTINATION",
        "INVALID_PROFILE",
    }
)

ESL_CONNECT_TIMEOUT_S = 5.0
ESL_COMMAND_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class CallbackCall:
    """The job's data, checked. Times are whole seconds (FreeSWITCH's originate_timeout)."""

    tenant_id: str
    callback_id: str
    attempt: int
    agent_dial: str
    client_dial: str
    caller_id_number: str
    agent_timeout_s: int
    client_timeout_s: int
    esl_host: str
    esl_port: int
    esl_password: str
    whisper: str = ""  # the member's whisper (file_string:// of stock prompts), "" none
    client_prompt: str = ""  # what the client hears on answering (checked sound), "" none

    @property
    def needs_media(self) -> bool:
        return bool(self.whisper or self.client_prompt)

    @classmethod
    def from_job(cls, job: Mapping[str, Any], settings: Settings) -> "CallbackCall":
        """Check the job's data; ValueError names what is wrong."""
        if not isinstance(job, Mapping):
            raise ValueError("callback job is not a mapping")
        missing = [k for k in ("tenant_id", "callback_id", "agent_extension", "agent_domain", "client_number") if not job.get(k)]
        if missing:
            raise ValueError("callback job lacks %s" % ", ".join(missing))
        tenant_id, callback_id = str(job["tenant_id"]), str(job["callback_id"])
        if not tenant_id.isdigit() or not callback_id.isalnum() or len(callback_id) > 64:
            raise ValueError("callback job: bad tenant or callback id")
        agent_dial, client_dial = callback_endpoints(settings.external_dial_template, str(job["agent_extension"]),
                                                     str(job["agent_domain"]), str(job["client_number"]))
        caller_id = str(job.get("caller_id_number") or "")
        if caller_id and e164(caller_id) != caller_id:
            raise ValueError("caller ID %r is not an E.164 number" % caller_id[:40])
        whisper = ""
        if job.get("waited_s") is not None:  # the number is E.164 (checked above); minutes a whole number
            whisper = media.whisper(str(job["client_number"]), _whole(job["waited_s"], "waited_s", 0, 10 * 86400))
        prompt = str(job.get("client_prompt") or "")
        if prompt:  # a sound of the grammar (core.model.Sound), a tenant's own file under our recordings dir
            prompt = sounds.file_arg(prompt, int(tenant_id), settings.recordings_dir)
        return cls(
            tenant_id=tenant_id,
            callback_id=callback_id,
            attempt=_whole(job.get("attempt", 0), "attempt", 0, 1000),
            agent_dial=agent_dial,
            client_dial=client_dial,
            caller_id_number=caller_id,
            agent_timeout_s=_whole(job.get("agent_timeout_s") or 20, "agent_timeout_s", 1, 600),
            client_timeout_s=_whole(job.get("client_timeout_s") or 30, "client_timeout_s", 1, 600),
            esl_host=settings.esl_host,
            esl_port=settings.esl_port,
            esl_password=settings.esl_password,
            whisper=whisper,
            client_prompt=prompt,
        )

    def leg_variables(self, timeout_s: int) -> dict[str, str]:
        variables = {}
        if self.caller_id_number:
            variables["origination_caller_id_number"] = self.caller_id_number
        variables["originate_timeout"] = str(timeout_s)
        return variables


def _whole(value: Any, what: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)) or not str(value).isdigit() or not low <= int(value) <= high:
        raise ValueError("callback job: %s must be a whole number %d..%d" % (what, low, high))
    return int(value)


def _connect(call: CallbackCall) -> InboundClient:
    """A short-lived connection for one job (no reconnect: the job reports instead);
    subscribed to the media events when the job plays something (``workers.media``)."""
    return InboundClient(
        call.esl_host,
        call.esl_port,
        call.esl_password,
        events=media.MEDIA_EVENTS if getattr(call, "needs_media", False) else (),
        connect_timeout=ESL_CONNECT_TIMEOUT_S,
        command_timeout=ESL_COMMAND_TIMEOUT_S,
        reconnect=False,
    ).connect()


# The seam tests may replace (a function, like httpx's MockTransport).
connect_esl: Callable[[CallbackCall], InboundClient] = _connect


class _Claim:
    """May this job originate a leg now (``CallbackStore.leg``)? Run by RQ, a job must
    carry its attempt number; called directly (no RQ job) there is nothing to ask."""

    def __init__(self, call: CallbackCall) -> None:
        from rq import get_current_job

        from orchestrator.store.callbacks import CallbackStore

        job = get_current_job()
        if job is not None and not call.attempt:
            raise ValueError("callback job without its attempt number")
        self.store = CallbackStore(job.connection) if job is not None else None
        self.call = call

    def allows(self, which: str, leg: str) -> bool:
        if self.store is None:
            return True
        return self.store.leg(int(self.call.tenant_id), self.call.callback_id, self.call.attempt, which, leg)


def ring_agent_then_client(job: dict) -> dict:
    """Ring the agent, then the client, then bridge them.

    ``job``: {tenant_id, callback_id, attempt, agent_extension, agent_domain,
    client_number (E.164), caller_id_number (E.164 or ""), agent_timeout_s,
    client_timeout_s, waited_s (optional: the member's whisper), client_prompt (optional:
    a sound the client hears on answering)}. FreeSWITCH's address and password are this
    worker's settings.
    Returns {status: bridged | agent_no_answer | client_no_answer | failed | abandoned,
    cause, agent_uuid, client_uuid, tenant_id, callback_id}.
    """
    try:
        call = CallbackCall.from_job(job, from_env())
        claim = _Claim(call)
    except (ValueError, ConfigError) as exc:
        ids = job if isinstance(job, Mapping) else {}
        log.error("callback job refused: %s", exc)
        return {"status": FAILED, "cause": "job refused: %s" % exc, "agent_uuid": None, "client_uuid": None,
                "tenant_id": str(ids.get("tenant_id") or ""), "callback_id": str(ids.get("callback_id") or "")}
    extra = {"tenant_id": call.tenant_id, "callback_id": call.callback_id}
    outcome = _Outcome(call)
    try:
        esl = connect_esl(call)
    except (EslError, ProtocolError) as exc:
        log.error("callback: cannot reach FreeSWITCH", extra={**extra, "error": str(exc)})
        return outcome.done(FAILED, "ESL: %s" % exc)
    try:
        return _ring(esl, call, outcome, extra, claim)
    except redis.RedisError as exc:
        log.error("callback: Redis failed mid-call", extra={**extra, "error": str(exc)})
        _hang_up_quietly(call, list(outcome.legs), esl)
        return outcome.done(FAILED, "Redis: %s" % exc)
    except (EslError, ProtocolError, ValueError) as exc:
        # The connection failed in the middle: do not leave a parked leg behind.
        log.error("callback: ESL failed mid-call", extra={**extra, "error": str(exc)})
        _hang_up_quietly(call, list(outcome.legs), esl)
        return outcome.done(FAILED, "ESL: %s" % exc)
    finally:
        esl.close()


class _Outcome:
    def __init__(self, call: CallbackCall) -> None:
        self.call = call
        self.agent_uuid: str | None = None
        self.client_uuid: str | None = None
        self.legs: list[str] = []  # every leg originated (their uuids are ours: origination_uuid)

    def done(self, status: str, cause: str | None) -> dict:
        return {
            "status": status,
            "cause": cause,
            "agent_uuid": self.agent_uuid,
            "client_uuid": self.client_uuid,
            "tenant_id": self.call.tenant_id,
            "callback_id": self.call.callback_id,
        }


def _ring(esl: InboundClient, call: CallbackCall, outcome: _Outcome, extra: dict, claim: _Claim) -> dict:
    stream = esl.events_stream() if call.needs_media else None  # before any leg: no event is missed
    try:
        return _ring_legs(esl, call, outcome, extra, claim, stream)
    finally:
        if stream is not None:
            stream.close()


def _play(esl: InboundClient, stream: Any, leg: str, sound: str, extra: dict) -> bool:
    """Play ``sound`` on the parked ``leg``; False when the leg hung up meanwhile."""
    try:
        media.execute(esl, stream, leg, "playback", sound, timeout_s=120)
    except media.LegGone as exc:
        log.info("callback: the leg hung up during a prompt", extra={**extra, "leg": leg, "cause": str(exc)})
        return False
    return True


def _ring_legs(esl: InboundClient, call: CallbackCall, outcome: _Outcome, extra: dict, claim: _Claim,
               stream: Any) -> dict:
    agent_leg = str(uuidlib.uuid4())
    if not claim.allows("agent", agent_leg):
        log.warning("callback: attempt %d is no longer current; nobody rung", call.attempt, extra=extra)
        return outcome.done(ABANDONED, "attempt %d is no longer the callback's current one" % call.attempt)
    outcome.legs.append(agent_leg)
    log.info("callback: ringing the agent", extra={**extra, "dial": call.agent_dial})
    try:
        outcome.agent_uuid = safe_uuid(esl.originate(
            call.agent_dial, variables=call.leg_variables(call.agent_timeout_s), timeout_s=call.agent_timeout_s,
            origination_uuid=agent_leg,
        ), "agent leg")
    except EslCommandError as exc:
        status = FAILED if _is_setup_problem(exc) else AGENT_NO_ANSWER
        log.info("callback: agent did not answer", extra={**extra, "cause": exc.cause, "status": status})
        return outcome.done(status, exc.cause)

    if call.whisper and not _play(esl, stream, outcome.agent_uuid, call.whisper, extra):
        return outcome.done(AGENT_NO_ANSWER, "the member hung up during the whisper")

    client_leg = str(uuidlib.uuid4())
    if not claim.allows("client", client_leg):
        # Attempt superseded, or this attempt already dialled the client (a re-run).
        esl.uuid_kill(outcome.agent_uuid)
        log.warning("callback: the client is not dialled twice in attempt %d (or it is no longer current)", call.attempt,
                    extra=extra)
        return outcome.done(ABANDONED, "attempt %d already dialled the client or is no longer current" % call.attempt)
    outcome.legs.append(client_leg)
    log.info("callback: agent answered, ringing the client", extra={**extra, "agent_uuid": outcome.agent_uuid})
    try:
        outcome.client_uuid = safe_uuid(esl.originate(
            call.client_dial, variables=call.leg_variables(call.client_timeout_s), timeout_s=call.client_timeout_s,
            origination_uuid=client_leg,
        ), "client leg")
    except EslCommandError as exc:
        esl.uuid_kill(outcome.agent_uuid)  # the agent waits parked otherwise (P06b)
        status = FAILED if _is_setup_problem(exc) else CLIENT_NO_ANSWER
        log.info("callback: client did not answer", extra={**extra, "cause": exc.cause, "status": status})
        return outcome.done(status, exc.cause)

    if call.client_prompt and not _play(esl, stream, outcome.client_uuid, call.client_prompt, extra):
        esl.uuid_kill(outcome.agent_uuid)
        return outcome.done(CLIENT_NO_ANSWER, "the client hung up during the callback prompt")

    try:
        esl.uuid_bridge(outcome.agent_uuid, outcome.client_uuid)
    except EslCommandError as exc:
        # Typically the agent hung up while the client's phone rang.
        log.warning("callback: bridge failed", extra={**extra, "cause": exc.cause})
        esl.uuid_kill(outcome.client_uuid)
        esl.uuid_kill(outcome.agent_uuid)
        return outcome.done(FAILED, exc.cause)
    log.info(
        "callback: bridged",
        extra={**extra, "agent_uuid": outcome.agent_uuid, "client_uuid": outcome.client_uuid},
    )
    return outcome.done(BRIDGED, None)


def _is_setup_problem(exc: EslCommandError) -> bool:
    return exc.cause in SETUP_CAUSES or exc.reply.startswith("-USAGE")


def _hang_up_quietly(call: CallbackCall, uuids: list[str], esl: InboundClient) -> None:
    """Best effort: over the job's connection if it still works, else a fresh one."""
    if not uuids:
        return
    for attempt in (esl, None):
        try:
            client = attempt if attempt is not None and attempt.connected else connect_esl(call)
        except (EslError, ProtocolError):
            continue
        try:
            for uuid in uuids:
                client.uuid_kill(uuid)
            return
        except (EslError, ProtocolError):
            continue
        finally:
            if client is not esl:
                client.close()


__all__ = [
    "ABANDONED",
    "AGENT_NO_ANSWER",
    "BRIDGED",
    "CLIENT_NO_ANSWER",
    "FAILED",
    "CallbackCall",
    "ring_agent_then_client",
]
