"""A real RQ worker for tests, run in burst mode in the test process, reading jobs with
the serializer ``pbx-worker`` uses (``workers.SERIALIZER``: JSON)."""
from __future__ import annotations

from typing import Sequence

import redis
from rq import Queue, SimpleWorker

from workers import SERIALIZER


class BurstWorker(SimpleWorker):
    """``rq.SimpleWorker`` without RQ's per-worker command channel (pubsub), unused in a
    burst. RQ 3.0 reads that channel in a redis-py thread with a 60 s ``get_message``
    timeout; when the burst ends before the thread's first read, ``unsubscribe`` leaves
    the thread waiting out those 60 s (seen: a 0.1 s burst taking 60 s)."""

    def subscribe(self) -> None:
        self.pubsub_thread = None

    def unsubscribe(self) -> None:
        pass


def work_burst(connection: redis.Redis, names: Sequence[str]) -> None:
    """Run every job queued on ``names`` now, then return."""
    queues = [Queue(name, connection=connection, serializer=SERIALIZER) for name in names]
    BurstWorker(queues, connection=connection, serializer=SERIALIZER).work(burst=True)
