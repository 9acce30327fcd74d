"""Playing and recording on a leg the worker originated (parked), over the job's inbound
event socket, waiting for the application to finish. Used by the callback jobs for the
member's whisper, the client's "this is your callback" prompt and the expired callback's
apology and voicemail.

FreeSWITCH 1.10.12 behaviour relied on:

* ``sendmsg <uuid>`` on an inbound connection with ``call-command: execute``,
  ``execute-app-name``, ``execute-app-arg`` and ``Event-UUID`` queues the application on
  that channel (mod_event_socket ``sendmsg`` -> ``switch_core_session_queue_private_event``);
  a parked channel (``&park()``: ``switch_ivr_park`` runs ``switch_ivr_parse_all_events``)
  runs it, then parks again. Its CHANNEL_EXECUTE_COMPLETE carries ``Application-UUID`` =
  our ``Event-UUID`` (``switch_ivr_parse_event`` sets ``app_uuid``), so the job waits for
  exactly its own application. Only an inbound connection subscribed to
  CHANNEL_EXECUTE_COMPLETE and CHANNEL_HANGUP_COMPLETE (``MEDIA_EVENTS``) sees them.
* A hangup ends the running application: its CHANNEL_EXECUTE_COMPLETE still comes
  (``Application-Response: PLAYBACK ERROR`` for a playback) but with ``Answer-State:
  hangup``, then the parked leg's own EXECUTE_COMPLETE (park), then its
  CHANNEL_HANGUP_COMPLETE; a ``sendmsg`` to the gone leg answers ``-ERR invalid session
  id``. Checked on FreeSWITCH 1.10.12 (a loopback leg killed 0.5 s into a playback, and
  1.5 s into a record: the record's EXECUTE_COMPLETE came first, with ``record_ms``).
* ``record <path> <max s> <silence threshold> <silence hits>`` sets ``record_ms`` when it
  could open the file; FreeSWITCH's ``record`` creates no folder, so the path is the flat
  ``PBX_RECORDINGS_DIR/vm-<tenant>-<box>-<uuid>.wav`` (as ``core.callflow._record``).
  Its EXECUTE_COMPLETE carries the channel's variables (``variable_record_ms``).
* ``playback file_string://a!b`` plays the parts in turn (mod_dptools ``file_string``),
  each relative part under the sound prefix. Every part here is a checked sound
  (``core.sounds.file_arg``) or a stock file we name (``digits/N.wav``), so no part holds
  ``$``, a blank, ``!`` or a quote (``core.sounds`` explains the expansion rules).
"""
from __future__ import annotations

import uuid as uuidlib
from typing import Any

from orchestrator.core.dialstrings import e164, safe_uuid
from orchestrator.esl.wire import Event

MEDIA_EVENTS = ("CHANNEL_EXECUTE_COMPLETE", "CHANNEL_HANGUP_COMPLETE")


class LegGone(Exception):
    """The leg hung up before the application finished."""


def execute(esl: Any, stream: Any, leg: str, app: str, arg: str, timeout_s: float) -> Event:
    """Run ``app arg`` on parked leg ``leg``; its CHANNEL_EXECUTE_COMPLETE. LegGone when
    the leg hung up first (EslTimeout from the stream when neither came in time)."""
    safe_uuid(leg, "leg")
    app_uuid = str(uuidlib.uuid4())
    esl.command("sendmsg %s" % leg, {"call-command": "execute", "execute-app-name": app, "execute-app-arg": arg,
                                     "Event-UUID": app_uuid})

    def ours(event: Event) -> bool:
        if event.name == "CHANNEL_EXECUTE_COMPLETE":
            return event.get("Application-UUID") == app_uuid
        return event.name == "CHANNEL_HANGUP_COMPLETE" and event.get("Unique-ID") == leg

    event = stream.wait_for(ours, timeout_s)
    if event.name == "CHANNEL_HANGUP_COMPLETE":
        raise LegGone(event.get("Hangup-Cause") or "hung up")
    if (event.get("Answer-State") or "").lower() == "hangup":  # the app ended because the leg hung up
        raise LegGone("hung up during %s" % app)
    return event


def digits(number: str) -> list[str]:
    """Stock prompts saying an E.164 number digit by digit (``digits/N.wav``); ValueError
    when it is not E.164 exactly as ``e164`` writes it."""
    if not number or e164(number) != number:
        raise ValueError("%r is not an E.164 number" % number[:40])
    return ["digits/%s.wav" % d for d in number[1:]]


def minutes(seconds: int) -> list[str]:
    """Stock prompts for a whole number of minutes (at least 1), digit by digit, then
    ``time/minutes.wav`` (``time/minute.wav`` for one)."""
    mins = max(1, int(seconds) // 60)
    return ["digits/%s.wav" % d for d in str(mins)] + ["time/minute.wav" if mins == 1 else "time/minutes.wav"]


def whisper(client_number: str, waited_s: int) -> str:
    """What the member hears before the client is dialled: the client's number, a pause,
    how many minutes they waited. A ``file_string://`` of stock prompts only."""
    return "file_string://" + "!".join(digits(client_number) + ["silence_stream://400"] + minutes(waited_s))


__all__ = ["MEDIA_EVENTS", "LegGone", "digits", "execute", "minutes", "whisper"]
