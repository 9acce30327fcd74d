"""Route targets written readably in documents, e.g. ``{department: "200"}``.

    {department: "200"}             by extension
    {employee: "101"}               by extension
    {menu: "Main"}                  by name
    {voicemail: "Sales voicemail"}  by name
    {external: "+74951234567"}      E.164
    {announcement: "ivr/closed.wav"}  a sound (null: the default sound)
    {fax: "Sales voicemail"}        receive a fax for this voicemail box (by name)
"""
from __future__ import annotations

from typing import Any

from orchestrator.core.model import TargetKind

KINDS = tuple(k.value for k in TargetKind)
KEYED_BY = {"department": "extension", "employee": "extension", "menu": "name", "voicemail": "name", "fax": "name"}


def parse_target(value: Any) -> tuple[str, Any] | str:
    """``(kind, reference)`` or an error message."""
    if not isinstance(value, dict) or len(value) != 1:
        return "a target is one of %s, e.g. {department: \"200\"}" % ", ".join("{%s: ...}" % k for k in KINDS)
    ((kind, ref),) = value.items()
    if kind not in KINDS:
        return "unknown target kind %r: use one of %s" % (kind, ", ".join(KINDS))
    if isinstance(ref, int) and not isinstance(ref, bool) and KEYED_BY.get(kind) == "extension":
        ref = str(ref)
    if kind == "announcement":
        if ref is not None and not isinstance(ref, str):
            return "announcement: give the sound file as text"
        return kind, ref
    if not isinstance(ref, str) or not ref:
        return "%s: give the %s as text" % (kind, KEYED_BY.get(kind, "E.164 number"))
    return kind, ref

