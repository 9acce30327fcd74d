"""Callbacks from the queue in a real Redis: same place, claim, leases, settle, cancel."""
from __future__ import annotations

import time

import pytest
import redis

from orchestrator.store.agents import AgentStore
from orchestrator.store.callbacks import CallbackStore, member

T = 7
DEP = 10


@pytest.fixture
def r(redis_url: str) -> redis.Redis:
    return redis.Redis.from_url(redis_url)


def test_callback_keeps_the_callers_place_and_is_served_at_its_turn(r):
    agents, callbacks = AgentStore(r), CallbackStore(r)
    agents.join_queue(T, DEP, "early", 1000)
    agents.join_queue(T, DEP, "caller", 2000)
    agents.join_queue(T, DEP, "late", 3000)
    cb = callbacks.request(T, DEP, "caller", 2000, "+78120000000", "+74950000001")
    assert [u for u, _ in agents.queue(T, DEP)] == ["early", member(cb), "late"]
    got = callbacks.get(T, cb)
    assert (got.status, got.caller, got.dialed, got.department_id, got.since_ms) == ("pending", "+78120000000", "+74950000001", DEP, 2000)
    assert callbacks.tenants() == [T] and [c.id for c in callbacks.open(T)] == [cb]
    # Not its turn yet: the reservation answers "queued".
    assert agents.reserve(T, member(cb), DEP, [1], 1, queued=True)[1] == {1: "queued"}
    agents.leave_queue(T, DEP, "early")
    assert callbacks.claim(T, cb, 60_000) == 1
    assert callbacks.claim(T, cb, 60_000) == 0  # only one dispatcher gets it
    assert agents.reserve(T, member(cb), DEP, [1], 1, queued=True)[1] == {1: "offered"}
    assert [u for u, _ in agents.queue(T, DEP)] == ["late"]
    # The agent did not answer: back at its own place, ahead of "late".
    assert callbacks.settle(T, callbacks.get(T, cb), "pending", "agent_no_answer")
    assert [u for u, _ in agents.queue(T, DEP)] == [member(cb), "late"]
    assert callbacks.claim(T, cb, 60_000) == 2
    assert callbacks.settle(T, callbacks.get(T, cb), "done", "bridged")
    assert callbacks.get(T, cb).status == "done" and callbacks.open(T) == []
    assert [u for u, _ in agents.queue(T, DEP)] == ["late"]
    assert not callbacks.settle(T, callbacks.get(T, cb), "pending")  # finished for good


def test_a_dialing_callback_whose_lease_ends_goes_back_to_pending(r):
    agents, callbacks = AgentStore(r), CallbackStore(r)
    cb = callbacks.request(T, DEP, "caller", 2000, "+78120000000", "+74950000001")
    assert callbacks.claim(T, cb, 50) == 1
    agents.reserve(T, member(cb), DEP, [1], 1, queued=True)
    assert callbacks.sweep(T) == []  # lease still running
    time.sleep(0.1)
    assert [c.id for c in callbacks.sweep(T)] == [cb]
    assert callbacks.get(T, cb).status == "pending" and [u for u, _ in agents.queue(T, DEP)] == [member(cb)]


def test_cancel_only_a_pending_callback_of_the_tenant(r):
    agents, callbacks = AgentStore(r), CallbackStore(r)
    cb = callbacks.request(T, DEP, "caller", 2000, "+78120000000", "+74950000001")
    assert not callbacks.cancel(T + 1, cb)  # another tenant: no such callback
    assert callbacks.cancel(T, cb)
    assert callbacks.get(T, cb).status == "cancelled" and agents.queue(T, DEP) == [] and callbacks.open(T) == []
    callbacks.forget_tenant_if_idle(T)
    assert callbacks.tenants() == []
