"""Fuzz benchmark: a million (``--inputs``) mutated FreeSWITCH messages through the ESL
codec and the call socket's reader (tests/esl_fuzz.py), reproducible from ``--seed``.

    .venv/bin/python bench/fuzz_bench.py [--inputs 1000000] [--seed 1] [--targets codec,session]

Every input must end as messages or a ProtocolError; anything else (an exception, a
reader that does not end) is a finding, saved under ``--findings-dir``. A section with
the count, the rate and the findings is appended to ``--results`` (bench/results.md).
Exit status 1 when there were findings.
"""
from __future__ import annotations

import argparse
import logging
import os
import platform
import resource
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests import esl_fuzz  # noqa: E402


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    ap.add_argument("--inputs", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--targets", default="codec,session")
    ap.add_argument("--results", type=Path, default=ROOT / "bench" / "results.md")
    ap.add_argument("--findings-dir", type=Path, default=ROOT / "var" / "fuzz-findings")
    ap.add_argument("--no-append", action="store_true", help="print the section, do not append it")
    args = ap.parse_args(argv)
    targets = tuple(t for t in args.targets.split(",") if t)
    logging.disable(logging.CRITICAL)  # one warning per refused input is the product's behaviour

    corpus = esl_fuzz.seeds()
    started = time.monotonic()
    cpu0 = time.process_time()

    def progress(run: esl_fuzz.Run) -> None:
        if run.inputs % 100000 == 0:
            elapsed = time.monotonic() - started
            print("%d inputs, %.0f/s, %d protocol errors, %d findings" % (
                run.inputs, run.inputs / elapsed, run.protocol_errors, len(run.findings)), flush=True)

    run = esl_fuzz.fuzz(args.inputs, args.seed, targets=targets, corpus=corpus, on_progress=progress)
    elapsed = time.monotonic() - started
    cpu = time.process_time() - cpu0
    peak_rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    saved = esl_fuzz.save(run.findings, args.findings_dir) if run.findings else []
    runs = sum(run.per_target.values())
    lines = [
        "",
        "## Fuzzing the ESL readers (%s)" % datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "",
        "`.venv/bin/python bench/fuzz_bench.py --inputs %d --seed %d --targets %s`" % (args.inputs, args.seed, ",".join(targets)),
        "",
        "Code: commit %s plus the working tree; Python %s on %s, %d CPUs (shared)." % (
            _commit(), platform.python_version(), platform.machine(), os.cpu_count() or 0),
        "Seeds: %d windows of 1-4 messages from every FreeSWITCH -> us stream of the recorded transcripts." % len(corpus),
        "",
        "- **%d inputs** (%s), each through %s: %d target runs in %.0f s, **%.0f inputs/s** (%.0f s CPU)" % (
            run.inputs, "mutated 97%, as recorded 3%", " and ".join(targets), runs, elapsed, run.inputs / elapsed, cpu),
        "- refused as ProtocolError: %d target runs (%.0f%%); the rest read as messages" % (
            run.protocol_errors, 100.0 * run.protocol_errors / max(1, runs)),
        "- peak RSS of the fuzzing process: %.0f MiB" % peak_rss_mib,
        "- **findings: %d**%s" % (len(run.findings), "" if not run.findings else " (inputs in %s)" % args.findings_dir),
    ]
    for finding, path in zip(run.findings, saved):
        lines.append("  - %s: %s (%s)" % (finding.target, finding.error.splitlines()[0], path.name))
    section = "\n".join(lines) + "\n"
    print(section)
    if not args.no_append:
        with open(args.results, "a", encoding="utf-8") as fh:
            fh.write(section)
    return 1 if run.findings else 0


if __name__ == "__main__":
    sys.exit(main())
