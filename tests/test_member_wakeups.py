"""Wake-ups of callers on hold: only the first in line of each department is woken."""
from __future__ import annotations

from orchestrator.member_wakeups import Wakeups


def test_a_notice_wakes_the_first_caller_in_line_of_each_department():
    w = Wakeups()
    woken: list[str] = []
    calls = {name: (lambda n=name: woken.append(n)) for name in ("a1", "a2", "b1", "other")}
    w.register(7, 10, 2000, calls["a2"])
    w.register(7, 10, 1000, calls["a1"])
    w.register(7, 11, 5000, calls["b1"])
    w.register(8, 10, 1, calls["other"])
    w.notify(7)
    assert sorted(woken) == ["a1", "b1"]
    assert w.is_first(7, 10, calls["a1"]) and not w.is_first(7, 10, calls["a2"])
    w.unregister(7, 10, calls["a1"])  # a1 got a member
    woken.clear()
    w.notify(7)
    assert sorted(woken) == ["a2", "b1"]

# The pub/sub path itself (Redis -> listener -> the first caller in line) is exercised by
# tests/test_e2e_departments.py::test_queue_callers_wait_on_hold_and_keep_their_place,
# where the next caller is rung within milliseconds, long before the 1 s periodic check.


def test_a_notice_with_a_count_wakes_that_many_of_one_department():
    w = Wakeups()
    woken: list[str] = []
    calls = {name: (lambda n=name: woken.append(n)) for name in ("a1", "a2", "a3", "a4", "b1")}
    for i, name in enumerate(("a3", "a1", "a4", "a2")):
        w.register(7, 10, {"a1": 1000, "a2": 2000, "a3": 3000, "a4": 4000}[name], calls[name])
    w.register(7, 11, 500, calls["b1"])
    w.notify(7, 10, 3)  # "7:10:3": three members of department 10 are free
    assert woken == ["a1", "a2", "a3"]  # in line order; department 11 untouched
    woken.clear()
    w.notify(7, 12, 2)  # a department nobody waits for here
    assert woken == []


def test_notices_are_parsed_strictly():
    from orchestrator.member_wakeups import MAX_WOKEN, parse_notice
    assert parse_notice(b"7") == (7, None, 1)
    assert parse_notice(b"7:10:3") == (7, 10, 3)
    assert parse_notice(b"7:10:500") == (7, 10, MAX_WOKEN)
    for bad in (b"x", b"7:10", b"7:10:0", b"7:10:-1", b"\xff", None):
        assert parse_notice(bad) is None
