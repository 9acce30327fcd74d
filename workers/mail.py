"""Voicemail and faxes by e-mail: the ``pbx-default`` jobs the orchestrator enqueues.

``send_voicemail(tenant_id, message_id)`` loads the message and its box's address from
the database, builds the mail (caller, local time, duration; the recording attached when
this host can read it, otherwise where it lies) and sends it with ``smtplib`` to the
deployment's SMTP server (``PBX_SMTP_*``). SMTP failures raise, so RQ retries the job.
``send_fax(tenant_id, fax_id)`` does the same for a received fax (the TIFF attached).
"""
from __future__ import annotations

import logging
import mimetypes
import os
import smtplib
import ssl
from datetime import timezone
from email.message import EmailMessage
from typing import Any
from zoneinfo import ZoneInfo

from orchestrator.config import Settings, from_env
from orchestrator.db.queries import FaxNotice, VoicemailNotice, fax_notice, voicemail_notice

log = logging.getLogger(__name__)

SMTP_TIMEOUT_S = 30.0
MAX_ATTACHMENT_BYTES = 20 * 1024 * 1024  # most mail servers refuse more than ~25 MB

_databases: dict[str, Any] = {}


def _database(settings: Settings) -> Any:
    """One engine per database URL for the life of the worker process."""
    from orchestrator import wiring

    url = settings.effective_database_url
    if url not in _databases:
        _databases[url] = wiring.database(settings, seed_demo=False)
    return _databases[url]


def _duration(ms: int) -> str:
    return "%d:%02d" % divmod(max(0, round(ms / 1000)), 60)


def _readable(path: str) -> bool:
    return os.path.isfile(path) and os.access(path, os.R_OK)


def build_message(notice: VoicemailNotice, sender: str) -> EmailMessage:
    """The e-mail for one voicemail message (``notice.email`` must be set)."""
    created = notice.created_at if notice.created_at.tzinfo else notice.created_at.replace(tzinfo=timezone.utc)
    local = created.astimezone(ZoneInfo(notice.timezone))
    caller = notice.caller or "an unknown caller"
    duration = _duration(notice.duration_ms)
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = notice.email or ""
    msg["Subject"] = "Voicemail from %s (%s, %s)" % (caller, notice.box_name, duration)
    lines = [
        "New voicemail in %s (%s)." % (notice.box_name, notice.tenant_name),
        "",
        "From:     %s" % caller,
        "Time:     %s" % local.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "Duration: %s" % duration,
        "",
    ]
    attach = _readable(notice.recording_path)
    if attach and os.path.getsize(notice.recording_path) > MAX_ATTACHMENT_BYTES:
        attach = False
        lines.append("The recording is too large to attach; it is at %s." % notice.recording_path)
    elif attach:
        lines.append("The recording is attached.")
    else:
        lines.append("The recording is not attached (not readable on the mail host); it is at %s on the "
                     "FreeSWITCH server." % notice.recording_path)
    msg.set_content("\n".join(lines) + "\n")
    if attach:
        ctype = mimetypes.guess_type(notice.recording_path)[0] or "application/octet-stream"
        maintype, _, subtype = ctype.partition("/")
        with open(notice.recording_path, "rb") as f:
            data = f.read()
        extension = os.path.splitext(notice.recording_path)[1] or ".wav"
        msg.add_attachment(data, maintype=maintype, subtype=subtype,
                           filename="voicemail-%d%s" % (notice.message_id, extension))
    return msg


def send(msg: EmailMessage, settings: Settings) -> None:
    """Deliver ``msg`` through the deployment's SMTP server; raises on failure."""
    with smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=SMTP_TIMEOUT_S) as smtp:
        if settings.smtp_starttls:
            smtp.starttls(context=ssl.create_default_context())
        if settings.smtp_user:
            smtp.login(settings.smtp_user, settings.smtp_password)
        smtp.send_message(msg)


def send_voicemail(tenant_id: int, message_id: int) -> dict[str, Any]:
    """RQ job: e-mail voicemail ``message_id`` of ``tenant_id`` to its box's address."""
    settings = from_env()
    if not settings.smtp_host:
        log.warning("tenant %d: voicemail %d not e-mailed: PBX_SMTP_HOST is empty on this worker", tenant_id, message_id)
        return {"status": "disabled", "message_id": message_id}
    db = _database(settings)
    with db.session_factory() as session:
        notice = voicemail_notice(session, tenant_id, message_id)
    if notice is None:
        log.warning("tenant %d: voicemail %d is gone; nothing to e-mail", tenant_id, message_id)
        return {"status": "gone", "message_id": message_id}
    if not notice.email:
        log.info("tenant %d: voicemail box %s has no e-mail address", tenant_id, notice.box_name)
        return {"status": "no_address", "message_id": message_id}
    msg = build_message(notice, settings.smtp_from)
    send(msg, settings)
    attached = any(True for _ in msg.iter_attachments())
    log.info("tenant %d: voicemail %d e-mailed to %s%s", tenant_id, message_id, notice.email,
             "" if attached else " (without the recording)")
    return {"status": "sent", "message_id": message_id, "to": notice.email, "attached": attached}


def build_fax_message(notice: FaxNotice, sender: str) -> EmailMessage:
    """The e-mail for one received fax (``notice.email`` must be set)."""
    created = notice.created_at if notice.created_at.tzinfo else notice.created_at.replace(tzinfo=timezone.utc)
    local = created.astimezone(ZoneInfo(notice.timezone))
    caller = notice.caller or "an unknown caller"
    pages = "%d page%s" % (notice.pages, "" if notice.pages == 1 else "s")
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = notice.email or ""
    msg["Subject"] = "Fax from %s (%s, %s)%s" % (caller, notice.box_name, pages, "" if notice.success else " - incomplete")
    lines = [
        "New fax in %s (%s)." % (notice.box_name, notice.tenant_name),
        "",
        "From:     %s%s" % (caller, " (%s)" % notice.remote_station if notice.remote_station else ""),
        "Time:     %s" % local.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "Pages:    %s" % pages,
        "",
    ]
    if not notice.success:
        lines += ["The transfer did not complete (%s): the pages received are attached." % notice.result_text, ""]
    attach = _readable(notice.document_path) and os.path.getsize(notice.document_path) <= MAX_ATTACHMENT_BYTES
    if attach:
        lines.append("The document is attached (TIFF).")
    else:
        lines.append("The document is not attached (not readable on the mail host, or too large); it is at %s "
                     "on the FreeSWITCH server." % notice.document_path)
    msg.set_content("\n".join(lines) + "\n")
    if attach:
        with open(notice.document_path, "rb") as f:
            data = f.read()
        msg.add_attachment(data, maintype="image", subtype="tiff", filename="fax-%d.tif" % notice.fax_id)
    return msg


def send_fax(tenant_id: int, fax_id: int) -> dict[str, Any]:
    """RQ job: e-mail fax ``fax_id`` of ``tenant_id`` to its box's address."""
    settings = from_env()
    if not settings.smtp_host:
        log.warning("tenant %d: fax %d not e-mailed: PBX_SMTP_HOST is empty on this worker", tenant_id, fax_id)
        return {"status": "disabled", "fax_id": fax_id}
    db = _database(settings)
    with db.session_factory() as session:
        notice = fax_notice(session, tenant_id, fax_id)
    if notice is None:
        log.warning("tenant %d: fax %d is gone; nothing to e-mail", tenant_id, fax_id)
        return {"status": "gone", "fax_id": fax_id}
    if not notice.email:
        log.info("tenant %d: box %s has no e-mail address for fax %d", tenant_id, notice.box_name, fax_id)
        return {"status": "no_address", "fax_id": fax_id}
    msg = build_fax_message(notice, settings.smtp_from)
    send(msg, settings)
    attached = any(True for _ in msg.iter_attachments())
    log.info("tenant %d: fax %d e-mailed to %s%s", tenant_id, fax_id, notice.email, "" if attached else " (without the document)")
    return {"status": "sent", "fax_id": fax_id, "to": notice.email, "attached": attached}
