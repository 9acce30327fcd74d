"""What flows in and out of the call-flow core: events in, actions out. Plain data.

The ESL adapter turns FreeSWITCH events into these events and these actions into ESL
commands; the core never sees a socket.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Union


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


CoreEvent = Union[AppCompleted, Answered, Bridged, Unbridged, Dtmf, HungUp]


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
class Finished:
    """The core is done with the call: write history, release its slot, close."""

    answered_by_employee_id: int | None
    hangup_cause: str
    route: str


Action = Union[Execute, Hangup, Log, StoreVoicemail, Finished]
