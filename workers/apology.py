"""The expired callback's job: call the client back, apologise, take a voicemail.

``apologise_and_record(job)`` is queued by the callback dispatcher when a callback's time
ran out (the department's no-answer timeout, from the moment the caller joined the
queue) with no member answering. It originates the client (``&park()``), plays the
department's apology followed by the voicemail greeting and beep, records the client's
message into the department's no-answer voicemail box, hangs up, then stores the
message like any voicemail (``queries.record_voicemail``, linked to the caller's
ORIGINAL call uuid) and queues its e-mail (``workers.mail.send_voicemail``, when
``PBX_SMTP_HOST`` is set). The file is the flat ``PBX_RECORDINGS_DIR/vm-<tenant>-<box>-
<leg uuid>.wav``: FreeSWITCH's ``record`` creates no folder (``workers.media``).

Everything in the job is checked here before it reaches FreeSWITCH (anyone who can write
Redis can write a job): the client's number and caller ID are E.164, the apology a sound
of the grammar (``core.sounds.file_arg``), ids are digits, the original call a uuid, the
recordings directory this worker's own. The client is dialled at most once per attempt
(``CallbackStore.leg``), as for ``workers.jobs``.

Returns {status: apologised | client_no_answer | failed | abandoned, cause, voicemail_id,
record_ms, client_uuid, tenant_id, callback_id}.
"""
from __future__ import annotations

import logging
import re
import uuid as uuidlib
from dataclasses import dataclass
from typing import Any, Mapping

import redis

from orchestrator.config import Settings, from_env
from orchestrator.core import sounds
from orchestrator.core.dialstrings import e164, external_endpoint, safe_uuid
from orchestrator.errors import ConfigError, EslCommandError, EslError, ProtocolError
from workers import jobs, media

log = logging.getLogger(__name__)

APOLOGISED = "apologised"
GREETING = "voicemail/vm-record_message.wav"
BEEP = "tone_stream://%(250,0,1000)"
_SAFE_DIR = re.compile(r"/(?:[A-Za-z0-9_.+-]+/?)*")


@dataclass(frozen=True)
class ApologyCall:
    tenant_id: str
    callback_id: str
    attempt: int
    client_dial: str
    caller_id_number: str
    client_timeout_s: int
    apology: str  # a file argument (core.sounds.file_arg)
    box_id: int  # 0: no box, apologise only
    max_message_s: int
    call_uuid: str  # the caller's original call ("" if unknown)
    recordings_dir: str
    esl_host: str
    esl_port: int
    esl_password: str
    needs_media: bool = True

    @classmethod
    def from_job(cls, job: Mapping[str, Any], settings: Settings) -> "ApologyCall":
        if not isinstance(job, Mapping):
            raise ValueError("apology job is not a mapping")
        tenant_id, callback_id = str(job.get("tenant_id") or ""), str(job.get("callback_id") or "")
        if not tenant_id.isdigit() or not callback_id.isalnum() or len(callback_id) > 64:
            raise ValueError("apology job: bad tenant or callback id")
        client = str(job.get("client_number") or "")
        if e164(client) != client:
            raise ValueError("client number %r is not an E.164 number" % client[:40])
        caller_id = str(job.get("caller_id_number") or "")
        if caller_id and e164(caller_id) != caller_id:
            raise ValueError("caller ID %r is not an E.164 number" % caller_id[:40])
        call_uuid = str(job.get("call_uuid") or "")
        if call_uuid:
            safe_uuid(call_uuid, "original call")
        box_id = jobs._whole(job.get("box_id") or 0, "box_id", 0, 2**31 - 1)
        if box_id and (not _SAFE_DIR.fullmatch(settings.recordings_dir) or ".." in settings.recordings_dir):
            raise ValueError("PBX_RECORDINGS_DIR %r is not a plain absolute path: no voicemail can be recorded"
                             % settings.recordings_dir)
        return cls(
            tenant_id=tenant_id, callback_id=callback_id,
            attempt=jobs._whole(job.get("attempt", 0), "attempt", 0, 1000),
            client_dial=external_endpoint(settings.external_dial_template, client),
            caller_id_number=caller_id,
            client_timeout_s=jobs._whole(job.get("client_timeout_s") or 30, "client_timeout_s", 1, 600),
            apology=sounds.file_arg(str(job.get("apology") or ""), int(tenant_id), settings.recordings_dir),
            box_id=box_id,
            max_message_s=jobs._whole(job.get("max_message_s") or 120, "max_message_s", 1, 3600),
            call_uuid=call_uuid,
            recordings_dir=settings.recordings_dir.rstrip("/"),
            esl_host=settings.esl_host, esl_port=settings.esl_port, esl_password=settings.esl_password,
        )


def apologise_and_record(job: dict) -> dict:
    """RQ job (queue ``pbx-callbacks``): see the module's docstring."""
    ids = job if isinstance(job, Mapping) else {}
    out: dict[str, Any] = {"status": jobs.FAILED, "cause": None, "voicemail_id": None, "record_ms": 0,
                           "client_uuid": None, "tenant_id": str(ids.get("tenant_id") or ""),
                           "callback_id": str(ids.get("callback_id") or "")}
    try:
        settings = from_env()
        call = ApologyCall.from_job(job, settings)
        claim = jobs._Claim(call)  # type: ignore[arg-type]  # reads tenant_id, callback_id, attempt
    except (ValueError, ConfigError) as exc:
        log.error("apology job refused: %s", exc)
        return dict(out, cause="job refused: %s" % exc)
    extra = {"tenant_id": call.tenant_id, "callback_id": call.callback_id}
    leg = str(uuidlib.uuid4())
    try:
        if not claim.allows("client", leg):
            return dict(out, status=jobs.ABANDONED, cause="attempt %d is no longer current" % call.attempt)
        esl = jobs.connect_esl(call)  # type: ignore[arg-type]
    except redis.RedisError as exc:
        return dict(out, cause="Redis: %s" % exc)
    except (EslError, ProtocolError) as exc:
        log.error("apology: cannot reach FreeSWITCH", extra={**extra, "error": str(exc)})
        return dict(out, cause="ESL: %s" % exc)
    try:
        result = _call(esl, call, leg, extra)
    except (EslError, ProtocolError, ValueError) as exc:
        log.error("apology: ESL failed mid-call", extra={**extra, "error": str(exc)})
        jobs._hang_up_quietly(call, [leg], esl)  # type: ignore[arg-type]
        return dict(out, cause="ESL: %s" % exc, client_uuid=leg)
    finally:
        esl.close()
    out.update(result, client_uuid=leg)
    if out["status"] == APOLOGISED and out["record_ms"] > 0 and call.box_id:
        out["voicemail_id"] = _store(call, settings, out["path"], out["record_ms"], str(ids.get("client_number")))
    out.pop("path", None)
    return out


def _call(esl: Any, call: ApologyCall, leg: str, extra: dict) -> dict:
    stream = esl.events_stream()  # before the originate: no event is missed
    try:
        variables = {"originate_timeout": str(call.client_timeout_s)}
        if call.caller_id_number:
            variables["origination_caller_id_number"] = call.caller_id_number
        try:
            safe_uuid(esl.originate(call.client_dial, variables=variables, timeout_s=call.client_timeout_s,
                                    origination_uuid=leg), "client leg")
        except EslCommandError as exc:
            status = jobs.FAILED if jobs._is_setup_problem(exc) else jobs.CLIENT_NO_ANSWER
            log.info("apology: the client did not answer", extra={**extra, "cause": exc.cause})
            return {"status": status, "cause": exc.cause}
        parts = [call.apology] + ([GREETING, BEEP] if call.box_id else [])
        try:
            media.execute(esl, stream, leg, "playback", "file_string://" + "!".join(parts), timeout_s=120)
        except media.LegGone:
            return {"status": APOLOGISED, "cause": "the client hung up during the apology"}
        if not call.box_id:
            esl._kill_quietly(leg)
            return {"status": APOLOGISED, "cause": "no voicemail box (the department's no-answer target is not one)"}
        path = "%s/vm-%s-%d-%s.wav" % (call.recordings_dir, call.tenant_id, call.box_id, leg)
        # record <path> <max s> <silence threshold> <silence hits>: ends after 3 s of
        # silence, at the limit, or when the client hangs up (as core.callflow._record).
        app_uuid = str(uuidlib.uuid4())
        esl.command("sendmsg %s" % leg, {"call-command": "execute", "execute-app-name": "record",
                                         "execute-app-arg": "%s %d 200 3" % (path, call.max_message_s),
                                         "Event-UUID": app_uuid})
        # Both the record's EXECUTE_COMPLETE and the leg's HANGUP_COMPLETE carry the
        # channel's variables: record_ms is set once the file was opened.
        event = stream.wait_for(lambda e: e.get("Application-UUID") == app_uuid or (
            e.name == "CHANNEL_HANGUP_COMPLETE" and e.get("Unique-ID") == leg), call.max_message_s + 30)
        esl._kill_quietly(leg)
        raw = event.get("variable_record_ms")
        if raw is None:
            log.error("apology: voicemail NOT recorded: FreeSWITCH could not open the file; check that "
                      "PBX_RECORDINGS_DIR exists on the FreeSWITCH host and that FreeSWITCH may write there",
                      extra={**extra, "path": path})
            return {"status": APOLOGISED, "cause": "voicemail not recorded (FreeSWITCH could not open %s)" % path}
        try:
            record_ms = int(raw)
        except ValueError:
            record_ms = 0
        return {"status": APOLOGISED, "cause": None if record_ms else "no message left", "record_ms": record_ms,
                "path": path}
    finally:
        stream.close()


def _store(call: ApologyCall, settings: Settings, path: str, record_ms: int, caller: str) -> int | None:
    """The message as a voicemail of the box (linked to the original call) and its e-mail job."""
    from rq import get_current_job

    from orchestrator import wiring
    from orchestrator.db import queries
    from workers.mail import _database

    from sqlalchemy.exc import SQLAlchemyError

    try:
        db = _database(settings)
        with db.session_factory() as session:
            message_id = queries.record_voicemail(session, int(call.tenant_id), call.box_id, caller, call.call_uuid or "",
                                                  path, record_ms)
            session.commit()
    except SQLAlchemyError as exc:
        # Not raised: a crashed job would call the client again. The file is on FreeSWITCH.
        log.error("apology: voicemail recorded at %s but NOT stored in the database: %s", path, exc,
                  extra={"tenant_id": call.tenant_id, "callback_id": call.callback_id})
        return None
    rq_job = get_current_job()
    if rq_job is not None:
        notify = wiring._mail_notifier(settings, rq_job.connection, wiring.VOICEMAIL_MAIL_JOB, "voicemail")
        if notify is not None:
            notify(int(call.tenant_id), message_id)
    log.info("apology: voicemail %d stored in box %d (original call %s)", message_id, call.box_id, call.call_uuid or "?",
             extra={"tenant_id": call.tenant_id, "callback_id": call.callback_id})
    return message_id


__all__ = ["APOLOGISED", "ApologyCall", "apologise_and_record"]
