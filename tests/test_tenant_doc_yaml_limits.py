"""The tenant document reader is bounded: aliases refused, 2 MB at most (read no
further), nesting capped, duplicate keys reported - each as an error with its line,
never a long wait, gigabytes of memory or a RecursionError."""
from __future__ import annotations

import io
from pathlib import Path

import pytest

from orchestrator import tenant_cli
from orchestrator.errors import FieldError, TenantDataError
from orchestrator.tenant_doc import load_and_validate, parse
from orchestrator.tenant_doc.source import MAX_DEPTH, MAX_DOCUMENT_BYTES, read_document
from tests.test_tenant_doc_validation import BASE, line_of

# "Billion laughs": 9 levels of 9 aliases, about 500 bytes, 9**9 = 387 million strings once expanded.
BOMB = "tenant: &a [lol,lol,lol,lol,lol,lol,lol,lol,lol]\n" + "".join(
    "k%d: &%s [%s]\n" % (i, chr(ord("a") + i), ",".join(["*" + chr(ord("a") + i - 1)] * 9)) for i in range(1, 9))


def refused(text: str) -> list[FieldError]:
    with pytest.raises(TenantDataError) as exc:
        parse(text)
    return exc.value.errors


def test_alias_bomb_is_refused_at_once() -> None:
    assert len(BOMB) < 600
    (error,) = refused(BOMB)
    assert error.line == 1 and "anchors and aliases" in error.message and "not allowed" in error.message


@pytest.mark.parametrize("text, line", [
    ("tenant: {name: &n Acme}\nemployees: []\n", 1),  # an anchor alone
    ("tenant:\n  name: Acme\nx: *n\n", 3),  # an alias of nothing
    ("tenant: &t {name: Acme}\nother:\n  <<: *t\n", 1),  # merge keys need aliases too
])
def test_anchors_and_aliases_are_refused_with_their_line(text: str, line: int) -> None:
    (error,) = refused(text)
    assert error.line == line and "anchors and aliases" in error.message


def test_deep_flow_nesting_is_an_error_not_a_recursion_error() -> None:
    (error,) = refused("tenant: " + "[" * 5000 + "]" * 5000 + "\n")
    assert error.field == "(document)" and error.line == 1 and "nest" in error.message


def test_nesting_deeper_than_the_cap_is_refused_with_its_line() -> None:
    text = "".join("  " * i + "k%d:\n" % i for i in range(MAX_DEPTH + 10)) + "  " * (MAX_DEPTH + 10) + "x\n"
    (error,) = refused(text)
    assert "nested more than %d levels" % MAX_DEPTH in error.message
    assert error.line == MAX_DEPTH  # the first node past the cap (the top mapping is level 1)
    assert parse("".join("  " * i + "k%d:\n" % i for i in range(10)) + "  " * 10 + "x\n").data is not None


@pytest.mark.parametrize("old, new, field, key", [
    ("  name: Acme\n", "  name: Acme\n  name: Other\n", "tenant.name", "  name: "),
    ('    extension: "101"\n', '    extension: "101"\n    extension: "109"\n', "employees[0].extension", "    extension: \"10"),
    ("menus:\n", "menus: []\nmenus:\n", "menus", "menus:"),
    ('      "1": {department: "200"}\n', '      "1": {department: "200"}\n      "1": {employee: "101"}\n',
     "menus[0].options.1", '      "1": '),
])
def test_duplicate_keys_are_errors_with_their_line(old: str, new: str, field: str, key: str) -> None:
    assert old in BASE
    text = BASE.replace(old, new, 1)
    start = text.index(new)
    first, second = line_of(text[start:], key) + text.count("\n", 0, start), line_of(text[start:], key, 1) + text.count("\n", 0, start)
    (error,) = refused(text)
    assert (error.field, error.line) == (field, second)
    assert "given twice (first on line %d)" % first in error.message


def test_every_duplicate_key_is_reported() -> None:
    text = BASE.replace("  name: Acme\n", "  name: Acme\n  name: B\n", 1).replace(
        "    extension: \"102\"\n", "    extension: \"102\"\n    extension: \"104\"\n", 1)
    assert [e.field for e in refused(text)] == ["tenant.name", "employees[1].extension"]


def test_text_over_the_cap_is_refused_without_parsing() -> None:
    (error,) = refused("tenant: {name: x}\n#" + "x" * MAX_DOCUMENT_BYTES)
    assert "larger than 2 MB" in error.message
    (error,) = refused("# " + "я" * (MAX_DOCUMENT_BYTES // 2))  # characters under the cap, bytes over it
    assert "larger than 2 MB" in error.message


class CountingStream(io.RawIOBase):
    """An endless stream counting the bytes handed out."""

    def __init__(self) -> None:
        self.given = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        n = len(buffer)
        buffer[:n] = b"#" * n
        self.given += n
        return n


def test_reader_reads_at_most_one_byte_past_the_cap() -> None:
    stream = CountingStream()
    with pytest.raises(TenantDataError) as exc:
        read_document("-", stdin=stream)  # type: ignore[arg-type]
    assert "larger than 2 MB" in exc.value.errors[0].message
    assert stream.given == MAX_DOCUMENT_BYTES + 1


def test_a_50_mb_file_is_refused_by_the_cli_without_being_read_whole(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    big = tmp_path / "big.yaml"
    with big.open("wb") as f:
        f.truncate(50 * 1024 * 1024)  # sparse: 50 MB of zero bytes
    assert tenant_cli.main(["validate", str(big)]) == 1
    assert "larger than 2 MB" in capsys.readouterr().err


def test_cli_reports_the_bomb_and_a_non_utf8_file_with_their_lines(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(BOMB)
    assert tenant_cli.main(["validate", str(bomb)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("%s:1: (document): anchors and aliases" % bomb)
    latin = tmp_path / "latin1.yaml"
    latin.write_bytes(BASE.replace("Acme", "Acm\xe9").encode("latin-1"))
    assert tenant_cli.main(["validate", str(latin)]) == 1
    assert "is not UTF-8 text" in capsys.readouterr().err


def test_a_document_at_the_cap_still_loads() -> None:
    text = BASE + "#" * (MAX_DOCUMENT_BYTES - len(BASE) - 1) + "\n"
    assert len(text.encode()) == MAX_DOCUMENT_BYTES
    doc, _ = load_and_validate(text)
    assert doc.data["tenant"]["name"] == "Acme"


def test_export_never_writes_anchors_for_shared_objects() -> None:
    import yaml

    from orchestrator.tenant_doc.exporter import _Dumper

    shared = {"weekdays": [0, 1], "start": "09:00"}
    text = yaml.dump({"a": shared, "b": shared, "c": [shared]}, Dumper=_Dumper, sort_keys=False)
    assert "&" not in text and "*" not in text
    assert parse(text).data == {"a": shared, "b": shared, "c": [shared]}
