"""Background jobs of the PBX, run by ``pbx-worker`` (RQ).

``workers.jobs`` holds the job functions (importable by any RQ worker), ``workers.cli``
the worker process. Queues: ``pbx-callbacks`` (callback calls) and ``pbx-default``.
"""
from __future__ import annotations

CALLBACK_QUEUE = "pbx-callbacks"
DEFAULT_QUEUE = "pbx-default"
QUEUES = (CALLBACK_QUEUE, DEFAULT_QUEUE)

__all__ = ["CALLBACK_QUEUE", "DEFAULT_QUEUE", "QUEUES"]
