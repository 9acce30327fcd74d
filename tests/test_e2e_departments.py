"""Department strategies end to end: simulated FreeSWITCH (our dialplan, the ESL wire)
-> a real ``pbx-orchestrator`` process -> real PostgreSQL and Redis.

Who rang when is read from the simulated phones (simulated seconds; FreeSWITCH's timers
tick on whole seconds, so offsets are asserted within one second).
"""
from __future__ import annotations

import gc
from pathlib import Path
from typing import Iterator

import pytest
import redis
from sqlalchemy import select

from orchestrator.db.engine import make_engine, make_session_factory
from orchestrator.db.history import CallRecord, MissedOffer
from orchestrator.db.migrate import upgrade
from orchestrator.db.models import Employee, Tenant
from orchestrator.store.agents import AgentStore
from orchestrator.tenant_doc import import_tenant
from simulator import Answer, Busy, FreeSwitchSim, NoAnswer
from test_e2e_calls import TIME_SCALE, Orchestrator, make_sim, members_start_free, wait_until  # noqa: F401 - fixture

TENANT_YAML = Path(__file__).resolve().parent / "data" / "e2e" / "departments.yaml"
DOMAIN = "dept.pbx.test"
# "At once", in simulated seconds: the orchestrator's reaction (Redis, then the next
# command) takes real milliseconds, 50 ms = 2.5 simulated s at TIME_SCALE 0.02. The
# periodic hold check (1 s real = 50 simulated s) would be far outside it.
GAP = 0.05 / TIME_SCALE


@pytest.fixture(autouse=True)
def garbage_collected_first() -> None:
    """The simulator runs in this process: a full garbage collection (60-70 ms over the
    imported libraries' objects) landing inside a test is longer than GAP. Collect before
    each test, so that the next full collection is far away."""
    gc.collect()


@pytest.fixture(scope="module")
def e2e_redis() -> Iterator[str]:
    from tests.conftest import REDIS_URL

    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    yield REDIS_URL
    client.flushdb()


@pytest.fixture(scope="module")
def dept_db(pg_server_url) -> Iterator[tuple[object, int]]:
    engine = make_engine(pg_server_url)
    upgrade(engine)
    factory = make_session_factory(engine)
    with factory() as session:
        existing = session.scalar(select(Tenant.id).where(Tenant.sip_domain == DOMAIN))
        tenant_id = existing or import_tenant(session, TENANT_YAML.read_text(encoding="utf-8"))
        session.commit()
    yield factory, tenant_id
    engine.dispose()


@pytest.fixture(scope="module")
def orchestrator(pg_server_url, dept_db, e2e_redis, tmp_path_factory) -> Iterator[Orchestrator]:
    orch = Orchestrator(pg_server_url, e2e_redis, tmp_path_factory.mktemp("orch") / "orchestrator.log")
    yield orch
    orch.stop()


@pytest.fixture
def sim(orchestrator) -> Iterator[FreeSwitchSim]:
    s = make_sim(orchestrator.address)
    yield s
    s.stop()


@pytest.fixture
def agents(e2e_redis) -> AgentStore:
    return AgentStore(redis.Redis.from_url(e2e_redis))


def ids(factory, tenant_id: int) -> dict[str, int]:
    with factory() as session:
        return {e.extension: e.id for e in session.scalars(select(Employee).where(Employee.tenant_id == tenant_id))}


def record(factory, uuid: str) -> CallRecord:
    wait_until(lambda: _records(factory, uuid), what="call history row")
    (row,) = _records(factory, uuid)
    return row


def _records(factory, uuid: str) -> list[CallRecord]:
    with factory() as session:
        return list(session.scalars(select(CallRecord).where(CallRecord.call_uuid == uuid)))


def settle(agents: AgentStore, tenant_id: int) -> None:
    """The previous call's offers are all over (the orchestrator handles UNBRIDGE after
    the simulated phone hangs up; wait for it rather than racing the next call)."""
    wait_until(lambda: agents.live_offers(tenant_id) == {}, what="offers released")


def first_invite(*endpoints) -> dict[str, float]:
    return {ep.user: min(leg.invited_at for leg in ep.legs) for ep in endpoints if ep.legs}


def test_escalation_reference_case(sim, dept_db, agents):
    """Managers ring at 0 s; the head of sales is added at 10 s while they keep ringing;
    the administrator at 30 s; the administrator answers and everyone else stops."""
    factory, tenant_id = dept_db
    managers = [sim.add_user(ext, DOMAIN, behavior=NoAnswer()) for ext in ("301", "302", "303")]
    head = sim.add_user("304", DOMAIN, behavior=NoAnswer())
    admin = sim.add_user("305", DOMAIN, behavior=Answer(after=2, hangup_after=3))
    call = sim.place_call("+74952220010").wait(timeout=30)
    t0 = call.started_at + [t for t, name, _ in call.apps if name == "bridge"][0]  # the bridge started
    assert all(0 <= m.legs[0].invited_at - t0 < 1 for m in managers)
    assert 10 <= head.legs[0].invited_at - t0 <= 11.2
    assert 30 <= admin.legs[0].invited_at - t0 <= 31.2
    answered = admin.legs[0].answered_at
    for ep in managers + [head]:
        (leg,) = ep.legs
        assert leg.cause == "LOSE_RACE" and abs(leg.ended_at - answered) < 0.5  # rang until the answer
    row = record(factory, call.uuid)
    assert row.answered_by_employee_id == ids(factory, tenant_id)["305"]
    settle(agents, tenant_id)


def test_one_by_one_skips_logged_out_and_records_misses(sim, dept_db, agents):
    factory, tenant_id = dept_db
    six = sim.add_user("306", DOMAIN, behavior=NoAnswer())
    nine = sim.add_user("309", DOMAIN, behavior=Answer())  # logged out
    seven = sim.add_user("307", DOMAIN, behavior=Busy())
    eight = sim.add_user("308", DOMAIN, behavior=Answer(after=1, hangup_after=2))
    call = sim.place_call("+74952220020").wait(timeout=30)
    (l6,), (l7,), (l8,) = six.legs, seven.legs, eight.legs
    assert nine.legs == []
    # A lone user/ leg ends NO_ANSWER a whole-second tick before leg_timeout (FreeSWITCH
    # 1.10.12, core/dialstrings.py): leg_timeout=6 for ring_seconds 5 rings 5..6 s.
    assert l6.cause == "NO_ANSWER" and 5 <= l6.ended_at - l6.invited_at <= 6.2
    assert 0 <= l7.invited_at - l6.ended_at <= GAP  # next one only after the previous stopped
    assert l7.cause == "USER_BUSY" and 0 <= l8.invited_at - l7.ended_at <= GAP
    assert l8.answered_at is not None
    e = ids(factory, tenant_id)
    assert record(factory, call.uuid).answered_by_employee_id == e["308"]
    wait_until(lambda: len(_misses(factory, call.uuid)) == 2, what="missed offers written")
    assert [(m.employee_id, m.result) for m in _misses(factory, call.uuid)] == [(e["306"], "no_answer"), (e["307"], "busy")]
    # rang_ms is the orchestrator's (real) clock; the phones run on simulated seconds.
    rang_real_ms = (l6.ended_at - l6.invited_at) * TIME_SCALE * 1000
    assert abs(_misses(factory, call.uuid)[0].rang_ms - rang_real_ms) < 40
    settle(agents, tenant_id)


def _misses(factory, uuid: str) -> list[MissedOffer]:
    with factory() as session:
        return list(session.scalars(select(MissedOffer).where(MissedOffer.call_uuid == uuid).order_by(MissedOffer.id)))


def test_unregistered_phone_is_skipped_without_waiting_and_misses_pause(sim, dept_db, agents):
    factory, tenant_id = dept_db
    e = ids(factory, tenant_id)
    six = sim.add_user("306", DOMAIN, behavior=NoAnswer())
    sim.add_user("307", DOMAIN, registered=False)
    eight = sim.add_user("308", DOMAIN, behavior=Answer(after=1, hangup_after=1))
    for n in range(2):  # two consecutive misses of 306 pause it (pause_after_missed: 2)
        call = sim.place_call("+74952220020").wait(timeout=30)
        assert eight.legs[-1].invited_at - six.legs[-1].ended_at <= GAP  # 307: no ring time lost
        record(factory, call.uuid)
        settle(agents, tenant_id)
    assert agents.states(tenant_id, [e["306"]])[e["306"]].paused
    assert [m.result for m in _misses(factory, call.uuid)] == ["no_answer", "unregistered"]
    assert _misses(factory, call.uuid)[0].paused
    call = sim.place_call("+74952220020").wait(timeout=30)
    assert len(six.legs) == 2  # paused: not rung on the third call
    assert record(factory, call.uuid).answered_by_employee_id == e["308"]
    settle(agents, tenant_id)


def test_increasing_adds_one_member_per_ring_time(sim, dept_db, agents):
    factory, tenant_id = dept_db
    six = sim.add_user("306", DOMAIN, behavior=NoAnswer())
    seven = sim.add_user("307", DOMAIN, behavior=NoAnswer())
    eight = sim.add_user("308", DOMAIN, behavior=Answer(after=1, hangup_after=1))
    call = sim.place_call("+74952220030").wait(timeout=30)
    t = first_invite(six, seven, eight)
    t0 = call.started_at + [at for at, name, _ in call.apps if name == "bridge"][0]  # the bridge started
    # Measured from the bridge's start: a loaded machine may delay the first INVITE, but
    # the delayed legs follow FreeSWITCH's whole-second ticks from the start (P03).
    assert 0 <= t["306"] - t0 <= GAP
    assert 4 <= t["307"] - t0 <= 5.2 + GAP and 8 <= t["308"] - t0 <= 9.2 + GAP
    assert six.legs[0].cause == seven.legs[0].cause == "LOSE_RACE"  # kept ringing until 308 answered
    settle(agents, tenant_id)


@pytest.mark.parametrize("number, second_first", [("+74952220040", "308"), ("+74952220050", "306")])
def test_round_robin_and_longest_idle_pick_who_starts(sim, dept_db, agents, number, second_first):
    """Call 1: 306 is busy (486), 307 answers. Round robin starts call 2 after 307 (308);
    longest idle starts with who has gone longest without a call (306, never)."""
    factory, tenant_id = dept_db
    six = sim.add_user("306", DOMAIN, behavior=Busy())
    seven = sim.add_user("307", DOMAIN, behavior=Answer(after=1, hangup_after=1))
    eight = sim.add_user("308", DOMAIN, behavior=Answer(after=1, hangup_after=1))
    first = sim.place_call(number).wait(timeout=30)
    assert record(factory, first.uuid).answered_by_employee_id == ids(factory, tenant_id)["307"]
    settle(agents, tenant_id)
    six.behavior = Answer(after=1, hangup_after=1)
    before = {ep.user: len(ep.legs) for ep in (six, seven, eight)}
    sim.place_call(number).wait(timeout=30)
    new = {ep.user: ep.legs[before[ep.user]].invited_at for ep in (six, seven, eight) if len(ep.legs) > before[ep.user]}
    assert min(new, key=new.get) == second_first
    settle(agents, tenant_id)


def test_wrap_up_keeps_the_member_out_until_it_ends(sim, dept_db, agents):
    """One by one with wrap-up 1 s (Redis time): right after 306's call, 307 gets the next."""
    factory, tenant_id = dept_db
    e = ids(factory, tenant_id)
    six = sim.add_user("306", DOMAIN, behavior=Answer(after=1, hangup_after=1))
    seven = sim.add_user("307", DOMAIN, behavior=Answer(after=1, hangup_after=1))
    sim.place_call("+74952220020").wait(timeout=30)
    settle(agents, tenant_id)
    state = agents.states(tenant_id, [e["306"]])[e["306"]]
    assert state.wrapup_until_ms > 0
    sim.place_call("+74952220020").wait(timeout=30)
    assert len(six.legs) == 1 and len(seven.legs) == 1  # 306 was in wrap-up
    settle(agents, tenant_id)
    sec, usec = agents.r.time()
    if sec * 1000 + usec // 1000 < state.wrapup_until_ms:
        wait_until(lambda: _redis_ms(agents) >= state.wrapup_until_ms, what="the wrap-up to end")
    sim.place_call("+74952220020").wait(timeout=30)
    assert len(six.legs) == 2  # free again: first in order


def _redis_ms(agents: AgentStore) -> int:
    sec, usec = agents.r.time()
    return sec * 1000 + usec // 1000


def test_queue_callers_wait_on_hold_and_keep_their_place(sim, dept_db, agents):
    """Department 460 has one member and hold music. A talks to 307; B then C wait on
    hold; when A ends, B (who came first) is rung at once, then C after B."""
    factory, tenant_id = dept_db
    seven = sim.add_user("307", DOMAIN, behavior=Answer(after=1, hangup_after=10))
    a = sim.place_call("+74952220060", caller_id="+79990000001")
    wait_until(lambda: seven.legs and seven.legs[0].answered_at is not None, what="A answered")
    b = sim.place_call("+74952220060", caller_id="+79990000002")
    wait_until(lambda: len(agents.queue(tenant_id, _department(factory, tenant_id, "460"))) == 1, what="B queued")
    c = sim.place_call("+74952220060", caller_id="+79990000003")
    dep = _department(factory, tenant_id, "460")
    wait_until(lambda: len(agents.queue(tenant_id, dep)) == 2, what="C queued")
    assert [u for u, _ in agents.queue(tenant_id, dep)] == [b.uuid, c.uuid]
    for call in (a, b, c):
        call.wait(timeout=60)
    l_a, l_b, l_c = seven.legs
    assert [leg.a_uuid for leg in seven.legs] == [a.uuid, b.uuid, c.uuid]  # first come, first served
    assert 0 <= l_b.invited_at - l_a.ended_at <= GAP  # B rung as soon as 307 was free
    assert 0 <= l_c.invited_at - l_b.ended_at <= GAP
    for call in (b, c):
        names = [name for _, name, _ in call.apps]
        assert names.index("playback") < names.index("bridge")  # music, broken, then the ring
        assert ("playback", "local_stream://moh") in [(n, d) for _, n, d in call.apps]
    assert "queue: a member is free after" in record(factory, b.uuid).route
    assert agents.queue(tenant_id, dep) == []
    settle(agents, tenant_id)


def _department(factory, tenant_id: int, extension: str) -> int:
    from orchestrator.db.models import Department

    with factory() as session:
        return session.scalar(select(Department.id).where(Department.tenant_id == tenant_id, Department.extension == extension))


def _started(call, prefix: str) -> list[float]:
    """Start times (simulated s from the call's start) of its playbacks of ``prefix``..."""
    return [t for t, name, data in call.apps if name == "playback" and data.startswith(prefix)]


def test_queue_announces_the_place_then_the_announcement_every_interval(sim, dept_db, agents):
    """Department 470 (one member, 308; announce_every 5 s = 250 simulated s: the
    orchestrator runs on real time). A talks to 308; B then C wait: each first hears their
    place (1, then 2) before the music, then after 5 s of music the announcement and their
    place again. 308 is freed (A hangs up) during B's announcement: B is rung at once."""
    factory, tenant_id = dept_db
    # A 20 s announcement (400 ms real): B's is still playing when C's starts a few ms later.
    sim.sound_lengths["ivr/ivr-hold_connect_call.wav"] = 20.0
    eight = sim.add_user("308", DOMAIN, behavior=Answer(after=1))
    dep = _department(factory, tenant_id, "470")
    a = sim.place_call("+74952220080", caller_id="+79990000011")
    wait_until(lambda: eight.legs and eight.legs[0].answered_at is not None, what="A answered")
    b = sim.place_call("+74952220080", caller_id="+79990000012")
    wait_until(lambda: len(agents.queue(tenant_id, dep)) == 1, what="B queued")
    c = sim.place_call("+74952220080", caller_id="+79990000013")
    wait_until(lambda: len(agents.queue(tenant_id, dep)) == 2, what="C queued")
    announcement = "file_string://ivr/ivr-hold_connect_call.wav!ivr/ivr-you_are_number.wav!digits/%d.wav!ivr/ivr-in_line.wav"
    wait_until(lambda: _started(c, announcement % 2), timeout=15, what="C's announcement")
    a.hangup()  # 308 is free while B's announcement plays
    wait_until(lambda: len(eight.legs) == 2 and eight.legs[1].answered_at is not None, what="B answered by 308")
    b.hangup()
    c.hangup()
    for call in (a, b, c):
        call.wait(timeout=30)

    place = "file_string://ivr/ivr-you_are_number.wav!digits/%d.wav!ivr/ivr-in_line.wav"
    for call, n in ((b, 1), (c, 2)):
        playbacks = [(t, data) for t, name, data in call.apps if name == "playback"]
        assert [data for _, data in playbacks[:3]] == [place % n, "local_stream://moh", announcement % n]
        # The place first: 0.25 s of file_string silence + three 2 s files (the simulator's
        # default length), then the music; 5 s of real music (50 ms real tolerance).
        (said, _), (music, _), (announced, _) = playbacks[:3]
        assert 6.25 <= music - said <= 6.25 + GAP
        assert abs((announced - music) - 5 / TIME_SCALE) <= GAP
    (bridge_at,) = [t for t, name, _ in b.apps if name == "bridge"]
    (announced,) = _started(b, announcement % 1)
    assert bridge_at - announced < 26.25  # the announcement was cut short for the ring
    l_a, l_b = eight.legs
    assert l_b.a_uuid == b.uuid and 0 <= l_b.invited_at - l_a.ended_at <= GAP  # rung at once
    assert "queue: a member is free after" in record(factory, b.uuid).route
    assert agents.queue(tenant_id, dep) == []
    settle(agents, tenant_id)
