"""A subscriber's queue of FreeSWITCH events from the inbound client, read with timeouts."""
from __future__ import annotations

from typing import Any, Callable, Iterator

import gevent
import gevent.queue

from orchestrator.errors import EslTimeout
from orchestrator.esl.wire import Event


class EventStream:
    """Events of one subscriber, read with a timeout: ``get(timeout)`` or ``iter(timeout)``."""

    def __init__(self, client: Any, maxsize: int = 10000) -> None:
        self._client = client
        self.queue: gevent.queue.Queue = gevent.queue.Queue(maxsize)

    def get(self, timeout: float) -> Event:
        try:
            return self.queue.get(timeout=timeout)
        except gevent.queue.Empty:
            raise EslTimeout("no FreeSWITCH event within %.1f s" % timeout) from None

    def iter(self, timeout: float) -> Iterator[Event]:
        """Events until none came for ``timeout`` seconds."""
        while True:
            try:
                yield self.queue.get(timeout=timeout)
            except gevent.queue.Empty:
                return

    def wait_for(self, predicate: Callable[[Event], bool], timeout: float) -> Event:
        """The first event matching ``predicate`` within ``timeout`` (others are dropped)."""
        with gevent.Timeout(timeout, EslTimeout("no matching FreeSWITCH event within %.1f s" % timeout)):
            while True:
                event = self.queue.get()
                if predicate(event):
                    return event

    def close(self) -> None:
        self._client._unsubscribe(self)

    def __enter__(self) -> "EventStream":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
