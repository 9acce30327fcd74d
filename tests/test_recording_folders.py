"""Voicemail, fax and fallback recordings land in a folder that exists on the FreeSWITCH
host, and a recording that FreeSWITCH could not open is an error with FreeSWITCH's cause.

FreeSWITCH 1.10.12 (seen on /opt/freeswitch, and switch_ivr_record_file_event in
src/switch_ivr_play_say.c): ``record`` creates no folder; into a missing one it hangs the
call up with DESTINATION_OUT_OF_ORDER in the same millisecond, CHANNEL_HANGUP before an
EXECUTE_COMPLETE without ``record_ms``. ``rxfax`` negotiates, then reports
fax_result_code 41 "TIFF/F file cannot be opened" with the channel still up.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.core import callflow
from orchestrator.core.actions import AppCompleted, Finished, Hangup, HungUp, Log, StoreVoicemail
from simulator.server import FreeSwitchSim
from test_core_callflow import blocking, ctx, failed_bridge, public, snapshot
from test_e2e_calls import e2e_db, e2e_redis  # noqa: F401 - fixtures

ROOT = Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------- core


def _to_record(c: callflow.Context) -> tuple[callflow.Decision, str]:
    d = callflow.start(public("+74950000002"), c)
    d = callflow.handle(d.state, failed_bridge(blocking(d.actions).app_id), c)
    d = callflow.handle(d.state, AppCompleted(blocking(d.actions).app_id, "playback", "FILE PLAYED"), c)
    record = blocking(d.actions)
    assert record.app == "record"
    return d, record.app_id


def test_voicemail_is_a_flat_file_in_the_recordings_dir() -> None:
    c = ctx(snapshot())
    d, _ = _to_record(c)
    record = blocking(d.actions)
    # tenant 7, box 5, call c1: no folder of its own (record would not create it)
    assert record.arg == "/rec/vm-7-5-c1.wav 90 200 3"


def test_record_that_could_not_open_its_file_is_an_error_with_freeswitchs_cause() -> None:
    c = ctx(snapshot())
    d, app_id = _to_record(c)
    d = callflow.handle(d.state, HungUp("DESTINATION_OUT_OF_ORDER"), c)
    assert d.actions == ()
    d = callflow.handle(d.state, AppCompleted(app_id, "record", "_none_", {}), c)  # no record_ms
    log, finished = d.actions
    assert isinstance(log, Log) and log.level == "error" and "NOT recorded" in log.message
    assert log.fields["path"] == "/rec/vm-7-5-c1.wav" and log.fields["cause"] == "DESTINATION_OUT_OF_ORDER"
    assert isinstance(finished, Finished) and finished.hangup_cause == "DESTINATION_OUT_OF_ORDER"
    assert not any(isinstance(a, StoreVoicemail) for a in d.actions)


@pytest.mark.parametrize("cause", ["NORMAL_CLEARING", "ORIGINATOR_CANCEL"])
def test_caller_hanging_up_while_recording_keeps_the_callers_cause(cause: str) -> None:
    c = ctx(snapshot())
    d, app_id = _to_record(c)
    d = callflow.handle(d.state, HungUp(cause), c)
    d = callflow.handle(d.state, AppCompleted(app_id, "record", "_none_", {"record_ms": "0"}), c)
    log, finished = d.actions
    assert isinstance(log, Log) and log.message == "voicemail left empty" and log.level == "info"
    assert isinstance(finished, Finished) and finished.hangup_cause == cause


def test_fax_file_error_is_an_error_and_the_call_is_hung_up() -> None:
    from test_core_caller_rules import FAX_LINE, call, ctx as rules_ctx, snapshot as rules_snapshot

    c = rules_ctx(rules_snapshot())
    d = callflow.start(call("+78121234567", FAX_LINE), c)
    rx = blocking(d.actions)
    assert rx.app == "rxfax" and rx.arg == "/rec/fax-7-c1.tif"
    d = callflow.handle(d.state, AppCompleted(rx.app_id, "rxfax", "_none_", {
        "fax_success": "0", "fax_result_code": "41", "fax_result_text": "TIFF/F file cannot be opened",
        "fax_document_transferred_pages": "0"}), c)
    log, hangup = d.actions
    assert isinstance(log, Log) and log.level == "error" and "NOT stored" in log.message
    assert log.fields["path"] == "/rec/fax-7-c1.tif" and log.fields["result"].startswith("41 ")
    assert hangup == Hangup("NORMAL_CLEARING")


# ---------------------------------------------------------------- simulator


@pytest.fixture
def sim() -> FreeSwitchSim:
    s = FreeSwitchSim(conf_dir=ROOT / "tests" / "data" / "sim_dialplan" / "basic", time_scale=0.02,
                      globals={"recordings_dir": "/rec"}, folders=["/rec/pbx"]).start()
    yield s
    s.stop()


def _events(c, name: str, app: str | None = None) -> list:
    return [e for e in c.events if e.name == name and (app is None or e.get("Application") == app)]


def test_sim_record_into_a_missing_folder_hangs_up_destination_out_of_order(sim: FreeSwitchSim) -> None:
    c = sim.place_call("rec", context="rectests", variables={"rec_path": "/rec/7/5/x.wav"}, hangup_after=30).wait(20)
    assert c.hangup_cause == "DESTINATION_OUT_OF_ORDER" and c.recordings == []
    names = [e.name for e in c.events]
    done = [i for i, e in enumerate(c.events) if e.name == "CHANNEL_EXECUTE_COMPLETE" and e.get("Application") == "record"]
    assert done and names.index("CHANNEL_HANGUP") < done[0]
    assert c.events[done[0]].var("record_ms") is None and "RECORD_START" not in names
    # at once (seen: the same ms; a loaded machine may stretch simulated time a little)
    start = _events(c, "CHANNEL_EXECUTE", "record")[0]
    assert int(c.events[done[0]].get("Event-Date-Timestamp")) - int(start.get("Event-Date-Timestamp")) < 1_000_000
    assert any("Error Opening File [/rec/7/5/x.wav]" in line for _, line in sim.log_lines)


def test_sim_record_into_an_existing_folder_records(sim: FreeSwitchSim) -> None:
    for path in ("/rec/vm-7-5-x.wav", "/rec/pbx/y.wav", "/tmp/z.wav"):
        c = sim.place_call("rec", context="rectests", variables={"rec_path": path}, hangup_after=3).wait(20)
        assert c.hangup_cause == "NORMAL_CLEARING" and c.recordings[0]["path"] == path
        assert int(_events(c, "CHANNEL_EXECUTE_COMPLETE", "record")[0].var("record_ms")) > 0


def test_sim_rxfax_into_a_missing_folder_reports_file_error_and_stays_up(sim: FreeSwitchSim) -> None:
    c = sim.place_call("fax", context="rectests", variables={"fax_path": "/rec/7/fax/x.tif"}).wait(20)
    (done,) = _events(c, "CHANNEL_EXECUTE_COMPLETE", "rxfax")
    assert done.var("fax_result_code") == "41" and done.var("fax_result_text") == "TIFF/F file cannot be opened"
    assert done.var("fax_success") == "0" and done.var("fax_document_transferred_pages") == "0"
    assert c.recordings == []
    # rxfax did not hang up: the dialplan's next action ran
    assert [name for _, name, _ in c.apps][-1] == "hangup" and c.hangup_cause == "NORMAL_CLEARING"
    ok = sim.place_call("fax", context="rectests", variables={"fax_path": "/rec/fax-7-x.tif"}).wait(20)
    assert ok.recordings[0]["path"] == "/rec/fax-7-x.tif"


def test_fallback_records_into_freeswitchs_own_recordings_dir() -> None:
    """The project dialplan's fallback needs no folder of ours: recordings_dir itself."""
    s = FreeSwitchSim(conf_dir=ROOT / "freeswitch-conf", time_scale=0.02,
                      globals={"pbx_orchestrator_socket": "127.0.0.1:1", "recordings_dir": "/srv/fs-rec"}).start()
    try:
        c = s.place_call("+74951110001", hangup_after=9).wait(10)
        assert c.hangup_cause == "NORMAL_CLEARING"
        assert [r["path"] for r in c.recordings] == ["/srv/fs-rec/pbx-fallback-+74951110001-%s.wav" % c.uuid]
    finally:
        s.stop()


# ---------------------------------------------------------------- end to end


def test_voicemail_into_a_missing_folder_keeps_freeswitchs_cause_and_logs_an_error(e2e_db, e2e_redis, tmp_path) -> None:
    """A real orchestrator process whose PBX_RECORDINGS_DIR does not exist on the
    (simulated) FreeSWITCH host: the message is lost as on a real FreeSWITCH, and the call
    history and the log say so, instead of "voicemail left empty" / NORMAL_CLEARING."""
    from sqlalchemy import select

    from orchestrator.db.history import VoicemailMessage
    from simulator import Busy
    from test_e2e_calls import CONF, DOMAIN, Orchestrator, records_for, wait_until

    _, factory, _tenant_id = e2e_db
    orch = Orchestrator(e2e_db[0], e2e_redis, tmp_path / "orchestrator.log", PBX_RECORDINGS_DIR="/rec/not-created")
    sim = FreeSwitchSim(conf_dir=CONF, globals={"pbx_orchestrator_socket": orch.address, "recordings_dir": "/rec"},
                        time_scale=0.02).start()
    try:
        sim.add_user("101", DOMAIN, behavior=Busy())
        sim.add_external("+79160000011", behavior=Busy())
        call = sim.place_call("+74951110001", hangup_after=60).wait(timeout=30)
        assert "record" in [name for _, name, _ in call.apps]
        assert call.hangup_cause == "DESTINATION_OUT_OF_ORDER" and call.recordings == []
        wait_until(lambda: records_for(factory, call.uuid), what="call history row")
        (row,) = records_for(factory, call.uuid)
        assert row.hangup_cause == "DESTINATION_OUT_OF_ORDER"
        with factory() as session:
            assert list(session.scalars(select(VoicemailMessage).where(VoicemailMessage.call_uuid == call.uuid))) == []
        wait_until(lambda: "voicemail NOT recorded" in orch.log(), what="the error in the log")
        (line,) = [ln for ln in orch.log().splitlines() if "voicemail NOT recorded" in ln]
        assert "ERROR" in line.upper() and "/rec/not-created/vm-" in line and "Traceback" not in orch.log()
        assert "voicemail left empty" not in orch.log()
    finally:
        sim.stop()
        orch.stop()
