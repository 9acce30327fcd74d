"""A caller's number reaches ``originate`` only as a validated E.164 number (toll fraud).

A callback's client leg is dialled from the caller's Caller-ID-Number. Before these
checks a Caller-ID like ``+7916...,sofia/gateway/pstn/+1900...`` added a leg to the
``originate`` (FreeSWITCH splits a dial string's legs on ``,``), and a blank plus
``&bridge(...)`` replaced its application (originate's arguments are split on blanks).
Checked here at every place the number passes: the core (the callback key), the store
(``request``), the dispatcher (before queueing) and the worker (before dialling), and
every other value the worker puts into ``originate`` / ``uuid_*``.
"""
from __future__ import annotations

import pytest
import redis

from member_fake import Members, step
from orchestrator.callback_dispatcher import CallbackDispatcher, CallbackSettings
from orchestrator.core import callflow
from orchestrator.core.actions import CallInfo, Dtmf, Log, RequestCallback
from orchestrator.core.dialstrings import callback_endpoints, e164, safe_token, safe_uuid
from orchestrator.core.plan import Policy
from orchestrator.store.agents import AgentStore
from orchestrator.store.callbacks import CallbackStore, callback_key, member
from test_callback_dispatcher import DEP, SNAP, T
from test_core_departments import NUMBER, T0, bridge_of, callback_snap, ctx
from workers import jobs


def _now_ms() -> int:
    """Now, in ms: a callback's place is when its caller joined the queue (it expires
    after the department's no-answer timeout)."""
    return int(__import__("time").time() * 1000)

# What a caller (or a carrier passing the caller's SIP From through) can put in the
# Caller-ID-Number, and what each would do inside ``originate {...}<dial> &park()``.
INJECTIONS = [
    "+79161234567,sofia/gateway/pstn/+19005550100",  # a second leg, at once
    "+79161234567|sofia/gateway/pstn/+19005550100",  # a second leg, after the first
    "+79161234567:_:sofia/gateway/pstn/+19005550100",  # enterprise originate
    "+79161234567 &bridge(sofia/gateway/pstn/+19005550100)",  # replaces &park()
    "+7916${system(id)}",  # variable / API expansion
    "+79161234567'",  # quote
    "[leg_timeout=9999]+79161234567",
    "{absolute_codec_string=PCMU}+79161234567",
    "^^:+79161234567:sofia/gateway/pstn/+1900",
    "anonymous",
    "",
    "+7916",  # too short: no such number
    "+79161234567\n",
]


@pytest.mark.parametrize("raw", INJECTIONS)
def test_no_injected_caller_id_is_an_e164_number(raw):
    assert e164(raw, "RU") is None or e164(raw, "RU") == "+79161234567" and raw.strip() == "+79161234567"


def test_numbers_are_read_as_e164():
    assert e164("+79161234567") == "+79161234567"
    assert e164("89161234567", "RU") == "+79161234567"  # national form, the country of the number called
    assert e164("89161234567") is None  # without a country it cannot be read
    assert e164("+1 900 555 0100") is None  # blanks are not part of a number we accept


@pytest.mark.parametrize("value", ["101,user/102", "a b", "${x}", "dom'ain", "x|y", "a:_:b", "", "x" * 129, "ext\n"])
def test_tokens_refuse_what_freeswitch_would_split_or_expand(value):
    with pytest.raises(ValueError):
        safe_token(value)


def test_uuids_and_endpoints():
    assert safe_uuid("a1b2c3d4-0000-4000-8000-00000000abcd")
    with pytest.raises(ValueError):
        safe_uuid("a1b2c3d4-0000-4000-8000-00000000abcd all")
    assert callback_endpoints("sofia/gateway/pstn/{number}", "101", "acme.example", "+79161234567") == (
        "user/101@acme.example", "sofia/gateway/pstn/+79161234567")
    for ext, domain, number in [("101", "acme.example", "89161234567"), ("10 1", "acme.example", "+79161234567"),
                                ("101", "${sofia_contact(x)}", "+79161234567")]:
        with pytest.raises(ValueError):
            callback_endpoints("sofia/gateway/pstn/{number}", ext, domain, number)


# ------------------------------------------------------------------ the core: the key


def _on_hold(caller: str, destination: str = NUMBER):
    s = callback_snap()
    m = Members(busy={1, 2})
    c = ctx(s, T0)
    m.now_ms = T0
    d = m.drive(callflow.start(CallInfo("c1", "public", destination, caller), c), c)
    assert bridge_of(d).arg == "local_stream://moh"
    return s, m, d


@pytest.mark.parametrize("caller", [INJECTIONS[0], INJECTIONS[3], "anonymous", ""])
def test_the_callback_key_is_refused_for_a_number_we_cannot_call_back(caller):
    s, m, d = _on_hold(caller)
    d = step(m, d.state, Dtmf("1"), ctx(s, T0 + 7000))
    assert not [a for a in d.actions if isinstance(a, RequestCallback)]
    (log,) = [a for a in d.actions if isinstance(a, Log)]
    assert log.message == "callback key refused" and log.level == "warning" and "stay in the queue" in log.fields["reason"]
    assert d.state.offer.waiting and not d.state.offer.leaving and "c1" in m.queue  # keeps the place


def test_the_callback_stores_the_callers_number_in_e164():
    s, m, d = _on_hold("89161234567")  # a Russian carrier's national form, to a +7 number
    d = step(m, d.state, Dtmf("1"), ctx(s, T0 + 7000))
    (ask,) = [a for a in d.actions if isinstance(a, RequestCallback)]
    assert ask.caller_number == "+79161234567" and ask.dialed == NUMBER


# ------------------------------------------------------------------ store, dispatcher


@pytest.fixture
def r(redis_url: str) -> redis.Redis:
    return redis.Redis.from_url(redis_url)


@pytest.mark.parametrize("caller", [INJECTIONS[0], INJECTIONS[3], "anonymous", "89161234567"])
def test_the_store_refuses_a_callback_to_anything_but_e164(r, caller):
    agents, callbacks = AgentStore(r), CallbackStore(r)
    agents.join_queue(T, DEP, "c1", 1000)
    with pytest.raises(ValueError, match="not an E.164 number"):
        callbacks.request(T, DEP, "c1", _now_ms(), caller, "+74950000001")
    assert [u for u, _ in agents.queue(T, DEP)] == ["c1"] and callbacks.open(T) == []  # the caller's place is theirs


def test_the_dispatcher_settles_a_callback_it_cannot_dial_and_queues_no_job(r):
    """A callback whose number was written into Redis by something else than ``request``."""
    agents, callbacks = AgentStore(r), CallbackStore(r)
    cb = callbacks.request(T, DEP, "c1", _now_ms(), "+78120000000", "+74950000001")
    r.hset(callback_key(T, cb), "caller", INJECTIONS[0])
    jobs_queued: list = []
    d = CallbackDispatcher(r, lambda t: SNAP, Policy(), CallbackSettings(), lambda data, meta: jobs_queued.append(data))
    assert d.tick() == 0 and jobs_queued == []
    got = callbacks.get(T, cb)
    assert got.status == "failed" and "not an E.164 number" in got.result
    assert agents.live_offers(T) == {} and agents.queue(T, DEP) == [] and member(cb) not in str(agents.live_offers(T))


# ------------------------------------------------------------------ the worker


@pytest.mark.parametrize("field, value", [
    ("client_number", INJECTIONS[0]),
    ("client_number", INJECTIONS[3]),
    ("client_number", "sofia/gateway/pstn/+19005550100"),
    ("client_number", "89161234567"),
    ("agent_extension", "101,sofia/gateway/pstn/+19005550100"),
    ("agent_extension", "101 &bridge(x)"),
    ("agent_domain", "${system(touch /tmp/x)}"),
    ("caller_id_number", "+74950000001,origination_caller_id_name='x'"),
    ("caller_id_number", "'+7495"),
    ("agent_timeout_s", "20 &park()"),
    ("tenant_id", "7 x"),
    ("callback_id", "cb-1,x"),
])
def test_the_worker_refuses_a_job_with_a_value_freeswitch_would_split_or_expand(monkeypatch, field, value):
    dialled: list = []
    monkeypatch.setattr(jobs, "connect_esl", lambda call: dialled.append(call))
    job = {"tenant_id": "7", "callback_id": "cb42", "agent_extension": "310", "agent_domain": "cb.pbx.test",
           "client_number": "+79990000012", "caller_id_number": "+74952220070", "agent_timeout_s": 20, "client_timeout_s": 30}
    job[field] = value
    result = jobs.ring_agent_then_client(job)
    assert result["status"] == "failed" and result["cause"].startswith("job refused: ")
    assert dialled == []  # FreeSWITCH never heard of it


def test_the_worker_refuses_what_is_not_a_job(monkeypatch):
    monkeypatch.setattr(jobs, "connect_esl", lambda call: pytest.fail("connected"))
    assert jobs.ring_agent_then_client(["not", "a", "mapping"])["status"] == "failed"  # type: ignore[arg-type]
