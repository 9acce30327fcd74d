"""Dialplan applications (mod_dptools and friends) as the simulator runs them.

Durations are simulated seconds. Behaviour relied on, from the FreeSWITCH sources and
the transcripts:

* playback: pre-answers an unanswered call (P08c); sets playback_last_offset_pos,
  playback_seconds, playback_ms, playback_samples and current_application_response
  ``FILE PLAYED`` (SUCCESS or BREAK) or ``PLAYBACK ERROR`` (hangup, or the channel taken
  away by uuid_bridge: P07a). DTMF ends it only when the digit is in
  ``playback_terminators`` - default ``*``, ``any`` = all digits, ``none`` = never
  (mod_dptools on_dtmf); the digit used goes to ``playback_terminator_used``.
  ``uuid_break`` ends it with ``FILE PLAYED`` (P07b). PLAYBACK_START/STOP fire.
* play_and_get_digits (switch_play_and_get_digits / switch_ivr_read): per try the
  variable is unset, the prompt plays (a digit cuts it), digits are collected (first
  within ``timeout`` ms, the next within ``digit_timeout`` ms); max digits or a
  terminator -> read_result ``success``, inter-digit timeout -> ``timeout`` (P05 shows
  ``timeout`` with digits 1 and 23); a valid answer sets the variable; otherwise
  read_result ``failure`` and the invalid file plays. Application-Response stays _none_.
* record PATH [max_sec] [thresh] [silence_hits]: answers media, RECORD_START/STOP,
  record_seconds/ms/samples/file_size (8 kHz, 16 bit) when it ends (hangup, max length,
  a terminator DTMF, uuid_break); EXECUTE_COMPLETE comes after CHANNEL_HANGUP (P04).
* hangup on an unanswered call: SIP 480, sip_hangup_disposition=send_refuse (P08c).
* rxfax (mod_spandsp): fax_success, fax_result_code, fax_result_text and the page
  counters; the simulated document is stored on the call.
* record and rxfax create no folder: a file in a folder the simulated host lacks
  (``FreeSwitchSim.folders``) fails as on FreeSWITCH 1.10.12 (record: hang-up
  DESTINATION_OUT_OF_ORDER at once; rxfax: result 41 after the negotiation).
"""
from __future__ import annotations

import re
from typing import TYPE_CHECKING

from simulator.execution import app, execute, idle

if TYPE_CHECKING:
    from simulator.channel import Channel


@app("answer")
def _answer(ch: Channel, data: str) -> None:
    ch.answer()


@app("pre_answer")
def _pre_answer(ch: Channel, data: str) -> None:
    ch.pre_answer()


@app("ring_ready")
def _ring_ready(ch: Channel, data: str) -> None:
    ch.ring_ready()


def _set_pair(ch: Channel, data: str) -> tuple[str, str]:
    name, _, value = data.partition("=")
    name = name.strip()
    ch.set_var(name, value if value != "" else None)
    return name, value


@app("set")
def _set(ch: Channel, data: str) -> None:
    _set_pair(ch, data)


@app("multiset")
def _multiset(ch: Channel, data: str) -> None:
    sep = " "
    if data.startswith("^^"):
        sep, data = data[2], data[3:]
    for part in data.split(sep):
        if part:
            _set_pair(ch, part)


@app("export")
def _export(ch: Channel, data: str) -> None:
    local = not data.startswith("nolocal:")
    data = data[len("nolocal:"):] if not local else data
    name, value = data.partition("=")[0].strip(), data.partition("=")[2]
    if local:
        ch.set_var(name, value or None)
    names = [n for n in (ch.variables.get("export_vars") or "").split(",") if n]
    if name not in names:
        names.append(name)
    ch.set_var("export_vars", ",".join(names))


@app("unset")
def _unset(ch: Channel, data: str) -> None:
    ch.set_var(data.strip(), None)


@app("log")
def _log(ch: Channel, data: str) -> None:
    ch.sim.log_lines.append((ch.uuid, data))


@app("info")
def _info(ch: Channel, data: str) -> None:
    ch.sim.log_lines.append((ch.uuid, "info: %s" % ch.name))


@app("sleep")
def _sleep(ch: Channel, data: str) -> None:
    idle(ch, _int(data, 0) / 1000.0, breakable=False)


@app("park")
def _park(ch: Channel, data: str) -> None:
    park(ch)


def park(ch: Channel) -> str:
    """switch_ivr_park: CHANNEL_PARK, run nested messages until released, CHANNEL_UNPARK."""
    ch.fire("CHANNEL_PARK")
    reason = idle(ch, None, breakable=False)
    ch.fire("CHANNEL_UNPARK")
    return reason


@app("echo")
def _echo(ch: Channel, data: str) -> None:
    idle(ch, None, breakable=False)


@app("hangup")
def _hangup(ch: Channel, data: str) -> None:
    cause = data.strip().upper() or "NORMAL_CLEARING"
    ch.hangup(cause, disposition="send_bye" if ch.times["answered"] else "send_refuse")


@app("transfer")
def _transfer(ch: Channel, data: str) -> None:
    args = data.split()
    if args and args[0] in ("-bleg", "-both"):
        args = args[1:]
    if not args:
        return
    dest = args[0]
    dialplan = args[1] if len(args) > 1 else "XML"
    context = args[2] if len(args) > 2 else ch.profile["context"]
    ch.interrupt = ("transfer", (dest, dialplan, context))
    ch.signal()


@app("execute_extension")
def _execute_extension(ch: Channel, data: str) -> None:
    args = data.split()
    if not args:
        return
    context = args[2] if len(args) > 2 else ch.profile["context"]
    for name, arg in ch.sim.hunt_extension(ch, args[0], context) or []:
        if not ch.up or ch.interrupt is not None:
            return
        execute(ch, name, arg)


@app("socket")
def _socket(ch: Channel, data: str) -> None:
    from simulator.outbound import socket_app

    socket_app(ch, data)


@app("bridge")
def _bridge(ch: Channel, data: str) -> None:
    from simulator.bridge import bridge_app

    bridge_app(ch, data)


# ------------------------------------------------------------------ media
def play_file(ch: Channel, path: str, terminators: str | None = None, collect: list[str] | None = None) -> str:
    """One file. Returns 'done', 'break', 'dtmf', 'hangup' or 'interrupt'."""
    if not ch.media:
        ch.pre_answer()
    if not ch.up:
        return "hangup"
    length = ch.sim.sound_length(path)
    ftype = path.split("://", 1)[0] if "://" in path else ""
    file_head = ([("Playback-File-Type", ftype)] if ftype else []) + [("Playback-File-Path", path)]
    ch.fire("PLAYBACK_START", after=file_head)
    started = ch.sim.clock.now()
    ch.dtmf_readers += 1

    def on_dtmf(digit: str) -> str | None:
        if collect is not None:
            collect.append(digit)
            return "dtmf"
        if terminators and digit in terminators:
            ch.set_var("playback_terminator_used", digit)
            return "dtmf"
        return None

    try:
        reason = idle(ch, length, on_dtmf=on_dtmf)
    finally:
        ch.dtmf_readers -= 1
    played = min(length if length is not None else 1e9, ch.sim.clock.now() - started)
    samples = int(played * 8000)
    ch.set_vars([("playback_last_offset_pos", str(samples)), ("playback_seconds", str(int(played))),
                 ("playback_ms", str(int(played * 1000))), ("playback_samples", str(samples))])
    status = "done" if reason == "timeout" else "break"
    ch.fire("PLAYBACK_STOP", after=file_head + [("Playback-Status", status)])
    return {"timeout": "done"}.get(reason, reason)


def _terminators(ch: Channel) -> str:
    value = ch.get_var("playback_terminators") or "*"
    if value.lower() == "none":
        return ""
    if value.lower() == "any":
        return "1234567890*#"
    return value


@app("playback")
def _playback(ch: Channel, data: str) -> None:
    ch.set_var("playback_terminator_used", None)
    result = play_file(ch, data.strip(), terminators=_terminators(ch))
    ok = result in ("done", "break", "dtmf")
    ch.set_var("current_application_response", "FILE PLAYED" if ok else "PLAYBACK ERROR")


@app("endless_playback")
def _endless_playback(ch: Channel, data: str) -> None:
    while ch.up and ch.interrupt is None:
        if play_file(ch, data.strip()) not in ("done",):
            break


@app("play_and_get_digits")
def _play_and_get_digits(ch: Channel, data: str) -> None:
    args = data.split()
    if len(args) < 6:
        return
    mn, mx, tries, timeout = _int(args[0], 0), _int(args[1], 128), _int(args[2], 1), _int(args[3], 5000)
    terms, prompt = args[4], args[5]
    invalid = args[6] if len(args) > 6 else None
    var = args[7] if len(args) > 7 else "pagd_input"
    regex = args[8] if len(args) > 8 else None
    digit_timeout = _int(args[9], timeout) if len(args) > 9 else timeout
    ch.dtmf_buffer.clear()
    for _ in range(max(1, tries)):
        ch.set_var(var, None)
        digits, result = _read(ch, prompt, mn, mx, terms, timeout / 1000.0, digit_timeout / 1000.0)
        if not ch.up or ch.interrupt is not None:
            return
        ch.set_var("read_result", result)
        if digits and len(digits) >= mn and (regex is None or re.search(regex, digits)):
            ch.set_var(var, digits)
            return
        ch.set_var("read_result", "failure")
        if invalid and invalid.lower() != "none":
            play_file(ch, invalid, collect=None)


def _read(ch: Channel, prompt: str, mn: int, mx: int, terms: str, timeout: float, digit_timeout: float) -> tuple[str, str]:
    got: list[str] = []
    reason = play_file(ch, prompt, collect=got)
    if reason in ("hangup", "interrupt"):
        return "", "failure"
    ch.dtmf_readers += 1
    try:
        while True:
            digits = "".join(d for d in got if d not in terms)
            if any(d in terms for d in got):
                return digits, "success"
            if len(digits) >= mx:
                return digits[:mx], "success"
            wait = digit_timeout if got else timeout

            def on_dtmf(digit: str) -> str:
                got.append(digit)
                return "dtmf"

            reason = idle(ch, wait, on_dtmf=on_dtmf, breakable=False)
            if reason == "timeout":
                return digits, "timeout"
            if reason in ("hangup", "interrupt"):
                return digits, "failure"
    finally:
        ch.dtmf_readers -= 1


@app("record")
def _record(ch: Channel, data: str) -> None:
    args = data.split()
    if not args:
        return
    path = args[0]
    max_sec = _int(args[1], 0) if len(args) > 1 else 0
    if not ch.media:
        ch.pre_answer()
    if not ch.sim.folder_exists(_parent(path)):
        # switch_ivr_record_file_event opens the file without creating its folder:
        # "mod_sndfile.c:281 Error Opening File", then hangs the channel up with
        # DESTINATION_OUT_OF_ORDER at once (record_function hangs up again on the
        # error). No RECORD_START, no record_* variables; CHANNEL_HANGUP comes before
        # the EXECUTE_COMPLETE. Seen on FreeSWITCH 1.10.12: both in the same ms.
        ch.sim.log_lines.append((ch.uuid, "[WARNING] mod_sndfile.c:281 Error Opening File [%s] [No Error.]" % path))
        ch.hangup("DESTINATION_OUT_OF_ORDER")
        return
    ch.fire("RECORD_START", after=[("Record-File-Path", path)])
    started = ch.sim.clock.now()
    terms = _terminators(ch)
    ch.dtmf_readers += 1

    def on_dtmf(digit: str) -> str | None:
        return "dtmf" if digit in terms else None

    try:
        reason = idle(ch, float(max_sec) if max_sec > 0 else None, on_dtmf=on_dtmf)
    finally:
        ch.dtmf_readers -= 1
    length = ch.sim.clock.now() - started
    samples = int(length * 8000)
    size = 44 + samples * 2 if samples else 44
    ch.set_vars([("record_seconds", str(int(length))), ("record_ms", str(int(length * 1000))),
                 ("record_samples", str(samples)), ("record_file_size", str(size)),
                 ("record_record_file_size", str(size))])
    ch.fire("RECORD_STOP", after=[("Record-File-Path", path)])
    ch.recordings.append({"path": path, "seconds": length, "started_at": started, "ended_by": reason})


@app("rxfax")
def _rxfax(ch: Channel, data: str) -> None:
    if not ch.times["answered"]:
        ch.answer()
    if not ch.sim.folder_exists(_parent(data.strip())):
        _rxfax_unwritable(ch)
        return
    reason = idle(ch, ch.sim.fax_duration, breakable=False)
    ok = reason == "timeout"
    pages = "1" if ok else "0"
    ch.set_vars([("fax_success", "1" if ok else "0"), ("fax_result_code", "0" if ok else "49"),
                 ("fax_result_text", "OK" if ok else "The call dropped prematurely"),
                 ("fax_ecm_used", "on"), ("fax_local_station_id", "SpanDSP Fax Ident"),
                 ("fax_remote_station_id", "SIM-FAX"), ("fax_document_transferred_pages", pages),
                 ("fax_document_total_pages", pages), ("fax_image_resolution", "8031x3850"),
                 ("fax_image_size", "28374" if ok else "0"), ("fax_bad_rows", "0"),
                 ("fax_transfer_rate", "14400")])
    if ok:
        ch.recordings.append({"path": data.strip(), "kind": "fax", "pages": 1,
                              "seconds": ch.sim.fax_duration, "ended_by": "done"})


def _rxfax_unwritable(ch: Channel) -> None:
    """rxfax into a folder that does not exist: spandsp negotiates (phase B), fails to
    open the TIFF when the document starts, and ends the session with T30_ERR_FILEERROR
    (41, "TIFF/F file cannot be opened"); rxfax returns and the channel stays up.
    Seen on FreeSWITCH 1.10.12: result after 9.6 s (a whole page took 16 s), no hang-up."""
    reason = idle(ch, ch.sim.fax_duration * 0.6, breakable=False)
    ch.set_vars([("fax_success", "0"), ("fax_result_code", "41" if reason == "timeout" else "49"),
                 ("fax_result_text", "TIFF/F file cannot be opened" if reason == "timeout" else "The call dropped prematurely"),
                 ("fax_ecm_used", "off"), ("fax_local_station_id", "SpanDSP Fax Ident"),
                 ("fax_remote_station_id", "SIM-FAX"), ("fax_document_transferred_pages", "0"),
                 ("fax_document_total_pages", "0")])


def _parent(path: str) -> str:
    return path.rsplit("/", 1)[0] if "/" in path else "."


def _int(text: str, default: int) -> int:
    try:
        return int(text)
    except (TypeError, ValueError):
        return default


def tone_length(spec: str) -> float | None:
    """Simulated length of tone_stream://... (None = endless, loops=-1)."""
    loops = 1
    m = re.search(r"loops=(-?\d+)", spec)
    if m:
        loops = int(m.group(1))
    m = re.search(r"(?:^|;)L=(-?\d+)", spec.split("://", 1)[-1])
    if m:
        loops = int(m.group(1))
    if loops < 0:
        return None
    total = 0.0
    for seg in re.findall(r"%\(([^)]*)\)", spec):
        parts = [p for p in seg.split(",")]
        on = _int(parts[0], 0) if parts else 0
        off = _int(parts[1], 0) if len(parts) > 1 else 0
        total += (on + off) / 1000.0
    return total * max(1, loops) if total else None
