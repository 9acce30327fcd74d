"""Call history (call records, missed offers) written in batches by one greenlet.

One INSERT, one commit and the pool's pre-ping per finished call (and another for its
missed offers) cost ~35% of the orchestrator's CPU at 100 calls/s. ``HistoryWriter.add``
only queues the row (a call record's values, or one call's ``MissedOffers``); one
greenlet writes what is queued: up to ``batch_rows`` items per transaction (one
executemany INSERT per table, one commit), an item waiting at most ``max_delay_s`` for
its batch to fill. The database work runs through ``run_blocking`` (the wiring's thread
pool: psycopg2 and sqlite3 block the gevent hub).

What the writer promises:

* a row leaves the queue only once the transaction that wrote it is committed;
* the database failing (down, restarting, locked, a network error): the batch stays
  first in line and is retried with exponential backoff (``retry_base_s`` doubling up
  to ``retry_cap_s``); rows finishing meanwhile queue behind it, up to ``max_rows``
  (about 5 minutes of calls at 150 calls/s). Past that bound a new row is not kept:
  one ERROR line says the queue is full, and every row not kept is logged in full
  (ERROR, ``call history row NOT STORED: ...``) so that it can be re-entered;
* a row the database refuses for itself (its tenant was deleted meanwhile, a value too
  long for its column) does not hold up the others: the batch is written again one item
  per transaction, the refused item is logged in full and dropped. A call record whose
  tenant no longer exists is left out of the batch before the INSERT
  (``insert_call_records``), as is a missed offer of an employee no longer the tenant's;
  a call record already stored (a retry after a commit whose answer was lost) is
  skipped (missed offers have no key: such a retry would store them twice);
* ``close(timeout)`` (orderly shutdown, after the calls have ended) writes everything
  queued, retrying until ``timeout``; rows still unwritten then are logged in full.

Rows are kept in memory only: a killed process loses the last ``max_delay_s`` of them
(and the queue, if the database was down).
"""
from __future__ import annotations

import itertools
import logging
import time
from collections import deque
from typing import Any, Callable, Sequence, Union

import gevent
import gevent.event
from sqlalchemy.exc import DataError, IntegrityError

from orchestrator.db import queries
from orchestrator.db.history import DIRECTIONS, MISSED_RESULTS
from orchestrator.db.queries import ALREADY_STORED, CallRow, MissedOffers

Item = Union[CallRow, MissedOffers]

log = logging.getLogger(__name__)

BATCH_ROWS = 200
MAX_DELAY_S = 0.15
MAX_ROWS = 50_000
RETRY_BASE_S = 0.2
RETRY_CAP_S = 10.0
FAILURE_LOG_EVERY_S = 30.0

# Errors that are about a row, not about the database being reachable: the database
# will refuse that row whenever it is sent, so retrying the batch would never end.
ROW_ERRORS = (IntegrityError, DataError)


def describe(item: Item) -> str:
    """An item in full, on one line (what an operator needs to enter it again)."""
    if isinstance(item, MissedOffers):
        return "missed offers: tenant_id=%d department_id=%d call_uuid=%s offered_at=%s misses=%s" % (
            item.tenant_id, item.department_id, item.call_uuid, item.offered_at.isoformat(),
            ",".join("%d:%s:%dms%s" % (m.employee_id, m.result, m.rang_ms, ":paused" if m.paused else "") for m in item.misses))
    return " ".join("%s=%s" % (name, item.get(name)) for name in queries.CALL_ROW_COLUMNS)


class HistoryWriter:
    def __init__(self, session_factory: Any, run_blocking: Callable[..., Any], *, batch_rows: int = BATCH_ROWS,
                 max_delay_s: float = MAX_DELAY_S, max_rows: int = MAX_ROWS, retry_base_s: float = RETRY_BASE_S,
                 retry_cap_s: float = RETRY_CAP_S, clock: Callable[[], float] = time.monotonic) -> None:
        self._sessions = session_factory
        self._run = run_blocking
        self.batch_rows = batch_rows
        self.max_delay_s = max_delay_s
        self.max_rows = max_rows
        self.retry_base_s = retry_base_s
        self.retry_cap_s = retry_cap_s
        self._clock = clock
        self._rows: deque[Item] = deque()
        self._wake = gevent.event.Event()  # rows queued (or closing)
        self._full = gevent.event.Event()  # a whole batch queued (or closing)
        self._idle = gevent.event.Event()  # nothing queued, nothing being written
        self._idle.set()
        self._greenlet: gevent.Greenlet | None = None
        self._closing = False
        self._closed = False
        self._overflowing = False
        # Counters for logs, tests and the benchmark.
        self.stats = {"written": 0, "batches": 0, "refused": 0, "not_kept": 0, "failures": 0}

    @property
    def queued(self) -> int:
        return len(self._rows)

    # ------------------------------------------------------------ producers

    def add(self, row: Item) -> None:
        """Queue one item (from a call's greenlet); never blocks, never touches the database."""
        # Values the insert would refuse with ValueError fail here, not every batch later.
        if isinstance(row, MissedOffers):
            bad = [m.result for m in row.misses if m.result not in MISSED_RESULTS]
            if bad:
                raise ValueError("result must be one of %s, got %r" % (", ".join(MISSED_RESULTS), bad[0]))
        elif row["direction"] not in DIRECTIONS:
            raise ValueError("direction must be one of %s, got %r" % (", ".join(DIRECTIONS), row["direction"]))
        if self._closed:
            self._not_kept(row, "the history writer is closed")
            return
        if len(self._rows) >= self.max_rows:
            if not self._overflowing:
                self._overflowing = True
                log.error("call history queue full: %d rows wait for the database; new rows are NOT kept until "
                          "it is written again (each is logged in full below)", len(self._rows))
            self._not_kept(row, "the queue is full")
            return
        if self._overflowing and len(self._rows) < self.max_rows // 2:
            self._overflowing = False
        self._rows.append(row)
        self._idle.clear()
        if self._greenlet is None:
            self._greenlet = gevent.spawn(self._run_forever)
        self._wake.set()
        if len(self._rows) >= self.batch_rows:
            self._full.set()

    def _not_kept(self, row: Item, why: str) -> None:
        self.stats["not_kept"] += 1
        log.error("call history row NOT STORED (%s): %s", why, describe(row))

    # ------------------------------------------------------------ shutdown

    def flush(self, timeout: float) -> bool:
        """Wait until every row queued so far is committed (or refused); False on timeout."""
        if self._rows:
            self._full.set()  # no point waiting for the batch to fill
        return self._idle.wait(timeout=timeout)

    def close(self, timeout: float) -> bool:
        """Write what is queued (retrying until ``timeout``), then stop. Rows still
        unwritten are logged in full. True when everything was written."""
        self._closing = True
        self._wake.set()
        self._full.set()
        done = self._idle.wait(timeout=timeout)
        self._closed = True
        if self._greenlet is not None:
            self._greenlet.kill(block=True, timeout=1.0)
        if not done:
            left = list(self._rows)
            self._rows.clear()
            log.error("shutting down with %d call history row(s) not confirmed written (database failing); "
                      "each is logged in full below", len(left))
            for row in left:
                self._not_kept(row, "shutdown")
        return done

    # ------------------------------------------------------------ the writer

    def _run_forever(self) -> None:
        while True:
            try:
                self._loop()
                return
            except Exception:  # noqa: BLE001 - a bug here must not leave the rows unwritten for good
                log.exception("call history writer failed; restarting it in 1 s (%d row(s) queued)", len(self._rows))
                gevent.sleep(1.0)

    def _loop(self) -> None:
        failures = 0
        failing_since = 0.0
        last_failure_log = 0.0
        while True:
            if not self._rows:
                self._idle.set()
                if self._closing:
                    return
                self._wake.clear()
                self._wake.wait(timeout=1.0)
                continue
            if len(self._rows) < self.batch_rows and not self._closing and failures == 0:
                # Let the batch fill: the first row waits at most max_delay_s.
                self._full.clear()
                self._full.wait(timeout=self.max_delay_s)
            batch = list(itertools.islice(self._rows, self.batch_rows))
            try:
                refused = self._run(self._write, batch)
            except Exception as exc:  # noqa: BLE001 - the database failing: keep the rows, retry
                failures += 1
                self.stats["failures"] += 1
                now = self._clock()
                if failures == 1:
                    failing_since = last_failure_log = now
                    log.error("call history: cannot write %d queued row(s), retrying with backoff; the rows are kept "
                              "in memory (up to %d): %s", len(self._rows), self.max_rows, _first_line(exc))
                elif now - last_failure_log >= FAILURE_LOG_EVERY_S:
                    last_failure_log = now
                    log.error("call history: database still failing after %.0f s, %d row(s) queued: %s",
                              now - failing_since, len(self._rows), _first_line(exc))
                gevent.sleep(min(self.retry_cap_s, self.retry_base_s * 2 ** (failures - 1)))
                continue
            for _ in batch:
                self._rows.popleft()
            self.stats["batches"] += 1
            self.stats["written"] += len(batch) - len(refused)
            if failures:
                log.warning("call history written again after %.1f s of database failures (%d attempts); %d row(s) "
                            "still queued", self._clock() - failing_since, failures, len(self._rows))
                failures = 0
            for row, why in refused:
                if why == ALREADY_STORED:
                    self.stats["written"] += 1
                    log.info("call history row of call %s was already stored (a retried batch)", _uuid(row))
                    continue
                self.stats["refused"] += 1
                log.error("call history row NOT STORED (%s): %s", why, describe(row))

    def _write(self, batch: Sequence[Item]) -> list[tuple[Item, str]]:
        """One transaction for the batch; if the database refuses a row, one per item.
        Runs in ``run_blocking``; raises when the database is unavailable."""
        with self._sessions() as session:
            try:
                refused = _insert(session, batch)
                session.commit()
                return refused
            except ROW_ERRORS as exc:
                session.rollback()
                log.warning("call history batch of %d item(s) refused (%s); writing them one by one",
                            len(batch), _first_line(exc))
        refused = []
        for item in batch:
            with self._sessions() as session:
                try:
                    refused += _insert(session, [item])
                    session.commit()
                except ROW_ERRORS as exc:
                    session.rollback()
                    refused.append((item, "refused by the database: %s" % _first_line(exc)))
        return refused


def _insert(session: Any, items: Sequence[Item]) -> list[tuple[Item, str]]:
    missed = [i for i in items if isinstance(i, MissedOffers)]
    calls = [i for i in items if not isinstance(i, MissedOffers)]
    left_out: list[tuple[Item, str]] = []
    if calls:
        left_out += queries.insert_call_records(session, calls)
    if missed:
        queries.insert_missed_offers(session, missed)
    return left_out


def _uuid(item: Item) -> str:
    return item.call_uuid if isinstance(item, MissedOffers) else str(item.get("call_uuid"))


def _first_line(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    text = str(orig).strip().splitlines()
    return "%s: %s" % (type(orig).__name__, text[0] if text else "")
