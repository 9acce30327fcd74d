"""``pbx-inspect check [--fix]`` on a real Redis with planted faults, against the
simulated FreeSWITCH's inbound event socket (real ESL wire protocol, ``show channels as
json`` / ``uuid_exists`` / ``uuid_kill`` as FreeSWITCH 1.10.12 answers them), with the
demo tenant's routing data in the session's PostgreSQL database.

Every planted fault is reported once, ``--fix`` repairs exactly those (the healthy state
around them is untouched), a second ``--fix`` changes nothing, and a healthy state
reports nothing. Without FreeSWITCH only the Redis-side faults are looked at and nothing
is taken for gone.
"""
from __future__ import annotations

import io
import json
import time
import uuid as uuidlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest
import redis

from orchestrator.esl.inbound import InboundClient
from orchestrator.inspect_cli import Directory, main
from orchestrator.store.agents import AgentStore, agent_key, queue_lease_key
from orchestrator.store.callbacks import CallbackStore, Talk, callback_key, member
from orchestrator.store.check import redis_now_ms
from orchestrator.store.redis_store import CallStore, calls_key
from simulator import Answer, FreeSwitchSim
from tests.pg_demo import DEMO_DOMAIN, ensure_demo_tenant

CONF = Path(__file__).resolve().parents[1] / "freeswitch-conf"
HOUR_SIM_S = 100_000  # simulated seconds: the planted live channels outlast every test


@pytest.fixture(scope="module")
def demo(pg_server_url: str) -> Iterator[tuple[Directory, int]]:
    from orchestrator.db.engine import make_engine, make_session_factory

    tenant_id = ensure_demo_tenant(pg_server_url)
    engine = make_engine(pg_server_url)
    yield Directory(make_session_factory(engine)), tenant_id
    engine.dispose()


@pytest.fixture
def r(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def sim() -> Iterator[FreeSwitchSim]:
    s = FreeSwitchSim(conf_dir=CONF, globals={"pbx_orchestrator_socket": "127.0.0.1:1", "recordings_dir": "/rec"},
                      time_scale=0.02).start()
    for ext in ("101", "102", "103", "104", "105"):
        s.add_user(ext, DEMO_DOMAIN, behavior=Answer(after=1, hangup_after=HOUR_SIM_S))
    yield s
    s.stop()


@pytest.fixture
def esl(sim: FreeSwitchSim) -> Iterator[InboundClient]:
    client = InboundClient("127.0.0.1", sim.esl_port, "ClueCon", connect_timeout=5, command_timeout=10, reconnect=False).connect()
    yield client
    client.close()


def live_channel(esl: InboundClient, ext: str) -> str:
    """A live channel in the simulated FreeSWITCH (a parked leg on the phone ``ext``)."""
    body = esl.api("originate user/%s@%s &park()" % (ext, DEMO_DOMAIN), timeout=10)
    assert body.startswith("+OK "), body
    return body.split()[-1]


def exists(esl: InboundClient, uuid: str) -> bool:
    return esl.api("uuid_exists %s" % uuid).strip() == "true"


def gone_uuid() -> str:
    return str(uuidlib.uuid4())  # a channel uuid FreeSWITCH never had


def run(argv: list[str], r: redis.Redis, directory: Directory, sim: FreeSwitchSim | None = None) -> tuple[int, dict, str]:
    """``pbx-inspect ... --json`` (asking the simulator's event socket with ``sim``)."""
    out, err = io.StringIO(), io.StringIO()
    if sim is not None:
        argv = argv + ["--esl", "127.0.0.1:%d" % sim.esl_port]
    code = main(argv + ["--json"], out, r, directory, err)
    return code, json.loads(out.getvalue()), err.getvalue()


@dataclass
class Healthy:
    call: str  # live call with its channel, offered to 102
    busy: str  # 102's phone is on this channel
    queued: str  # a caller waiting in Support's queue
    talk_leg: str  # 104 talks to a called-back client on this leg
    talk_cb: str


def ids(directory: Directory, tenant_id: int) -> tuple[dict[str, int], dict[str, int]]:
    snap = directory.resolve(str(tenant_id)).snapshot
    assert snap is not None
    return ({e.extension: e.id for e in snap.employees.values()}, {d.name: d.id for d in snap.departments.values()})


def plant_healthy(r: redis.Redis, esl: InboundClient, tenant: int, emp: dict[str, int], dep: dict[str, int]) -> Healthy:
    agents, callbacks, calls = AgentStore(r), CallbackStore(r), CallStore(r)
    now = redis_now_ms(r)
    call, busy, queued, talk_leg = (live_channel(esl, x) for x in ("101", "103", "105", "104"))
    calls.admit(tenant, call, now, 0, {"caller": "+78121234567", "destination": "+74950000001", "entry": "public", "started_ms": str(now)})
    assert agents.reserve(tenant, call, dep["Sales"], [emp["102"]], 1)[1] == {emp["102"]: "offered"}
    agents.channel_up(tenant, emp["102"], busy, 180_000)
    agents.join_queue(tenant, dep["Support"], queued, now)
    # A bridged callback whose member still talks (as the worker's job end leaves it).
    cb = callbacks.request(tenant, dep["Support"], "caller-gone-after-request", now - 1000, "+78120000001", "+74950000002")
    assert callbacks.claim(tenant, cb, 120_000) == 1
    assert agents.reserve(tenant, member(cb), dep["Support"], [emp["104"]], 1, queued=True)[1] == {emp["104"]: "offered"}
    callbacks.talking(tenant, Talk(cb, talk_leg, emp["104"], dep["Support"], 7000, now - 30_000))
    assert callbacks.settle(tenant, callbacks.get(tenant, cb), "done", "bridged")
    return Healthy(call, busy, queued, talk_leg, cb)


def plant_faults(r: redis.Redis, esl: InboundClient, tenant: int, emp: dict[str, int], dep: dict[str, int]) -> dict[str, tuple]:
    """One fault of every kind; returns kind -> (subject, employee id, department id)."""
    agents, callbacks = AgentStore(r), CallbackStore(r)
    now = redis_now_ms(r)
    planted: dict[str, tuple] = {}
    # A live-call entry (lease running) whose channel FreeSWITCH does not have.
    lost_call = gone_uuid()
    CallStore(r).admit(tenant, lost_call, now, 0, {"caller": "+78121234569"})
    planted["call_without_channel"] = (lost_call, None, None)
    # A live-call entry whose orchestrator died two minutes ago (lease 60 s; admitted
    # after the one above, whose admission would have swept it).
    expired_call = gone_uuid()
    CallStore(r).admit(tenant, expired_call, now - 120_000, 0, {"caller": "+78121234568"})
    planted["call_lease_expired"] = (expired_call, None, None)
    # 101's offer whose lease ended.
    stale = gone_uuid()
    agents.reserve(tenant, stale, dep["Sales"], [emp["101"]], 1)
    r.hset(agent_key(tenant, emp["101"]), "offer_until", now - 5000)
    planted["offer_lease_expired"] = (stale, emp["101"], dep["Sales"])
    # 105 offered a call whose channel is gone.
    lost_offer = gone_uuid()
    agents.reserve(tenant, lost_offer, dep["Support"], [emp["105"]], 1)
    planted["offer_without_call"] = (lost_offer, emp["105"], dep["Support"])
    # 103 held by a bridged callback whose leg is gone.
    cb2 = callbacks.request(tenant, dep["Support"], "x", now - 500, "+78120000002", "+74950000002")
    callbacks.claim(tenant, cb2, 120_000)
    agents.reserve(tenant, member(cb2), dep["Support"], [emp["103"]], 1, queued=True)
    dead_leg = gone_uuid()
    callbacks.talking(tenant, Talk(cb2, dead_leg, emp["103"], dep["Support"], 9000, now - 60_000))
    callbacks.settle(tenant, callbacks.get(tenant, cb2), "done", "bridged")
    planted["talk_leg_gone"] = (dead_leg, emp["103"], dep["Support"])
    # 101's phone marked busy on a channel that ended while the presence watcher was away.
    ghost = gone_uuid()
    agents.channel_up(tenant, emp["101"], ghost, 180_000)
    planted["busy_without_channel"] = (ghost, emp["101"], None)
    # A caller in Sales' queue whose channel is gone, and one whose lease ended.
    left = gone_uuid()
    agents.join_queue(tenant, dep["Sales"], left, now - 3000)
    planted["queue_caller_gone"] = (left, None, dep["Sales"])
    dead = gone_uuid()
    agents.join_queue(tenant, dep["Sales"], dead, now - 2000)
    r.zadd(queue_lease_key(tenant, dep["Sales"]), {dead: now - 1000})
    planted["queue_lease_expired"] = (dead, None, dep["Sales"])
    # A callback left dialing past its lease; its lost job's agent leg still rings.
    cb3 = callbacks.request(tenant, dep["Support"], "y", now - 400, "+78120000003", "+74950000002")
    callbacks.claim(tenant, cb3, 120_000)
    agents.leave_queue(tenant, dep["Support"], member(cb3))  # as its reservation took it out
    leg = live_channel(esl, "102")
    assert callbacks.leg(tenant, cb3, 1, "agent", leg)
    r.hset(callback_key(tenant, cb3), "until", now - 1000)
    planted["callback_dialing_expired"] = (cb3, None, dep["Support"])
    planted["_lost_leg"] = (leg,)
    # Employee 9999 (not in the routing data) offered a callback that no longer exists.
    agents.reserve(tenant, "cb:0000000000000000", dep["Sales"], [9999], 1)
    planted["offer_without_callback"] = ("cb:0000000000000000", 9999, dep["Sales"])
    return planted


def found(doc: dict) -> dict[str, tuple]:
    out = {}
    for item in doc["items"]:
        assert item["kind"] not in out, "one fault of each kind was planted: %r" % item
        out[item["kind"]] = (item["subject"], (item["employee"] or {}).get("id"), (item["department"] or {}).get("id"))
    return out


def assert_healthy_intact(r: redis.Redis, tenant: int, h: Healthy, emp: dict[str, int], dep: dict[str, int]) -> None:
    agents = AgentStore(r)
    assert r.zscore(calls_key(tenant), h.call) is not None
    states = agents.states(tenant, [emp["102"], emp["104"]])
    assert states[emp["102"]].offer == h.call and states[emp["102"]].channels == 1
    assert states[emp["104"]].offer == member(h.talk_cb)
    assert h.queued in [u for u, _ in agents.queue(tenant, dep["Support"])]
    assert [t.callback_id for t in CallbackStore(r).talks(tenant)] == [h.talk_cb]


def test_healthy_state_reports_nothing(r, esl, sim, demo):
    directory, tenant = demo
    emp, dep = ids(directory, tenant)
    h = plant_healthy(r, esl, tenant, emp, dep)
    code, doc, err = run(["check", "--tenant", DEMO_DOMAIN], r, directory, sim)
    assert (code, doc["items"], err) == (0, [], "")
    assert doc["tenant"] == {"id": tenant, "name": "Demo Trading LLC", "sip_domain": DEMO_DOMAIN}
    assert doc["freeswitch"]["asked"] is True and doc["freeswitch"]["listed"] >= 4
    code, doc, _ = run(["check", "--tenant", str(tenant), "--fix"], r, directory, sim)
    assert (code, doc["items"]) == (0, [])
    assert_healthy_intact(r, tenant, h, emp, dep)


def test_each_planted_fault_is_reported_and_fix_repairs_exactly_those(r, esl, sim, demo):
    directory, tenant = demo
    emp, dep = ids(directory, tenant)
    h = plant_healthy(r, esl, tenant, emp, dep)
    planted = plant_faults(r, esl, tenant, emp, dep)
    (lost_leg,) = planted.pop("_lost_leg")
    keys_before = sorted(r.keys("*"))

    code, doc, err = run(["check", "--tenant", DEMO_DOMAIN], r, directory, sim)
    assert code == 1 and err == ""
    assert found(doc) == planted
    assert all(item["fixed"] is None for item in doc["items"])
    assert sorted(r.keys("*")) == keys_before  # without --fix nothing changes
    by_kind = {i["kind"]: i for i in doc["items"]}
    assert by_kind["offer_without_call"]["employee"] == {"id": emp["105"], "extension": "105", "name": "Alexey Popov"}
    assert by_kind["offer_without_callback"]["employee"] == {"id": 9999, "extension": None, "name": None}

    pubsub = r.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe("pbx:members-free")
    code, doc, _ = run(["check", "--tenant", DEMO_DOMAIN, "--fix"], r, directory, sim)
    assert code == 0
    assert found(doc) == planted and all(item["fixed"] for item in doc["items"]), doc["items"]
    assert doc["hung_up"] == [lost_leg] and not exists(esl, lost_leg)
    notices: list[str] = []
    deadline = time.monotonic() + 10
    while str(tenant) not in notices and time.monotonic() < deadline:
        msg = pubsub.get_message(timeout=1)  # None also for the (ignored) subscribe reply
        if msg is not None:
            notices.append(msg["data"].decode())
    pubsub.close()
    assert str(tenant) in notices  # waiting callers look again

    # Exactly the faults were repaired, with the orchestrator's own outcomes.
    agents, callbacks = AgentStore(r), CallbackStore(r)
    assert_healthy_intact(r, tenant, h, emp, dep)
    assert r.zscore(calls_key(tenant), planted["call_lease_expired"][0]) is None
    assert r.zscore(calls_key(tenant), planted["call_without_channel"][0]) is None
    states = agents.states(tenant, [emp["101"], emp["103"], emp["105"], 9999], ["20000101"])
    assert states[emp["101"]].offer == "" and states[emp["101"]].channels == 0
    assert states[emp["105"]].offer == "" and states[9999].offer == ""
    assert states[emp["105"]].wrapup_until_ms == 0  # an unanswered offer: no wrap-up
    talker = agents.states(tenant, [emp["103"]], [time_day(r)])[emp["103"]]
    # The dead talk ended like an answered call's: wrap-up from now, talk time counted.
    assert talker.offer == "" and talker.wrapup_until_ms > redis_now_ms(r) and talker.calls_today == 1
    assert talker.talk_ms_today >= 60_000
    assert [u for u, _ in agents.queue(tenant, dep["Sales"])] == []
    cb3 = callbacks.get(tenant, planted["callback_dialing_expired"][0])
    assert cb3 is not None and cb3.status == "pending"
    assert [u for u, _ in agents.queue(tenant, dep["Support"])] == [member(cb3.id), h.queued]

    keys_after = sorted(r.keys("*"))
    code, doc, _ = run(["check", "--tenant", DEMO_DOMAIN, "--fix"], r, directory, sim)
    assert (code, doc["items"], doc["hung_up"]) == (0, [], [])
    assert sorted(r.keys("*")) == keys_after


def time_day(r: redis.Redis) -> str:
    from orchestrator.member_offers import utc_days

    return utc_days(redis_now_ms(r), 1)[0]


def test_without_freeswitch_only_redis_faults_and_nothing_taken_for_gone(r, esl, sim, demo):
    directory, tenant = demo
    emp, dep = ids(directory, tenant)
    plant_healthy(r, esl, tenant, emp, dep)
    planted = plant_faults(r, esl, tenant, emp, dep)
    planted.pop("_lost_leg")
    redis_only = {k: v for k, v in planted.items()
                  if k in ("call_lease_expired", "offer_lease_expired", "queue_lease_expired", "callback_dialing_expired",
                           "offer_without_callback")}
    nowhere = ["--esl", "127.0.0.1:1"]  # nothing listens there
    code, doc, err = run(["check", "--tenant", DEMO_DOMAIN, *nowhere], r, directory)
    assert code == 1 and found(doc) == redis_only
    assert doc["freeswitch"]["asked"] is False and "127.0.0.1:1" in doc["freeswitch"]["error"]
    assert "FreeSWITCH was not asked" in err and "nothing was taken for gone" in err
    code, doc, err = run(["check", "--tenant", DEMO_DOMAIN, "--fix", *nowhere], r, directory)
    assert found(doc) == redis_only and all(i["fixed"] for i in doc["items"])
    assert doc["hung_up"] == []  # legs are never touched without FreeSWITCH
    # Redis-side faults gone, nothing left it can tell: exit 3 (partial check), not 0.
    code, doc, err = run(["check", "--tenant", DEMO_DOMAIN, "--fix", *nowhere], r, directory)
    assert (code, doc["items"]) == (3, [])
    # The channel-dependent faults were left alone; FreeSWITCH now finds them.
    assert r.zscore(calls_key(tenant), planted["call_without_channel"][0]) is not None
    code, doc, _ = run(["check", "--tenant", DEMO_DOMAIN], r, directory, sim)
    assert code == 1 and set(found(doc)) == {"call_without_channel", "offer_without_call", "talk_leg_gone",
                                             "busy_without_channel", "queue_caller_gone"}


def test_nothing_checkable_exits_2_with_a_message(demo):
    directory, tenant = demo
    out, err = io.StringIO(), io.StringIO()
    down = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=1)
    assert main(["check", "--tenant", str(tenant)], out, down, directory, err) == 2
    assert "cannot read Redis" in err.getvalue() and "nothing was checked" in err.getvalue() and out.getvalue() == ""
