"""Reader for the ESL transcripts recorded from a real FreeSWITCH 1.10.12.

Format (see tests/data/freeswitch-transcripts/README.md): ``==== #<n> <DIR> t=<sec> len=<N> ====``, then
exactly N raw bytes, then ``\\n==== end #<n> ====``. ``---- NOTE ... ----`` lines are the
recorder's annotations.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

_RECORD = re.compile(rb"==== #(\d+) (\S+) t=([0-9.]+) len=(\d+) ====\n")


@dataclass(frozen=True)
class Record:
    n: int
    direction: str  # FS->SERVER, SERVER->FS, FS->CLIENT, CLIENT->FS, FS->OBSERVER, ...
    t: float
    data: bytes


def transcripts_dir() -> Path:
    """Where the recorded transcripts live: $PBX_TRANSCRIPTS, else the copy kept in the
    repository (``tests/data/freeswitch-transcripts``, so that the suite runs in a bare
    clone; README.md there says how they were recorded)."""
    env = os.environ.get("PBX_TRANSCRIPTS")
    if env:
        return Path(env)
    here = Path(__file__).resolve().parent.parent
    return here / "tests" / "data" / "freeswitch-transcripts"


def load(name: str) -> list[Record]:
    path = Path(name)
    if not path.is_absolute():
        base = transcripts_dir()
        path = base / name if (base / name).exists() else base / "primitives" / name
    data = path.read_bytes()
    records: list[Record] = []
    pos = 0
    while True:
        m = _RECORD.search(data, pos)
        if not m:
            return records
        length = int(m.group(4))
        start = m.end()
        records.append(Record(int(m.group(1)), m.group(2).decode(), float(m.group(3)), data[start : start + length]))
        pos = start + length


def stream(records: list[Record], direction: str) -> bytes:
    """All bytes of one direction, concatenated in order."""
    return b"".join(r.data for r in records if r.direction == direction)
