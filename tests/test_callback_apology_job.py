"""The expired callback's job refuses data that should never reach FreeSWITCH (anyone
who can write Redis can write a job): nothing is dialled and the reason is returned."""
from __future__ import annotations

import pytest

from workers import apology, jobs

GOOD = {"tenant_id": "7", "callback_id": "cb42", "attempt": 1, "client_number": "+79990000012",
        "caller_id_number": "+74952220070", "client_timeout_s": 5, "apology": "ivr/ivr-not_available.wav",
        "box_id": 3, "max_message_s": 60, "call_uuid": "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"}


@pytest.fixture
def worker_env(monkeypatch):
    monkeypatch.setenv("PBX_RECORDINGS_DIR", "/var/lib/freeswitch/recordings/pbx")
    monkeypatch.setenv("PBX_EXTERNAL_DIAL_TEMPLATE", "sofia/gateway/pstn/{number}")
    monkeypatch.setattr(jobs, "connect_esl", lambda call: pytest.fail("FreeSWITCH reached"))
    return monkeypatch


@pytest.mark.parametrize("change, words", [
    ({"apology": "ivr/x.wav ${system(touch /tmp/p)}"}, "'$'"),
    ({"apology": "file_string://a.wav!/etc/shadow"}, "not a sound"),
    ({"client_number": "+7 999 000-00-12"}, "not an E.164 number"),
    ({"client_number": "+79990000012,sofia/gateway/x/1"}, "not an E.164 number"),
    ({"caller_id_number": "${uuid_kill(all)}"}, "not an E.164 number"),
    ({"call_uuid": "abc uuid_kill all"}, "original call"),
    ({"box_id": "3 && x"}, "box_id"),
    ({"max_message_s": 100000}, "max_message_s"),
    ({"callback_id": "../cb"}, "bad tenant or callback id"),
])
def test_bad_apology_jobs_are_refused_before_anything_is_dialled(worker_env, change: dict, words: str) -> None:
    result = apology.apologise_and_record(dict(GOOD, **change))
    assert result["status"] == "failed" and result["cause"].startswith("job refused") and words in result["cause"], result


def test_a_recordings_dir_that_is_not_a_plain_path_refuses_the_voicemail(worker_env) -> None:
    worker_env.setenv("PBX_RECORDINGS_DIR", "recordings/${x}")
    result = apology.apologise_and_record(dict(GOOD))
    assert result["status"] == "failed" and "PBX_RECORDINGS_DIR" in result["cause"]


def test_the_whisper_is_stock_prompts_of_checked_values_only() -> None:
    from workers import media

    said = "!".join("digits/%s.wav" % d for d in "79990000012")
    assert media.whisper("+79990000012", 185) == "file_string://%s!silence_stream://400!digits/3.wav!time/minutes.wav" % said
    assert media.whisper("+79990000012", 20).endswith("!digits/1.wav!time/minute.wav")  # at least a minute
    for bad in ("79990000012", "+79990000012!x", "+7 999 000 00 12", "${x}", ""):
        with pytest.raises(ValueError):
            media.whisper(bad, 60)
    with pytest.raises(ValueError, match="waited_s"):
        jobs.CallbackCall.from_job({"tenant_id": "7", "callback_id": "cb", "agent_extension": "310",
                                    "agent_domain": "cb.pbx.test", "client_number": "+79990000012",
                                    "waited_s": "5!x"}, __import__("orchestrator.config", fromlist=["Settings"]).Settings())
