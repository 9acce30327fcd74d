"""SimCall: a scripted SIP caller (DTMF, hang-up) and what happened to its call."""
from __future__ import annotations

from typing import TYPE_CHECKING

from simulator.events import SimEvent

if TYPE_CHECKING:
    from simulator.channel import Channel
    from simulator.server import FreeSwitchSim


class SimCall:
    """The caller's side of one call. Times are simulated seconds from the call's start."""

    def __init__(self, sim: FreeSwitchSim, ch: Channel, dtmf: list[tuple[float, str]],
                 hangup_after: float | None, dtmf_after_answer: bool) -> None:
        self.sim = sim
        self.channel = ch
        self.uuid = ch.uuid
        self.started_at = sim.clock.now()
        self.finished_at: float | None = None
        self.bridged_to: str | None = None
        self._dtmf = sorted(dtmf)
        self._hangup_after = hangup_after
        self._after_answer = dtmf_after_answer

    def start(self) -> None:
        if self._dtmf:
            self.sim.spawn(self._send_dtmf)
        if self._hangup_after is not None:
            self.sim.spawn(self._hangup_later)

    def _base(self) -> float | None:
        """Start of the script's clock: call start, or the answer if asked to."""
        ch = self.channel
        if not self._after_answer:
            return self.started_at
        while ch.up and not ch.times["answered"]:
            ch.wake.clear()
            self.sim.clock.wait(ch.wake, 1.0)
            if ch.times["answered"]:
                break
        if not ch.times["answered"]:
            return None
        return (ch.times["answered"] / 1e6) - self.sim.clock.epoch0

    def _send_dtmf(self) -> None:
        base = self._base()
        if base is None:
            return
        for at, digits in self._dtmf:
            self.sim.clock.sleep_until(base + at)
            for digit in digits:
                if not self.channel.up:
                    return
                self.channel.receive_dtmf(digit)

    def _hangup_later(self) -> None:
        base = self._base()
        if base is None or self._hangup_after is None:
            return
        self.sim.clock.sleep_until(base + self._hangup_after)
        self.hangup()

    # ------------------------------------------------------------ script API
    def hangup(self, cause: str | None = None) -> None:
        """The caller hangs up: BYE (NORMAL_CLEARING), or CANCEL while unanswered
        (ORIGINATOR_CANCEL, as sofia reports a cancelled inbound INVITE)."""
        ch = self.channel
        if ch.up:
            ch.hangup_origin = "remote"
            answered = bool(ch.times["answered"])
            ch.hangup(cause or ("NORMAL_CLEARING" if answered else "ORIGINATOR_CANCEL"),
                      disposition="recv_bye" if answered else "recv_cancel")

    def send_dtmf(self, digit: str) -> None:
        for d in digit:
            self.channel.receive_dtmf(d)

    def wait(self, timeout: float = 10.0) -> SimCall:
        """Block (yielding to gevent) until the channel is destroyed, ``timeout`` real seconds."""
        if not self.channel.destroyed.wait(timeout=timeout):
            ch = self.channel
            raise TimeoutError(
                "call %s to %s not finished after %.1f s real (%.1f s simulated): state %s, up=%s, "
                "apps=%s (an outbound socket with linger stays open until the server sends exit)"
                % (self.uuid, ch.profile["destination_number"], timeout, self.sim.clock.now() - self.started_at,
                   ch.running_state, ch.up, [a[1] for a in ch.apps_log]))
        return self

    def wait_hangup(self, timeout: float = 10.0) -> SimCall:
        """Until CHANNEL_HANGUP_COMPLETE (does not wait for a lingering socket)."""
        if not self.channel.hangup_done.wait(timeout=timeout):
            raise TimeoutError("call %s still up after %.1f s real" % (self.uuid, timeout))
        return self

    # ------------------------------------------------------------ results
    @property
    def hangup_cause(self) -> str | None:
        return self.channel.hangup_cause

    @property
    def answered(self) -> bool:
        return bool(self.channel.times["answered"])

    @property
    def apps(self) -> list[tuple[float, str, str]]:
        return [(t - self.started_at, name, data) for t, name, data in self.channel.apps_log]

    @property
    def events(self) -> list[SimEvent]:
        return self.channel.events

    @property
    def recordings(self) -> list[dict[str, object]]:
        return self.channel.recordings

    @property
    def variables(self) -> dict[str, str]:
        return self.channel.variables

    def event_names(self) -> list[str]:
        return [e.name for e in self.channel.events]
