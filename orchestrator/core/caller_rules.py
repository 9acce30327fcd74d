"""Caller-based rules: who is calling decides where the call goes, before the schedule. Pure.

A tenant's rules (``TenantSnapshot.caller_rules``) are tried in their order; the first
that matches decides, the others are not looked at. A rule limited to some numbers is
skipped for calls to the tenant's other numbers. What a rule looks at:

    country     the caller's country, ISO 3166 (RU, DE), from ``phonenumbers``
    region      the place ``phonenumbers``' geocoder gives (English): the whole name or
                its last part ("Republic of Tatarstan", "St Petersburg", "CA")
    city        the first part of that place ("St Petersburg", "Moscow", "Mountain View")
    prefix      the caller's E.164 number starts with a value (+7812)
    list        the caller's number is a value (a VIP list; with ``block``, a block list)
    last_agent  the employee who last talked with the caller (call history, ``days``)
    crm         the employee the tenant's CRM names for the caller

``negate`` turns country/region/city/prefix/list around (e.g. country RU negated: every
foreign caller). Place names compare without case, dots and hyphens, "Saint" = "St".
Mobile numbers carry no place (the geocoder names only their country: a Russian mobile
is "Russia"), so city and region rules never match them; a caller number that does not
parse matches no country, region or city rule.

``last_agent`` and ``crm`` need data the core does not hold: ``evaluate`` returns the rule
as *pending*, the call flow emits ``LookupCaller`` and the adapter answers at once with
``CallerKnown`` (the member_offers pattern); ``evaluate`` then runs again with the answer.
The employee found rings first, if logged in; the rule's target (its fallback) follows.
"""
from __future__ import annotations

import difflib
import functools
from dataclasses import dataclass
from typing import Mapping

import phonenumbers
from phonenumbers import geocoder

from orchestrator.core.actions import CallerKnown
from orchestrator.core.model import LOOKUP_MATCHES, CallerMatch, CallerRule, Employee, Target, TenantSnapshot

GEO_MATCHES = frozenset({CallerMatch.COUNTRY, CallerMatch.REGION, CallerMatch.CITY})


# ------------------------------------------------------------------ the caller


@dataclass(frozen=True)
class CallerFacts:
    """What the caller's number tells (``phonenumbers``; no I/O)."""

    number: str  # E.164 when it parses, else as received
    valid: bool = False
    country: str = ""  # ISO 3166 alpha-2
    country_name: str = ""
    place: str = ""  # geocoder place, English; "" when only the country is known

    @property
    def city(self) -> str:
        return self.place.split(",")[0].strip() if self.place else ""

    @property
    def region(self) -> str:
        return self.place.split(",")[-1].strip() if self.place else ""

    def describe(self) -> str:
        if not self.valid:
            return "caller %s: not a phone number we can place" % (self.number or "(no number)")
        where = "%s (%s)" % (self.country_name or "unknown country", self.country or "?")
        return "caller %s: %s%s" % (self.number, where, ", %s" % self.place if self.place else ", no city known (mobile?)")


def _parse(text: str, region: str | None) -> phonenumbers.PhoneNumber | None:
    try:
        parsed = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return None
    return parsed if phonenumbers.is_valid_number(parsed) else None


def caller_facts(caller: str, dialed_e164: str = "") -> CallerFacts:
    """Facts about ``caller`` as a carrier delivers it (``+7812...``, ``7812...``,
    ``8812...``, ``007812...``); national forms are read in the country of the tenant's
    number that was called."""
    raw = caller.strip()
    home = _parse(dialed_e164, None) if dialed_e164.startswith("+") else None
    region = phonenumbers.region_code_for_number(home) if home is not None else None
    digits = raw[2:] if raw.startswith("00") else raw
    parsed = None
    if raw.startswith("+") or raw.startswith("00"):
        parsed = _parse("+" + digits.lstrip("+"), None)
    elif raw:
        parsed = _parse(raw, region) or (_parse("+" + raw, None) if raw.isdigit() else None)
    if parsed is None:
        return CallerFacts(raw)
    number = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    country_name = geocoder.country_name_for_number(parsed, "en")
    place = geocoder.description_for_number(parsed, "en")
    if place == country_name:
        place = ""
    return CallerFacts(number, True, phonenumbers.region_code_for_number(parsed) or "", country_name, place)


@functools.lru_cache(maxsize=2)
def place_names(kind: CallerMatch) -> Mapping[str, str]:
    """Every place the geocoder can name (English), normalised -> as written: for CITY the
    first part of its names ("St Petersburg", "Petersburg"), for REGION the whole names
    and their last parts ("Moscow", "IL"). Built once (~0.1 s): the geocoder's data is
    already loaded by ``caller_facts``' module."""
    from phonenumbers.geodata import GEOCODE_DATA

    names: dict[str, str] = {}
    for by_lang in GEOCODE_DATA.values():
        place = by_lang.get("en")
        if not place:
            continue
        parts = [place.split(",")[0].strip()] if kind is CallerMatch.CITY else [place, place.split(",")[-1].strip()]
        for part in parts:
            names.setdefault(normalize_place(part), part)
    return names


def unknown_place(kind: CallerMatch, value: str) -> str | None:
    """Why ``value`` can never match a city / region rule (no such place name in the
    geocoder), with the nearest names it knows; None when it is known."""
    names = place_names(kind)
    if normalize_place(value) in names:
        return None
    wanted = normalize_place(value)
    near = difflib.get_close_matches(wanted, list(names), n=3, cutoff=0.75) or sorted(n for n in names if wanted in n)[:3]
    hint = "; did you mean %s?" % ", ".join(names[n] for n in near) if near else ""
    return "no %s %r in the geocoder's place names (English, as pbx-explain shows them)%s" % (kind.value, value, hint)


def normalize_place(text: str) -> str:
    """``Saint-Petersburg``, ``St. Petersburg`` -> ``st petersburg``."""
    words = text.lower().replace(".", " ").replace("-", " ").split()
    return " ".join("st" if w == "saint" else w for w in words)


# ------------------------------------------------------------------ the rules


@dataclass(frozen=True)
class Verdict:
    """What the caller rules decided for one call.

    ``rule`` None: no rule applies, the schedule decides. ``pending``: ``rule`` needs a
    lookup before it can say. Otherwise the rule decided: ``block``, or ring ``agent``
    first (last agent / CRM) and then ``target`` (None after an agent: as the schedule
    says).
    """

    facts: CallerFacts
    notes: tuple[str, ...] = ()  # one line per rule tried, for the explainer
    rule: CallerRule | None = None
    pending: bool = False
    block: bool = False
    target: Target | None = None
    agent: Employee | None = None
    note: str = ""  # the decision, in words, for the route and logs


def describe_rule(rule: CallerRule) -> str:
    values = ", ".join(rule.values)
    kind = rule.match
    if kind is CallerMatch.LIST:
        what = "list of %d number%s" % (len(rule.values), "" if len(rule.values) == 1 else "s")
    elif kind is CallerMatch.LAST_AGENT:
        what = "last agent within %d day%s" % (rule.days, "" if rule.days == 1 else "s")
    elif kind is CallerMatch.CRM:
        what = "CRM lookup, up to %d ms" % rule.crm_timeout_ms
    else:
        what = "%s %s" % (kind.value, values)
    return "'%s' (%s%s%s)" % (rule.name, "not " if rule.negate else "", what, ", block" if rule.block else "")


def _matches(rule: CallerRule, facts: CallerFacts) -> tuple[bool, str]:
    """(matches, why) for the value-based kinds."""
    kind = rule.match
    if kind in GEO_MATCHES and not facts.valid:
        return False, "the caller's number does not say where they are"
    if kind is CallerMatch.COUNTRY:
        hit = facts.country.upper() in {v.upper() for v in rule.values}
        seen = "country %s" % (facts.country or "unknown")
    elif kind in (CallerMatch.CITY, CallerMatch.REGION):
        if not facts.place:
            return False, "no %s known for %s (only the country)" % (kind.value, facts.number)
        wanted = {normalize_place(v) for v in rule.values}
        places = {normalize_place(facts.city)} if kind is CallerMatch.CITY else {
            normalize_place(facts.place), normalize_place(facts.region)}
        hit = bool(wanted & places)
        seen = "%s %s" % (kind.value, facts.city if kind is CallerMatch.CITY else facts.place)
    elif kind is CallerMatch.PREFIX:
        hit = any(facts.number.startswith(v) for v in rule.values if v)
        seen = "number %s" % (facts.number or "(none)")
    else:  # LIST
        hit = facts.number in rule.values
        seen = "%s %s on the list" % (facts.number or "(no number)", "is" if hit else "is not")
    if rule.negate:
        hit = not hit
    return hit, seen


def _employee_by_extension(snap: TenantSnapshot, extension: str) -> Employee | None:
    for emp in snap.employees.values():
        if emp.extension == extension:
            return emp
    return None


def _found(rule: CallerRule, answer: CallerKnown, snap: TenantSnapshot) -> tuple[Employee | None, str]:
    """The employee the lookup named, if they can take the call, and why (not)."""
    emp = None
    if answer.employee_id is not None:
        emp = snap.employees.get(answer.employee_id)
        if emp is None:
            return None, "%s: employee #%d no longer exists" % (answer.note, answer.employee_id)
    elif answer.extension:
        emp = _employee_by_extension(snap, answer.extension)
        if emp is None:
            return None, "%s: no employee with extension %s" % (answer.note, answer.extension)
    if emp is None:
        return None, answer.note or "unknown caller"
    if not emp.logged_in:
        return None, "%s: %s (%s) is logged out" % (answer.note, emp.extension, emp.name)
    return emp, answer.note


def evaluate(snap: TenantSnapshot, dialed: str, facts: CallerFacts, answers: Mapping[int, CallerKnown]) -> Verdict:
    """Try the tenant's rules for a call from ``facts`` to its number ``dialed``."""
    notes: list[str] = []
    for position, rule in enumerate(snap.caller_rules, 1):
        head = "caller rule %d %s" % (position, describe_rule(rule))
        if rule.numbers and dialed not in rule.numbers:
            notes.append("%s: not for %s (only %s)" % (head, dialed, ", ".join(rule.numbers)))
            continue
        if rule.match in LOOKUP_MATCHES:
            if not facts.valid:
                why = "no caller number to look up"
                agent = None
            elif rule.id not in answers:
                notes.append("%s: asking %s" % (head, "the CRM" if rule.match is CallerMatch.CRM else "the call history"))
                return Verdict(facts, tuple(notes), rule, pending=True)
            else:
                agent, why = _found(rule, answers[rule.id], snap)
            if agent is not None:
                then = "then %s" % ("the rule's target" if rule.target is not None else "as the schedule says")
                notes.append("%s: matches: %s, rings %s (%s) first, %s" % (head, why, agent.extension, agent.name, then))
                note = "caller rule '%s': %s -> employee %s first" % (rule.name, why, agent.extension)
                return Verdict(facts, tuple(notes), rule, target=rule.target, agent=agent, note=note)
            if rule.target is None:
                notes.append("%s: %s; no fallback target, next rule" % (head, why))
                continue
            notes.append("%s: matches: %s -> the rule's target" % (head, why))
            return Verdict(facts, tuple(notes), rule, target=rule.target, note="caller rule '%s': %s" % (rule.name, why))
        hit, seen = _matches(rule, facts)
        if not hit:
            notes.append("%s: no match (%s)" % (head, seen))
            continue
        if rule.block:
            notes.append("%s: matches (%s): the call is refused" % (head, seen))
            return Verdict(facts, tuple(notes), rule, block=True, target=rule.target,
                           note="caller rule '%s': %s, blocked" % (rule.name, seen))
        notes.append("%s: matches (%s)" % (head, seen))
        return Verdict(facts, tuple(notes), rule, target=rule.target, note="caller rule '%s': %s" % (rule.name, seen))
    return Verdict(facts, tuple(notes))
