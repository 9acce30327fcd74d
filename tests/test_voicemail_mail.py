"""Voicemail by e-mail: DbRecorder -> RQ job on real Redis -> real SMTP server on loopback.

The message is stored in the session's PostgreSQL database, ``wiring.voicemail_notifier``
enqueues ``workers.mail.send_voicemail`` on ``pbx-default``, ``rq.SimpleWorker`` runs it
in this process, and an ``aiosmtpd`` server on 127.0.0.1 receives the mail.
"""
from __future__ import annotations

import email
import email.policy
import logging
import socket
from pathlib import Path
from typing import Iterator

import pytest
import redis
from aiosmtpd.controller import Controller
from rq import Queue, SimpleWorker
from sqlalchemy import select

from orchestrator import config, wiring
from orchestrator.core.actions import CallInfo, StoreVoicemail
from orchestrator.db.models import VoicemailBox
from orchestrator.db_recorder import DbRecorder
from tests.pg_demo import ensure_demo_tenant
from workers import DEFAULT_QUEUE, SERIALIZER

WAV = b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(range(64))


class Inbox:
    def __init__(self) -> None:
        self.received: list[tuple[str, list[str], bytes]] = []

    async def handle_DATA(self, server, session, envelope) -> str:  # noqa: ANN001 - aiosmtpd's hook
        self.received.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content or envelope.content))
        return "250 OK"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    inbox, port = Inbox(), _free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


@pytest.fixture
def env(pg_server_url: str, redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    ensure_demo_tenant(pg_server_url)
    values = {"DATABASE_URL": pg_server_url, "REDIS_URL": redis_url, "PBX_DATA_DIR": str(tmp_path),
              "PBX_SMTP_FROM": "PBX <voicemail@pbx.example>"}
    for k, v in values.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("PBX_SMTP_HOST", raising=False)
    return values


def _store(settings: config.Settings, client: redis.Redis, recording: str, uuid: str) -> tuple[int, int]:
    tenant_id = ensure_demo_tenant(settings.database_url)  # other tests share the database
    db = wiring.database(settings)
    with db.session_factory() as s:
        box_id = s.scalars(select(VoicemailBox.id).where(
            VoicemailBox.tenant_id == tenant_id, VoicemailBox.name == "Sales voicemail")).one()
    recorder = DbRecorder(db.session_factory, lambda fn, *a: fn(*a), wiring.voicemail_notifier(settings, client))
    call = CallInfo(uuid, "public", "+74950000003", "+78121234567")
    recorder.voicemail(tenant_id, call, StoreVoicemail(box_id, recording, 18_400, "+78121234567"))
    db.engine.dispose()
    return tenant_id, box_id


def _work(client: redis.Redis) -> list:
    queue = Queue(DEFAULT_QUEUE, connection=client, serializer=SERIALIZER)  # as pbx-worker
    jobs = [queue.fetch_job(job_id) for job_id in queue.job_ids]
    SimpleWorker([queue], connection=client, serializer=SERIALIZER).work(burst=True)
    for job in jobs:
        job.refresh()
    return jobs


def test_voicemail_is_mailed_with_the_recording(env, smtp, tmp_path: Path, redis_url: str, monkeypatch) -> None:
    inbox, port = smtp
    monkeypatch.setenv("PBX_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("PBX_SMTP_PORT", str(port))
    recording = tmp_path / "c-mail-1.wav"
    recording.write_bytes(WAV)
    client = redis.Redis.from_url(redis_url)
    _store(config.from_env(), client, str(recording), "c-mail-1")
    (job,) = _work(client)
    assert job.get_status() == "finished", job.latest_result()
    assert job.return_value()["status"] == "sent" and job.return_value()["attached"] is True

    ((sender, rcpts, raw),) = inbox.received
    # The box's address and every owner's (Sales voicemail is owned by Ivan, 101).
    assert sender == "voicemail@pbx.example" and rcpts == ["sales@demo.example", "ivan.petrov@demo.example"]
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert msg["To"] == "sales@demo.example, ivan.petrov@demo.example"
    assert msg["Subject"] == "Voicemail from +78121234567 (Sales voicemail, 0:18)"
    body = msg.get_body(("plain",)).get_content()
    assert "From:     +78121234567" in body and "Duration: 0:18" in body and "MSK" in body
    (attachment,) = list(msg.iter_attachments())
    assert attachment.get_content_type() in ("audio/x-wav", "audio/wav")
    assert attachment.get_filename().startswith("voicemail-") and attachment.get_content() == WAV
    client.close()


def test_recording_elsewhere_is_mailed_without_attachment(env, smtp, redis_url: str, monkeypatch) -> None:
    inbox, port = smtp
    monkeypatch.setenv("PBX_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("PBX_SMTP_PORT", str(port))
    client = redis.Redis.from_url(redis_url)
    _store(config.from_env(), client, "/var/lib/freeswitch/recordings/pbx/1/2/c-mail-2.wav", "c-mail-2")
    (job,) = _work(client)
    assert job.get_status() == "finished", job.latest_result()
    msg = email.message_from_bytes(inbox.received[0][2], policy=email.policy.default)
    assert list(msg.iter_attachments()) == []
    assert "/var/lib/freeswitch/recordings/pbx/1/2/c-mail-2.wav" in msg.get_body(("plain",)).get_content()
    client.close()


def test_disabled_smtp_enqueues_nothing(env, redis_url: str, caplog: pytest.LogCaptureFixture) -> None:
    client = redis.Redis.from_url(redis_url)
    settings = config.from_env()
    assert settings.smtp_host == ""
    with caplog.at_level(logging.INFO, logger="orchestrator.wiring"):
        _store(settings, client, "/tmp/none.wav", "c-mail-3")
    assert "voicemail e-mail is off" in caplog.text
    assert Queue(DEFAULT_QUEUE, connection=client).count == 0
    client.close()


def test_redis_failure_while_enqueuing_is_logged_not_raised(env, caplog: pytest.LogCaptureFixture, monkeypatch) -> None:
    monkeypatch.setenv("PBX_SMTP_HOST", "127.0.0.1")
    dead = wiring.redis_client("redis://127.0.0.1:%d/0" % _free_port())
    with caplog.at_level(logging.ERROR):
        _store(config.from_env(), dead, "/tmp/none.wav", "c-mail-4")  # does not raise
    assert "its e-mail was not queued" in caplog.text


def test_smtp_settings_from_env() -> None:
    s = config.from_env({"PBX_SMTP_HOST": "mail.example", "PBX_SMTP_PORT": "587", "PBX_SMTP_USER": "u",
                         "PBX_SMTP_PASSWORD": "pw-9f3k", "PBX_SMTP_STARTTLS": "true"})
    assert (s.smtp_host, s.smtp_port, s.smtp_user, s.smtp_starttls) == ("mail.example", 587, "u", True)
    assert "pw-9f3k" not in repr(s) and s.smtp_password == "pw-9f3k"
    assert config.from_env({}).smtp_port == 25 and config.from_env({}).smtp_host == ""
    with pytest.raises(config.ConfigError):
        config.from_env({"PBX_SMTP_STARTTLS": "maybe"})
