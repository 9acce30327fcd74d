"""Collects FieldErrors while reading untrusted document data field by field.

Every getter takes the containing mapping, the key and the mapping's path; a wrong
type or a broken rule adds a FieldError (path + YAML line) and returns None, so that
validation goes on and reports every problem at once.
"""
from __future__ import annotations

from datetime import date
from typing import Any, Callable

from orchestrator.errors import FieldError
from orchestrator.tenant_doc.source import Document, join

Rule = Callable[[str], "str | None"]


def _type_name(value: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "text", int: "a number", bool: "true/false"}.get(
        type(value), type(value).__name__
    )


class Checker:
    def __init__(self, doc: Document) -> None:
        self.doc = doc
        self.errors: list[FieldError] = []

    def error(self, path: str, message: str) -> None:
        self.errors.append(FieldError(path, message, self.doc.line(path)))

    def known_keys(self, obj: dict, path: str, allowed: tuple[str, ...]) -> None:
        for key in obj:
            if key not in allowed:
                self.error(join(path, str(key)), "unknown field; expected one of %s" % ", ".join(allowed))

    def mapping(self, value: Any, path: str) -> dict | None:
        if isinstance(value, dict):
            return value
        self.error(path, "must be a mapping (key: value lines), got %s" % _type_name(value))
        return None

    def items(self, data: dict, key: str, path: str = "") -> list[tuple[str, dict]]:
        """``[(path, mapping)]`` of the list ``data[key]`` (missing = empty list)."""
        value = data.get(key)
        list_path = join(path, key)
        if value is None:
            return []
        if not isinstance(value, list):
            self.error(list_path, "must be a list (lines starting with '- '), got %s" % _type_name(value))
            return []
        out = []
        for index, item in enumerate(value):
            item_path = join(list_path, index)
            if self.mapping(item, item_path) is not None:
                out.append((item_path, item))
        return out

    def text(self, obj: dict, key: str, path: str, *, required: bool = False, rule: Rule | None = None,
             numeric_ok: bool = False) -> str | None:
        field = join(path, key)
        value = obj.get(key)
        if value is None or value == "":
            if required:
                self.error(field, "is required")
            return None
        if numeric_ok and isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str):
            self.error(field, "must be text, got %s %r (put it in quotes)" % (_type_name(value), value))
            return None
        value = value.strip()
        if rule is not None:
            problem = rule(value)
            if problem:
                self.error(field, problem)
                return None
        return value

    def integer(self, obj: dict, key: str, path: str, default: int | None, *, minimum: int | None = None,
                maximum: int | None = None) -> int | None:
        field = join(path, key)
        value = obj.get(key, default)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            self.error(field, "must be a whole number, got %s %r" % (_type_name(value), value))
            return default
        if minimum is not None and value < minimum:
            self.error(field, "must be at least %d, got %d" % (minimum, value))
        elif maximum is not None and value > maximum:
            self.error(field, "must be at most %d, got %d" % (maximum, value))
        return value

    def boolean(self, obj: dict, key: str, path: str, default: bool) -> bool:
        value = obj.get(key, default)
        if not isinstance(value, bool):
            self.error(join(path, key), "must be true or false, got %r" % (value,))
            return default
        return value

    def day(self, obj: dict, key: str, path: str) -> date | None:
        field = join(path, key)
        value = obj.get(key)
        if isinstance(value, date):
            return value
        if isinstance(value, str):
            try:
                return date.fromisoformat(value.strip())
            except ValueError:
                pass
        self.error(field, "must be a date like 2025-01-01, got %r" % (value,))
        return None
