"""Faxes by e-mail: DbRecorder.fax -> RQ job on real Redis -> real SMTP server on loopback
(the same path as voicemail: tests/test_voicemail_mail.py, whose fixtures these reuse)."""
from __future__ import annotations

import email
import email.policy
from pathlib import Path

import redis
from sqlalchemy import select

from orchestrator import config, wiring
from orchestrator.core.actions import CallInfo, StoreFax
from orchestrator.db.history import FaxMessage
from orchestrator.db.models import VoicemailBox
from orchestrator.db_recorder import DbRecorder
from tests.pg_demo import ensure_demo_tenant
from tests.test_voicemail_mail import _work, env, smtp  # noqa: F401 - fixtures

TIFF = b"II*\x00" + bytes(range(60))


def _store_fax(settings: config.Settings, client: redis.Redis, fax: StoreFax, uuid: str) -> int:
    tenant_id = ensure_demo_tenant(settings.database_url)
    db = wiring.database(settings)
    with db.session_factory() as s:
        box_id = s.scalars(select(VoicemailBox.id).where(
            VoicemailBox.tenant_id == tenant_id, VoicemailBox.name == "Sales voicemail")).one()
    recorder = DbRecorder(db.session_factory, lambda fn, *a: fn(*a), None, wiring.fax_notifier(settings, client))
    recorder.fax(tenant_id, CallInfo(uuid, "public", "+74950000003", "+78121234567"),
                 StoreFax(box_id, fax.path, fax.pages, fax.caller, fax.success, fax.result_code, fax.result_text,
                          fax.remote_station))
    with db.session_factory() as s:
        row = s.scalars(select(FaxMessage).where(FaxMessage.call_uuid == uuid)).one()
        assert (row.box_id, row.pages, row.caller) == (box_id, fax.pages, fax.caller)
    db.engine.dispose()
    return tenant_id


def test_fax_is_stored_and_mailed_with_the_document(env, smtp, tmp_path: Path, redis_url: str, monkeypatch) -> None:  # noqa: F811
    inbox, port = smtp
    monkeypatch.setenv("PBX_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("PBX_SMTP_PORT", str(port))
    document = tmp_path / "fax-1.tif"
    document.write_bytes(TIFF)
    client = redis.Redis.from_url(redis_url)
    _store_fax(config.from_env(), client, StoreFax(0, str(document), 3, "+78121234567", remote_station="+7 812 555"),
               "c-fax-1")
    (job,) = _work(client)
    assert job.get_status() == "finished", job.latest_result()
    assert job.return_value()["status"] == "sent" and job.return_value()["attached"] is True
    ((_, rcpts, raw),) = inbox.received
    assert rcpts == ["sales@demo.example", "ivan.petrov@demo.example"]  # the box, then its owner
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert msg["Subject"] == "Fax from +78121234567 (Sales voicemail, 3 pages)"
    body = msg.get_body(("plain",)).get_content()
    assert "From:     +78121234567 (+7 812 555)" in body and "Pages:    3 pages" in body
    (attachment,) = list(msg.iter_attachments())
    assert attachment.get_content_type() == "image/tiff" and attachment.get_content() == TIFF
    client.close()


def test_incomplete_fax_says_so_and_a_missing_file_is_not_attached(env, smtp, redis_url: str, monkeypatch) -> None:  # noqa: F811
    inbox, port = smtp
    monkeypatch.setenv("PBX_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("PBX_SMTP_PORT", str(port))
    client = redis.Redis.from_url(redis_url)
    fax = StoreFax(0, "/var/lib/freeswitch/recordings/pbx/1/fax/c-fax-2.tif", 1, "+78121234567", False, 49,
                   "The call dropped prematurely")
    _store_fax(config.from_env(), client, fax, "c-fax-2")
    (job,) = _work(client)
    assert job.get_status() == "finished", job.latest_result()
    msg = email.message_from_bytes(inbox.received[0][2], policy=email.policy.default)
    assert msg["Subject"].endswith("1 page) - incomplete")
    body = msg.get_body(("plain",)).get_content()
    assert "did not complete (The call dropped prematurely)" in body and "/fax/c-fax-2.tif" in body
    assert list(msg.iter_attachments()) == []
    client.close()
