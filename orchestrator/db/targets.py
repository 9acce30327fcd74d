"""The one route-target reference used by every "where does the call go" field.

A target is stored as four columns ``<name>_kind``, ``<name>_ref_id``, ``<name>_number``
and ``<name>_sound`` mapped to one composite attribute ``<name>`` (a :class:`TargetRef`),
with a check constraint that the right column is set for the kind:

    department / employee / menu / voicemail  -> ref_id (an object of the same tenant)
    fax                                       -> ref_id (the voicemail box it is delivered to)
    external                                  -> number (E.164)
    announcement                              -> sound (optional: default sound)

``target_mixin("no_answer")`` builds the columns and the composite once; each table
using it lists ``target_check("no_answer")`` in its ``__table_args__``. That ref_id
points into the same tenant is checked by ``orchestrator.tenant_doc.validation``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import CheckConstraint, Integer, String
from sqlalchemy.orm import composite, declared_attr, mapped_column

from orchestrator.core.model import Target, TargetKind

REF_KINDS = (TargetKind.DEPARTMENT, TargetKind.EMPLOYEE, TargetKind.MENU, TargetKind.VOICEMAIL, TargetKind.FAX)
KIND_VALUES = tuple(k.value for k in TargetKind)


@dataclass
class TargetRef:
    kind: str | None = None
    ref_id: int | None = None
    number: str | None = None
    sound: str | None = None

    @property
    def is_empty(self) -> bool:
        return self.kind is None

    def to_core(self) -> Target | None:
        if self.kind is None:
            return None
        # The sound is the column's unchecked text here: the snapshot loader (db.snapshot
        # ``_target``) replaces it with a checked Sound, or None, before any call sees it.
        return Target(TargetKind(self.kind), ref_id=self.ref_id, number=self.number,
                      sound=self.sound)  # type: ignore[arg-type]

    @classmethod
    def from_core(cls, target: Target | None) -> "TargetRef":
        if target is None:
            return cls()
        return cls(target.kind.value, target.ref_id, target.number, target.sound)

    @classmethod
    def of(cls, kind: TargetKind | str, ref: int | str | None = None) -> "TargetRef":
        """``TargetRef.of("department", 5)``, ``of("external", "+7...")``, ``of("announcement", "x.wav")``."""
        kind = TargetKind(kind)
        if kind in REF_KINDS:
            return cls(kind.value, ref_id=int(ref) if ref is not None else None)
        if kind is TargetKind.EXTERNAL:
            return cls(kind.value, number=str(ref))
        return cls(kind.value, sound=str(ref) if ref is not None else None)


def read_target(obj: Any, prefix: str) -> TargetRef:
    """The target stored in ``obj``'s four ``prefix_*`` columns, read from the columns
    themselves: SQLAlchemy caches the composite, so after a form (or any code) set the
    columns directly, ``obj.<prefix>`` may still show the old value until a refresh."""
    return TargetRef(*(getattr(obj, "%s_%s" % (prefix, part)) for part in ("kind", "ref_id", "number", "sound")))


def target_check(prefix: str) -> CheckConstraint:
    k, r, n, s = ("%s_%s" % (prefix, c) for c in ("kind", "ref_id", "number", "sound"))
    refs = ", ".join("'%s'" % kind.value for kind in REF_KINDS)
    sql = (
        "({k} IS NULL AND {r} IS NULL AND {n} IS NULL AND {s} IS NULL)"
        " OR ({k} IS NOT NULL AND {k} IN ({refs}) AND {r} IS NOT NULL AND {n} IS NULL AND {s} IS NULL)"
        " OR ({k} IS NOT NULL AND {k} = 'external' AND {n} IS NOT NULL AND {r} IS NULL AND {s} IS NULL)"
        " OR ({k} IS NOT NULL AND {k} = 'announcement' AND {r} IS NULL AND {n} IS NULL)"
    ).format(k=k, r=r, n=n, s=s, refs=refs)
    return CheckConstraint(sql, name="%s_target" % prefix)


def target_mixin(prefix: str) -> type:
    """A mixin class adding the four columns and the composite attribute ``prefix``."""
    names = {c: "%s_%s" % (prefix, c) for c in ("kind", "ref_id", "number", "sound")}
    types: dict[str, Any] = {"kind": String(16), "ref_id": Integer, "number": String(32), "sound": String(255)}

    def column(part: str) -> declared_attr[Any]:
        return declared_attr(lambda cls: mapped_column(names[part], types[part], nullable=True))

    namespace: dict[str, Any] = {names[part]: column(part) for part in names}
    namespace[prefix] = declared_attr(
        lambda cls: composite(TargetRef, *(getattr(cls, names[p]) for p in ("kind", "ref_id", "number", "sound")))
    )
    return type("%sTargetMixin" % prefix.title().replace("_", ""), (), namespace)
