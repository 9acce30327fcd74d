"""Sound values: one strict grammar (core.model.Sound), refused with the field's name when
saved (tenant documents, the admin panel), dropped when an old row is read (snapshot),
and never reaching FreeSWITCH unchecked when application arguments are built
(core.sounds: no ``$``, blank, quote, backslash or ``!`` in a sound)."""
from __future__ import annotations

import logging
from dataclasses import replace
from typing import Iterator

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select, update
from sqlalchemy.orm import sessionmaker

from orchestrator.core import callflow, sounds
from orchestrator.core.actions import AppCompleted, Execute, Log
from orchestrator.core.model import (QueueSettings, Sound, SoundError, Target, TargetKind, VoiceMenu, VoicemailBox,
                                     sound_problem)
from orchestrator.db import schema as db
from orchestrator.db.snapshot import load_tenant_snapshot
from orchestrator.tenant_doc import import_tenant, parse, validate
from tests.test_core_callflow import blocking, ctx, failed_bridge, public, snapshot
from tests.test_tenant_doc_validation import BASE, line_of

INJECTIONS = [
    "ivr/x.wav ${system(id)}",  # FreeSWITCH would run the API command
    "ivr/x.wav silence_stream://250 v \\d+ 3000 9999 XML default",  # shifts play_and_get_digits' fields
    "${system(id)}",
    "$${hold_music}",
    "ivr/x.wav\\${x}",
    "ivr/x.wav'",
    'ivr/"x".wav',
    "ivr/x.wav\nexecute-app-name: hangup",
    "file_string://a.wav!b.wav",  # a list is built by us only
    "a.wav!b.wav",
    "../../etc/passwd.wav",
    "ivr/../../x.wav",
    "/etc/shadow.wav",
    "/var/lib/freeswitch/recordings/pbx/8/sounds/other-tenant.wav",  # another tenant's file
    "shell_stream:///bin/id",
    "http_cache://http://evil.example/x.wav",
    "{loops=10}ivr/x.wav",
    "%[x=1]ivr/x.wav",
    "ivr/x.wav@@8000",
    "phrase:voicemail_hello",
    "say:en number pronounced 1",
    "ivr/x.txt",
    "ivr/x",
    "ivr//x.wav",
    "tenant:../x.wav",
    "tenant:sub/x.wav",
    "local_stream://moh/8000",
    "local_stream://moh ${x}",
    "silence_stream://-1",
    "silence_stream://250,1400",
    "tone_stream://v=-7;%(100,0,941)",
    "tone_stream://%(250,0,1000);${system(id)}",
    "tone_stream://%(250,0)",
    "ivr/ivr-welcome.wav ",  # trailing blank: the document reader strips, the grammar does not
    "ivr/" + "a" * 300 + ".wav",
    "",
]
ALLOWED = [
    ("ivr/ivr-welcome.wav", "stock"),
    ("ivr/ivr-welcome_to_freeswitch.wav", "stock"),
    ("main.wav", "stock"),
    ("digits/1.wav", "stock"),
    ("music/8000/suite-espanola-op-47-leyenda.mp3", "stock"),
    ("tenant:promo-2026_v1.wav", "tenant"),
    ("local_stream://moh", "local_stream"),
    ("silence_stream://250", "silence_stream"),
    ("tone_stream://%(250,0,1000)", "tone_stream"),
    ("tone_stream://L=3;%(100,100,350,440);%(500,0,0)", "tone_stream"),
]


# ------------------------------------------------------------------ the grammar


@pytest.mark.parametrize("text, kind", ALLOWED)
def test_allowed_forms_parse_into_a_typed_sound(text: str, kind: str) -> None:
    sound = Sound.parse(text)
    assert isinstance(sound, Sound) and sound == text and sound.kind == kind
    assert sound_problem(text) is None


@pytest.mark.parametrize("text", INJECTIONS)
def test_everything_else_is_refused_with_a_reason(text: str) -> None:
    with pytest.raises(SoundError) as exc:
        Sound.parse(text)
    assert "sound" in str(exc.value)
    assert sound_problem(text) == str(exc.value)


def test_the_messages_say_what_is_wrong() -> None:
    assert "contains '$'" in (sound_problem("ivr/x.wav ${system(id)}") or "")
    assert "contains a space" in (sound_problem("ivr/x.wav silence_stream://250 v") or "")
    assert "contains '!'" in (sound_problem("file_string://a.wav!b.wav") or "")
    assert "'..' are not allowed" in (sound_problem("../x.wav") or "")
    assert "tenant:NAME.wav" in (sound_problem("x.exe") or "")


# ------------------------------------------------------------------ tenant documents

SOUND_FIELDS = [
    # (old, new with {s}, field path)
    ("menus:\n  - name: Main\n", "menus:\n  - name: Main\n    greeting: '{s}'\n", "menus[0].greeting"),
    ("menus:\n  - name: Main\n", "menus:\n  - name: Main\n    invalid_sound: '{s}'\n", "menus[0].invalid_sound"),
    ("  - name: Sales box\n", "  - name: Sales box\n    greeting: '{s}'\n", "voicemail_boxes[0].greeting"),
    ("    no_answer: {voicemail: Sales box}\n", "    no_answer: {voicemail: Sales box}\n    queue: {music: '{s}'}\n",
     "departments[0].queue.music"),
    ("    no_answer: {voicemail: Sales box}\n", "    no_answer: {voicemail: Sales box}\n    queue: {announcement: '{s}'}\n",
     "departments[0].queue.announcement"),
    ("    no_answer: {voicemail: Sales box}\n", "    no_answer: {announcement: '{s}'}\n", "departments[0].no_answer.announcement"),
    ('    default: {department: "200"}\n', "    default: {announcement: '{s}'}\n", "menus[0].default.announcement"),
    ('      "1": {department: "200"}\n', "      \"1\": {announcement: '{s}'}\n", "menus[0].options.1.announcement"),
    ("    after_hours: {voicemail: Sales box}\n", "    after_hours: {announcement: '{s}'}\n", "numbers[0].after_hours.announcement"),
    ("numbers:\n", "caller_rules:\n  - name: Spam\n    match: prefix\n    values: ['+7800']\n    block: true\n"
                   "    target: {announcement: '{s}'}\nnumbers:\n", "caller_rules[0].target.announcement"),
]


@pytest.mark.parametrize("old, new, field", SOUND_FIELDS)
@pytest.mark.parametrize("bad", ["ivr/x.wav ${system(id)}", "ivr/x.wav silence_stream://250 v \\d+ 3000 9999 XML default"])
def test_document_refuses_a_bad_sound_naming_the_field_and_line(old: str, new: str, field: str, bad: str) -> None:
    assert old in BASE
    text = BASE.replace(old, new.replace("{s}", bad), 1)
    found = [(e.field, e.line, e.message) for e in validate(parse(text))]
    assert len(found) == 1, found
    got_field, line, message = found[0]
    assert got_field == field
    assert line == line_of(text, bad)
    assert "is not a sound" in message and "ivr/ivr-welcome.wav" in message


@pytest.mark.parametrize("old, new, field", SOUND_FIELDS)
@pytest.mark.parametrize("good", ["ivr/ivr-welcome.wav", "tenant:promo.wav", "local_stream://moh"])
def test_document_accepts_good_sounds_in_every_field(old: str, new: str, field: str, good: str) -> None:
    assert validate(parse(BASE.replace(old, new.replace("{s}", good), 1))) == []


# ------------------------------------------------------------------ at use: FreeSWITCH arguments


def menu_snapshot(**menu: object):
    base = snapshot()
    return replace(base, menus={20: replace(base.menus[20], **menu)})


def menu_prompt(snap) -> tuple[Execute, tuple]:
    d = callflow.start(public("+74950000003"), ctx(snap))
    return blocking(d.actions), d.actions


def errors(actions: tuple) -> list[Log]:
    return [a for a in actions if isinstance(a, Log) and a.level == "error"]


@pytest.mark.parametrize("greeting, played", [
    ("ivr/ivr-welcome.wav", "ivr/ivr-welcome.wav"),
    ("tenant:promo.wav", "/rec/7/sounds/promo.wav"),  # the tenant's own file, under its own directory
    ("tone_stream://%(250,0,1000)", "tone_stream://%(250,0,1000)"),
])
def test_menu_prompt_plays_the_sound_as_one_field(greeting: str, played: str) -> None:
    prompt, actions = menu_prompt(menu_snapshot(greeting=Sound.parse(greeting)))
    fields = prompt.arg.split(" ")
    assert prompt.app == "play_and_get_digits" and len(fields) == 10 and fields[5] == played
    assert errors(actions) == []


@pytest.mark.parametrize("bad", INJECTIONS)
def test_an_unchecked_greeting_never_reaches_freeswitch(bad: str) -> None:
    """A value that bypassed the document and the snapshot (plain str): the default plays,
    with an error log; play_and_get_digits keeps its 10 fields, nothing to expand."""
    prompt, actions = menu_prompt(menu_snapshot(greeting=bad))
    fields = prompt.arg.split(" ")
    assert len(fields) == 10 and fields[5] == "ivr/ivr-not_available.wav"
    assert "$" not in prompt.arg and "\\" not in prompt.arg.replace("\\d+", "") and "\n" not in prompt.arg
    if bad:
        (log,) = errors(actions)
        assert log.fields["field"] == "menu greeting" and "not a sound" in log.fields["problem"]


def test_an_unchecked_invalid_sound_is_replaced_by_the_default() -> None:
    snap = menu_snapshot(greeting=Sound.parse("main.wav"), invalid_sound="x.wav!y.wav")
    c = ctx(snap)
    d = callflow.start(public("+74950000003"), c)
    d = callflow.handle(d.state, AppCompleted(blocking(d.actions).app_id, "play_and_get_digits", "", {"pbx_menu_digits": "9"}), c)
    fields = blocking(d.actions).arg.split(" ")
    assert len(fields) == 10 and fields[5] == "file_string://ivr/ivr-that_was_an_invalid_entry.wav!main.wav"
    assert [log.fields["field"] for log in errors(d.actions)] == ["menu invalid_sound"]


def test_an_unchecked_voicemail_greeting_is_replaced_by_the_default() -> None:
    snap = replace(snapshot(), voicemail_boxes={5: VoicemailBox(5, "Sales box", greeting="x.wav ${system(id)}")})  # type: ignore[arg-type]
    c = ctx(snap)
    d = callflow.start(public("+74950000002"), c)
    d = callflow.handle(d.state, failed_bridge(blocking(d.actions).app_id), c)
    assert blocking(d.actions).arg == "file_string://voicemail/vm-record_message.wav!tone_stream://%(250,0,1000)"
    assert [log.fields["field"] for log in errors(d.actions)] == ["voicemail greeting"]


def test_an_unchecked_announcement_target_is_replaced_by_the_default() -> None:
    base = snapshot()
    target = Target(TargetKind.ANNOUNCEMENT, sound="closed.wav 1 1 XML public")  # type: ignore[arg-type]
    snap = replace(base, numbers={**base.numbers, "+74950000002": replace(base.numbers["+74950000002"], work_target=target)})
    d = callflow.start(public("+74950000002"), ctx(snap))
    assert blocking(d.actions).arg == "ivr/ivr-not_available.wav"
    assert [log.fields["field"] for log in errors(d.actions)] == ["announcement"]


def test_hold_music_and_announcement_unchecked_fall_back() -> None:
    music, logs = sounds.playable("local_stream://moh ${x}", sounds.DEFAULT_MUSIC, "queue.music", 7, "/rec")
    assert music == "local_stream://moh" and logs[0].level == "error"
    from orchestrator.core import announcements

    said, logs = announcements.sounds(QueueSettings(announcement="a.wav!b.wav", announce_position=True), 2,  # type: ignore[arg-type]
                                      tenant_id=7, recordings_dir="/rec")
    assert said == "file_string://ivr/ivr-you_are_number.wav!digits/2.wav!ivr/ivr-in_line.wav"
    assert logs[0].fields["field"] == "queue.announcement"


def test_tenant_sounds_need_a_plain_recordings_directory() -> None:
    assert sounds.file_arg("tenant:a.wav", 3, "/var/lib/fs/rec/") == "/var/lib/fs/rec/3/sounds/a.wav"
    for bad_dir in ("/var/lib/my recordings", "/var/${x}", "relative/dir", "/var/../etc"):
        played, logs = sounds.playable("tenant:a.wav", "ivr/ivr-not_available.wav", "menu greeting", 3, bad_dir)
        assert played == "ivr/ivr-not_available.wav" and "PBX_RECORDINGS_DIR" in logs[0].fields["problem"]


# ------------------------------------------------------------------ old database rows


@pytest.fixture
def pg(migrated_pg: sessionmaker) -> Iterator[sessionmaker]:
    yield migrated_pg


def test_old_rows_with_bad_sounds_are_dropped_when_the_snapshot_is_read(pg: sessionmaker, caplog: pytest.LogCaptureFixture) -> None:
    """Rows written before the grammar existed: no migration needed, the snapshot drops
    the value (the default plays) and logs an error naming the row and field."""
    with pg.begin() as s:
        tid = import_tenant(s, BASE.replace("menus:\n  - name: Main\n", "menus:\n  - name: Main\n    greeting: main.wav\n"))
        s.execute(update(db.VoiceMenu).values(greeting="ivr/x.wav ${system(id)}", invalid_sound="ok.wav"))
        s.execute(update(db.VoicemailBox).values(greeting="a.wav!b.wav"))
        s.execute(update(db.Department).values(queue_music="local_stream://moh", queue_announcement="x.wav 1 1"))
        s.execute(update(db.PhoneNumber).values(after_hours_kind="announcement", after_hours_ref_id=None,
                                                after_hours_sound="closed.wav ${x}"))
    with caplog.at_level(logging.ERROR, logger="orchestrator.snapshot"), pg() as s:
        snap = load_tenant_snapshot(s, tid)
    assert snap is not None
    (menu,) = snap.menus.values()
    assert menu.greeting is None and menu.invalid_sound == "ok.wav" and isinstance(menu.invalid_sound, Sound)
    (box,) = snap.voicemail_boxes.values()
    assert box.greeting is None
    (dep,) = snap.departments.values()
    assert dep.queue.music == "local_stream://moh" and isinstance(dep.queue.music, Sound) and dep.queue.announcement is None
    (number,) = snap.numbers.values()
    assert number.after_hours_target == Target(TargetKind.ANNOUNCEMENT, sound=None)
    refused = sorted(r.pbx["field"] for r in caplog.records)  # type: ignore[attr-defined]
    assert refused == ["+74951230001 after_hours", "department 200 queue.announcement", "menu Main greeting",
                       "voicemail box Sales box greeting"]
    assert all("is not a sound" in r.getMessage() for r in caplog.records)


# ------------------------------------------------------------------ the admin panel


@pytest.fixture
def admin_client(migrated_pg: sessionmaker) -> FlaskClient:
    from werkzeug.security import generate_password_hash

    from admin.app import create_app
    from tests.test_admin_isolation import login
    from tests.test_admin_panel import DEMO
    from tests.test_admin_validation import SETTINGS

    with migrated_pg.begin() as s:
        tid = import_tenant(s, DEMO)
        s.add(db.AdminUser(username="a-admin", role=db.AdminRole.TENANT_ADMIN, tenant_id=tid,
                           password_hash=generate_password_hash("a-admin-secret")))
    client = create_app(SETTINGS, migrated_pg).test_client()
    login(client, "a-admin", "a-admin-secret")
    return client


def test_panel_menu_form_refuses_an_injected_greeting_at_the_field(admin_client: FlaskClient, migrated_pg: sessionmaker) -> None:
    from tests.test_admin_isolation import scrape

    with migrated_pg() as s:
        menu_id, before = s.execute(select(db.VoiceMenu.id, db.VoiceMenu.greeting).where(db.VoiceMenu.name == "Main")).one()
    url = "/admin/menu/edit/?id=%d" % menu_id
    form = scrape(admin_client, url)
    page = admin_client.post(url, data={**form.data, "greeting": "ivr/x.wav ${system(id)}"})
    text = page.get_data(as_text=True)
    assert page.status_code == 200 and "is not a sound" in text
    at = text.index('id="greeting"')
    assert "is-invalid" in text[at - 80:at + 200] and "is not a sound" in text[at:at + 900], text[at - 300:at + 900]
    with migrated_pg() as s:
        assert s.scalar(select(db.VoiceMenu.greeting).where(db.VoiceMenu.id == menu_id)) == before  # not saved
    assert admin_client.post(url, data={**form.data, "greeting": "tenant:welcome.wav"}).status_code == 302
    with migrated_pg() as s:
        assert s.scalar(select(db.VoiceMenu.greeting).where(db.VoiceMenu.id == menu_id)) == "tenant:welcome.wav"
