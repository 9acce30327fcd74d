"""Simulated time: a scaled clock that the whole simulator runs on.

``time_scale`` is real seconds per simulated second (0.02 makes a 20 s ring last 0.4 s
of real time). Every FreeSWITCH duration in the simulator (ring and answer delays,
call/leg/originate timeouts, playback and record lengths, DTMF times) is given in
simulated seconds; event timestamps are the simulated epoch (real epoch at start plus
simulated seconds), so that FreeSWITCH's whole-second timeout tick can be reproduced.
"""
from __future__ import annotations

import math
import time

import gevent
from gevent.event import Event as GEvent

# FreeSWITCH checks its timeouts once per wall-clock second (switch_epoch_time_now() in
# switch_ivr_originate.c compares whole seconds); the recorded checks ran ~25-40 ms
# after the second boundary (primitives README, "Timings").
TICK_LAG = 0.03


class SimClock:
    def __init__(self, time_scale: float = 0.05, epoch0: float | None = None) -> None:
        if time_scale <= 0:
            raise ValueError("time_scale must be > 0 (real seconds per simulated second)")
        self.scale = float(time_scale)
        self._t0 = time.monotonic()
        self.epoch0 = time.time() if epoch0 is None else epoch0

    # ------------------------------------------------------------ reading
    def now(self) -> float:
        """Simulated seconds since the clock started."""
        return (time.monotonic() - self._t0) / self.scale

    def epoch(self, t: float | None = None) -> float:
        return self.epoch0 + (self.now() if t is None else t)

    def usec(self, t: float | None = None) -> int:
        """Microseconds since the Unix epoch (FreeSWITCH's ``*-Time`` and timestamps)."""
        return int(self.epoch(t) * 1_000_000)

    def real(self, sim_seconds: float) -> float:
        return max(0.0, sim_seconds) * self.scale

    # ------------------------------------------------------------ waiting
    def sleep(self, sim_seconds: float) -> None:
        gevent.sleep(self.real(sim_seconds))

    def sleep_until(self, t: float) -> None:
        self.sleep(t - self.now())

    def wait(self, event: GEvent, sim_timeout: float | None) -> bool:
        """Wait for a gevent Event for at most ``sim_timeout`` simulated seconds.

        ``None`` means "until set", implemented as repeated bounded waits so that no
        wait in the simulator is unbounded in one call.
        """
        if sim_timeout is None:
            while not event.is_set():
                event.wait(timeout=60.0)
            return True
        return bool(event.wait(timeout=self.real(sim_timeout)))

    # ------------------------------------------------------------ FreeSWITCH ticks
    def tick_deadline(self, start: float, seconds: int) -> float:
        """Simulated time at which floor(epoch(now)) - floor(epoch(start)) reaches ``seconds``."""
        whole = math.floor(self.epoch(start)) + seconds
        return whole - self.epoch0 + TICK_LAG


def fs_date_local(epoch: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(epoch))


def fs_date_gmt(epoch: float) -> str:
    return time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(epoch))


def rfc2822(epoch: float) -> str:
    return time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime(epoch))
