"""FreeSWITCH dial strings for ringing employees, departments and external numbers.

FreeSWITCH behaviour relied on (switch_ivr_originate.c, transcripts P01-P04):
* ``{a=b,c=d}`` sets variables on every leg, ``[a=b]`` on one leg; ``,`` rings legs at
  once (first answer wins, the others end with LOSE_RACE), ``|`` rings them in turn.
* ``leg_timeout`` ends one leg (ALLOTTED_TIMEOUT), ``call_timeout`` the whole attempt;
  ``leg_delay_start=N`` creates the leg at once but sends its INVITE N s later while the
  other legs keep ringing (P03). Timeouts tick on whole wall-clock seconds.
* ``user/<ext>@<domain>`` resolves through the directory's ``dial-string`` (our
  mod_xml_curl endpoint), i.e. the phone's registered contact; an unregistered user fails
  at once with USER_NOT_REGISTERED instead of waiting out the ring time.
* ``ignore_early_media=true`` keeps the caller hearing our ringback rather than a
  callee's 183, and makes the first 200 OK win.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

# Characters that would break the dial-string grammar if they appeared in a value.
_FORBIDDEN = set(",|{}[]^\n\r")


@dataclass(frozen=True)
class Leg:
    endpoint: str  # e.g. user/101@acme.example or sofia/gateway/pstn/+7916...
    timeout: int  # seconds this leg may ring, counted from the start of the bridge
    delay: int = 0  # seconds before this leg starts ringing
    label: str = ""  # what the leg is, for logs: "employee 101", "mobile of 101"
    # Per-leg variables; origination_uuid lets us know which leg answered (it becomes
    # the b-leg's Unique-ID, reported back as Other-Leg-Unique-ID / last_bridge_to).
    variables: tuple[tuple[str, str], ...] = ()


def _check(value: str) -> str:
    if any(ch in _FORBIDDEN for ch in value):
        raise ValueError("value %r cannot be used in a dial string" % value)
    return value


def user_endpoint(extension: str, domain: str) -> str:
    return "user/%s@%s" % (_check(extension), _check(domain))


def external_endpoint(template: str, number: str) -> str:
    return template.format(number=_check(number))


def ring_all(legs: Sequence[Leg], call_timeout: int, variables: Iterable[tuple[str, str]] = (), early_media: bool = False) -> str:
    """One dial string ringing every leg at once (each with its own delay/timeout).

    ``early_media``: the caller hears the callee's early media (an outbound call: the
    carrier's ringback or "number not in service"); else our own ringback."""
    if not legs:
        raise ValueError("nothing to ring")
    glob = [] if early_media else [("ignore_early_media", "true")]
    glob.append(("call_timeout", str(call_timeout)))
    glob.extend(variables)
    head = "{%s}" % ",".join("%s=%s" % (k, _check(v)) for k, v in glob)
    parts = []
    for leg in legs:
        local = ["%s=%s" % (k, _check(v)) for k, v in leg.variables]
        local.append("leg_timeout=%d" % leg.timeout)
        if leg.delay > 0:
            local.append("leg_delay_start=%d" % leg.delay)
        parts.append("[%s]%s" % (",".join(local), leg.endpoint))
    return head + ",".join(parts)
