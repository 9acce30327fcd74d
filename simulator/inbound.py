"""The inbound event socket (mod_event_socket listening on 127.0.0.1:8021).

``Content-Type: auth/request`` on connect; ``auth <password>`` -> ``+OK accepted`` or
``-ERR invalid`` followed by a disconnect notice and close (inbound_02). Before auth
any other command is answered with ``auth/request`` again. ``userauth`` is not
supported. ``myevents <uuid> [plain|json]`` limits the
events to one channel; ``linger`` is accepted for compatibility.
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from gevent import socket as gsocket
from gevent.server import StreamServer

from orchestrator.esl import wire_fs
from simulator.listener import Listener

if TYPE_CHECKING:
    from simulator.server import FreeSwitchSim

log = logging.getLogger(__name__)


class InboundConnection(Listener):
    kind = "inbound"

    def __init__(self, sim: FreeSwitchSim, sock: gsocket.socket, password: str) -> None:
        super().__init__(sim, sock)
        self.password = password
        self.authed = False

    def start(self) -> None:
        self.send(wire_fs.encode_auth_request())
        super().start()

    def handle(self, cmd: wire_fs.Command) -> None:
        if not self.authed:
            word, _, rest = cmd.line.partition(" ")
            if word.lower() == "auth":
                if rest.strip() == self.password:
                    self.authed = True
                    self.reply("+OK accepted")
                else:
                    self.reply("-ERR invalid")
                    self.exit()
            elif word.lower() == "exit":
                self.reply("+OK bye")
                self.exit()
            else:
                self.send(wire_fs.encode_auth_request())
            return
        super().handle(cmd)

    def handle_more(self, word: str, rest: str, cmd: wire_fs.Command) -> bool:
        if word == "myevents":
            args = rest.split()
            if not args:
                self.reply("-ERR invalid uuid")
                return True
            self.uuid_filter = args[0]
            self.fmt = "json" if len(args) > 1 and args[1].lower() == "json" else "plain"
            self.all_events = True
            self.reply("+OK Events Enabled")
            return True
        if word in ("linger", "nolinger"):
            self.reply("+OK will linger" if word == "linger" else "+OK will not linger")
            return True
        if word == "sendmsg":
            ch = self.sim.channels.get(rest.strip())
            self.reply("+OK" if ch is not None else "-ERR invalid session id [%s]" % rest.strip())
            if ch is not None and (cmd.get("call-command") or "").lower() == "execute":
                ch.exec_queue.append((cmd.get("execute-app-name") or "", cmd.get("execute-app-arg") or "",
                                      cmd.get("Event-UUID"), 0))
                ch.signal()
            elif ch is not None and (cmd.get("call-command") or "").lower() == "hangup":
                ch.hangup((cmd.get("hangup-cause") or "NORMAL_CLEARING").upper())
            return True
        return False


class InboundServer:
    def __init__(self, sim: FreeSwitchSim, host: str, port: int, password: str) -> None:
        self.sim = sim
        self.password = password
        self.server = StreamServer((host, port), self._accept)
        self.connections: list[InboundConnection] = []

    @property
    def port(self) -> int:
        return int(self.server.server_port)

    def start(self) -> None:
        self.server.start()

    def stop(self) -> None:
        self.server.stop(timeout=1)
        for conn in list(self.connections):
            conn.close()

    def _accept(self, sock: gsocket.socket, addr: tuple[str, int]) -> None:
        conn = InboundConnection(self.sim, sock, self.password)
        self.connections.append(conn)
        conn.start()
        # StreamServer closes the socket when this handler returns: wait for the end.
        while not conn.closed.wait(timeout=60.0):
            pass
