"""Dial strings: ``{global}[local]leg,[local]leg2|leg3`` (switch_ivr_originate.c).

``,`` rings legs at once (ring-all), ``|`` tries the groups one after another. ``{...}``
at the start of the string (or of a ``|`` group) applies to every leg that follows;
``[...]`` before a leg applies to that leg only. Commas inside ``{}``/``[]`` separate
variables; ``\\,`` escapes a comma in a value. ``<...>`` (enterprise originate) is not
supported.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class LegSpec:
    target: str
    vars: dict[str, str] = field(default_factory=dict)


def _split_top(text: str, sep: str) -> list[str]:
    out, cur, depth, i = [], [], 0, 0
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text):
            cur.append(text[i : i + 2])
            i += 2
            continue
        if c in "{[":
            depth += 1
        elif c in "}]":
            depth = max(0, depth - 1)
        if c == sep and depth == 0:
            out.append("".join(cur))
            cur = []
        else:
            cur.append(c)
        i += 1
    out.append("".join(cur))
    return out


def parse_vars(body: str) -> dict[str, str]:
    result: dict[str, str] = {}
    for part in _split_top(body, ","):
        if not part.strip():
            continue
        name, _, value = part.partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] == "'":
            value = value[1:-1]
        result[name.strip()] = value.replace("\\,", ",")
    return result


def _take_block(text: str, open_: str, close: str) -> tuple[dict[str, str], str]:
    text = text.lstrip()
    if not text.startswith(open_):
        return {}, text
    depth = 0
    for i, c in enumerate(text):
        if c == open_:
            depth += 1
        elif c == close:
            depth -= 1
            if depth == 0:
                return parse_vars(text[1:i]), text[i + 1 :]
    raise ValueError("unterminated %s in dial string %r" % (open_, text))


def parse(dial: str) -> list[list[LegSpec]]:
    """Groups (tried in order) of legs (rung together)."""
    global_vars, rest = _take_block(dial.strip(), "{", "}")
    groups: list[list[LegSpec]] = []
    for group_text in _split_top(rest, "|"):
        group_vars, group_text = _take_block(group_text, "{", "}")
        legs: list[LegSpec] = []
        for leg_text in _split_top(group_text, ","):
            local, target = _take_block(leg_text, "[", "]")
            target = target.strip()
            if not target:
                continue
            merged = dict(global_vars)
            merged.update(group_vars)
            merged.update(local)
            legs.append(LegSpec(target, merged))
        if legs:
            groups.append(legs)
    return groups
