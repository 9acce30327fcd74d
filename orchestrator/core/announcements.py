"""What a caller waiting in a department's queue hears between stretches of hold music:
the department's announcement and their place in line. Pure.

FreeSWITCH 1.10 behaviour relied on:
* ``playback file_string://a!b!c`` plays the files one after another as ONE playback
  (the ``file_string`` file format: ``file_string_file_open`` splits on ``!``,
  ``next_file`` opens each in turn, prefixing names that are not absolute paths with
  ``sound_prefix``; a file that cannot be opened is skipped). So one ``uuid_break`` ends
  the whole list, DTMF and the callback key work as during the music, and the core keeps
  its rule of one blocking application in flight.
* The stock English prompts (freeswitch-sounds-en-us-callie, installed with the vanilla
  configuration): ``ivr/ivr-you_are_number.wav`` ("you are number"),
  ``ivr/ivr-in_line.wav`` ("in line") and ``digits/*.wav``. A number is said with the
  files mod_say_en uses for ``say en number pronounced N`` (``en_say_general_count`` and
  ``play_group`` in src/mod/say/mod_say_en/mod_say_en.c): ``digits/N.wav`` below 20,
  ``digits/T0.wav`` + ``digits/U.wav`` for the tens, ``digits/H.wav`` +
  ``digits/hundred.wav``, then ``digits/thousand.wav`` for the thousands group. Composing
  the same files here instead of running the ``say`` app keeps the announcement a single
  playback.
"""
from __future__ import annotations

from orchestrator.core.actions import Log
from orchestrator.core.model import QueueSettings
from orchestrator.core.sounds import optional

YOU_ARE_NUMBER = "ivr/ivr-you_are_number.wav"
IN_LINE = "ivr/ivr-in_line.wav"


def has_any(queue: QueueSettings) -> bool:
    """Does the department interrupt the music at all?"""
    return bool(queue.announcement) or queue.announce_position


def every_ms(queue: QueueSettings) -> int:
    """Music between two announcements (at least a second, whatever the data says)."""
    return max(1, queue.announce_every) * 1000


def number_sounds(n: int) -> list[str]:
    """``n`` said as mod_say_en says it (SSM_PRONOUNCED), up to 999 999."""
    if n <= 0:
        return ["digits/0.wav"]
    thousands, rest = divmod(min(n, 999_999), 1000)
    files = _group(thousands) + ["digits/thousand.wav"] if thousands else []
    return files + _group(rest)


def _group(n: int) -> list[str]:
    """mod_say_en ``play_group``: hundreds, then tens (10-19 are one file), then units."""
    hundreds, tens, units = n // 100, n // 10 % 10, n % 10
    files = ["digits/%d.wav" % hundreds, "digits/hundred.wav"] if hundreds else []
    if tens == 1:
        return files + ["digits/1%d.wav" % units]
    if tens:
        files.append("digits/%d0.wav" % tens)
    if units:
        files.append("digits/%d.wav" % units)
    return files


def position_sounds(position: int) -> list[str]:
    """"You are number <position> in line"; nothing when the position is unknown (0)."""
    return [YOU_ARE_NUMBER] + number_sounds(position) + [IN_LINE] if position > 0 else []


def sounds(queue: QueueSettings, position: int, *, periodic: bool = True, tenant_id: int = 0,
           recordings_dir: str = "") -> tuple[str, tuple[Log, ...]]:
    """The announcement to play now, as one ``playback`` argument ("" when there is
    nothing to say): the department's announcement (periodic ones only), then the
    caller's place when the department announces it and it is known. An announcement
    that is not a sound of the grammar (an old row: ``core.sounds``) is left out, with
    an error log; the list is built only from checked sounds, so no part holds a ``!``."""
    files: list[str] = []
    logs: tuple[Log, ...] = ()
    if periodic and queue.announcement:
        own, logs = optional(queue.announcement, "queue.announcement", tenant_id, recordings_dir)
        files += [own] if own else []
    if queue.announce_position:
        files += position_sounds(position)
    if len(files) == 1:
        return files[0], logs
    return ("file_string://" + "!".join(files) if files else ""), logs
