"""Tenants' sounds as FreeSWITCH application arguments: escape at use. Pure.

A sound a tenant names is checked against one grammar when it is saved (tenant
documents and the admin panel: ``tenant_doc``) and parsed into a
:class:`~orchestrator.core.model.Sound` when the routing snapshot is read
(``db.snapshot``). Here, where ``playback`` / ``play_and_get_digits`` arguments are
built, every sound is checked once more (defence in depth: a snapshot built some other
way, a default from the code): a value that does not match the grammar never reaches
FreeSWITCH; the default is played instead and the core logs an error (``Log``).

FreeSWITCH 1.10.12 rules this relies on (signalwire/freeswitch, tag v1.10.12):

* Every application argument, ``sendmsg execute``'s included, goes through
  ``switch_channel_expand_variables`` before the application sees it
  (``switch_core_session_execute_application_get_flags`` in src/switch_core_session.c,
  unless the channel sets ``app_disable_expand_variables``). In
  ``switch_channel_expand_variables_check`` (src/switch_channel.c) ``${var}``,
  ``$${global}`` and ``${api(args)}`` / ``${api args}`` are replaced - the last RUNS an
  API command (``${system ...}``) - and ``\\`` escapes ``$``, ``'`` and ``\\``. A text
  with neither ``$`` nor ``\\`` is returned unchanged (``switch_string_var_check_const``
  and ``switch_string_has_escaped_data`` find nothing). An expanded argument starting
  with ``%[`` or ``%X[`` sets scoped channel variables. None of our forms contains
  ``$`` or ``\\`` or starts with ``%``.
* ``play_and_get_digits`` (``play_and_get_digits_function``,
  src/mod/applications/mod_dptools/mod_dptools.c) splits its argument with
  ``switch_separate_string(data, ' ', argv, 11)``: min max tries timeout terminators
  FILE invalid_file var regexp digit_timeout transfer_on_failure, where single quotes
  group and ``\\`` escapes. A blank in FILE shifts every later field (e.g. into
  ``transfer_on_failure`` = "<ext> XML <context>"). Our forms hold no blank, quote or
  backslash, so FILE is always exactly one field.
* ``playback`` (``playback_function``): ``file@@N`` starts N samples in; then
  ``switch_ivr_play_file`` (src/switch_ivr_play_say.c): ``phrase:`` and ``say:`` names
  are special, ``{k=v,...}`` in front sets file parameters, a name containing ``://``
  picks the file-format module by its scheme (``switch_core_file_open``,
  src/switch_core_file.c; e.g. ``shell_stream://`` would run a program), a relative
  name is looked up under ``sound_prefix`` and an absolute path is opened as it is.
  Only the schemes local_stream, silence_stream and tone_stream (and file_string, which
  only we build) are produced; ``@``, ``{`` and ``:`` outside those prefixes are refused.
* ``file_string://a!b!c`` (``file_string_file_open`` / ``next_file`` in mod_dptools.c)
  splits on ``!`` and plays the parts in turn, each prefixed with ``sound_prefix``
  unless it is an absolute path. No single sound may contain ``!``: the lists are built
  only here and in ``announcements``, from checked sounds.
* ``tone_stream://`` (teletone, ``teletone_run`` in libs/libteletone/src/
  libteletone_generate.c): ``%(on_ms,off_ms,hz[,hz...])`` tones and ``L=n`` loops,
  separated by ``;``; the grammar allows only digits, commas, parentheses, ``%``,
  ``L=`` and ``;``.

A tenant's own file, ``tenant:NAME.wav``, is played from
``<recordings dir>/<tenant id>/sounds/NAME.wav`` (an absolute path: no ``sound_prefix``);
the recordings directory comes from the operator's configuration and is checked too.
"""
from __future__ import annotations

import re

from orchestrator.core.actions import Log
from orchestrator.core.model import Sound, SoundError

DEFAULT_MUSIC = "local_stream://moh"  # FreeSWITCH's stock music on hold (vanilla local_stream.conf)
_SAFE_DIR = re.compile(r"/(?:[A-Za-z0-9_.+-]+/?)*")  # an absolute path FreeSWITCH gets unchanged


def tenant_sound_path(name: str, tenant_id: int, recordings_dir: str) -> str:
    """Where the tenant's own file ``tenant:NAME`` lives (the upload feature writes there)."""
    return "%s/%d/sounds/%s" % (recordings_dir.rstrip("/"), tenant_id, name)


def file_arg(value: str, tenant_id: int, recordings_dir: str) -> str:
    """The FreeSWITCH file name of a sound, safe as one blank-free application argument
    and as one part of a ``file_string://`` list; SoundError when ``value`` is not a sound
    (whatever its Python type: a plain str from elsewhere is checked the same way)."""
    sound = Sound.parse(str(value))
    if sound.kind != "tenant":
        return str(sound)
    if not _SAFE_DIR.fullmatch(recordings_dir) or ".." in recordings_dir:
        raise SoundError("the recordings directory %r is not a plain absolute path: the tenant's own sounds "
                         "cannot be played from it (set PBX_RECORDINGS_DIR to e.g. /var/lib/freeswitch/recordings/pbx)"
                         % recordings_dir)
    return tenant_sound_path(sound[len("tenant:"):], tenant_id, recordings_dir)


def playable(value: str | None, default: str, what: str, tenant_id: int, recordings_dir: str) -> tuple[str, tuple[Log, ...]]:
    """The argument to play for a tenant's sound ``value`` (``what`` names its field, for
    the log): the sound itself, or ``default`` when it is unset, or - with an error log -
    when it does not match the grammar. ``default`` (the code's own sounds) is checked too;
    if even that fails, a second of silence plays."""
    logs: list[Log] = []
    for candidate, label in ((value, what), (default, "default for " + what)):
        if not candidate:
            continue
        try:
            return file_arg(candidate, tenant_id, recordings_dir), tuple(logs)
        except SoundError as exc:
            logs.append(Log("sound refused: not played", "error", {"field": label, "problem": str(exc)}))
    return "silence_stream://1000", tuple(logs)


def optional(value: str | None, what: str, tenant_id: int, recordings_dir: str) -> tuple[str | None, tuple[Log, ...]]:
    """Like :func:`playable` for a sound that is simply left out when unset or refused
    (a queue's periodic announcement)."""
    if not value:
        return None, ()
    try:
        return file_arg(value, tenant_id, recordings_dir), ()
    except SoundError as exc:
        return None, (Log("sound refused: not played", "error", {"field": what, "problem": str(exc)}),)
