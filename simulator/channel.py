"""A simulated FreeSWITCH channel: state, variables and the event headers it produces.

Channel data order (switch_channel_event_set_basic_data / _extended_data, and the
transcripts): Channel-State, Channel-Call-State, Channel-State-Number, Channel-Name,
Unique-ID, Call-Direction, Presence-Call-Direction, Channel-HIT-Dialplan,
[Channel-Presence-ID], Channel-Call-UUID, Answer-State, [Hangup-Cause], [6 codec
headers once media is up], the caller profile as ``Caller-*`` (empty fields left out,
switch_caller_profile_event_set_data), [Other-Type + ``Other-Leg-*``], then for the
"extended" event types every channel variable as ``variable_<name>``.

Variables keep FreeSWITCH's order: setting a variable deletes it and appends it at the
end (switch_channel_set_variable -> switch_event_del_header + add at STACK_BOTTOM); that
is why play_and_get_digits' ``read_result``/``digits`` come last (P05).
"""
from __future__ import annotations

import re
from typing import TYPE_CHECKING, Callable, Sequence

from gevent.event import Event as GEvent

from simulator.events import SimEvent

if TYPE_CHECKING:
    from simulator.server import FreeSwitchSim

STATE_NUMBERS = {
    "CS_NEW": 0, "CS_INIT": 1, "CS_ROUTING": 2, "CS_SOFT_EXECUTE": 3, "CS_EXECUTE": 4,
    "CS_EXCHANGE_MEDIA": 5, "CS_PARK": 6, "CS_CONSUME_MEDIA": 7, "CS_HIBERNATE": 8,
    "CS_RESET": 9, "CS_HANGUP": 10, "CS_REPORTING": 11, "CS_DESTROY": 12, "CS_NONE": 13,
}
CALLSTATE_NUMBERS = {"DOWN": 0, "DIALING": 1, "RINGING": 2, "EARLY": 3, "ACTIVE": 4, "HELD": 5,
                     "RING_WAIT": 6, "HANGUP": 7, "UNHELD": 8}
# Event types that carry the channel variables (observed in the transcripts).
EXTENDED = frozenset({
    "CHANNEL_ANSWER", "CHANNEL_BRIDGE", "CHANNEL_CREATE", "CHANNEL_DESTROY", "CHANNEL_EXECUTE",
    "CHANNEL_EXECUTE_COMPLETE", "CHANNEL_HANGUP", "CHANNEL_HANGUP_COMPLETE", "CHANNEL_ORIGINATE",
    "CHANNEL_PARK", "CHANNEL_UNPARK", "CHANNEL_PROGRESS", "CHANNEL_PROGRESS_MEDIA",
    "CHANNEL_UNBRIDGE", "PLAYBACK_START", "PLAYBACK_STOP", "RECORD_START", "RECORD_STOP",
    "CALL_UPDATE", "CHANNEL_DATA",
})
PROFILE_FIELDS = (
    ("Direction", "direction"), ("Logical-Direction", "logical_direction"), ("Username", "username"),
    ("Dialplan", "dialplan"), ("Caller-ID-Name", "caller_id_name"), ("Caller-ID-Number", "caller_id_number"),
    ("Orig-Caller-ID-Name", "orig_caller_id_name"), ("Orig-Caller-ID-Number", "orig_caller_id_number"),
    ("Callee-ID-Name", "callee_id_name"), ("Callee-ID-Number", "callee_id_number"),
    ("Network-Addr", "network_addr"), ("ANI", "ani"), ("Destination-Number", "destination_number"),
    ("Unique-ID", "uuid"), ("Source", "source"), ("Transfer-Source", "transfer_source"),
    ("Context", "context"), ("RDNIS", "rdnis"), ("Channel-Name", "chan_name"),
    ("Profile-Index", "profile_index"),
)
TIME_FIELDS = (("Profile-Created-Time", "profile_created"), ("Channel-Created-Time", "created"),
               ("Channel-Answered-Time", "answered"), ("Channel-Progress-Time", "progress"),
               ("Channel-Progress-Media-Time", "progress_media"), ("Channel-Hangup-Time", "hangup"),
               ("Channel-Transfer-Time", "transfer"), ("Channel-Resurrect-Time", "resurrect"),
               ("Channel-Bridged-Time", "bridged"), ("Channel-Last-Hold", "last_hold"),
               ("Channel-Hold-Accum", "hold_accum"))
_VAR_RE = re.compile(r"\$\{([^{}]+)\}")


class Channel:
    """State of one call leg. Mutated only from gevent greenlets (no locking needed)."""

    def __init__(self, sim: FreeSwitchSim, uuid: str, name: str, direction: str, profile: dict[str, str],
                 hit_dialplan: bool = True) -> None:
        self.sim = sim
        self.uuid = uuid
        self.name = name
        self.direction = direction
        self.session_id = sim.next_session_id()
        now = sim.clock.usec()
        self.times: dict[str, int] = {k: 0 for _, k in TIME_FIELDS}
        self.times.update(created=now, profile_created=now)
        self.profile: dict[str, str] = {
            "direction": direction, "logical_direction": direction, "username": "", "dialplan": "XML",
            "caller_id_name": "", "caller_id_number": "", "orig_caller_id_name": "",
            "orig_caller_id_number": "", "callee_id_name": "", "callee_id_number": "",
            "network_addr": "", "ani": "", "destination_number": "", "uuid": uuid, "source": "mod_sofia",
            "transfer_source": "", "context": "default", "rdnis": "", "chan_name": name, "profile_index": "1",
        }
        self.profile.update(profile)
        self.variables: dict[str, str] = {}
        self.hit_dialplan = hit_dialplan
        self.running_state = "CS_NEW"
        self.state = "CS_NEW"
        self.callstate = "DOWN"
        self.answer_state = "ringing"
        self.hangup_cause: str | None = None
        self.media = False
        self.codec = ("PCMU", "8000", "64000")
        self.other: Channel | None = None
        self.other_type: str | None = None
        self.events: list[SimEvent] = []
        self.digits_dialed = ""
        self.last_app: tuple[str, str] | None = None
        # execution (used by execution.py / apps.py)
        self.wake = GEvent()
        self.exec_queue: list[tuple[str, str, str | None, int]] = []
        self.break_pending = False
        self.interrupt: tuple[str, object] | None = None  # ("transfer", (...)) / ("uuid_bridge", Bridge)
        self.dtmf_buffer: list[str] = []
        self.dtmf_readers = 0
        self.app_depth = 0
        self.current_app: str | None = None
        self.socket_session: object | None = None
        self.destroyed = GEvent()
        self.hangup_done = GEvent()
        self.on_answer: list[Callable[[Channel], None]] = []
        self.on_hangup: list[Callable[[Channel], None]] = []
        self.recordings: list[dict[str, object]] = []
        self.hangup_origin: str | None = None  # "remote" when the far end hung up
        self.adopted = False  # an originated leg taken over by a session
        self.apps_log: list[tuple[float, str, str]] = []

    # ------------------------------------------------------------ variables
    @property
    def up(self) -> bool:
        return self.hangup_cause is None

    def set_var(self, name: str, value: str | None) -> None:
        self.variables.pop(name, None)
        if value is not None and value != "":
            self.variables[name] = str(value)

    def set_vars(self, pairs: Sequence[tuple[str, str | None]]) -> None:
        for key, value in pairs:
            self.set_var(key, value)

    def get_var(self, name: str, default: str | None = None) -> str | None:
        special = {"uuid": self.uuid, "destination_number": self.profile["destination_number"],
                   "caller_id_number": self.profile["caller_id_number"],
                   "caller_id_name": self.profile["caller_id_name"], "context": self.profile["context"],
                   "channel_name": self.name, "ani": self.profile["ani"]}
        if name in self.variables:
            return self.variables[name]
        if name in special and special[name]:
            return special[name]
        return self.sim.global_vars.get(name, default)

    def expand(self, text: str) -> str:
        """``${var}`` expansion (switch_channel_expand_variables); unknown -> empty."""
        for _ in range(5):
            new = _VAR_RE.sub(lambda m: self.get_var(m.group(1), "") or "", text)
            if new == text:
                break
            text = new
        return text

    def signal(self) -> None:
        self.wake.set()

    # ------------------------------------------------------------ events
    def profile_headers(self, prefix: str, zero_times: bool = False) -> list[tuple[str, str]]:
        out = [("%s-%s" % (prefix, key), self.profile[attr]) for key, attr in PROFILE_FIELDS
               if self.profile.get(attr) and not (prefix == "Other-Leg" and attr in ("profile_index", "transfer_source"))]
        out += [("%s-%s" % (prefix, key), "0" if zero_times else str(self.times[attr])) for key, attr in TIME_FIELDS]
        out += [("%s-Screen-Bit" % prefix, "true"), ("%s-Privacy-Hide-Name" % prefix, "false"),
                ("%s-Privacy-Hide-Number" % prefix, "false")]
        return out

    def channel_data(self, extended: bool, hangup_first: bool = False) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        if hangup_first and self.hangup_cause:
            out.append(("Hangup-Cause", self.hangup_cause))
        out += [("Channel-State", self.running_state), ("Channel-Call-State", self.callstate),
                ("Channel-State-Number", str(STATE_NUMBERS[self.state])), ("Channel-Name", self.name),
                ("Unique-ID", self.uuid), ("Call-Direction", self.direction),
                ("Presence-Call-Direction", self.direction),
                ("Channel-HIT-Dialplan", "true" if self.hit_dialplan else "false")]
        if self.variables.get("presence_id"):
            out.append(("Channel-Presence-ID", self.variables["presence_id"]))
        out += [("Channel-Call-UUID", self.variables.get("call_uuid", self.uuid)),
                ("Answer-State", self.answer_state)]
        if self.hangup_cause:
            out.append(("Hangup-Cause", self.hangup_cause))
        if self.media:
            name, rate, bits = self.codec
            out += [("Channel-Read-Codec-Name", name), ("Channel-Read-Codec-Rate", rate),
                    ("Channel-Read-Codec-Bit-Rate", bits), ("Channel-Write-Codec-Name", name),
                    ("Channel-Write-Codec-Rate", rate), ("Channel-Write-Codec-Bit-Rate", bits)]
        out += self.profile_headers("Caller")
        if self.other is not None and self.other_type:
            out.append(("Other-Type", self.other_type))
            # The originator's profile copy on a b-leg has no times (all 0, P01).
            out += self.other.profile_headers("Other-Leg", zero_times=self.other_type == "originator")
        if extended:
            out += [("variable_" + k, v) for k, v in self.variables.items()]
        return out

    def build(self, name: str, before: list[tuple[str, str]] | None = None,
              after: list[tuple[str, str]] | None = None,
              calling: tuple[str, str, int] | None = None) -> SimEvent:
        headers = self.sim.bus.common(name, calling=calling) + list(before or [])
        headers += self.channel_data(name in EXTENDED, hangup_first=name == "CHANNEL_HANGUP_COMPLETE")
        headers += list(after or [])
        return SimEvent(name, headers, channel_uuid=self.uuid)

    def fire(self, name: str, before: list[tuple[str, str]] | None = None,
             after: list[tuple[str, str]] | None = None,
             calling: tuple[str, str, int] | None = None) -> SimEvent:
        ev = self.build(name, before, after, calling)
        self.events.append(ev)
        self.sim.bus.fire(ev)
        return ev

    # ------------------------------------------------------------ state changes
    def set_running_state(self, state: str) -> None:
        self.running_state = state
        if self.state not in ("CS_HANGUP", "CS_REPORTING", "CS_DESTROY") or state in ("CS_REPORTING", "CS_DESTROY"):
            self.state = state
        self.fire("CHANNEL_STATE")

    def set_callstate(self, callstate: str) -> None:
        if callstate == self.callstate:
            return
        original, self.callstate = self.callstate, callstate
        self.fire("CHANNEL_CALLSTATE", before=[("Original-Channel-Call-State", original),
                                                ("Channel-Call-State-Number", str(CALLSTATE_NUMBERS[callstate]))])

    def ring_ready(self) -> None:
        if self.times["progress"] or not self.up:
            return
        self.times["progress"] = self.sim.clock.usec()
        self.fire("CHANNEL_PROGRESS")
        self.set_callstate("RINGING")

    def pre_answer(self) -> None:
        """Early media (switch_channel_perform_mark_pre_answered): PROGRESS_MEDIA."""
        if self.times["progress_media"] or self.times["answered"] or not self.up:
            return
        self.times["progress_media"] = self.sim.clock.usec()
        self.sim.media_up(self)
        self.answer_state = "early"
        self.fire("CHANNEL_PROGRESS_MEDIA")
        self.set_callstate("EARLY")

    def answer(self) -> None:
        if self.times["answered"] or not self.up:
            return
        if self.direction == "inbound" and self.name.startswith("sofia/"):
            self.pre_answer()  # sofia answers an inbound call with 183 first (transcripts)
        elif not self.media:
            self.sim.media_up(self)
        self.times["answered"] = self.sim.clock.usec()
        self.answer_state = "answered"
        self.fire("CHANNEL_ANSWER")
        self.set_callstate("ACTIVE")
        for callback in list(self.on_answer):
            callback(self)

    def hangup(self, cause: str = "NORMAL_CLEARING", disposition: str | None = None) -> bool:
        """switch_channel_perform_hangup: CHANNEL_HANGUP now; the session finishes later."""
        if not self.up:
            return False
        self.hangup_cause = cause
        self.times["hangup"] = self.sim.clock.usec()
        self.state = "CS_HANGUP"
        self.answer_state = "hangup"
        if disposition:
            self.set_var("sip_hangup_disposition", disposition)
        self.fire("CHANNEL_HANGUP")
        for callback in list(self.on_hangup):
            callback(self)
        self.signal()
        return True

    def finish(self) -> None:
        """CS_HANGUP -> CS_REPORTING -> HANGUP_COMPLETE (switch_core_state_machine.c)."""
        if self.hangup_done.is_set():
            return
        if self.up:
            self.hangup("NORMAL_CLEARING")
        self.set_running_state("CS_HANGUP")
        self.set_callstate("HANGUP")
        self.set_running_state("CS_REPORTING")
        from simulator.profiles import cdr_vars

        self.set_vars(cdr_vars(self))
        self.fire("CHANNEL_HANGUP_COMPLETE")
        self.hangup_done.set()
        self.sim.channel_finished(self)

    def destroy(self) -> None:
        if self.destroyed.is_set():
            return
        self.fire("CHANNEL_DESTROY")
        self.set_running_state("CS_DESTROY")
        self.destroyed.set()
        self.sim.channel_destroyed(self)

    # ------------------------------------------------------------ DTMF
    def receive_dtmf(self, digit: str, duration: int = 1280, source: str = "ENDPOINT") -> None:
        """A DTMF: from the endpoint (SIP INFO, 160 ms = 1280 samples) or from
        uuid_recv_dtmf (``APP``, 2000 samples), as recorded."""
        if not self.up:
            return
        self.digits_dialed += digit
        self.fire("DTMF", after=[("DTMF-Digit", digit), ("DTMF-Duration", str(duration)),
                                 ("DTMF-Source", source)])
        if self.dtmf_readers:
            self.dtmf_buffer.append(digit)
            self.signal()

    def link(self, other: Channel, my_type: str) -> None:
        """Other-Type / Other-Leg-* (originatee on the A leg, originator on the B leg)."""
        self.other = other
        self.other_type = my_type
