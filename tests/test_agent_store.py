"""Members' offers in a real Redis: atomic reservations, leases, wrap-up, pauses."""
from __future__ import annotations

import threading

import pytest
import redis

from orchestrator.store.agents import AgentStore, Release, agent_key, offers_key

T = 7
DEP = 10


@pytest.fixture
def store(redis_url: str) -> AgentStore:
    return AgentStore(redis.Redis.from_url(redis_url), lease_ms=20_000)


def redis_now(store: AgentStore) -> int:
    sec, usec = store.r.time()
    return sec * 1000 + usec // 1000


def test_reserve_takes_the_first_free_members_in_the_given_order(store):
    store.channel_up(T, 2, "chan-2", 60_000)  # 2 is on a call
    _, st = store.reserve(T, "call-a", DEP, [3, 2, 1, 4], want=2)
    assert st == {3: "offered", 2: "busy", 1: "offered", 4: "skipped"}
    _, st = store.reserve(T, "call-b", DEP, [1, 3, 4], want=3)
    assert st == {1: "offered_elsewhere", 3: "offered_elsewhere", 4: "offered"}
    assert set(store.offers(T)) == {1, 3, 4}


def test_release_answered_starts_wrap_up_in_milliseconds_and_counts_the_call(store):
    store.reserve(T, "call-a", DEP, [1, 2], want=2)
    store.release(T, "call-a", DEP, [Release(2, "free")], "20261124")
    before = redis_now(store)
    store.release(T, "call-a", DEP, [Release(1, "answered", wrapup_ms=7000, talk_ms=42_000)], "20261124")
    after = redis_now(store)
    state = store.states(T, [1, 2], ["20261124"])
    assert before + 7000 <= state[1].wrapup_until_ms <= after + 7000
    assert state[1].offer == "" and state[1].calls_today == 1 and state[1].talk_ms_today == 42_000
    assert store.last_answered(T, DEP) == 1 and store.offers(T) == {}
    _, st = store.reserve(T, "call-b", DEP, [1, 2], want=2)
    assert st == {1: "wrapup", 2: "offered"}


def test_wrap_up_is_compared_in_milliseconds_on_redis_time(store):
    # A zero wrap-up ends at the release's own millisecond: free at once.
    store.reserve(T, "call-a", DEP, [1], want=1)
    store.release(T, "call-a", DEP, [Release(1, "answered", wrapup_ms=0)], "20261124")
    assert store.reserve(T, "call-b", DEP, [1], want=1)[1] == {1: "offered"}
    store.release(T, "call-b", DEP, [Release(1, "answered", wrapup_ms=60_000)], "20261124")
    assert store.reserve(T, "call-c", DEP, [1], want=1)[1] == {1: "wrapup"}


def test_a_dead_orchestrators_offer_expires_with_its_lease(store, redis_url):
    short = AgentStore(redis.Redis.from_url(redis_url), lease_ms=1)
    short.reserve(T, "dead-call", DEP, [1], want=1)
    until = short.states(T, [1])[1].offer_until_ms
    while redis_now(store) <= until:
        pass
    assert store.reserve(T, "live-call", DEP, [1], want=1)[1] == {1: "offered"}
    # The dead call's late release must not free the member the live call now holds.
    store.release(T, "dead-call", DEP, [Release(1, "free")], "20261124")
    assert store.states(T, [1])[1].offer == "live-call"


def test_renew_extends_only_this_calls_offers(store):
    store.reserve(T, "call-a", DEP, [1], want=1)
    store.reserve(T, "call-b", DEP, [2], want=1)
    first = store.states(T, [1])[1].offer_until_ms
    assert store.renew(T, "call-a", [1, 2]) == 1
    assert store.states(T, [1])[1].offer_until_ms >= first


def test_misses_pause_after_n_and_the_members_next_call_resumes(store):
    for n in range(3):
        store.reserve(T, "c%d" % n, DEP, [1], want=1)
        paused = store.release(T, "c%d" % n, DEP, [Release(1, "missed", pause_after=3)], "20261124")
    assert paused == [1]
    assert store.reserve(T, "c9", DEP, [1], want=1)[1] == {1: "paused"}
    store.channel_up(T, 1, "own-call", 60_000, placed_by_member=True)
    store.channel_down(T, 1, "own-call")
    state = store.states(T, [1])[1]
    assert not state.paused and state.missed == 0 and state.channels == 0
    assert store.reserve(T, "c10", DEP, [1], want=1)[1] == {1: "offered"}


def test_resume_after_log_in(store):
    store.reserve(T, "c1", DEP, [1], want=1)
    store.release(T, "c1", DEP, [Release(1, "missed", pause_after=1)], "20261124")
    store.resume(T, 1)
    assert store.reserve(T, "c2", DEP, [1], want=1)[1] == {1: "offered"}


def test_keys_carry_the_tenants_hash_tag():
    assert agent_key(T, 1).startswith("{t:7}:") and offers_key(T).startswith("{t:7}:")


def test_concurrent_reservations_never_offer_a_member_twice(redis_url):
    """Many clients racing for 10 members: each member is taken exactly once."""
    members = list(range(1, 11))
    won: list[tuple[str, int]] = []
    lock = threading.Lock()

    def caller(n: int) -> None:
        s = AgentStore(redis.Redis.from_url(redis_url))
        for k in range(5):
            call = "call-%d-%d" % (n, k)
            _, st = s.reserve(T, call, DEP, members[n % 10:] + members[:n % 10], want=1)
            with lock:
                won.extend((call, e) for e, v in st.items() if v == "offered")

    threads = [threading.Thread(target=caller, args=(n,)) for n in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert sorted(e for _, e in won) == members


def test_settling_offer_holds_the_member_briefly_then_frees_it(store):
    """A member who lost the race stays held while FreeSWITCH cancels their leg."""
    store.reserve(T, "call-a", DEP, [1, 2], want=2)
    store.release(T, "call-a", DEP, [Release(1, "settle", 60_000), Release(2, "settle", 0)], "20261124")
    _, st = store.reserve(T, "call-b", DEP, [1, 2], want=2)
    assert st == {1: "offered_elsewhere", 2: "offered"}
    assert set(store.live_offers(T)) == {1, 2}


def test_queue_keeps_places_and_hides_callers_whose_lease_expired(store, redis_url):
    store.join_queue(T, DEP, "first", 1000)
    store.join_queue(T, DEP, "second", 2000)
    store.join_queue(T, DEP, "first", 5000)  # coming back keeps the earlier place
    assert [u for u, _ in store.queue(T, DEP)] == ["first", "second"]
    dead = AgentStore(redis.Redis.from_url(redis_url), lease_ms=-1)
    dead.join_queue(T, DEP, "orphan", 500)  # its orchestrator died: lease already over
    assert [u for u, _ in store.queue(T, DEP)] == ["first", "second"]
    # Only the head may take a member; the orphan is swept by the reservation.
    assert store.reserve(T, "second", DEP, [1], want=1, queued=True)[1] == {1: "queued"}
    assert store.reserve(T, "first", DEP, [1], want=1, queued=True)[1] == {1: "offered"}
    assert [u for u, _ in store.queue(T, DEP)] == ["second"]


def test_queue_position_counts_the_live_callers_ahead(store, redis_url):
    dead = AgentStore(redis.Redis.from_url(redis_url), lease_ms=-1)
    dead.join_queue(T, DEP, "orphan", 500)  # its orchestrator died: not ahead of anyone
    store.join_queue(T, DEP, "first", 1000)
    store.join_queue(T, DEP, "second", 2000)
    store.join_queue(T, DEP, "third", 3000)
    store.join_queue(T, DEP + 1, "elsewhere", 100)  # another department's queue
    assert [store.queue_position(T, DEP, u) for u in ("first", "second", "third")] == [1, 2, 3]
    store.leave_queue(T, DEP, "first")
    assert [store.queue_position(T, DEP, u) for u in ("first", "second", "third")] == [0, 1, 2]


def test_the_first_k_callers_in_line_take_k_free_members_at_once(store, redis_url):
    """Fewer callers ahead than members free: a caller may take one without waiting for
    those ahead to look first; one more caller than free members waits its turn."""
    for n, uuid in enumerate(("first", "second", "third")):
        store.join_queue(T, DEP, uuid, 1000 * (n + 1))
    sub = redis.Redis.from_url(redis_url).pubsub()
    sub.subscribe("pbx:members-free")
    assert sub.get_message(timeout=2)["type"] == "subscribe"  # subscribed before anything is published
    members = [1, 2]  # both free
    assert store.reserve(T, "third", DEP, members, want=1, queued=True)[1] == {1: "queued", 2: "queued"}  # 2 ahead
    assert store.reserve(T, "second", DEP, members, want=1, queued=True)[1] == {1: "offered", 2: "skipped"}
    # one member is still free and "first" still waits: "7:10:1" wakes one in line
    notice = sub.get_message(timeout=2)
    assert notice is not None and notice["data"] == b"%d:%d:1" % (T, DEP)
    assert store.reserve(T, "newcomer", DEP, members, want=1, queued=True)[1] == {1: "queued", 2: "queued"}  # 2 wait, 1 free
    assert store.reserve(T, "first", DEP, members, want=1, queued=True)[1] == {1: "offered_elsewhere", 2: "offered"}
    assert [u for u, _ in store.queue(T, DEP)] == ["third"]
    sub.close()


def test_order_views_match_the_full_states_in_one_call(store):
    """What the strategies order by (last end, calls and talk over the window, the
    department's last answerer) equals what ``states`` + ``last_answered`` give."""
    store.reserve(T, "c1", DEP, [1], want=1)
    store.release(T, "c1", DEP, [Release(1, "answered", 0, 40_000)], "20261123")
    store.reserve(T, "c2", DEP, [2], want=1)
    store.release(T, "c2", DEP, [Release(2, "answered", 0, 15_000)], "20261124")
    store.reserve(T, "c3", DEP, [1], want=1)
    store.release(T, "c3", DEP, [Release(1, "answered", 0, 5_000)], "20261124")
    days = ["20261124", "20261123"]
    views, last = store.order_views(T, DEP, [1, 2, 3], days)
    states = store.states(T, [1, 2, 3], days)
    assert views == {e: (s.last_end_ms, s.calls_today, s.talk_ms_today) for e, s in states.items()}
    assert views[1][1:] == (2, 45_000) and views[2][1:] == (1, 15_000) and views[3] == (0, 0, 0)
    assert last == store.last_answered(T, DEP) == 1
    assert store.order_views(T, DEP + 1, [3], days) == ({3: (0, 0, 0)}, None)
