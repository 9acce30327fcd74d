"""Caller-based rules of a tenant document, tried before the schedule in this order.

    caller_rules:
      - name: VIP clients
        match: list                       # country | region | city | prefix | list | last_agent | crm
        values: ["+79161112233"]
        target: {employee: "101"}
      - name: Block list
        match: list
        values: ["+79990000000"]
        block: true                       # refused: the announcement (optional), CALL_REJECTED
        target: {announcement: ivr/ivr-call_rejected.wav}
      - name: Petersburg office
        match: city                       # the place phonenumbers' geocoder gives (English)
        values: [St Petersburg]
        numbers: ["+74950000001"]         # only calls to these of the tenant's numbers
        target: {department: "210"}
      - name: Foreign callers
        match: country                    # ISO 3166 codes
        values: [RU]
        negate: true                      # every caller NOT from these countries
        target: {department: "300"}
      - name: Last agent
        match: last_agent                 # who answered the caller's latest call within days
        days: 30
        target: {department: "200"}       # fallback (optional: without it the next rules decide)
      - name: CRM
        match: crm                        # the employee the CRM names (orchestrator/crm.py)
        crm: {url: "https://crm.example/pbx/responsible", timeout_ms: 1500}
        target: {department: "400"}       # unknown callers, and a CRM that does not answer in time

Which target kinds and references are valid is checked with every other target
(``validation._references``), numbers against the tenant's own.
"""
from __future__ import annotations

from typing import Any, Callable

from orchestrator.core.caller_rules import unknown_place
from orchestrator.core.model import LOOKUP_MATCHES, CallerMatch
from orchestrator.tenant_doc import rules
from orchestrator.tenant_doc.checker import Checker
from orchestrator.tenant_doc.source import join

RULE_KEYS = ("name", "match", "values", "negate", "block", "numbers", "days", "crm", "target")
CRM_KEYS = ("url", "timeout_ms")
MATCHES = tuple(m.value for m in CallerMatch)
LOOKUPS = tuple(m.value for m in LOOKUP_MATCHES)
VALUE_RULES = {
    CallerMatch.COUNTRY.value: rules.check_country,
    CallerMatch.PREFIX.value: rules.check_prefix,
    CallerMatch.LIST.value: rules.check_e164,
    CallerMatch.CITY.value: rules.check_place,
    CallerMatch.REGION.value: rules.check_place,
}

TargetReader = Callable[[Checker, dict, str, str], Any]


def _texts(c: Checker, obj: dict, key: str, path: str, rule: rules.Rule | None) -> tuple[list[tuple[int, str]], bool]:
    """The list ``obj[key]`` of texts, each checked by ``rule``, as (index, text); and
    whether any was wrong."""
    raw = obj.get(key)
    if raw is None:
        return [], False
    field = join(path, key)
    if not isinstance(raw, list):
        c.error(field, "must be a list, e.g. [\"+74951234567\"] or [St Petersburg]")
        return [], True
    errors = len(c.errors)
    out: list[tuple[int, str]] = []
    for i, value in enumerate(raw):
        item = join(field, i)
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str) or not value.strip():
            c.error(item, "must be text (put numbers in quotes: \"+74951234567\")")
            continue
        value = value.strip()
        if rule is not None and (problem := rule(value)):
            c.error(item, problem)
            continue
        if value in [v for _, v in out]:
            c.error(item, "%r is listed twice" % value)
            continue
        out.append((i, value))
    return out, len(c.errors) > errors


def check_caller_rules(c: Checker, items: list[tuple[str, dict]], read_target: TargetReader) -> list[dict[str, Any]]:
    out = [_rule(c, p, r, read_target) for p, r in items]
    seen: dict[str, str] = {}
    for r in out:
        if r["name"] in seen:
            c.error(join(r["_path"], "name"), "caller rule name %r is used twice (also %s)" % (r["name"], seen[r["name"]]))
        elif r["name"]:
            seen[r["name"]] = r["_path"]
    return out


def _rule(c: Checker, p: str, r: dict, read_target: TargetReader) -> dict[str, Any]:
    c.known_keys(r, p, RULE_KEYS)
    match = c.text(r, "match", p, required=True, rule=lambda v: rules.check_choice(v, MATCHES))
    lookup = match in LOOKUPS
    items, bad_values = _texts(c, r, "values", p, VALUE_RULES.get(match or ""))
    if match in (CallerMatch.CITY.value, CallerMatch.REGION.value):
        kind = CallerMatch(match)
        for i, value in items:  # a misspelt place would silently never match
            if problem := unknown_place(kind, value):
                c.error(join(join(p, "values"), i), problem)
    values = [v.upper() if match == CallerMatch.COUNTRY.value else v for _, v in items]
    if match is not None and not lookup and not values and not bad_values:
        c.error(join(p, "values"), "is required for a %s rule: the %s to match" % (match, {
            "country": "country codes (RU, DE)", "region": "region names", "city": "city names",
            "prefix": "number prefixes (+7812)", "list": "E.164 numbers"}[match]))
    if lookup and r.get("values"):
        c.error(join(p, "values"), "is not used by a %s rule (it looks the caller up)" % match)
    negate = c.boolean(r, "negate", p, False)
    block = c.boolean(r, "block", p, False)
    if lookup and negate:
        c.error(join(p, "negate"), "only country, region, city, prefix and list rules can be negated")
    if lookup and block:
        c.error(join(p, "block"), "a %s rule cannot block; use a list rule for a block list" % match)
    target = read_target(c, r, "target", p)
    if block and target is not None and target[0] != "announcement":
        c.error(join(p, "target"), "a block rule refuses the call: its target may only be the announcement "
                                   "played first, e.g. {announcement: ivr/ivr-call_rejected.wav}")
    if match is not None and not lookup and not block and target is None and "target" not in r:
        c.error(join(p, "target"), "is required: where matching callers go, e.g. {department: \"200\"}")
    days = c.integer(r, "days", p, 30, minimum=1, maximum=3650)
    if "days" in r and match != CallerMatch.LAST_AGENT.value:
        c.error(join(p, "days"), "only a last_agent rule looks back a number of days")
    crm_url, timeout = None, 1000
    if "crm" in r and match != CallerMatch.CRM.value:
        c.error(join(p, "crm"), "only a crm rule asks a CRM")
    elif match == CallerMatch.CRM.value:
        cp = join(p, "crm")
        crm = c.mapping(r.get("crm"), cp) if r.get("crm") is not None else None
        if crm is None and r.get("crm") is None:
            c.error(cp, "is required: {url: \"https://crm.example/pbx/responsible\", timeout_ms: 1500}")
        if crm is not None:
            c.known_keys(crm, cp, CRM_KEYS)
            crm_url = c.text(crm, "url", cp, required=True, rule=rules.check_url)
            timeout = c.integer(crm, "timeout_ms", cp, 1000, minimum=100, maximum=1500) or 1000
    numbers, _ = _texts(c, r, "numbers", p, rules.check_e164)
    return {
        "_path": p,
        "name": c.text(r, "name", p, required=True),
        "match": match, "values": values, "negate": negate, "block": block,
        "numbers": [(join(join(p, "numbers"), i), n) for i, n in numbers],
        "days": days if days is not None else 30, "crm_url": crm_url, "crm_timeout_ms": timeout, "target": target,
    }
