"""Running applications on a channel, the way a FreeSWITCH session thread does.

* switch_core_session_exec(): the ``current_application*`` variables are set, the
  previous ``current_application_response`` is cleared, CHANNEL_EXECUTE fires, the app
  runs, CHANNEL_EXECUTE_COMPLETE fires with ``Application-Response`` = the response
  variable or ``_none_`` (so the socket app's completion carries the last nested app's
  response, e.g. ``FILE PLAYED`` - transcripts outbound_*, P07a). Every exec has an
  ``Application-UUID`` (the sendmsg ``Event-UUID`` when given, else a fresh one).
* An unknown application: "Invalid Application" and the channel is hung up with
  DESTINATION_OUT_OF_ORDER, no EXECUTE events (switch_core_session_execute_application).
* Queued ``sendmsg execute`` messages are run by whatever app is waiting (park,
  playback, sleep, record, play_and_get_digits), NESTED inside it, one frame (20 ms)
  after they arrive (switch_ivr_parse_all_messages; P07d: a bridge sent during an
  endless playback starts at once and the playback's EXECUTE_COMPLETE comes after the
  bridge's). A bridge does not run queued apps.
* When the dialplan runs out of actions the channel is hung up NORMAL_CLEARING (P08d).
"""
from __future__ import annotations

import logging
import uuid as uuidlib
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from simulator.channel import Channel

log = logging.getLogger(__name__)

FRAME = 0.02  # one 20 ms media frame: the delay before a queued app starts
AppFunc = Callable[["Channel", str], None]
APPS: dict[str, AppFunc] = {}


def app(name: str) -> Callable[[AppFunc], AppFunc]:
    def register(func: AppFunc) -> AppFunc:
        APPS[name] = func
        return func

    return register


def execute(ch: Channel, name: str, arg: str, app_uuid: str | None = None,
            loop: tuple[int, int] | None = None) -> bool:
    """Run one application with its EXECUTE / EXECUTE_COMPLETE events."""
    func = APPS.get(name)
    if func is None:
        log.error("[%s] Invalid Application %s", ch.uuid, name)
        ch.hangup("DESTINATION_OUT_OF_ORDER")
        return False
    data = ch.expand(arg or "")
    ch.apps_log.append((ch.sim.clock.now(), name, data))
    ch.last_app = (name, data)
    if loop is not None:
        ch.set_var("current_loop", str(loop[0]))
        ch.set_var("total_loops", str(loop[1]))
    ch.set_var("current_application_data", data)
    ch.set_var("current_application", name)
    ch.set_var("current_application_response", None)
    app_uuid = app_uuid or str(uuidlib.uuid4())
    head = [("Application", name)] + ([("Application-Data", data)] if data else [])
    ch.fire("CHANNEL_EXECUTE", after=head + [("Application-UUID", app_uuid)])
    previous, ch.current_app = ch.current_app, name
    ch.app_depth += 1
    try:
        func(ch, data)
    finally:
        ch.app_depth -= 1
        ch.current_app = previous
    response = ch.variables.get("current_application_response") or "_none_"
    ch.fire("CHANNEL_EXECUTE_COMPLETE",
            after=head + [("Application-Response", response), ("Application-UUID", app_uuid)])
    return True


def run_queued(ch: Channel) -> bool:
    """Run the next queued sendmsg execute (nested in the caller). True if one ran."""
    if not ch.exec_queue or not ch.up:
        return False
    name, arg, app_uuid, loops = ch.exec_queue.pop(0)
    ch.sim.clock.sleep(FRAME)
    for i in range(max(1, loops)):
        if not ch.up and name != "hangup":
            break
        execute(ch, name, arg, app_uuid, (i + 1, loops) if loops else None)
    return True


def idle(ch: Channel, duration: float | None, *, nested: bool = True, breakable: bool = True,
         on_dtmf: Callable[[str], str | None] | None = None, stop: Callable[[], bool] | None = None) -> str:
    """Wait like a media loop: returns 'timeout', 'hangup', 'break', 'interrupt', a DTMF
    verdict from ``on_dtmf``, or 'stop'. Time spent in nested apps does not count."""
    clock = ch.sim.clock
    deadline = None if duration is None else clock.now() + duration
    while True:
        if not ch.up:
            return "hangup"
        if ch.interrupt is not None:
            return "interrupt"
        if stop is not None and stop():
            return "stop"
        if breakable and ch.break_pending:
            ch.break_pending = False
            return "break"
        if on_dtmf is not None and ch.dtmf_buffer:
            verdict = on_dtmf(ch.dtmf_buffer.pop(0))
            if verdict:
                return verdict
            continue
        if nested and ch.exec_queue:
            started = clock.now()
            run_queued(ch)
            if deadline is not None:
                deadline += clock.now() - started
            continue
        remaining = None if deadline is None else deadline - clock.now()
        if remaining is not None and remaining <= 0:
            return "timeout"
        ch.wake.clear()
        clock.wait(ch.wake, remaining if remaining is not None else 3600.0)


def run_actions(ch: Channel, actions: list[tuple[str, str]]) -> None:
    for name, data in actions:
        if not ch.up or ch.interrupt is not None:
            return
        execute(ch, name, data)


def run_session(ch: Channel, first: list[tuple[str, str]] | None = None, route_first: bool = True) -> None:
    """A channel's session thread: route, execute, handle transfers and uuid_bridge, finish."""
    from simulator import bridge as bridge_mod

    actions = first
    try:
        while ch.up:
            if actions is None:
                actions = ch.sim.route(ch, announce=route_first)
                route_first = True
                if actions is None:
                    log.info("[%s] no route for %s in %s", ch.uuid, ch.profile["destination_number"],
                             ch.profile["context"])
                    ch.hangup("NO_ROUTE_DESTINATION")
                    break
            if ch.running_state != "CS_EXECUTE":
                ch.set_running_state("CS_EXECUTE")
            run_actions(ch, actions)
            actions = None
            pending, ch.interrupt = ch.interrupt, None
            if pending is None:
                ch.hangup("NORMAL_CLEARING")  # out of dialplan actions
                break
            kind, payload = pending
            if kind == "transfer":
                target: tuple[str, str, str] = payload  # type: ignore[assignment]
                ch.sim.apply_transfer(ch, *target)
            elif kind == "uuid_bridge":
                bridge_mod.run_uuid_bridge_leg(ch, payload)  # type: ignore[arg-type]
    except Exception:  # noqa: BLE001 - a simulator bug must not leave the call hanging forever
        log.exception("[%s] simulator session failed", ch.uuid)
        ch.hangup("NORMAL_TEMPORARY_FAILURE")
    finally:
        ch.finish()
        ch.sim.wait_socket_release(ch)
        ch.destroy()
