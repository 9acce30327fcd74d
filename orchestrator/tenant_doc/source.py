"""YAML text -> :class:`Document`: the plain data plus the source line of every field.

Field paths look like ``departments[1].members[0].employee`` (mapping keys joined with
dots, sequence items as ``[i]``). Lines come from the YAML composer's node marks.

Scalars are resolved a little more strictly than YAML 1.1 so that phone numbers and
times stay text: only plain decimal integers (``101``, ``-5``) become numbers, so
``+74950000001``, ``0101`` and ``18:00`` (a base-60 integer in YAML 1.1!) stay strings.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import yaml

from orchestrator.errors import FieldError, TenantDataError


class DocLoader(yaml.SafeLoader):
    """SafeLoader with stricter implicit int/float resolution (see module doc)."""


def _timestamp_or_text(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> Any:
    """A malformed date (2026-13-01) stays text, so validation can name its line."""
    try:
        return yaml.SafeLoader.construct_yaml_timestamp(loader, node)
    except ValueError:
        return loader.construct_scalar(node)


DocLoader.add_constructor("tag:yaml.org,2002:timestamp", _timestamp_or_text)
DocLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float")]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
DocLoader.add_implicit_resolver("tag:yaml.org,2002:int", re.compile(r"^(?:0|-?[1-9][0-9]*)$"), list("-0123456789"))
DocLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^-?(?:0|[1-9][0-9]*)\.[0-9]+$"), list("-0123456789")
)


def join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return "%s[%d]" % (path, key)
    return "%s.%s" % (path, key) if path else str(key)


@dataclass
class Document:
    data: Any
    lines: dict[str, int] = field(default_factory=dict)
    source: str | None = None  # file name, for messages

    def line(self, path: str) -> int | None:
        """The line of ``path``, or of its nearest ancestor present in the text."""
        while path:
            if path in self.lines:
                return self.lines[path]
            cut = max(path.rfind("."), path.rfind("["))
            path = path[:cut] if cut > 0 else ""
        return self.lines.get("")


def _walk(node: yaml.Node, path: str, lines: dict[str, int]) -> None:
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            if isinstance(key_node, yaml.ScalarNode):
                child = join(path, key_node.value)
                lines[child] = key_node.start_mark.line + 1
                _walk(value_node, child, lines)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _walk(item, join(path, index), lines)


def parse(text: str, source: str | None = None) -> Document:
    """Parse YAML text; a syntax error becomes a TenantDataError with its line."""
    loader = DocLoader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        raise TenantDataError([FieldError("(document)", "not valid YAML: %s" % (exc.problem or exc), line)]) from None
    except yaml.YAMLError as exc:
        raise TenantDataError([FieldError("(document)", "not valid YAML: %s" % exc)]) from None
    finally:
        loader.dispose()
    lines: dict[str, int] = {}
    if node is not None:
        _walk(node, "", lines)
    return Document(data=data, lines=lines, source=source)
