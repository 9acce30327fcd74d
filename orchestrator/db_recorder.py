"""Writes finished calls, voicemails and faxes to the database, off the gevent hub.

The call handler's ``CallRecorder``. A finished call's history row and a department
call's missed offers are queued for the ``HistoryWriter`` (written in batches by one
background greenlet; ``close()`` writes what is queued at shutdown). Voicemails and
faxes are one short transaction each (their e-mail job needs the row's id at once), run
in the wiring's thread pool so that a slow database never stalls other calls' events.
``DbHistory`` reads a caller's last agent for the caller rules.
"""
from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import Any, Callable

from orchestrator.core.actions import CallInfo, Finished, StoreFax, StoreVoicemail
from orchestrator.db import queries
from orchestrator.history_writer import HistoryWriter

log = logging.getLogger(__name__)

# Told (tenant id, message id) once a voicemail message is committed; the wiring connects
# it to the e-mail job's enqueue. It must not raise; if it does, the error is logged.
OnVoicemail = Callable[[int, int], None]
OnFax = OnVoicemail  # (tenant id, fax id) once a fax is committed: its e-mail job

def _at(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000.0, tz=timezone.utc)


def _ts(ms: int | None) -> datetime | None:
    return None if ms is None else _at(ms)


class DbRecorder:
    def __init__(self, session_factory: Any, run_blocking: Callable[..., Any], on_voicemail: OnVoicemail | None = None,
                 on_fax: OnFax | None = None, history: HistoryWriter | None = None) -> None:
        self._sessions = session_factory
        self._run = run_blocking
        self._on_voicemail = on_voicemail
        self._on_fax = on_fax
        self.history = history if history is not None else HistoryWriter(session_factory, run_blocking)

    def call_finished(self, tenant_id: int, call: CallInfo, finished: Finished, started_ms: int, answered_ms: int | None, ended_ms: int) -> None:
        """Queue the call's history row (written within ``MAX_DELAY_S`` by the writer)."""
        self.history.add({
            "tenant_id": tenant_id,
            "call_uuid": call.uuid,
            "direction": "outbound" if finished.outbound else "internal" if call.entry == "internal" else "inbound",
            "caller": call.caller_number,
            "destination": finished.outbound_to or call.destination,  # outbound: the E.164 dialled
            "started_at": _at(started_ms),
            "answered_at": _ts(answered_ms),
            "ended_at": _at(ended_ms),
            "answered_by_employee_id": finished.answered_by_employee_id,
            "hangup_cause": finished.hangup_cause,
            "route": finished.route[:2000],
        })

    def close(self, timeout: float) -> bool:
        """Orderly shutdown: write the queued history rows (see ``HistoryWriter.close``)."""
        return self.history.close(timeout)

    def missed_offers(self, tenant_id: int, call: CallInfo, department_id: int, ended_ms: int, misses: list[queries.Miss]) -> None:
        """Queue the call's missed offers for the history writer (batched like call records)."""
        self.history.add(queries.MissedOffers(tenant_id, department_id, call.uuid, _at(ended_ms), tuple(misses)))

    def voicemail(self, tenant_id: int, call: CallInfo, message: StoreVoicemail) -> None:
        def write() -> int:
            with self._sessions() as session:
                message_id = queries.record_voicemail(session, tenant_id, message.box_id, message.caller, call.uuid, message.path, message.duration_ms)
                session.commit()
                return message_id

        self._stored(tenant_id, "voicemail", self._run(write), self._on_voicemail)

    def fax(self, tenant_id: int, call: CallInfo, fax: StoreFax) -> None:
        def write() -> int:
            with self._sessions() as session:
                fax_id = queries.record_fax(
                    session, tenant_id, fax.box_id, fax.caller, call.uuid, fax.path, fax.pages, fax.success,
                    fax.result_code, fax.result_text, fax.remote_station,
                )
                session.commit()
                return fax_id

        self._stored(tenant_id, "fax", self._run(write), self._on_fax)

    @staticmethod
    def _stored(tenant_id: int, what: str, row_id: int, notify: OnVoicemail | None) -> None:
        """Tell ``notify`` (the e-mail job's enqueue) that a row is committed."""
        if notify is None:
            return
        try:
            notify(tenant_id, row_id)
        except Exception as exc:  # noqa: BLE001 - the row is stored; a notice must not break the call
            log.error("tenant %d: %s %d stored, but its notification failed: %s", tenant_id, what, row_id, exc)


class DbHistory:
    """The call history the caller rules read (``caller_lookups.History``)."""

    def __init__(self, session_factory: Any, run_blocking: Callable[..., Any]) -> None:
        self._sessions = session_factory
        self._run = run_blocking

    def last_agent(self, tenant_id: int, callers: tuple[str, ...], since_days: int, now_ms: int) -> tuple[int, int] | None:
        def read() -> tuple[int, int] | None:
            with self._sessions() as session:
                found = queries.last_agent(session, tenant_id, callers, _at(now_ms), since_days)
            if found is None:
                return None
            talked = found.talked_at if found.talked_at.tzinfo else found.talked_at.replace(tzinfo=timezone.utc)
            return found.employee_id, int(talked.timestamp() * 1000)

        result: tuple[int, int] | None = self._run(read)
        return result
