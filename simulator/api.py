"""``api`` commands (mod_commands, mod_sofia), with the exact bodies FreeSWITCH returns.

Bodies from the transcripts: unknown -> ``-ERR <cmd> Command not found!\\n``; originate
-> ``+OK <uuid>\\n`` / ``-ERR <CAUSE>\\n`` / the ``-USAGE: ...`` line without arguments;
uuid_kill / uuid_break / uuid_setvar -> ``+OK\\n``; a bad uuid -> ``-ERR No such
channel!\\n``; uuid_bridge -> ``+OK <B>\\n`` or ``-ERR Invalid uuid\\n``; uuid_getvar ->
the bare value or ``_undef_`` (no newline); uuid_broadcast -> ``+OK Message sent\\n``;
show channels|calls [as json] (zero rows as json: ``{"row_count": 0}\\n``);
sofia_contact -> ``sofia/internal/sip:U@H:P`` or ``error/user_not_registered``.
"""
from __future__ import annotations

import json
from typing import TYPE_CHECKING

from simulator import dialstring
from simulator.clock import fs_date_local

if TYPE_CHECKING:
    from simulator.channel import Channel
    from simulator.listener import Listener
    from simulator.server import FreeSwitchSim

VERSION = "FreeSWITCH Version 1.10.12-release+git~20240802T210227Z~a88d069d6f~64bit (git a88d069 2024-08-02 21:02:27Z 64bit)\n"
ORIGINATE_USAGE = ("-USAGE: <call url> <exten>|&<application_name>(<app_args>) [<dialplan>] [<context>] "
                   "[<cid_name>] [<cid_num>] [<timeout_sec>]\n")
NO_CHANNEL = "-ERR No such channel!\n"

CHANNEL_KEYS = ["uuid", "direction", "created", "created_epoch", "name", "state", "cid_name", "cid_num",
                "ip_addr", "dest", "application", "application_data", "dialplan", "context", "read_codec",
                "read_rate", "read_bit_rate", "write_codec", "write_rate", "write_bit_rate", "secure",
                "hostname", "presence_id", "presence_data", "accountcode", "callstate", "callee_name",
                "callee_num", "callee_direction", "call_uuid", "sent_callee_name", "sent_callee_num",
                "initial_cid_name", "initial_cid_num", "initial_ip_addr", "initial_dest", "initial_dialplan",
                "initial_context"]
CALL_KEYS = ["uuid", "direction", "created", "created_epoch", "name", "state", "cid_name", "cid_num", "ip_addr",
             "dest", "presence_id", "presence_data", "accountcode", "callstate", "callee_name", "callee_num",
             "callee_direction", "call_uuid", "hostname", "sent_callee_name", "sent_callee_num"]
B_KEYS = ["uuid", "direction", "created", "created_epoch", "name", "state", "cid_name", "cid_num", "ip_addr",
          "dest", "presence_id", "presence_data", "accountcode", "callstate", "callee_name", "callee_num",
          "callee_direction", "sent_callee_name", "sent_callee_num"]


def run_api(sim: FreeSwitchSim, text: str, listener: Listener | None = None) -> str:
    cmd, _, arg = text.strip().partition(" ")
    arg = arg.strip()
    func = COMMANDS.get(cmd)
    if func is None:
        return "-ERR %s Command not found!\n" % cmd
    return func(sim, arg)


def _ch(sim: FreeSwitchSim, uuid: str) -> Channel | None:
    ch = sim.channels.get(uuid)
    return ch if ch is not None and not ch.hangup_done.is_set() else None


def api_status(sim: FreeSwitchSim, arg: str) -> str:
    up = sim.clock.now()
    days, rem = divmod(int(up), 86400)
    hours, rem = divmod(rem, 3600)
    mins, secs = divmod(rem, 60)
    ms = int((up - int(up)) * 1000)
    n = sim.session_count
    live = len([c for c in sim.channels.values() if not c.hangup_done.is_set()])
    return ("UP 0 years, %d days, %d hours, %d minutes, %d seconds, %d milliseconds, 0 microseconds\n"
            "FreeSWITCH (Version 1.10.12-release git a88d069 2024-08-02 21:02:27Z 64bit) is ready\n"
            "%d session(s) since startup\n%d session(s) - peak %d, last 5min %d \n"
            "0 session(s) per Sec out of max 30, peak 0, last 5min 0 \n1000 session(s) max\n"
            "min idle cpu 0.00/99.93\nCurrent Stack Size/Max 240K/8192K\n"
            % (days, hours, mins, secs, ms, n, live, n, n))


def api_originate(sim: FreeSwitchSim, arg: str) -> str:
    from simulator.originate import originate

    parts = arg.split()
    if len(parts) < 2:
        return ORIGINATE_USAGE
    url, target = parts[0], parts[1]
    dialplan = parts[2] if len(parts) > 2 else "XML"
    context = parts[3] if len(parts) > 3 else "default"
    try:
        groups = dialstring.parse(url)
    except ValueError:
        return "-ERR INVALID_NUMBER_FORMAT\n"
    if not groups:
        return "-ERR INVALID_NUMBER_FORMAT\n"
    if len(parts) > 6:
        for group in groups:
            for spec in group:
                spec.vars.setdefault("originate_timeout", parts[6])
    result = originate(sim, groups, None, default_timeout=60)
    if result.winner is None or result.winner.ch is None:
        # The failed legs report (HANGUP_COMPLETE) before the result (inbound_08).
        # (a leg cancelled on timeout reports after the result instead: inbound_09)
        for leg in result.legs:
            if leg.ch is not None and leg.ch.variables.get("sip_hangup_disposition") == "recv_refuse":
                leg.ch.hangup_done.wait(timeout=5.0)
        return "-ERR %s\n" % result.cause
    ch = result.winner.ch
    if target.startswith("&"):
        app_name, _, app_arg = target[1:].partition("(")
        sim.adopt(ch, [(app_name, app_arg.rstrip(")"))])
    else:
        sim.adopt(ch, None, (target, dialplan, context))
    return "+OK %s\n" % ch.uuid


def api_uuid_kill(sim: FreeSwitchSim, arg: str) -> str:
    parts = arg.split()
    ch = _ch(sim, parts[0]) if parts else None
    if ch is None:
        return NO_CHANNEL
    ch.hangup(parts[1].upper() if len(parts) > 1 else "NORMAL_CLEARING", disposition="send_bye")
    return "+OK\n"


def api_uuid_break(sim: FreeSwitchSim, arg: str) -> str:
    parts = arg.split()
    ch = _ch(sim, parts[0]) if parts else None
    if ch is None:
        return NO_CHANNEL
    if len(parts) > 1 and parts[1] == "all":
        ch.exec_queue.clear()  # 'all' also flushes queued messages (mod_commands)
    ch.break_pending = True
    ch.signal()
    return "+OK\n"


def api_uuid_bridge(sim: FreeSwitchSim, arg: str) -> str:
    from simulator.bridge import uuid_bridge

    parts = arg.split()
    if len(parts) < 2:
        return "-USAGE: <uuid> <other_uuid>\n"
    a, b = _ch(sim, parts[0]), _ch(sim, parts[1])
    if a is None or b is None or not a.up or not b.up:
        return "-ERR Invalid uuid\n"
    uuid_bridge(a, b)
    return "+OK %s\n" % b.uuid


def api_uuid_transfer(sim: FreeSwitchSim, arg: str) -> str:
    parts = arg.split()
    ch = _ch(sim, parts[0]) if parts else None
    if ch is None:
        return NO_CHANNEL
    args = parts[1:]
    if args and args[0] in ("-bleg", "-both"):
        args = args[1:]
    if not args:
        return "-USAGE: <uuid> [-bleg|-both] <dest-exten> [<dialplan>] [<context>]\n"
    ch.interrupt = ("transfer", (args[0], args[1] if len(args) > 1 else "XML",
                                 args[2] if len(args) > 2 else ch.profile["context"]))
    ch.signal()
    return "+OK\n"


def api_uuid_getvar(sim: FreeSwitchSim, arg: str) -> str:
    parts = arg.split()
    ch = _ch(sim, parts[0]) if parts else None
    if ch is None or len(parts) < 2:
        return NO_CHANNEL
    return ch.get_var(parts[1]) or "_undef_"


def api_uuid_setvar(sim: FreeSwitchSim, arg: str) -> str:
    parts = arg.split(None, 2)
    ch = _ch(sim, parts[0]) if parts else None
    if ch is None or len(parts) < 2:
        return NO_CHANNEL
    ch.set_var(parts[1], parts[2] if len(parts) > 2 else None)
    return "+OK\n"


def api_uuid_broadcast(sim: FreeSwitchSim, arg: str) -> str:
    parts = arg.split()
    ch = _ch(sim, parts[0]) if parts else None
    if ch is None or len(parts) < 2:
        return NO_CHANNEL
    path = parts[1]
    app_name, app_arg = ("playback", path)
    if "::" in path:
        app_name, _, app_arg = path.partition("::")
    ch.exec_queue.append((app_name, app_arg, None, 0))
    ch.signal()
    return "+OK Message sent\n"


def api_uuid_recv_dtmf(sim: FreeSwitchSim, arg: str) -> str:
    parts = arg.split()
    ch = _ch(sim, parts[0]) if parts else None
    if ch is None or len(parts) < 2:
        return NO_CHANNEL

    def deliver() -> None:
        sim.clock.sleep(0.02)
        for digit in parts[1]:
            ch.receive_dtmf(digit, 2000, "APP")

    sim.spawn(deliver)
    return "+OK %s received DTMF %s.\n" % (ch.uuid, parts[1])


def api_uuid_exists(sim: FreeSwitchSim, arg: str) -> str:
    return "true" if _ch(sim, arg.strip()) is not None else "false"


def api_hupall(sim: FreeSwitchSim, arg: str) -> str:
    cause = (arg.split() or ["MANAGER_REQUEST"])[0].upper()
    for ch in list(sim.channels.values()):
        if ch.up:
            ch.hangup(cause)
    return "+OK hangup all channels with cause %s\n" % cause


def api_global_getvar(sim: FreeSwitchSim, arg: str) -> str:
    return sim.global_vars.get(arg.strip(), "")


def api_global_setvar(sim: FreeSwitchSim, arg: str) -> str:
    name, _, value = arg.partition("=")
    sim.global_vars[name.strip()] = value.strip()
    return "+OK\n"


def api_sofia_contact(sim: FreeSwitchSim, arg: str) -> str:
    key = arg.split("/")[-1].strip()
    ep = sim.directory_users.get(key)
    if ep is None or not ep.registered:
        return "error/user_not_registered"
    return "sofia/internal/sip:%s@%s" % (ep.user, ep.contact_host)


def api_sofia(sim: FreeSwitchSim, arg: str) -> str:
    if arg.startswith("status profile") and arg.endswith("reg"):
        regs = [ep for ep in sim.directory_users.values() if ep.registered]
        lines = ["", "Registrations:", "=" * 97]
        for ep in regs:
            lines += ["Call-ID:    \t%s@sim" % ep.key, "User:       \t%s" % ep.key,
                      'Contact:    \t"" <sip:%s@%s>' % (ep.user, ep.contact_host),
                      "Agent:      \tsim", "Status:     \tRegistered(UDP)(unknown) EXP(%s) EXPSECS(120)"
                      % fs_date_local(sim.clock.epoch() + 120), "Ping-Status:\tReachable", "Ping-Time:\t0.00",
                      "Host:       \t%s" % sim.identity.hostname, "IP:         \t127.0.0.1",
                      "Port:       \t%s" % ep.contact_host.split(":")[1], "Auth-User:  \t%s" % ep.user,
                      "Auth-Realm: \t%s" % ep.domain, "MWI-Account:\t%s" % ep.key, ""]
        lines += ["Total items returned: %d" % len(regs), "=" * 97, ""]
        return "\n".join(lines)
    return ("                     Name\t   Type\t                                      Data\tState\n" + "=" * 97 + "\n"
            "                 internal\tprofile\t              sip:mod_sofia@%s:5060\tRUNNING (0)\n" % sim.fs_host
            + "=" * 97 + "\n1 profile 0 aliases\n")


def _chan_row(sim: FreeSwitchSim, ch: Channel) -> dict[str, str]:
    created = ch.times["created"] / 1e6
    p = ch.profile
    app_name, app_data = ch.last_app or ("", "")
    media = ch.media
    return {
        "uuid": ch.uuid, "direction": ch.direction, "created": fs_date_local(created),
        "created_epoch": str(int(created)), "name": ch.name, "state": ch.running_state,
        "cid_name": p["caller_id_name"], "cid_num": p["caller_id_number"], "ip_addr": p["network_addr"],
        "dest": p["destination_number"], "application": app_name, "application_data": app_data,
        "dialplan": p["dialplan"] if ch.hit_dialplan else "", "context": p["context"],
        "read_codec": "PCMU" if media else "", "read_rate": "8000" if media else "",
        "read_bit_rate": "64000" if media else "", "write_codec": "PCMU" if media else "",
        "write_rate": "8000" if media else "", "write_bit_rate": "64000" if media else "", "secure": "",
        "hostname": sim.identity.hostname, "presence_id": ch.variables.get("presence_id", ""),
        "presence_data": "", "accountcode": "", "callstate": ch.callstate, "callee_name": p["callee_id_name"],
        "callee_num": p["callee_id_number"], "callee_direction": "SEND" if ch.other else "RECV",
        "call_uuid": ch.variables.get("call_uuid", ch.uuid), "sent_callee_name": "", "sent_callee_num": "",
        "initial_cid_name": p["caller_id_name"], "initial_cid_num": p["caller_id_number"],
        "initial_ip_addr": p["network_addr"], "initial_dest": p["destination_number"],
        "initial_dialplan": p["dialplan"] if ch.hit_dialplan else "", "initial_context": p["context"],
    }


def _render(rows: list[dict[str, str]], keys: list[str], as_json: bool) -> str:
    if as_json:
        if not rows:
            return '{"row_count": 0}\n'
        return json.dumps({"row_count": len(rows), "rows": rows}, separators=(",", ":"), ensure_ascii=False)
    lines = [",".join(keys)] + [",".join(r[k] for k in keys) for r in rows]
    return "\n".join(lines) + "\n\n%d total.\n" % len(rows)


def api_show(sim: FreeSwitchSim, arg: str) -> str:
    words = arg.split()
    as_json = words[-2:] == ["as", "json"]
    live = [c for c in sim.channels.values() if not c.hangup_done.is_set()]
    if words and words[0] == "channels":
        return _render([{k: _chan_row(sim, c)[k] for k in CHANNEL_KEYS} for c in live], CHANNEL_KEYS, as_json)
    if words and words[0] == "calls":
        rows, seen = [], set()
        for c in live:
            if c.uuid in seen:
                continue
            base = _chan_row(sim, c)
            row = {k: base[k] for k in CALL_KEYS}
            other = c.other if c.other_type == "originatee" and c.other in live else None
            ob = _chan_row(sim, other) if other is not None else None
            for k in B_KEYS:
                row["b_" + k] = ob[k] if ob else ""
            row["call_created_epoch"] = str(c.times["bridged"] // 1_000_000) if ob else ""
            if other is not None:
                seen.add(other.uuid)
            seen.add(c.uuid)
            rows.append(row)
        keys = CALL_KEYS + ["b_" + k for k in B_KEYS] + ["call_created_epoch"]
        return _render(rows, keys, as_json)
    return "-USAGE: codec|endpoint|application|api|dialplan|file|timer|calls [count]|channels [count|like <match string>]\n"


def api_xml_flush_cache(sim: FreeSwitchSim, arg: str) -> str:
    """mod_commands xml_flush_function: ``id USER DOMAIN`` clears one user's cached
    directory entry, no argument the whole cache; ``+OK cleared N entr(y|ies)``. The
    simulator caches nothing; it counts the calls (``sim.directory_flushes``)."""
    sim.directory_flushes.append(arg)
    return "+OK cleared 0 entries\n"


COMMANDS = {
    "xml_flush_cache": api_xml_flush_cache,
    "status": api_status, "version": lambda sim, arg: VERSION, "originate": api_originate,
    "uuid_kill": api_uuid_kill, "uuid_break": api_uuid_break, "uuid_bridge": api_uuid_bridge,
    "uuid_transfer": api_uuid_transfer, "uuid_getvar": api_uuid_getvar, "uuid_setvar": api_uuid_setvar,
    "uuid_broadcast": api_uuid_broadcast, "uuid_recv_dtmf": api_uuid_recv_dtmf, "uuid_exists": api_uuid_exists,
    "hupall": api_hupall, "global_getvar": api_global_getvar, "global_setvar": api_global_setvar,
    "sofia_contact": api_sofia_contact, "sofia": api_sofia, "show": api_show,
}
