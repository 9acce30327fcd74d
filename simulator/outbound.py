"""The ``socket`` application: FreeSWITCH connecting to an outbound-socket server.

Behaviour (mod_event_socket.c 1.10.12 and the transcripts):

* Nothing is sent until the server says ``connect``; the reply is the CHANNEL_DATA
  headers URL-encoded, no Content-Length, ``Reply-Text: %2BOK%0A``, ``Socket-Mode:
  async``, ``Control: full``. The app parks the channel (CHANNEL_PARK) and runs the
  server's sendmsg executes nested in the park.
* ``myevents [plain|json]``: from then on only the controlled channel's
  CHANNEL_ANSWER/APPLICATION/BRIDGE/CREATE/DATA/DESTROY/EXECUTE/EXECUTE_COMPLETE/HANGUP/
  HANGUP_COMPLETE/ORIGINATE/PARK/PROGRESS/PROGRESS_MEDIA/STATE/UNBRIDGE/UNPARK/UUID and
  DTMF. Events the channel fired after the socket connected but before ``myevents``
  are delivered after its reply (they have lower Event-Sequence numbers, as recorded).
* ``linger``: on hangup a ``linger`` notice (Linger-Time -1, or N) and the socket stays
  open; ``linger N`` closes N s later after a ``disconnect`` notice; ``exit`` -> ``+OK
  bye``, the disconnect notice with the goodbye body, close. Without linger, hangup ->
  disconnect notice and close at once (later events are lost).
  The linger notice comes right after CHANNEL_HANGUP when the far end hung up during a
  bridge or while only the socket app ran (P01, builtin_uac), else after
  CHANNEL_HANGUP_COMPLETE (P01b/c, P04, P04b); clients must accept both.
* The server closing the socket: ~10 ms later CHANNEL_UNPARK and EXECUTE_COMPLETE socket,
  and the dialplan continues with the next action (P08a/b/d); an app running then (a
  bridge) is not interrupted: the socket app ends after it.
* Connection refused: EXECUTE_COMPLETE socket at once and the dialplan continues (P08c).
"""
from __future__ import annotations

import logging
import uuid as uuidlib
from typing import TYPE_CHECKING

from gevent import socket as gsocket

from orchestrator.esl import wire_fs
from simulator.execution import idle
from simulator.listener import Listener

if TYPE_CHECKING:
    from simulator.channel import Channel
    from simulator.events import SimEvent

log = logging.getLogger(__name__)

MYEVENTS = frozenset({
    "CHANNEL_ANSWER", "CHANNEL_APPLICATION", "CHANNEL_BRIDGE", "CHANNEL_CREATE", "CHANNEL_DATA",
    "CHANNEL_DESTROY", "CHANNEL_EXECUTE", "CHANNEL_EXECUTE_COMPLETE", "CHANNEL_HANGUP",
    "CHANNEL_HANGUP_COMPLETE", "CHANNEL_ORIGINATE", "CHANNEL_PARK", "CHANNEL_PROGRESS",
    "CHANNEL_PROGRESS_MEDIA", "CHANNEL_STATE", "CHANNEL_UNBRIDGE", "CHANNEL_UNPARK", "CHANNEL_UUID",
    "DETECTED_SPEECH", "DTMF",
})
CLOSE_GRACE = 0.01  # simulated seconds between the server's close and the socket app ending


class OutboundSession(Listener):
    kind = "outbound"

    def __init__(self, ch: Channel, sock: gsocket.socket) -> None:
        super().__init__(ch.sim, sock)
        self.ch = ch
        self.connected = False
        self.myevents = False
        self.buffer: list[SimEvent] = []
        self.linger: int | None = None
        self.peer_gone = False
        self.notice_sent = False

    # ------------------------------------------------------------ events
    def offer(self, ev: SimEvent) -> None:
        if self.closed.is_set():
            return
        mine = ev.channel_uuid == self.ch.uuid
        if mine and ev.name in MYEVENTS and not self.myevents and not self.notice_sent:
            self.buffer.append(ev)
        elif self.myevents and mine and (ev.name in MYEVENTS or ev.name in self.names or self.all_events):
            self.send(ev.encode(self.fmt))
        elif not self.myevents and self.wants(ev):
            self.send(ev.encode(self.fmt))
        if mine:
            self._after_event(ev)

    def _after_event(self, ev: SimEvent) -> None:
        if self.notice_sent:
            return
        ch = self.ch
        if ev.name == "CHANNEL_HANGUP":
            if self.linger is None:
                self.notice_sent = True
                self.send(wire_fs.encode_disconnect_notice(ch.uuid, "disconnect"))
                self.close()
            elif ch.hangup_origin == "remote" and ch.current_app in ("bridge", "socket", None):
                self._linger_notice()
        elif ev.name == "CHANNEL_HANGUP_COMPLETE" and self.linger is not None:
            self._linger_notice()

    def _linger_notice(self) -> None:
        self.notice_sent = True
        self.send(wire_fs.encode_disconnect_notice(self.ch.uuid, "linger", self.ch.name, self.linger))
        if self.linger is not None and self.linger >= 0:
            self.sim.spawn(self._linger_close, self.linger)

    def _linger_close(self, seconds: int) -> None:
        self.sim.clock.sleep(seconds)
        if not self.closed.is_set():
            self.send(wire_fs.encode_disconnect_notice(self.ch.uuid, "disconnect"))
            self.close()

    # ------------------------------------------------------------ lifecycle
    def on_peer_closed(self) -> None:
        self.peer_gone = True
        self.ch.signal()
        super().on_peer_closed()

    def on_closed(self) -> None:
        self.peer_gone = True
        self.ch.signal()

    def exit(self) -> None:
        self.send(wire_fs.encode_disconnect_notice(self.ch.uuid, "disconnect"))
        self.close()

    # ------------------------------------------------------------ commands
    def handle_more(self, word: str, rest: str, cmd: wire_fs.Command) -> bool:
        ch = self.ch
        if word == "connect":
            self.send(wire_fs.encode_connect_reply(self.sim.channel_data(ch)))
            self.connected = True
            ch.signal()
        elif word == "myevents":
            args = rest.split()
            self.fmt = "json" if args and args[0].lower() == "json" else "plain"
            self.myevents = True
            self.reply("+OK Events Enabled")
            pending, self.buffer = self.buffer, []
            for ev in pending:
                self.send(ev.encode(self.fmt))
        elif word == "linger":
            self.linger = int(rest) if rest.strip().lstrip("-").isdigit() else -1
            self.reply("+OK will linger %d seconds" % self.linger if self.linger > 0 else "+OK will linger")
        elif word == "nolinger":
            self.linger = None
            self.reply("+OK will not linger")
        elif word == "getvar":
            self.reply(ch.get_var(rest.strip()) or "")
        elif word == "resume":
            ch.set_var("socket_resume", "true")
            self.reply("+OK")
        elif word == "sendmsg":
            self._sendmsg(rest.strip(), cmd)
        elif word in ("divert_events", "unicast", "nomedia"):
            self.reply("+OK")
        else:
            return False
        return True

    def _sendmsg(self, target: str, cmd: wire_fs.Command) -> None:
        ch = self.sim.channels.get(target) if target else self.ch
        self.reply("+OK")
        if ch is None or not ch.up:
            return
        command = (cmd.get("call-command") or "").lower()
        if command == "execute":
            name = cmd.get("execute-app-name") or ""
            arg = cmd.get("execute-app-arg")
            if arg is None and cmd.body:
                arg = cmd.body.decode("utf-8", "replace")
            loops = int(cmd.get("loops") or 0) if (cmd.get("loops") or "").isdigit() else 0
            ch.exec_queue.append((name, arg or "", cmd.get("Event-UUID") or str(uuidlib.uuid4()), loops))
            ch.signal()
        elif command == "hangup":
            cause = (cmd.get("hangup-cause") or "NORMAL_CLEARING").upper()

            def later() -> None:
                self.sim.clock.sleep(0.02)
                ch.hangup(cause, disposition="send_bye" if ch.times["answered"] else "send_refuse")

            self.sim.spawn(later)


def socket_app(ch: Channel, data: str) -> None:
    sim = ch.sim
    args = data.split()
    if not args:
        return
    host, _, port = args[0].rpartition(":")
    ch.set_var("socket_host", host)
    try:
        sock = gsocket.create_connection((host or "127.0.0.1", int(port)), timeout=2.0)
    except (OSError, ValueError) as exc:
        log.info("[%s] socket %s: %s", ch.uuid, args[0], exc)
        return
    sock.settimeout(None)
    session = OutboundSession(ch, sock)
    ch.socket_session = session
    sim.sessions.append(session)
    session.start()
    # mod_event_socket parks the channel while the server drives it.
    idle(ch, 30.0, nested=False, breakable=False, stop=lambda: session.connected or session.peer_gone)
    if not ch.up or session.peer_gone:
        if session.peer_gone:
            sim.clock.sleep(CLOSE_GRACE)
        return
    sim.clock.sleep(0.02)
    ch.fire("CHANNEL_PARK")
    idle(ch, None, breakable=False, stop=lambda: session.peer_gone)
    if session.peer_gone and ch.up:
        sim.clock.sleep(CLOSE_GRACE)
    ch.fire("CHANNEL_UNPARK")
