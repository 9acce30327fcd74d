"""YAML text -> :class:`Document`: the plain data plus the source line of every field.

Field paths look like ``departments[1].members[0].employee`` (mapping keys joined with
dots, sequence items as ``[i]``). Lines come from the YAML composer's node marks.

Scalars are resolved a little more strictly than YAML 1.1 so that phone numbers and
times stay text: only plain decimal integers (``101``, ``-5``) become numbers, so
``+74950000001``, ``0101`` and ``18:00`` (a base-60 integer in YAML 1.1!) stay strings.

A document is untrusted text, so the reader is bounded (each limit is one error with
its line, never a traceback, a long wait or unbounded memory):

* at most ``MAX_DOCUMENT_BYTES`` (2 MB): ``read_document`` reads at most one byte more
  than that, ``parse`` refuses a longer text;
* no anchors or aliases (``&x`` / ``*x``): an alias bomb of a few hundred bytes would
  otherwise expand to gigabytes; a tenant document never needs them;
* at most ``MAX_DEPTH`` nested collections (PyYAML's composer and constructor recurse:
  thousands of ``[`` would raise RecursionError) and ``MAX_NODES`` values in all;
* a mapping key given twice is an error at its second line (YAML loaders silently keep
  the last one).
"""
from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import yaml
from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.resolver import Resolver

from orchestrator.errors import FieldError, TenantDataError


MAX_DOCUMENT_BYTES = 2 * 1024 * 1024
MAX_DEPTH = 40  # a document needs about 6 (departments[0].members[0].employee)
MAX_NODES = 300_000  # a tenant of 10,000 employees has about 150,000


class Refused(yaml.MarkedYAMLError):
    """A document that is valid YAML but beyond what a tenant document may use."""


if getattr(yaml, "__with_libyaml__", False):
    from yaml._yaml import CParser  # libyaml binding (PyYAML exports CLoader, not the bare parser)

    class _Loader(Composer, CParser, SafeConstructor, Resolver):  # type: ignore[misc]
        """libyaml scans and parses (C, about 5x faster on a 2 MB document); PyYAML's own
        composer builds the nodes, so that ``DocLoader.compose_node`` can bound them."""

        def __init__(self, stream: str) -> None:
            CParser.__init__(self, stream)
            Composer.__init__(self)
            SafeConstructor.__init__(self)
            Resolver.__init__(self)
else:  # pragma: no cover - PyYAML built without libyaml
    _Loader = yaml.SafeLoader  # type: ignore[misc]


class DocLoader(_Loader):  # type: ignore[valid-type,misc]
    """A safe loader with stricter implicit int/float resolution, no aliases, and a cap
    on nesting depth and node count (see module doc)."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.depth = 0
        self.nodes = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            raise Refused(None, None, "anchors and aliases (&%s, *%s) are not allowed in a tenant document: "
                          "write the value out where it is used" % (event.anchor, event.anchor), event.start_mark)
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise Refused(None, None, "more than %d values: a tenant document is not that large; split it or "
                          "check it was generated right" % MAX_NODES, event.start_mark)
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                raise Refused(None, None, "nested more than %d levels deep: a tenant document needs far fewer "
                              "(check the brackets and indentation)" % MAX_DEPTH, event.start_mark)
            return super().compose_node(parent, index)  # type: ignore[no-any-return]
        finally:
            self.depth -= 1


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


def _walk(node: yaml.Node, path: str, lines: dict[str, int], duplicates: list[FieldError]) -> None:
    """Record the line of every field path; a key given twice in one mapping goes to
    ``duplicates``. Recursion is bounded by the loader's ``MAX_DEPTH``."""
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        first: dict[str, int] = {}
        for key_node, value_node in node.value:
            if isinstance(key_node, yaml.ScalarNode):
                child = join(path, key_node.value)
                line = key_node.start_mark.line + 1
                if key_node.value in first:
                    duplicates.append(FieldError(child, "is given twice (first on line %d): YAML would silently keep "
                                                        "only the last one; remove or rename one" % first[key_node.value], line))
                    continue
                first[key_node.value] = line
                lines[child] = line
                _walk(value_node, child, lines, duplicates)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _walk(item, join(path, index), lines, duplicates)


def _too_large(size: str) -> TenantDataError:
    return TenantDataError([FieldError("(document)", "the document is larger than %s (%d bytes): a tenant document "
                                                     "is far smaller; check the file" % (size, MAX_DOCUMENT_BYTES))])


def read_document(path: str, stdin: BinaryIO | None = None) -> str:
    """The text of a document file (``-``: standard input), reading at most
    ``MAX_DOCUMENT_BYTES`` + 1 bytes; TenantDataError when it is larger or not UTF-8.
    OSError (missing file...) is left to the caller."""
    if path == "-":
        raw = (stdin or sys.stdin.buffer).read(MAX_DOCUMENT_BYTES + 1)
    else:
        with Path(path).open("rb") as f:
            raw = f.read(MAX_DOCUMENT_BYTES + 1)
    if len(raw) > MAX_DOCUMENT_BYTES:
        raise _too_large("2 MB")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise TenantDataError([FieldError("(document)", "is not UTF-8 text (byte %d): save it as UTF-8" % exc.start)]) from None


def parse(text: str, source: str | None = None) -> Document:
    """Parse YAML text; a syntax error, a refused construct (alias, too deep, too large)
    or a duplicate key becomes a TenantDataError with its line."""
    if len(text) > MAX_DOCUMENT_BYTES or len(text.encode("utf-8", "surrogatepass")) > MAX_DOCUMENT_BYTES:
        raise _too_large("2 MB")
    loader = DocLoader(text)
    data: Any = None
    lines: dict[str, int] = {}
    duplicates: list[FieldError] = []
    try:
        node = loader.get_single_node()
        if node is not None:
            _walk(node, "", lines, duplicates)
            if duplicates:
                raise TenantDataError(duplicates)
            data = loader.construct_document(node)
    except Refused as exc:
        mark = exc.problem_mark
        raise TenantDataError([FieldError("(document)", str(exc.problem), mark.line + 1 if mark else None)]) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        raise TenantDataError([FieldError("(document)", "not valid YAML: %s" % (exc.problem or exc), line)]) from None
    except yaml.YAMLError as exc:
        raise TenantDataError([FieldError("(document)", "not valid YAML: %s" % exc)]) from None
    finally:
        loader.dispose()
    return Document(data=data, lines=lines, source=source)
