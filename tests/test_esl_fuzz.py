"""Seeded, bounded fuzzing of the codec and the call socket's reader over the recorded
FreeSWITCH bytes (tests/esl_fuzz.py): every input ends as messages or a ProtocolError.
``bench/fuzz_bench.py`` runs the same fuzzer for a million inputs and more."""
from __future__ import annotations

import logging
import random

import pytest

from orchestrator.errors import ProtocolError
from tests import esl_fuzz


@pytest.fixture(scope="module")
def corpus() -> list[bytes]:
    return esl_fuzz.seeds()


@pytest.fixture(autouse=True)
def quiet() -> None:
    # One warning line per malformed input is the product's behaviour (tested in
    # test_esl_hardening); thousands of them here would only fill the report.
    logging.disable(logging.WARNING)
    yield
    logging.disable(logging.NOTSET)


def test_the_unmutated_recordings_read_without_any_error(corpus: list[bytes]) -> None:
    assert len(corpus) > 500
    for data in corpus:
        for target in esl_fuzz.TARGETS.values():
            target(data, random.Random(0))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_fuzzed_recordings_give_messages_or_protocol_errors_only(corpus: list[bytes], seed: int) -> None:
    run = esl_fuzz.fuzz(1500, seed, corpus=corpus)
    assert run.inputs == 1500 and run.per_target == {"codec": 1500, "session": 1500}
    assert [f.error for f in run.findings] == []
    # The mutations bite: a good share of the inputs are refused, not all of them.
    assert 0.2 * 3000 < run.protocol_errors < 0.9 * 3000


def test_a_finding_is_reported_with_its_input() -> None:
    """The harness itself: an exception other than ProtocolError is a finding."""
    def broken(data: bytes, rng: random.Random) -> None:
        if b"CHANNEL_ANSWER" in data:
            raise IndexError("pop from empty list")
        raise ProtocolError("fine")

    esl_fuzz.TARGETS["broken"] = broken
    try:
        run = esl_fuzz.fuzz(300, 7, targets=("broken",), corpus=[b"Event-Name: CHANNEL_ANSWER\n\n", b"x"])
    finally:
        del esl_fuzz.TARGETS["broken"]
    (finding,) = run.findings  # one per kind of error
    assert finding.error.startswith("IndexError: pop from empty list") and b"CHANNEL_ANSWER" in finding.data
