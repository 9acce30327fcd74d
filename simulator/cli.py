"""``pbx-fssim``: run the FreeSWITCH simulator from the command line.

    pbx-fssim --conf freeswitch-conf --esl-port 8021 --password X \\
              --call +74951234567 --from +79161234567 [--dtmf 3:1] \\
              [--user 1001@acme.example:answer:2] [--external +7916...:busy] [--time-scale 1]

Without ``--call`` it serves the event socket until interrupted. With ``--call`` it
places one call, prints the call's events as they happen and exits with 0 when the
call ended (1 on a timeout).
"""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

from simulator.endpoints import Answer, Behavior, Busy, NoAnswer, Reject


def parse_behavior(spec: str) -> Behavior:
    """``answer[:after[:talk]]``, ``busy[:after]``, ``reject:CAUSE[:after]``, ``noanswer``."""
    kind, *args = spec.split(":")
    nums = [float(a) for a in args if a.replace(".", "", 1).isdigit()]
    if kind == "answer":
        return Answer(after=nums[0] if nums else 1.0, hangup_after=nums[1] if len(nums) > 1 else None)
    if kind == "busy":
        return Busy(after=nums[0] if nums else 0.0)
    if kind == "reject":
        return Reject(cause=args[0] if args else "CALL_REJECTED", after=nums[0] if nums else 0.0)
    if kind == "noanswer":
        return NoAnswer()
    raise argparse.ArgumentTypeError("unknown behaviour %r (answer, busy, reject, noanswer)" % spec)


BEHAVIOURS = """phone behaviours (after USER@DOMAIN: or NUMBER: in --user / --external; times in
simulated seconds):
  answer[:AFTER[:TALK]]   answers after AFTER s (default 1), hangs up after TALK s of talk
                          (default: stays until the other side hangs up)
  busy[:AFTER]            refuses with 486 Busy Here (USER_BUSY) after AFTER s (default 0)
  reject:CAUSE[:AFTER]    refuses with the hangup cause CAUSE (e.g. CALL_REJECTED) after AFTER s
  noanswer                rings until the caller or the orchestrator gives up
A --user without a behaviour is registered and answers as `answer`; a phone not given
with --user is not registered: calls to it fail at once.
examples: --user 101@demo.pbx.local:noanswer  --user 102@demo.pbx.local:answer:3:5
          --external +79161234567:busy:2"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pbx-fssim", description="FreeSWITCH 1.10 simulator (ESL on the wire)",
                                epilog=BEHAVIOURS, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--conf", help="FreeSWITCH conf dir (vars.xml, dialplan/*.xml); default: built-in dialplan")
    p.add_argument("--orchestrator", default="127.0.0.1:8084",
                   help="HOST:PORT of the outbound socket server (pbx_orchestrator_socket)")
    p.add_argument("--esl-port", type=int, default=8021)
    p.add_argument("--password", default="ClueCon")
    p.add_argument("--time-scale", type=float, default=1.0, help="real seconds per simulated second")
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="extra preprocessor global")
    p.add_argument("--folder", action="append", default=[], metavar="PATH",
                   help="a folder that exists on the simulated FreeSWITCH host besides recordings_dir and /tmp "
                        "(record and rxfax create none, as on FreeSWITCH)")
    p.add_argument("--user", action="append", default=[], metavar="USER@DOMAIN[:BEHAVIOUR]",
                   help="a registered phone, e.g. 1001@acme.example:answer:2 (behaviours below)")
    p.add_argument("--external", action="append", default=[], metavar="NUMBER[:BEHAVIOUR]",
                   help="an outside number and how it answers, e.g. +79161234567:busy")
    p.add_argument("--call", help="destination number of a call to place")
    p.add_argument("--from", dest="caller", default="+79161234567")
    p.add_argument("--context", default="public")
    p.add_argument("--domain", help="caller's SIP domain (internal calls)")
    p.add_argument("--dtmf", action="append", default=[], metavar="SECONDS:DIGITS")
    p.add_argument("--hangup-after", type=float, help="caller hangs up after this many seconds")
    p.add_argument("--timeout", type=float, default=600.0, help="real seconds to wait for the call")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    from gevent import monkey

    if not monkey.is_module_patched("socket"):  # pbx-demo runs us in its own, patched process
        monkey.patch_all()  # entry point only
    from simulator.server import FreeSwitchSim

    args = build_parser().parse_args(argv)
    globals_ = {"pbx_orchestrator_socket": args.orchestrator}
    for item in args.set:
        name, _, value = item.partition("=")
        globals_[name] = value
    sim = FreeSwitchSim(conf_dir=args.conf, globals=globals_, esl_password=args.password,
                        time_scale=args.time_scale, esl_port=args.esl_port, folders=args.folder)
    sim.orchestrator_address = args.orchestrator
    for spec in args.user:
        who, _, beh = spec.partition(":")
        user, _, domain = who.partition("@")
        sim.add_user(user, domain or sim.default_domain, behavior=parse_behavior(beh) if beh else None)
    for spec in args.external:
        number, _, beh = spec.partition(":")
        sim.add_external(number, parse_behavior(beh) if beh else None)
    sim.start()
    print("pbx-fssim: event socket on 127.0.0.1:%d, outbound to %s" % (sim.esl_port, args.orchestrator), flush=True)
    try:
        if not args.call:
            while True:
                sim.clock.sleep(3600 / sim.clock.scale)
        dtmf = [(float(t), d) for t, _, d in (x.partition(":") for x in args.dtmf)]
        call = sim.place_call(args.call, caller_id=args.caller, context=args.context, domain=args.domain,
                              dtmf=dtmf, hangup_after=args.hangup_after)
        shown = 0
        while not call.channel.hangup_done.wait(timeout=0.05) or shown < len(call.events):
            for ev in call.events[shown:]:
                extra = ev.get("Application") or ev.get("Hangup-Cause") or ev.get("DTMF-Digit") or ""
                print("%8.2f  %-26s %s" % (ev.t - call.started_at, ev.name, extra), flush=True)
            shown = len(call.events)
            if sim.clock.now() - call.started_at > args.timeout / sim.clock.scale:
                print("pbx-fssim: call still up after %.0f s" % args.timeout, flush=True)
                return 1
        print("pbx-fssim: call %s ended: %s, answered=%s, bridged_to=%s"
              % (call.uuid, call.hangup_cause, call.answered, call.bridged_to), flush=True)
        for rec in call.recordings:
            print("pbx-fssim: recording %s (%.1f s)" % (rec["path"], float(rec["seconds"])), flush=True)  # type: ignore[arg-type]
        return 0
    except KeyboardInterrupt:
        return 130
    finally:
        sim.stop()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
