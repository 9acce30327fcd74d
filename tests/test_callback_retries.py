"""Retries and expiry of callbacks in the dispatcher and its end-of-job callbacks,
against a real Redis (the RQ side's functions called as the worker calls them).

* A client who did not answer keeps the place: out of the queue for the department's
  retry delay (callers behind are served meanwhile), then back at the same place, until
  ``queue.callback_attempts`` run out.
* A callback expires ``no_answer_timeout`` after its caller joined the queue (or after
  ``max_attempts`` offers no member answered): it leaves the queue and the apology job
  is queued, with the department's apology and its no-answer voicemail box.
"""
from __future__ import annotations

import time

import pytest
import redis

from orchestrator.callback_dispatcher import (APOLOGY_SOUND, CallbackDispatcher, CallbackSettings, apology_finished,
                                              job_finished)
from orchestrator.core.model import (Department, Employee, Member, QueueSettings, Sound, Strategy, Target, TargetKind,
                                     TenantSnapshot, VoicemailBox)
from orchestrator.core.plan import Policy
from orchestrator.store.agents import AgentStore, Release
from orchestrator.store.callbacks import CallbackStore, callback_key, member

T, DEP, BOX = 7, 10, 33
QUEUE = QueueSettings(music=Sound.parse("local_stream://moh"), callback_allowed=True, callback_attempts=2,
                      callback_retry_delay=30, callback_apology=Sound.parse("tenant:sorry.wav"))
SNAP = TenantSnapshot(
    T, "Demo", "demo.pbx.local",
    employees={1: Employee(1, "E1", "101"), 2: Employee(2, "E2", "102")},
    departments={DEP: Department(DEP, "Sales", "200", Strategy.ONE_BY_ONE, no_answer_timeout=60,
                                 no_answer_target=Target(TargetKind.VOICEMAIL, BOX),
                                 members=(Member(1, order=1), Member(2, order=2)), queue=QUEUE)},
    voicemail_boxes={BOX: VoicemailBox(BOX, "Sales box", max_message_seconds=90)},
)
SETTINGS = CallbackSettings(agent_timeout_s=5, client_timeout_s=5, margin_s=5)


class Job:
    def __init__(self, meta: dict) -> None:
        self.meta = meta


@pytest.fixture
def r(redis_url: str) -> redis.Redis:
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    return client


def _now_ms() -> int:
    return int(time.time() * 1000)


def _dispatcher(r: redis.Redis, jobs: list, clock=None) -> CallbackDispatcher:  # noqa: ANN001
    return CallbackDispatcher(r, lambda t: SNAP if t == T else None, Policy(), SETTINGS,
                              lambda data, meta: jobs.append((data, meta)), clock=clock)


def test_a_client_who_did_not_answer_keeps_the_place_and_is_called_again_after_the_delay(r):
    agents, callbacks = AgentStore(r), CallbackStore(r)
    since = _now_ms()
    cb = callbacks.request(T, DEP, "c1", since, "+78120000000", "+74950000001")
    agents.join_queue(T, DEP, "live-caller", since + 1)  # a live caller right behind the callback
    jobs: list = []
    d = _dispatcher(r, jobs)
    assert d.tick() == 1
    (_, meta), = jobs
    assert (meta["client_attempts"], meta["retry_delay_ms"]) == (2, 30_000)
    job_finished(Job(meta), r, {"status": "client_no_answer", "cause": "NO_ANSWER"})
    got = callbacks.get(T, cb)
    sec, usec = r.time()
    assert got.status == "pending" and got.client_tries == 1
    assert 25_000 < got.not_before_ms - (sec * 1000 + usec // 1000) <= 30_000
    # Out of the queue for the delay: the caller behind it is served meanwhile.
    assert [u for u, _ in agents.queue(T, DEP)] == ["live-caller"]
    assert d.tick() == 0 and len(jobs) == 1
    emp = meta["employee_id"]
    assert agents.reserve(T, "live-caller", DEP, [emp], 1, queued=True)[1] == {emp: "offered"}
    agents.release(T, "live-caller", DEP, [Release(emp, "free")], time.strftime("%Y%m%d", time.gmtime()))
    agents.join_queue(T, DEP, "later-caller", since + 2)
    # The delay is over (its end moved to the past rather than waiting 30 s): back at
    # its own place, ahead of the later caller, and dispatched again.
    r.hset(callback_key(T, cb), "not_before", _now_ms() - 1)
    assert d.tick() == 1
    (data, meta) = jobs[-1]
    assert data["attempt"] == 2 and callbacks.get(T, cb).status == "dialing"
    assert [u for u, _ in agents.queue(T, DEP)] == ["later-caller"]  # the callback took the member first
    # The second attempt is the last (callback_attempts 2): failed, with the reason.
    job_finished(Job(meta), r, {"status": "client_no_answer", "cause": "NO_ANSWER"})
    got = callbacks.get(T, cb)
    assert got.status == "failed" and "the client did not answer 2 attempts" in got.result and got.client_tries == 2
    assert callbacks.open(T) == [] and member(cb) not in [u for u, _ in agents.queue(T, DEP)]


def test_a_callback_expires_after_the_no_answer_timeout_counted_from_joining_the_queue(r):
    agents, callbacks = AgentStore(r), CallbackStore(r)
    for emp in (1, 2):
        agents.channel_up(T, emp, "chan-%d" % emp, 600_000)  # both members are on calls
    since = _now_ms() - 5_000  # the caller joined the queue 5 s before asking for the callback
    cb = callbacks.request(T, DEP, "c1", since, "+78120000000", "+74950000001")
    jobs: list = []
    now = {"ms": since + 59_999}
    d = _dispatcher(r, jobs, clock=lambda: now["ms"])
    assert d.tick() == 0 and jobs == [] and [u for u, _ in agents.queue(T, DEP)] == [member(cb)]
    now["ms"] = since + 60_000  # no_answer_timeout 60 s after joining the queue
    assert d.tick() == 1
    (data, meta), = jobs
    assert meta["job"] == "apology" and meta["client_attempts"] == 2 and meta["retry_delay_ms"] == 30_000
    assert data == {"tenant_id": str(T), "callback_id": cb, "attempt": 1, "client_number": "+78120000000",
                    "caller_id_number": "+74950000001", "client_timeout_s": 5, "apology": "tenant:sorry.wav",
                    "box_id": BOX, "max_message_s": 90, "call_uuid": "c1"}
    got = callbacks.get(T, cb)
    assert got.status == "dialing" and got.mode == "apology" and agents.queue(T, DEP) == []  # left the queue
    assert d.tick() == 0  # once only
    apology_finished(Job(meta), r, {"status": "apologised", "cause": None, "voicemail_id": 41})
    got = callbacks.get(T, cb)
    assert got.status == "expired" and got.result == "expired: apologised; voicemail 41 recorded"
    assert callbacks.open(T) == []


def test_the_apology_call_unanswered_is_tried_again_then_failed(r):
    callbacks = CallbackStore(r)
    since = _now_ms() - 120_000  # expired already
    cb = callbacks.request(T, DEP, "c1", since, "+78120000000", "+74950000001")
    jobs: list = []
    d = _dispatcher(r, jobs)
    assert d.tick() == 1
    apology_finished(Job(jobs[-1][1]), r, {"status": "client_no_answer", "cause": "NO_ANSWER"})
    got = callbacks.get(T, cb)
    assert got.status == "pending" and got.mode == "apology" and got.client_tries == 1 and got.not_before_ms > _now_ms()
    assert d.tick() == 0  # the retry delay
    r.hset(callback_key(T, cb), "not_before", _now_ms() - 1)
    assert d.tick() == 1 and jobs[-1][0]["attempt"] == 2 and jobs[-1][1]["job"] == "apology"
    apology_finished(Job(jobs[-1][1]), r, {"status": "client_no_answer", "cause": "NO_ANSWER"})
    got = callbacks.get(T, cb)
    assert got.status == "failed" and got.result == "expired: the client did not answer 2 calls (NO_ANSWER)"


def test_no_member_answering_max_attempts_offers_means_the_apology_not_a_silent_failure(r):
    callbacks = CallbackStore(r)
    cb = callbacks.request(T, DEP, "c1", _now_ms(), "+78120000000", "+74950000001")
    jobs: list = []
    d = _dispatcher(r, jobs)
    for attempt in range(1, SETTINGS.max_attempts + 1):
        assert d.tick() == 1 and jobs[-1][1].get("job") is None and jobs[-1][0]["attempt"] == attempt
        job_finished(Job(jobs[-1][1]), r, {"status": "agent_no_answer", "cause": "NO_ANSWER"})
        assert callbacks.get(T, cb).status == "pending"
    assert d.tick() == 1
    (data, meta) = jobs[-1]
    assert meta["job"] == "apology" and data["apology"] == "tenant:sorry.wav"


def test_the_box_named_in_the_queue_settings_takes_the_expired_callbacks_message(r):
    from dataclasses import replace

    dep = replace(SNAP.departments[DEP], queue=replace(QUEUE, callback_box_id=44))
    snap = replace(SNAP, departments={DEP: dep},
                   voicemail_boxes={**SNAP.voicemail_boxes, 44: VoicemailBox(44, "Late callers", max_message_seconds=30)})
    CallbackStore(r).request(T, DEP, "c1", _now_ms() - 120_000, "+78120000000", "+74950000001")
    jobs: list = []
    d = CallbackDispatcher(r, lambda t: snap, Policy(), SETTINGS, lambda data, meta: jobs.append((data, meta)))
    assert d.tick() == 1
    (data, _), = jobs
    assert (data["box_id"], data["max_message_s"]) == (44, 30)  # not the no-answer target's box 33


def test_an_expired_callback_without_a_voicemail_box_apologises_with_the_stock_sound(r):
    from dataclasses import replace

    dep = replace(SNAP.departments[DEP], no_answer_target=None, queue=replace(QUEUE, callback_apology=None))
    snap = replace(SNAP, departments={DEP: dep})
    callbacks = CallbackStore(r)
    callbacks.request(T, DEP, "c1", _now_ms() - 120_000, "+78120000000", "+74950000001")
    jobs: list = []
    d = CallbackDispatcher(r, lambda t: snap, Policy(), SETTINGS, lambda data, meta: jobs.append((data, meta)))
    assert d.tick() == 1
    (data, _), = jobs
    assert data["apology"] == APOLOGY_SOUND and data["box_id"] == 0


def test_a_retry_after_the_first_queue_lease_ended_gets_a_live_place_again(r):
    """Retries may outlast the callback's first queue lease (10 attempts 1 h apart): when
    it is put back, its lease is renewed, so the queue does not drop it as a dead entry."""
    from orchestrator.store.callbacks import MAX_AGE_MS
    from orchestrator.store.agents import queue_lease_key

    agents, callbacks = AgentStore(r), CallbackStore(r)
    since = _now_ms()
    cb = callbacks.request(T, DEP, "c1", since, "+78120000000", "+74950000001")
    assert callbacks.claim(T, cb, 60_000) == 1
    assert callbacks.settle(T, callbacks.get(T, cb), "pending", "client_no_answer", retry_delay_ms=3_600_000,
                            client_missed=True)
    assert agents.queue(T, DEP) == [] and not callbacks.requeue(T, callbacks.get(T, cb))  # still waiting
    r.hset(callback_key(T, cb), mapping={"not_before": _now_ms() - 1, "expires": _now_ms() - 1})  # hours later
    assert callbacks.requeue(T, callbacks.get(T, cb))
    assert [(u, place) for u, place in agents.queue(T, DEP)] == [(member(cb), since)]  # its own place
    assert r.zscore(queue_lease_key(T, DEP), member(cb)) > _now_ms() + MAX_AGE_MS - 60_000
