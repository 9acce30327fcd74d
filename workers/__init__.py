"""Background jobs of the PBX, run by ``pbx-worker`` (RQ).

``workers.jobs`` holds the job functions (importable by any RQ worker), ``workers.cli``
the worker process. Queues: ``pbx-callbacks`` (callback calls) and ``pbx-default``.

Jobs are stored as JSON (``SERIALIZER``), never pickled: a pickle in Redis is code the
worker would run, so whoever could write Redis could run code here. Every queue that
enqueues our jobs and every worker that runs them uses ``SERIALIZER``; a payload that is
not JSON (a planted pickle) fails to load and is never executed.
"""
from __future__ import annotations

CALLBACK_QUEUE = "pbx-callbacks"
DEFAULT_QUEUE = "pbx-default"
QUEUES = (CALLBACK_QUEUE, DEFAULT_QUEUE)
# rq.serializers.JSONSerializer, named rather than imported: ``python -m workers.cli``
# imports this package before its entry point monkey-patches (rq imports threading).
SERIALIZER = "rq.serializers.JSONSerializer"

__all__ = ["CALLBACK_QUEUE", "DEFAULT_QUEUE", "QUEUES", "SERIALIZER"]
