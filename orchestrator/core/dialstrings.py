"""FreeSWITCH dial strings for ringing employees, departments and external numbers.

FreeSWITCH behaviour relied on (switch_ivr_originate.c, transcripts P01-P04):
* ``{a=b,c=d}`` sets variables on every leg, ``[a=b]`` on one leg; ``,`` rings legs at
  once (first answer wins, the others end with LOSE_RACE), ``|`` rings them in turn.
* ``leg_timeout`` ends one leg (ALLOTTED_TIMEOUT), ``call_timeout`` the whole attempt;
  ``leg_delay_start=N`` creates the leg at once but sends its INVITE N s later while the
  other legs keep ringing (P03). Timeouts tick on whole wall-clock seconds
  (switch_ivr_originate.c: ``elapsed = switch_epoch_time_now(NULL) - start``, whole
  seconds): a leg ends when elapsed > leg_timeout, i.e. after N..N+1 s of ringing.
* A LONE ``user/`` leg is different: mod_dptools ``user_outgoing_channel()`` runs a
  blocking originate of the directory's dial-string with timelimit = leg_timeout, and
  that originate gives up when elapsed >= timelimit: after N-1..N s, with NO_ANSWER
  (FreeSWITCH 1.10.12 with ``leg_timeout=3``: members rang 2.1-2.7 s). With several legs
  (SOF_FORKED_DIAL makes the inner originate non-blocking) the outer rule above holds.
  So a lone user/ leg gets ``leg_timeout`` = its ring time + 1 (``_leg_timeout``): every
  phone rings at least its configured time, at most one second more. Checked on
  1.10.12 (a directory user whose dial-string rings a loopback that never answers):
  ``[leg_timeout=3]user/..`` ended after 2.46-2.80 s NO_ANSWER, ``[leg_timeout=4]`` after
  3.58-3.88 s NO_ANSWER (originate_causes ``<origination_uuid>;NO_ANSWER``), two legs
  with ``leg_timeout=3`` after 3.80-3.88 s ALLOTTED_TIMEOUT.
* ``user/<ext>@<domain>`` resolves through the directory's ``dial-string`` (our
  mod_xml_curl endpoint), i.e. the phone's registered contact; an unregistered user fails
  at once with USER_NOT_REGISTERED instead of waiting out the ring time.
* ``ignore_early_media=true`` keeps the caller hearing our ringback rather than a
  callee's 183, and makes the first 200 OK win.

How FreeSWITCH 1.10 cuts what we send (so what no value of ours may contain; read in
src/switch_utils.c ``switch_separate_string``, src/switch_ivr_originate.c and
src/switch_channel.c ``switch_channel_expand_variables_check``):
* api ``originate <dial> <app> ...`` (mod_commands) splits its arguments on blanks,
  outside single quotes; a backslash escapes the next character. A space in a value starts a
  new argument: ``+7916 &bridge(...)`` would replace our ``&park()``.
* ``{a=b,c=d}`` / ``[a=b]`` / ``<a=b>`` variable blocks are split on ``,``
  (``switch_event_create_brackets``), quotes and backslashes as above.
* The dial string's legs are split on ``:_:`` (enterprise originate), ``|`` (one after
  another) and ``,`` (at once): ``+7916,sofia/gateway/pstn/+1900...`` adds a leg.
* ``^^X`` at the start of a list makes ``X`` the separator.
* ``${name}`` / ``${api(args)}`` / ``$${global}`` are expanded (API calls run) in
  application arguments and in what endpoints resolve, e.g. the directory
  ``dial-string`` of ``user/<ext>@<domain>``.
* api ``uuid_bridge`` / ``uuid_kill`` / ``uuid_exists`` take blank-separated uuids.
So a value from a caller, a tenant or a Redis job becomes a typed value first: an E.164
number (``e164``), an extension or domain of ``TOKEN_CHARS`` (``safe_token``), a uuid
(``safe_uuid``); nothing else reaches an originate or a ``uuid_*`` command.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Sequence

import phonenumbers

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


# Extensions, SIP domains, gateway-free parts of a dial string: no blank, quote,
# backslash, ``$``, ``,``, ``|``, brackets, ``^`` or ``:`` (so no ``:_:`` either).
TOKEN_CHARS = "A-Za-z0-9._@+-"
_TOKEN = re.compile(r"[%s]{1,128}\Z" % TOKEN_CHARS)
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\Z")


def e164(text: str, region: str | None = None) -> str | None:
    """The E.164 form of a caller's or callee's number, or None when it is none.

    Only ``+`` and digits are read (a Caller-ID like ``+7916...,sofia/...`` or
    ``anonymous`` is None); a number without ``+`` is read in ``region`` (ISO 3166, e.g.
    the country of the tenant's number that was called); it must be a valid number for
    ``phonenumbers``. The result is ``+`` and digits only: safe in any dial string."""
    raw = (text or "").strip()
    if not raw or len(raw) > 20 or not raw.lstrip("+").isdigit() or raw.count("+") > 1 or "+" in raw[1:]:
        return None
    if not raw.startswith("+") and region is None:
        return None
    try:
        parsed = phonenumbers.parse(raw, None if raw.startswith("+") else region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(parsed):
        return None
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def region_of(number: str) -> str | None:
    """The country (ISO 3166) of an E.164 number, None if it has none."""
    try:
        return phonenumbers.region_code_for_number(phonenumbers.parse(number, None)) or None
    except phonenumbers.NumberParseException:
        return None


def safe_token(value: str, what: str = "value") -> str:
    """``value`` if it is one dial-string token of ``TOKEN_CHARS``; else ValueError."""
    if not isinstance(value, str) or not _TOKEN.match(value):
        raise ValueError("%s %r cannot be used in a FreeSWITCH command" % (what, value))
    return value


def safe_uuid(value: str, what: str = "uuid") -> str:
    """``value`` if it is a channel uuid (8-4-4-4-12 hex); else ValueError."""
    if not isinstance(value, str) or not _UUID.match(value):
        raise ValueError("%s %r is not a channel uuid" % (what, value))
    return value


def callback_endpoints(template: str, extension: str, domain: str, client: str) -> tuple[str, str]:
    """The member's and the client's dial strings of a callback; ValueError when a value
    is not what it must be (``client``: an E.164 number exactly as ``e164`` writes it)."""
    if e164(client) != client:
        raise ValueError("client number %r is not an E.164 number" % (client,))
    return (user_endpoint(safe_token(extension, "extension"), safe_token(domain, "domain")),
            external_endpoint(template, client))


def user_endpoint(extension: str, domain: str) -> str:
    return "user/%s@%s" % (_check(extension), _check(domain))


def external_endpoint(template: str, number: str) -> str:
    return template.format(number=_check(number))


def _leg_timeout(leg: Leg, count: int) -> int:
    """``leg_timeout`` for ``leg`` rung with ``count`` legs in all, so that it rings at
    least ``leg.timeout`` seconds (module doc: a lone user/ leg ends a tick earlier)."""
    return leg.timeout + 1 if count == 1 and leg.endpoint.startswith("user/") else leg.timeout


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
        local.append("leg_timeout=%d" % _leg_timeout(leg, len(legs)))
        if leg.delay > 0:
            local.append("leg_delay_start=%d" % leg.delay)
        parts.append("[%s]%s" % (",".join(local), leg.endpoint))
    return head + ",".join(parts)
