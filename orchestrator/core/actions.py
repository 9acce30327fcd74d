"""What flows in and out of the call-flow core: events in, actions out. Plain data.

The ESL adapter turns FreeSWITCH events into these events and these actions into ESL
commands; the core never sees a socket.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Union

from orchestrator.core.strategy import MemberView


# ------------------------------------------------------------------ call facts


@dataclass(frozen=True)
class CallInfo:
    """What FreeSWITCH told us about the call when it connected (CHANNEL_DATA)."""

    uuid: str
    entry: str  # "public" (from a carrier: dialled number) or "internal" (an employee)
    destination: str  # dialled number (E.164 or digits) or extension
    caller_number: str = ""
    caller_name: str = ""
    domain: str = ""  # internal calls: the caller's SIP domain
    caller_user: str = ""  # internal calls: the caller's SIP user (extension)
    answered: bool = False


# ------------------------------------------------------------------ events in


@dataclass(frozen=True)
class AppCompleted:
    """CHANNEL_EXECUTE_COMPLETE of an app we started (matched on Application-UUID).

    ``variables`` carries the channel variables of the event: FreeSWITCH reports the
    outcome of ``bridge``, ``play_and_get_digits`` and ``record`` only there
    (``Application-Response`` is ``_none_``; transcripts P01-P05).
    """

    app_id: str
    app: str
    response: str = ""
    variables: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Answered:
    pass


@dataclass(frozen=True)
class Bridged:
    other_uuid: str = ""


@dataclass(frozen=True)
class Unbridged:
    pass


@dataclass(frozen=True)
class Dtmf:
    digit: str


@dataclass(frozen=True)
class HungUp:
    """CHANNEL_HANGUP (or the socket went away: cause ``SOCKET_GONE``)."""

    cause: str


@dataclass(frozen=True)
class MembersSeen:
    """Answer to ``LookupMembers``: the members' live figures."""

    request_id: str
    views: Mapping[int, MemberView] = field(default_factory=dict)
    last_answered: int | None = None  # who answered the department's last call


@dataclass(frozen=True)
class MembersReserved:
    """Answer to ``ReserveMembers``: employee id -> "offered" (taken for this call) or
    why not ("busy", "wrapup", "paused", "offered_elsewhere", "skipped")."""

    request_id: str
    statuses: Mapping[int, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Wake:
    """For a caller on hold: ``freed`` - a member may be free, look again (a notice, or
    the periodic check of the first caller in line); otherwise only the core's own
    timers: the queue's time limit and the next announcement (``departments.announce_due_ms``)."""

    freed: bool = False


@dataclass(frozen=True)
class QueuePosition:
    """Answer to ``LookupPosition``: the caller's place in the department's queue, 1 for
    the first in line (callers and callbacks waiting ahead + 1); 0 when it could not be
    read (Redis unreachable, or the caller is no longer in the queue)."""

    department_id: int
    position: int = 0


@dataclass(frozen=True)
class CallerKnown:
    """Answer to ``LookupCaller``: the employee the caller belongs to, or nobody.

    ``employee_id`` comes from the call history (last agent), ``extension`` from the
    tenant's CRM; both None for an unknown caller or a lookup that failed or timed out
    (``note`` says which, in words for the route and the explainer).
    """

    request_id: str
    rule_id: int
    employee_id: int | None = None
    extension: str | None = None
    note: str = ""


CoreEvent = Union[AppCompleted, Answered, Bridged, Unbridged, Dtmf, HungUp, MembersSeen, MembersReserved, Wake, QueuePosition, CallerKnown]


# ------------------------------------------------------------------ actions out


@dataclass(frozen=True)
class Execute:
    """Run a dialplan application on the call (``sendmsg execute``).

    ``app_id`` is sent as ``Event-UUID`` so that its completion can be matched; when
    ``wait`` is false the core does not wait for it (``set``, ``answer``).
    """

    app: str
    arg: str = ""
    app_id: str = ""
    wait: bool = False


@dataclass(frozen=True)
class Hangup:
    cause: str = "NORMAL_CLEARING"


@dataclass(frozen=True)
class Log:
    """A structured log line the adapter writes with tenant id and call uuid."""

    message: str
    level: str = "info"
    fields: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class StoreVoicemail:
    box_id: int
    path: str
    duration_ms: int
    caller: str


@dataclass(frozen=True)
class StoreFax:
    """A fax was received (``rxfax``): store it for the box and e-mail it."""

    box_id: int
    path: str
    pages: int
    caller: str
    success: bool = True  # False: some pages arrived, then the transfer failed
    result_code: int = 0  # mod_spandsp's fax_result_code (0 = OK)
    result_text: str = ""
    remote_station: str = ""


@dataclass(frozen=True)
class LookupCaller:
    """Ask who the caller's employee is, for caller rule ``rule_id``: ``source``
    ``last_agent`` (call history of the last ``days`` days) or ``crm`` (the tenant's CRM
    at ``url``). The adapter answers at once with ``CallerKnown``, within ``timeout_ms``:
    a slow or failing source is an unknown caller, never a delayed call."""

    request_id: str
    rule_id: int
    source: str
    caller: str  # E.164 when it parses, else as received
    dialed: str  # the tenant's number that was called (E.164)
    days: int = 0
    url: str = ""
    timeout_ms: int = 1000


@dataclass(frozen=True)
class Finished:
    """The core is done with the call: write history, release its slot, close."""

    answered_by_employee_id: int | None
    hangup_cause: str
    route: str
    outbound: bool = False  # an employee's call out to an external number
    outbound_to: str = ""  # ... the number it dialled, E.164


@dataclass(frozen=True)
class LookupMembers:
    """Read the members' live figures (strategies that order by them). The adapter
    answers at once with ``MembersSeen``."""

    request_id: str
    department_id: int
    employee_ids: tuple[int, ...]
    window_days: int = 1


@dataclass(frozen=True)
class ReserveMembers:
    """Take up to ``want`` of ``candidates`` (in this order) for the call, atomically
    across every orchestrator. The adapter answers at once with ``MembersReserved``."""

    request_id: str
    department_id: int
    candidates: tuple[int, ...]
    want: int
    queued: bool = False  # the department queues callers: respect their order
    # Legs this call rang itself (their origination_uuid), all ended by now: never a
    # member's live call, even while the presence watcher has not yet seen their
    # CHANNEL_HANGUP_COMPLETE (it comes a few ms after the bridge returns).
    own_channels: tuple[str, ...] = ()


@dataclass(frozen=True)
class OfferEnd:
    """How one member's offer ended.

    ``result``: answered, no_answer, rejected, busy (the phone said so), unregistered,
    failed, lost_race (someone else answered), cancelled (the caller gave up).
    """

    employee_id: int
    result: str
    rang_ms: int = 0
    talk_ms: int = 0


MISSED_RESULTS = frozenset({"no_answer", "rejected", "busy", "unregistered"})
# Misses that count towards the automatic pause: the phone rang (or refused) and
# nobody took it. An unregistered phone is recorded but does not pause its member.
PAUSING_RESULTS = frozenset({"no_answer", "rejected", "busy"})


@dataclass(frozen=True)
class EndOffers:
    department_id: int
    ends: tuple[OfferEnd, ...]
    wrapup_ms: int = 0
    pause_after: int = 0  # consecutive misses that pause a member (0 = never)


@dataclass(frozen=True)
class JoinQueue:
    """The caller waits for the department's members. ``since_ms`` is the caller's place:
    a caller who comes back to the queue (the member rung did not answer) keeps it."""

    department_id: int
    since_ms: int


@dataclass(frozen=True)
class LeaveQueue:
    department_id: int


@dataclass(frozen=True)
class LookupPosition:
    """Read the caller's place in the department's queue (for an announcement). The
    adapter answers at once with ``QueuePosition``; asked only when an announcement is
    due, never on the periodic hold check."""

    department_id: int


@dataclass(frozen=True)
class BreakHold:
    """Stop the hold music now (``uuid_break <call> all``, transcripts P07b/P07c): its
    EXECUTE_COMPLETE follows, then the next app can run."""


@dataclass(frozen=True)
class RequestCallback:
    """The caller on hold asked to be called back: the adapter turns the caller's queue
    entry into a callback at the same place (``since_ms``); when a member is free a
    background job rings the member first, then ``caller_number``, showing ``dialed``
    (the tenant's number the caller dialled)."""

    department_id: int
    since_ms: int
    caller_number: str
    dialed: str = ""


Action = Union[Execute, Hangup, Log, StoreVoicemail, StoreFax, Finished, LookupMembers, ReserveMembers, EndOffers, JoinQueue, LeaveQueue,
               LookupPosition, BreakHold, LookupCaller, RequestCallback]
