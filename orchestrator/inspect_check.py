"""``pbx-inspect check``: one tenant's live state in Redis against FreeSWITCH's channels.

What counts as a fault and how each is repaired is in ``orchestrator/store/check.py``;
this module asks FreeSWITCH and drives the check (and, with ``--fix``, the repairs).

FreeSWITCH is asked over its inbound event socket (``InboundClient``, ``api`` only), on
``PBX_ESL_ADDRESS`` and every ``PBX_PRESENCE_ESL`` server (a tenant's calls may be on any
of them; ``--esl`` overrides), with ``PBX_ESL_PASSWORD``. FreeSWITCH 1.10 behaviour relied
on:

* ``show channels as json`` answers ``{"row_count":N,"rows":[{"uuid":...},...]}`` or,
  with no channel, ``{"row_count": 0}`` (transcript P09; ``presence.parse_channels``).
  It reads the core database, whose row the SQL thread inserts just *after*
  CHANNEL_CREATE and deletes on CHANNEL_DESTROY (switch_core_sqldb.c): a brand-new
  channel may not be listed yet, a hung-up one is listed until destroyed.
* So a uuid missing from every list is asked again with ``uuid_exists <uuid>``
  (mod_commands: ``true`` while ``switch_core_session_locate`` finds the session,
  i.e. until it is destroyed; ``false`` otherwise). Only ``false`` from every server
  makes a channel gone; any other answer, or an error, counts as "still there".
  Strings that are not uuids (8-4-4-4-12 hex) are never sent to FreeSWITCH; for those
  the channel lists decide.

If any server cannot be asked, no channel is taken for gone: only what Redis alone can
tell is checked (expired leases, callback offers), and the report says so.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Sequence

from orchestrator.core.dialstrings import safe_uuid
from orchestrator.errors import EslError, ProtocolError
from orchestrator.member_offers import utc_days
from orchestrator.presence import parse_channels
from orchestrator.store.check import FREESWITCH_KINDS, REDIS_KINDS, Fault, Repairs, confirmed, find_faults, read_state

log = logging.getLogger("orchestrator.inspect")

# Exit codes of ``check`` (also in the module doc of inspect_cli and docs/operations.md).
EXIT_OK = 0  # consistent (or every fault found was repaired), FreeSWITCH asked
EXIT_FAULTS = 1  # faults found and left as they are (no --fix, or a repair did nothing)
EXIT_CANNOT = 2  # nothing could be checked (Redis unreachable, tenant unknown)
EXIT_PARTIAL = 3  # FreeSWITCH could not be asked: only the Redis-side checks ran, no fault left


@dataclass
class FreeSwitchAnswer:
    asked: bool
    servers: list[str]
    gone: set[str] = field(default_factory=set)  # asked about and not there
    error: str = ""
    listed: int = 0  # channels listed, all servers


class FreeSwitch:
    """Inbound ESL connections to each server, for one check (``with`` closes them)."""

    def __init__(self, servers: Sequence[tuple[str, int]], password: str, timeout_s: float) -> None:
        self.servers = list(servers)
        self.password = password
        self.timeout_s = timeout_s
        self._clients: list[Any] = []

    def __enter__(self) -> "FreeSwitch":
        return self

    def __exit__(self, *exc: object) -> None:
        for client in self._clients:
            try:
                client.close()
            except (EslError, OSError):
                pass
        self._clients = []

    def _names(self) -> list[str]:
        return ["%s:%d" % s for s in self.servers]

    def ask(self, uuids: set[str]) -> FreeSwitchAnswer:
        """Which of ``uuids`` FreeSWITCH does not have (see the module doc)."""
        from orchestrator.esl.inbound import InboundClient

        answer = FreeSwitchAnswer(asked=False, servers=self._names())
        listed: set[str] = set()
        where = ""
        try:
            for host, port in self.servers:
                where = "%s:%d" % (host, port)
                client = InboundClient(host, port, self.password, connect_timeout=self.timeout_s,
                                       command_timeout=self.timeout_s, reconnect=False).connect()
                self._clients.append(client)
                body = client.api("show channels as json")
                rows = parse_channels(body)
                if rows is None:
                    answer.error = "FreeSWITCH at %s gave no channel list to 'show channels as json' (%r)" % (where, body[:120])
                    return answer
                listed |= {r["uuid"] for r in rows}
                answer.listed += len(rows)
            gone = set()
            for uuid in sorted(uuids - listed):
                if self._exists_anywhere(uuid) is False:
                    gone.add(uuid)
        except (EslError, ProtocolError, OSError) as exc:
            answer.error = "cannot ask FreeSWITCH at %s: %s" % (where, exc)
            return answer
        answer.asked, answer.gone = True, gone
        return answer

    def _exists_anywhere(self, uuid: str) -> bool | None:
        """False only when every server says ``false`` to ``uuid_exists``."""
        try:
            safe_uuid(uuid)
        except ValueError:
            return False  # never sent to FreeSWITCH; the channel lists did not have it
        for client in self._clients:
            said = client.api("uuid_exists %s" % uuid).strip()
            if said != "false":
                return True if said == "true" else None
        return False

    def hang_up(self, uuids: Sequence[str]) -> list[str]:
        """``uuid_kill`` each leg on every server (``+OK`` where it lives, ``-ERR No such
        channel!`` elsewhere); the legs some server hung up."""
        done = []
        for uuid in uuids:
            try:
                safe_uuid(uuid)
            except ValueError:
                continue
            for client in self._clients:
                try:
                    if client.api("uuid_kill %s" % uuid).startswith("+OK"):
                        done.append(uuid)
                        break
                except (EslError, ProtocolError, OSError) as exc:
                    log.warning("could not hang up leg %s: %s", uuid, exc)
        return done


@dataclass
class CheckResult:
    faults: list[Fault]
    freeswitch: FreeSwitchAnswer
    changes: dict[tuple, str] = field(default_factory=dict)  # fault key -> what the repair changed
    hung_up: list[str] = field(default_factory=list)

    @property
    def checked(self) -> list[str]:
        return list(REDIS_KINDS) + (list(FREESWITCH_KINDS) if self.freeswitch.asked else [])

    def exit_code(self, fix: bool) -> int:
        left = [f for f in self.faults if not (fix and self.changes.get(f.key))]
        if left:
            return EXIT_FAULTS
        return EXIT_OK if self.freeswitch.asked else EXIT_PARTIAL


def run_check(client: Any, tenant_id: int, freeswitch: FreeSwitch, fix: bool) -> CheckResult:
    """Check one tenant (and repair with ``fix``). Redis errors propagate."""
    state = read_state(client, tenant_id)
    answer = freeswitch.ask(state.channel_uuids())
    if not answer.asked:
        log.info("freeswitch not asked; checking what Redis alone can tell", extra={"tenant_id": tenant_id, "error": answer.error})
    gone = answer.gone if answer.asked else None
    faults = find_faults(state, gone)
    result = CheckResult(faults, answer)
    if not fix or not faults:
        return result
    # Second read: only what both reads show is repaired (see store.check.confirmed).
    again = read_state(client, tenant_id)
    repairs = Repairs(client, tenant_id, utc_days(again.now_ms, 1)[0])
    for fault in confirmed(faults, find_faults(again, gone)):
        change = repairs.fix(fault, again)
        if change:
            result.changes[fault.key] = change
            log.info("repaired: %s", change, extra={"tenant_id": tenant_id, "fault": fault.kind})
        if fault.kind == "callback_dialing_expired" and change and answer.asked:
            cb = again.callbacks.get(fault.subject)
            alive = [leg for leg in (cb.legs if cb else ()) if leg not in answer.gone]
            result.hung_up += freeswitch.hang_up(alive)
    repairs.announce()
    return result
