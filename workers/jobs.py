"""Job functions run by ``pbx-worker``. Plain functions of plain data (RQ pickles the
arguments), importable by any RQ worker process.

``ring_agent_then_client`` is the ESL part of a callback from a queue: ring the agent
first, and only once the agent has answered ring the client, then bridge the two legs.
Whether to re-queue a callback whose agent did not answer is the caller's decision; the
job only reports what happened.

FreeSWITCH behaviour relied on (transcripts P06 / P06b, inbound_04 .. inbound_09):
* ``bgapi originate {...}<dial> &park()`` answers the BACKGROUND_JOB ``+OK <uuid>`` once
  the leg ANSWERED (it stays parked), or ``-ERR <cause>`` (NO_ANSWER after
  ``originate_timeout``, USER_BUSY, USER_NOT_REGISTERED ...).
* A failed second originate leaves the parked first leg untouched (P06b): the job must
  hang the agent up itself.
* ``uuid_bridge <agent> <client>`` answers ``+OK <client>``; from then on the legs live
  on their own and hanging one up hangs up the other (P06).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from orchestrator.errors import EslCommandError, EslError, ProtocolError
from orchestrator.esl.inbound import InboundClient

log = logging.getLogger(__name__)

BRIDGED = "bridged"
AGENT_NO_ANSWER = "agent_no_answer"
CLIENT_NO_ANSWER = "client_no_answer"
FAILED = "failed"

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
    agent_dial: str
    client_dial: str
    caller_id_number: str
    agent_timeout_s: int
    client_timeout_s: int
    esl_host: str
    esl_port: int
    esl_password: str

    @classmethod
    def from_job(cls, job: Mapping[str, Any]) -> "CallbackCall":
        missing = [k for k in ("tenant_id", "callback_id", "agent_dial", "client_dial", "esl") if not job.get(k)]
        if missing:
            raise ValueError("callback job lacks %s" % ", ".join(missing))
        esl = job["esl"]
        return cls(
            tenant_id=str(job["tenant_id"]),
            callback_id=str(job["callback_id"]),
            agent_dial=str(job["agent_dial"]),
            client_dial=str(job["client_dial"]),
            caller_id_number=str(job.get("caller_id_number") or ""),
            agent_timeout_s=int(job.get("agent_timeout_s") or 20),
            client_timeout_s=int(job.get("client_timeout_s") or 30),
            esl_host=str(esl.get("host") or "127.0.0.1"),
            esl_port=int(esl.get("port") or 8021),
            esl_password=str(esl["password"]),
        )

    def leg_variables(self, timeout_s: int) -> dict[str, str]:
        variables = {}
        if self.caller_id_number:
            variables["origination_caller_id_number"] = self.caller_id_number
        variables["originate_timeout"] = str(timeout_s)
        return variables


def _connect(call: CallbackCall) -> InboundClient:
    """A short-lived connection for one job (no reconnect: the job reports instead)."""
    return InboundClient(
        call.esl_host,
        call.esl_port,
        call.esl_password,
        connect_timeout=ESL_CONNECT_TIMEOUT_S,
        command_timeout=ESL_COMMAND_TIMEOUT_S,
        reconnect=False,
    ).connect()


# The seam tests may replace (a function, like httpx's MockTransport).
connect_esl: Callable[[CallbackCall], InboundClient] = _connect


def ring_agent_then_client(job: dict) -> dict:
    """Ring the agent, then the client, then bridge them.

    ``job``: {tenant_id, callback_id, agent_dial, client_dial, caller_id_number,
    agent_timeout_s, client_timeout_s, esl: {host, port, password}}.
    Returns {status: bridged | agent_no_answer | client_no_answer | failed, cause,
    agent_uuid, client_uuid, tenant_id, callback_id}.
    """
    call = CallbackCall.from_job(job)
    extra = {"tenant_id": call.tenant_id, "callback_id": call.callback_id}
    outcome = _Outcome(call)
    try:
        esl = connect_esl(call)
    except (EslError, ProtocolError) as exc:
        log.error("callback: cannot reach FreeSWITCH", extra={**extra, "error": str(exc)})
        return outcome.done(FAILED, "ESL: %s" % exc)
    try:
        return _ring(esl, call, outcome, extra)
    except (EslError, ProtocolError) as exc:
        # The connection failed in the middle: do not leave a parked leg behind.
        log.error("callback: ESL failed mid-call", extra={**extra, "error": str(exc)})
        _hang_up_quietly(call, [u for u in (outcome.agent_uuid, outcome.client_uuid) if u], esl)
        return outcome.done(FAILED, "ESL: %s" % exc)
    finally:
        esl.close()


class _Outcome:
    def __init__(self, call: CallbackCall) -> None:
        self.call = call
        self.agent_uuid: str | None = None
        self.client_uuid: str | None = None

    def done(self, status: str, cause: str | None) -> dict:
        return {
            "status": status,
            "cause": cause,
            "agent_uuid": self.agent_uuid,
            "client_uuid": self.client_uuid,
            "tenant_id": self.call.tenant_id,
            "callback_id": self.call.callback_id,
        }


def _ring(esl: InboundClient, call: CallbackCall, outcome: _Outcome, extra: dict) -> dict:
    log.info("callback: ringing the agent", extra={**extra, "dial": call.agent_dial})
    try:
        outcome.agent_uuid = esl.originate(
            call.agent_dial, variables=call.leg_variables(call.agent_timeout_s), timeout_s=call.agent_timeout_s
        )
    except EslCommandError as exc:
        status = FAILED if _is_setup_problem(exc) else AGENT_NO_ANSWER
        log.info("callback: agent did not answer", extra={**extra, "cause": exc.cause, "status": status})
        return outcome.done(status, exc.cause)

    log.info("callback: agent answered, ringing the client", extra={**extra, "agent_uuid": outcome.agent_uuid})
    try:
        outcome.client_uuid = esl.originate(
            call.client_dial, variables=call.leg_variables(call.client_timeout_s), timeout_s=call.client_timeout_s
        )
    except EslCommandError as exc:
        esl.uuid_kill(outcome.agent_uuid)  # the agent waits parked otherwise (P06b)
        status = FAILED if _is_setup_problem(exc) else CLIENT_NO_ANSWER
        log.info("callback: client did not answer", extra={**extra, "cause": exc.cause, "status": status})
        return outcome.done(status, exc.cause)

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
    "AGENT_NO_ANSWER",
    "BRIDGED",
    "CLIENT_NO_ANSWER",
    "FAILED",
    "CallbackCall",
    "ring_agent_then_client",
]
