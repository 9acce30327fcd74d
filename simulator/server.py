"""FreeSwitchSim: the facade tests and the CLI use, and SimCall, a scripted caller."""
from __future__ import annotations

import itertools
import logging
import uuid as uuidlib
from pathlib import Path
from typing import Any, Callable, Iterable

import gevent
from gevent.pool import Group

from simulator import apps  # noqa: F401  (registers the applications)
from simulator.apps import tone_length
from simulator.callers import SimCall
from simulator.channel import Channel
from simulator.clock import SimClock
from simulator.dialplan import Dialplan, builtin_dialplan, hunt, load_conf
from simulator.endpoints import Behavior, Directory, Endpoint
from simulator.events import EventBus, Identity
from simulator.execution import execute, run_session
from simulator.inbound import InboundServer
from simulator.outbound import OutboundSession
from simulator.profiles import media_vars, sofia_inbound_vars

log = logging.getLogger(__name__)
# Silence the file_string format plays before its first file: 250 ms (next_file sets
# context->samples = samplerate / 1000 * 250 for index 0; seen in mod_file_string.c, which
# became the file_string interface of mod_dptools).
FILE_STRING_LEAD = 0.25


class FreeSwitchSim:
    """A FreeSWITCH 1.10.12 stand-in: inbound ESL server, XML dialplan, outbound sockets."""

    def __init__(self, conf_dir: str | Path | None = None, globals: dict[str, str] | None = None,
                 esl_password: str = "ClueCon", time_scale: float = 0.05, hostname: str = "sim",
                 esl_port: int = 0, esl_host: str = "127.0.0.1", folders: Iterable[str] = ()) -> None:
        self.clock = SimClock(time_scale)
        self.identity = Identity(hostname=hostname)
        self.bus = EventBus(self.clock, self.identity)
        self.dir = Directory()
        self.channels: dict[str, Channel] = {}
        self.sessions: list[OutboundSession] = []
        self.leg_endpoints: dict[str, str] = {}
        self.calls: dict[str, SimCall] = {}
        self.log_lines: list[tuple[str, str]] = []
        self.sound_lengths: dict[str, float] = {}
        self.default_sound_length = 2.0
        self.fax_duration = 6.0
        self.fs_host = "127.0.0.1"
        self._orchestrator_address = "127.0.0.1:8084"
        self._group = Group()
        self._session_ids = itertools.count(1)
        self._ports = itertools.count(5180)
        self.session_count = 0
        overrides = dict(globals or {})
        overrides.setdefault("core_uuid", self.identity.core_uuid)
        overrides.setdefault("hostname", hostname)
        self.dialplan: Dialplan
        if conf_dir is not None:
            self.global_vars, self.dialplan = load_conf(conf_dir, overrides)
        else:
            self.global_vars = {"domain": "127.0.0.1", **overrides}
            self.dialplan = builtin_dialplan(lambda: self._orchestrator_address)
        self.default_domain = self.global_vars.get("domain", "127.0.0.1")
        self.esl_password = esl_password
        self._inbound = InboundServer(self, esl_host, esl_port, esl_password)
        # Folders that exist on the simulated FreeSWITCH host. FreeSWITCH creates its own
        # directories at start (switch_core_init: switch_dir_make_recursive of
        # recordings_dir, temp_dir ...); ``record`` and ``rxfax`` create none, so a file
        # in any other folder fails as it does on a real FreeSWITCH (apps.py).
        self.directory_flushes: list[str] = []  # arguments of each api xml_flush_cache
        self.folders: set[str] = {_folder(self.global_vars.get("recordings_dir", "/usr/local/freeswitch/recordings")),
                                  _folder(self.global_vars.get("temp_dir", "/tmp"))}
        self.folders.update(_folder(f) for f in folders)

    # ------------------------------------------------------------ lifecycle
    def start(self) -> FreeSwitchSim:
        self._inbound.start()
        return self

    def stop(self) -> None:
        self._inbound.stop()
        for session in list(self.sessions):
            session.close()
        for ch in list(self.channels.values()):
            if ch.up:
                ch.hangup("SYSTEM_SHUTDOWN")
        self._group.kill(timeout=2)

    def __enter__(self) -> FreeSwitchSim:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def esl_port(self) -> int:
        return self._inbound.port

    @property
    def orchestrator_address(self) -> str:
        return self._orchestrator_address

    @orchestrator_address.setter
    def orchestrator_address(self, value: str) -> None:
        self._orchestrator_address = value

    def now(self) -> float:
        return self.clock.now()

    def spawn(self, func: Callable[..., Any], *args: Any) -> gevent.Greenlet:
        return self._group.spawn(func, *args)

    def add_folder(self, path: str) -> None:
        """Make a folder exist on the simulated host (like ``install -d`` there)."""
        self.folders.add(_folder(path))

    def folder_exists(self, path: str) -> bool:
        return _folder(path) in self.folders

    # ------------------------------------------------------------ endpoints
    def add_user(self, user: str, domain: str, registered: bool = True, behavior: Behavior | None = None) -> Endpoint:
        return self.dir.add_user(user, domain, registered, behavior)

    def add_external(self, number: str, behavior: Behavior | None = None) -> Endpoint:
        return self.dir.add_external(number, behavior)

    @property
    def directory(self) -> dict[str, Endpoint]:
        """Known users by 'user@domain' (unknown user in a known domain -> SUBSCRIBER_ABSENT)."""
        return self.dir.users

    directory_users = directory

    def endpoint(self, key: str) -> Endpoint:
        ep = self.dir.users.get(key) or self.dir.externals.get(key)
        if ep is None:
            raise KeyError("no endpoint %r (add it with add_user / add_external)" % key)
        return ep

    # ------------------------------------------------------------ callers
    def place_call(self, destination: str, caller_id: str = "+79161234567", caller_name: str = "",
                   context: str = "public", domain: str | None = None, variables: dict[str, str] | None = None,
                   dtmf: list[tuple[float, str]] | None = None, hangup_after: float | None = None,
                   dtmf_after_answer: bool = False) -> SimCall:
        """A SIP call into the dialplan, like a sofia inbound leg from ``caller_id``."""
        port = next(self._ports)
        host = "127.0.0.1"
        uuid = str(uuidlib.uuid4())
        name = "sofia/internal/%s@%s:%d" % (caller_id, host, port)
        profile = {"username": caller_id, "caller_id_name": caller_name or caller_id, "caller_id_number": caller_id,
                   "orig_caller_id_name": caller_name or caller_id, "orig_caller_id_number": caller_id,
                   "network_addr": host, "ani": caller_id, "destination_number": destination, "context": context}
        ch = Channel(self, uuid, name, "inbound", profile)
        self.register(ch)
        ch.set_vars(sofia_inbound_vars(ch, caller_id, host, port, destination, self.fs_host))
        if domain:
            # A registered phone's call: sofia_reg.c sofia_reg_parse_auth() puts user_name /
            # domain_name (and the directory user's variables) on the digest-authenticated
            # channel; sofia sets presence_id from the From user@host (transcript P01).
            ch.set_vars([("domain_name", domain), ("user_name", caller_id), ("sip_from_user", caller_id),
                          ("sip_from_host", domain), ("user_context", context),
                          ("presence_id", "%s@%s" % (caller_id, domain))])
        for key, value in (variables or {}).items():
            ch.set_var(key, value)
        call = SimCall(self, ch, dtmf or [], hangup_after, dtmf_after_answer)
        self.calls[uuid] = call
        self.spawn(self._run_inbound, ch)
        call.start()
        return call

    def _run_inbound(self, ch: Channel) -> None:
        ch.set_running_state("CS_NEW")
        ch.set_running_state("CS_INIT")
        ch.fire("CHANNEL_CREATE")
        ch.set_callstate("RINGING")
        ch.set_running_state("CS_ROUTING")
        run_session(ch, route_first=False)

    # ------------------------------------------------------------ used by the engine
    def next_session_id(self) -> int:
        self.session_count += 1
        return next(self._session_ids)

    def register(self, ch: Channel) -> None:
        self.channels[ch.uuid] = ch

    def media_up(self, ch: Channel) -> None:
        ch.media = True
        if ch.direction == "inbound" and ch.name.startswith("sofia/"):
            ch.set_vars(media_vars(ch, ch.profile["network_addr"] or "127.0.0.1",
                                   int(ch.variables.get("sip_network_port", "5060")) + 11000, self.fs_host))
            ch.set_var("endpoint_disposition", "ANSWER")

    def route(self, ch: Channel, announce: bool = True) -> list[tuple[str, str]] | None:
        if announce:
            ch.set_running_state("CS_ROUTING")
        return hunt(self.dialplan, ch, _run_inline)

    def hunt_extension(self, ch: Channel, ext: str, context: str) -> list[tuple[str, str]] | None:
        saved = ch.profile["destination_number"], ch.profile["context"]
        ch.profile["destination_number"], ch.profile["context"] = ext, context
        try:
            return hunt(self.dialplan, ch, _run_inline)
        finally:
            ch.profile["destination_number"], ch.profile["context"] = saved

    def apply_transfer(self, ch: Channel, dest: str, dialplan: str, context: str) -> None:
        old = ch.profile["destination_number"]
        ch.profile.update(destination_number=dest, context=context, dialplan=dialplan or "XML",
                          profile_index=str(int(ch.profile.get("profile_index") or "1") + 1),
                          transfer_source="%d:%s:bl_xfer:%s/%s/%s" % (int(self.clock.epoch()), ch.uuid, dest,
                                                                     context, dialplan or "XML"))
        ch.times["transfer"] = self.clock.usec()
        ch.set_var("transfer_history", "%d:%s:bl_xfer:%s/%s/%s" % (int(self.clock.epoch()), ch.uuid, dest,
                                                                   context, dialplan or "XML"))
        ch.set_var("max_forwards", ch.variables.get("max_forwards"))
        log.debug("[%s] transfer %s -> %s@%s", ch.uuid, old, dest, context)

    def adopt(self, ch: Channel, actions: list[tuple[str, str]] | None,
              transfer: tuple[str, str, str] | None = None) -> None:
        """An originated leg that answered starts its own session (&app() or extension)."""
        ch.adopted = True
        ch.signal()
        # switch_channel_flip_cid(): an originated leg that answers shows the far end as
        # its caller from now on (inbound_05 / P09: cid 'Outbound Call' / <dest>).
        p = ch.profile
        old_name, old_num = p["caller_id_name"], p["caller_id_number"]
        p.update(caller_id_name=p["callee_id_name"], caller_id_number=p["callee_id_number"],
                 callee_id_name=old_name, callee_id_number=old_num, logical_direction="inbound")
        ch.hit_dialplan = True
        ch.set_var("channel_cid_flipped", "true")

        def run() -> None:
            self.clock.sleep(0.02)
            if transfer is not None:
                ch.profile.update(destination_number=transfer[0], dialplan=transfer[1], context=transfer[2])
                ch.hit_dialplan = True
            run_session(ch, first=actions)

        self.spawn(run)

    def start_loopback_peer(self, a: Channel, target: str) -> None:
        parts = target.split("/")
        ext = parts[1] if len(parts) > 1 else ""
        context = parts[2] if len(parts) > 2 else "default"
        profile = {"caller_id_name": a.profile["caller_id_name"], "caller_id_number": a.profile["caller_id_number"] or "0000000000",
                   "orig_caller_id_number": a.profile["caller_id_number"] or "0000000000", "ani": a.profile["ani"] or "0000000000",
                   "destination_number": ext, "context": context, "source": "mod_loopback", "dialplan": "xml",
                   "callee_id_name": "Outbound Call", "callee_id_number": context, "username": ""}
        b = Channel(self, str(uuidlib.uuid4()), "loopback/%s-b" % ext, "inbound", profile)
        for ch in (a, b):
            ch.codec = ("L16", "8000", "128000")
            ch.media = True  # loopback channels have (L16) media from the start
        self.register(b)
        b.set_vars([("direction", "inbound"), ("uuid", b.uuid), ("session_id", str(b.session_id)),
                    ("channel_name", b.name), ("read_codec", "L16"), ("read_rate", "8000"),
                    ("write_codec", "L16"), ("write_rate", "8000"), ("other_loopback_leg_uuid", a.uuid),
                    ("loopback_leg", "B"), ("call_uuid", b.uuid), ("is_loopback", "1")])
        a.set_vars([("other_loopback_leg_uuid", b.uuid), ("loopback_leg", "A"), ("is_loopback", "1")])
        b.on_answer.append(lambda c: a.answer())
        b.on_hangup.append(lambda c: _hangup_peer(a, c))
        a.on_hangup.append(lambda c: _hangup_peer(b, c))
        self.spawn(self._run_inbound, b)

    def channel_data(self, ch: Channel) -> list[tuple[str, str]]:
        ev = ch.build("CHANNEL_DATA", before=ch.profile_headers("Channel"))
        return ev.headers

    def calls_bridged(self, a: Channel, b: Channel) -> None:
        call = self.calls.get(a.uuid)
        if call is not None:
            call.bridged_to = self.leg_endpoints.get(b.uuid, b.name)

    def channel_finished(self, ch: Channel) -> None:
        call = self.calls.get(ch.uuid)
        if call is not None:
            call.finished_at = self.clock.now()

    def channel_destroyed(self, ch: Channel) -> None:
        self.channels.pop(ch.uuid, None)

    def wait_socket_release(self, ch: Channel) -> None:
        """CHANNEL_DESTROY fires only once the outbound socket is closed (linger/exit)."""
        session = ch.socket_session
        if isinstance(session, OutboundSession):
            while not session.closed.wait(timeout=60.0):
                pass

    def sound_length(self, path: str) -> float | None:
        if path in self.sound_lengths:
            return self.sound_lengths[path]
        if path.startswith("file_string://"):
            # The file_string format (mod_dptools file_string_file_open / next_file): the
            # '!'-separated files play one after another as one playback, after 250 ms of
            # silence (next_file, first file); an endless part makes the whole endless.
            parts = [self.sound_length(f) for f in path[len("file_string://"):].split("!") if f]
            return None if any(n is None for n in parts) else FILE_STRING_LEAD + sum(n for n in parts if n is not None)
        if path.startswith("tone_stream://"):
            length = tone_length(path)
            if length is None and "loops=-1" not in path and "L=-1" not in path:
                return self.default_sound_length
            return length
        if path.startswith("local_stream://"):
            return None  # mod_local_stream: a music-on-hold stream plays until broken
        if path.startswith("silence_stream://"):
            ms = int((path[len("silence_stream://"):].split(",")[0] or "0").strip() or 0)
            return None if ms < 0 else ms / 1000.0
        return self.default_sound_length


def _run_inline(ch: Channel, app_name: str, data: str) -> None:
    execute(ch, app_name, data)


def _hangup_peer(peer: Channel, gone: Channel) -> None:
    """A loopback pair ends together, with the cause of the side that ended first."""
    peer.hangup(gone.hangup_cause or "NORMAL_CLEARING")


def _folder(path: str) -> str:
    """A folder path in one spelling: no trailing or doubled slashes."""
    return "/" + "/".join(part for part in path.split("/") if part) if path.startswith("/") else path.rstrip("/")
