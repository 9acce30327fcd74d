"""Events as FreeSWITCH builds them, and the bus that hands them to ESL listeners.

Header order of every event (taken from the recorded transcripts, and matching
switch_event_prep_for_delivery_detailed() + switch_channel_event_set_data()):

    Event-Name [Event-Subclass] Core-UUID FreeSWITCH-Hostname FreeSWITCH-Switchname
    FreeSWITCH-IPv4 FreeSWITCH-IPv6 Event-Date-Local Event-Date-GMT Event-Date-Timestamp
    Event-Calling-File Event-Calling-Function Event-Calling-Line-Number Event-Sequence
    <event-specific headers placed before the channel data>
    <channel data, see channel.py>  [variable_* for the "extended" event types]
    <event-specific headers placed after (Application*, DTMF-*, Playback-*)>
"""
from __future__ import annotations

import itertools
import uuid as uuidlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from orchestrator.esl.wire import encode_event_json, encode_event_plain
from simulator.clock import fs_date_gmt, fs_date_local

if TYPE_CHECKING:
    from simulator.clock import SimClock

# Event-Calling-File / -Function / -Line-Number of each event type as recorded from
# FreeSWITCH 1.10.12 (they never vary for a given event type in the transcripts).
CALLING: dict[str, tuple[str, str, int]] = {
    "API": ("switch_loadable_module.c", "switch_api_execute", 2954),
    "BACKGROUND_JOB": ("mod_event_socket.c", "api_exec", 1572),
    "CALL_UPDATE": ("mod_sofia.c", "sofia_receive_message", 2100),
    "CHANNEL_ANSWER": ("switch_channel.c", "switch_channel_perform_mark_answered", 3846),
    "CHANNEL_BRIDGE": ("switch_ivr_bridge.c", "switch_ivr_multi_threaded_bridge", 1689),
    "CHANNEL_CALLSTATE": ("switch_channel.c", "switch_channel_perform_set_callstate", 301),
    "CHANNEL_CREATE": ("switch_core_state_machine.c", "switch_core_session_run", 626),
    "CHANNEL_DATA": ("mod_event_socket.c", "parse_command", 2021),
    "CHANNEL_DESTROY": ("switch_core_session.c", "switch_core_session_perform_destroy", 1584),
    "CHANNEL_EXECUTE": ("switch_core_session.c", "switch_core_session_exec", 2944),
    "CHANNEL_EXECUTE_COMPLETE": ("switch_core_session.c", "switch_core_session_exec", 2967),
    "CHANNEL_HANGUP": ("switch_channel.c", "switch_channel_perform_hangup", 3445),
    "CHANNEL_HANGUP_COMPLETE": ("switch_core_state_machine.c", "switch_core_session_reporting_state", 943),
    "CHANNEL_ORIGINATE": ("switch_core_state_machine.c", "switch_core_session_run", 632),
    "CHANNEL_OUTGOING": ("switch_core_session.c", "switch_core_session_outgoing_channel", 768),
    "CHANNEL_PARK": ("switch_ivr.c", "switch_ivr_park", 1002),
    "CHANNEL_PROGRESS": ("switch_channel.c", "switch_channel_perform_mark_ring_ready_value", 3505),
    "CHANNEL_PROGRESS_MEDIA": ("switch_channel.c", "switch_channel_perform_mark_pre_answered", 3560),
    "CHANNEL_STATE": ("switch_channel.c", "switch_channel_perform_set_running_state", 2408),
    "CHANNEL_UNBRIDGE": ("switch_ivr_bridge.c", "switch_ivr_multi_threaded_bridge", 1879),
    "CHANNEL_UNPARK": ("switch_ivr.c", "switch_ivr_park", 1213),
    "DTMF": ("switch_channel.c", "switch_channel_dequeue_dtmf", 677),
    "PLAYBACK_START": ("switch_ivr_play_say.c", "switch_ivr_play_file", 1646),
    "PLAYBACK_STOP": ("switch_ivr_play_say.c", "switch_ivr_play_file", 2020),
    "RECORD_START": ("switch_ivr_play_say.c", "switch_ivr_record_file_event", 767),
    "RECORD_STOP": ("switch_ivr_play_say.c", "switch_ivr_record_file_event", 1030),
    "HEARTBEAT": ("switch_core.c", "send_heartbeat", 86),
}


@dataclass
class SimEvent:
    """One fired event: its headers in wire order (duplicates allowed) and a body."""

    name: str
    headers: list[tuple[str, str]]
    body: str | None = None
    t: float = 0.0  # simulated time it fired
    channel_uuid: str | None = None

    def get(self, name: str, default: str | None = None) -> str | None:
        for key, value in reversed(self.headers):
            if key == name:
                return value
        return default

    def var(self, name: str) -> str | None:
        return self.get("variable_" + name)

    def encode(self, fmt: str) -> bytes:
        if fmt == "json":
            return encode_event_json(self.headers, self.body)
        return encode_event_plain(self.headers, self.body)

    @property
    def subclass(self) -> str | None:
        return self.get("Event-Subclass")


class Subscriber(Protocol):
    def offer(self, event: SimEvent) -> None: ...


@dataclass
class Identity:
    """What FreeSWITCH says about itself in every event."""

    hostname: str = "sim"
    ipv4: str = "127.0.0.1"
    ipv6: str = "::1"
    core_uuid: str = field(default_factory=lambda: str(uuidlib.uuid4()))


class EventBus:
    """Stamps events (sequence, date) and offers each to every subscriber, in order."""

    def __init__(self, clock: SimClock, identity: Identity) -> None:
        self.clock = clock
        self.identity = identity
        self._seq = itertools.count(500)
        self._subscribers: list[Subscriber] = []

    def subscribe(self, sub: Subscriber) -> None:
        if sub not in self._subscribers:
            self._subscribers.append(sub)

    def unsubscribe(self, sub: Subscriber) -> None:
        if sub in self._subscribers:
            self._subscribers.remove(sub)

    def common(self, name: str, subclass: str | None = None, calling: tuple[str, str, int] | None = None) -> list[tuple[str, str]]:
        ident = self.identity
        epoch = self.clock.epoch()
        file_, func, line = calling or CALLING.get(name, ("switch_event.c", "switch_event_fire_detailed", 2000))
        headers = [("Event-Name", name)]
        if subclass:
            headers.append(("Event-Subclass", subclass))
        headers += [
            ("Core-UUID", ident.core_uuid),
            ("FreeSWITCH-Hostname", ident.hostname),
            ("FreeSWITCH-Switchname", ident.hostname),
            ("FreeSWITCH-IPv4", ident.ipv4),
            ("FreeSWITCH-IPv6", ident.ipv6),
            ("Event-Date-Local", fs_date_local(epoch)),
            ("Event-Date-GMT", fs_date_gmt(epoch)),
            ("Event-Date-Timestamp", str(int(epoch * 1_000_000))),
            ("Event-Calling-File", file_),
            ("Event-Calling-Function", func),
            ("Event-Calling-Line-Number", str(line)),
            ("Event-Sequence", str(next(self._seq))),
        ]
        return headers

    def fire(self, event: SimEvent) -> None:
        event.t = self.clock.now()
        for sub in list(self._subscribers):
            sub.offer(event)

    def fire_plain(self, name: str, headers: list[tuple[str, str]], body: str | None = None) -> SimEvent:
        """Fire a non-channel event (BACKGROUND_JOB, CUSTOM ...)."""
        ev = SimEvent(name, self.common(name) + headers, body)
        self.fire(ev)
        return ev
