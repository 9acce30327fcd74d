"""Failed-login throttle: at most ``limit`` failures per (username, client address) in a
window; further attempts are refused until the window ends.

Two implementations with the same methods: ``RedisLoginThrottle`` (shared by every admin
process; the counter key lives ``window`` seconds from its first failure) and
``MemoryLoginThrottle`` (one process; development and tests without Redis). The Redis
one lives with the other Redis code, in ``orchestrator.store.login_throttle``.
"""
from __future__ import annotations

import threading
import time
from typing import Callable, Protocol

from orchestrator.store.login_throttle import RedisLoginThrottle, subject as _subject

__all__ = ["LoginThrottle", "MemoryLoginThrottle", "RedisLoginThrottle"]


class LoginThrottle(Protocol):
    limit: int
    window_seconds: int

    def blocked(self, username: str, address: str) -> bool: ...

    def record_failure(self, username: str, address: str) -> int: ...

    def reset(self, username: str, address: str) -> None: ...


class MemoryLoginThrottle:
    def __init__(self, limit: int = 5, window_seconds: int = 600,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.window_seconds = window_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._failures: dict[str, tuple[float, int]] = {}  # subject -> (window start, count)

    def _current(self, subject: str) -> int:
        start, count = self._failures.get(subject, (0.0, 0))
        if count and self._clock() - start >= self.window_seconds:
            del self._failures[subject]
            return 0
        return count

    def blocked(self, username: str, address: str) -> bool:
        with self._lock:
            return self._current(_subject(username, address)) >= self.limit

    def record_failure(self, username: str, address: str) -> int:
        subject = _subject(username, address)
        with self._lock:
            count = self._current(subject) + 1
            start = self._failures[subject][0] if count > 1 else self._clock()
            self._failures[subject] = (start, count)
            return count

    def reset(self, username: str, address: str) -> None:
        with self._lock:
            self._failures.pop(_subject(username, address), None)
