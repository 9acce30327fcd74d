"""The caller-lookup adapter: the core's ``LookupCaller`` -> ``CallerKnown``, at once.

Like ``member_offers``: the call handler hands the request over and gives the answer
straight back to the core, so the core decides with it before any application runs on
the channel (the caller hears ringback meanwhile). Why a request from the core rather
than looking everything up before ``callflow.start``: only the core knows, rule by rule,
whether a lookup is needed at all (a VIP or a block list earlier in the order decides
without one; a rule limited to other numbers is skipped), so nobody's CRM is asked, and
no history query is run, for a call that does not need it; and the adapter stays free
of routing rules.

* ``last_agent``: the call history (``call_record``), one indexed query in the database
  thread pool, bounded by ``history_timeout_ms``;
* ``crm``: the tenant's CRM (``orchestrator.crm``), bounded by the rule's ``timeout_ms``.

A failure or a timeout is an unknown caller with a note saying why; it never raises
into the call and never holds it past the bound.
"""
from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import Callable, Protocol

import gevent

from orchestrator.core.actions import CallerKnown, LookupCaller
from orchestrator.crm import CrmClient

log = logging.getLogger("orchestrator.lookups")

HISTORY_TIMEOUT_MS = 1000


class History(Protocol):
    def last_agent(self, tenant_id: int, callers: tuple[str, ...], since_days: int, now_ms: int) -> tuple[int, int] | None:
        """(employee id, epoch ms of that call) of the caller's latest answered call."""
        ...


def _day(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000.0, tz=timezone.utc).strftime("%Y-%m-%d")


class CallerLookups:
    def __init__(self, history: History | None, crm: CrmClient, clock: Callable[[], int],
                 history_timeout_ms: int = HISTORY_TIMEOUT_MS) -> None:
        self.history = history
        self.crm = crm
        self.clock = clock
        self.history_timeout_ms = history_timeout_ms

    def answer(self, tenant_id: int, domain: str, received_as: str, action: LookupCaller) -> CallerKnown:
        """``received_as``: the caller's number as FreeSWITCH gave it (the history may
        hold that form rather than E.164)."""
        if action.source == "crm":
            found = self.crm.responsible(action.url, action.timeout_ms, action.caller, action.dialed, domain)
            if not found.answered:
                log.warning("tenant %d: CRM lookup for %s failed: %s (%d ms)", tenant_id, action.caller, found.note, found.elapsed_ms)
            return CallerKnown(action.request_id, action.rule_id, extension=found.extension, note=found.note)
        if action.source == "last_agent":
            return self._last_agent(tenant_id, received_as, action)
        return CallerKnown(action.request_id, action.rule_id, note="unknown lookup %r" % action.source)

    def _last_agent(self, tenant_id: int, received_as: str, action: LookupCaller) -> CallerKnown:
        if self.history is None:
            return CallerKnown(action.request_id, action.rule_id, note="call history unavailable")
        callers = tuple(dict.fromkeys(c for c in (action.caller, action.caller.lstrip("+"), received_as) if c))
        history = self.history
        timer = gevent.Timeout(self.history_timeout_ms / 1000.0)
        timer.start()
        try:
            found = history.last_agent(tenant_id, callers, action.days, self.clock())
        except gevent.Timeout as exc:
            if exc is not timer:
                raise
            log.warning("tenant %d: call history lookup took over %d ms", tenant_id, self.history_timeout_ms)
            return CallerKnown(action.request_id, action.rule_id, note="call history did not answer in time")
        except Exception as exc:  # noqa: BLE001 - a history failure is an unknown caller
            log.warning("tenant %d: call history lookup failed: %s", tenant_id, exc)
            return CallerKnown(action.request_id, action.rule_id, note="call history unavailable")
        finally:
            timer.close()
        if found is None:
            note = "no answered call from this caller in %d day%s" % (action.days, "" if action.days == 1 else "s")
            return CallerKnown(action.request_id, action.rule_id, note=note)
        employee_id, at_ms = found
        return CallerKnown(action.request_id, action.rule_id, employee_id=employee_id,
                           note="last answered by employee #%d on %s" % (employee_id, _day(at_ms)))
