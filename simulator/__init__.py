"""A FreeSWITCH 1.10 stand-in that speaks the Event Socket protocol byte for byte.

Used by the test suite, the benchmarks and the ``pbx-fssim`` command, because
FreeSWITCH itself cannot be installed on the development machines.

    from simulator import FreeSwitchSim, Answer, Busy, Reject, NoAnswer
"""
from __future__ import annotations

from simulator.callers import SimCall
from simulator.endpoints import Answer, Busy, Endpoint, LegRecord, NoAnswer, Reject
from simulator.server import FreeSwitchSim

__all__ = ["Answer", "Busy", "Endpoint", "FreeSwitchSim", "LegRecord", "NoAnswer", "Reject", "SimCall"]
