"""Every validation rule of tenant documents: a failing case naming the field path AND
the YAML line (the line is found by searching the text for the offending snippet)."""
from __future__ import annotations

import pytest

from orchestrator.errors import TenantDataError
from orchestrator.tenant_doc import parse, validate

BASE = """\
tenant:
  name: Acme
  sip_domain: acme.example
  timezone: Europe/Moscow
employees:
  - name: Anna
    extension: "101"
  - name: Boris
    extension: "102"
    mobile: "+79160000002"
    forward_to_mobile_after: 10
  - name: Clara
    extension: "103"
departments:
  - name: Sales
    extension: "200"
    no_answer: {voicemail: Sales box}
    members:
      - employee: "101"
      - employee: "102"
voicemail_boxes:
  - name: Sales box
    owners: ["101"]
menus:
  - name: Main
    options:
      "1": {department: "200"}
    default: {department: "200"}
schedules:
  - name: Office
    default: true
    intervals:
      - {weekdays: [0, 1, 2, 3, 4], start: "09:00", end: "13:00"}
      - {weekdays: [0, 1, 2, 3, 4], start: "14:00", end: "18:00"}
    exceptions:
      - {date: 2026-01-01, name: New Year}
numbers:
  - number: "+74951230001"
    mode: schedule
    work: {menu: Main}
    after_hours: {voicemail: Sales box}
"""


def line_of(text: str, snippet: str, nth: int = 0) -> int:
    pos = -1
    for _ in range(nth + 1):
        pos = text.index(snippet, pos + 1)
    return text.count("\n", 0, pos) + 1


def errors(text: str) -> list[tuple[str, int | None, str]]:
    return [(e.field, e.line, e.message) for e in validate(parse(text))]


def only(text: str) -> tuple[str, int | None, str]:
    found = errors(text)
    assert len(found) == 1, found
    return found[0]


def test_base_document_is_valid() -> None:
    assert errors(BASE) == []


@pytest.mark.parametrize("old, new, field, snippet, words", [
    # required fields
    ("  name: Acme\n", "", "tenant.name", "tenant:", "required"),
    ("  - name: Boris\n    extension", "  - extension", "employees[1].name", 'extension: "102"', "required"),
    # types
    ('    extension: "103"\n', '    extension: [1, 0, 3]\n', "employees[2].extension", "extension: [1", "text"),
    ("forward_to_mobile_after: 10", "forward_to_mobile_after: soon", "employees[1].forward_to_mobile_after",
     "forward_to_mobile_after: soon", "whole number"),
    ("    default: true\n", "    default: yes please\n", "schedules[0].default", "default: yes please", "true or false"),
    # E.164 (phonenumbers)
    ('number: "+74951230001"', 'number: "+7495"', "numbers[0].number", 'number: "+7495"', "E.164"),
    ('mobile: "+79160000002"', 'mobile: "89160000002"', "employees[1].mobile", 'mobile: "89160000002"', "E.164"),
    ('mobile: "+79160000002"', 'mobile: +7 916 000-00-02', "employees[1].mobile", "mobile: +7 916", "E.164"),
    # IANA time zone
    ("timezone: Europe/Moscow", "timezone: Moscow/Kremlin", "tenant.timezone", "timezone: Moscow", "IANA"),
    # extension format and feature codes
    ('extension: "103"', 'extension: "1"', "employees[2].extension", 'extension: "1"', "2 to 6 digits"),
    ('extension: "103"', 'extension: "1234567"', "employees[2].extension", 'extension: "1234567"', "2 to 6"),
    ('extension: "103"', 'extension: "*72"', "employees[2].extension", 'extension: "*72"', "feature code"),
    # references must exist in the same tenant
    ('      - employee: "102"', '      - employee: "109"', "departments[0].members[1].employee",
     'employee: "109"', "no employee '109'"),
    ("work: {menu: Main}", "work: {menu: Mian}", "numbers[0].work.menu", "work: {menu: Mian}", "no menu 'Mian'"),
    ('owners: ["101"]', 'owners: ["101", "555"]', "voicemail_boxes[0].owners[1]", 'owners: ["101", "555"]',
     "no employee"),
    ("    mode: schedule\n", "    mode: schedule\n    schedule: Night\n", "numbers[0].schedule", "schedule: Night",
     "no schedule 'Night'"),
    ('      - employee: "102"', '      - employee: "101"', "departments[0].members[1].employee",
     '      - employee: "101"\n      - employee: "101"', "member twice"),
    # targets
    ("default: {department: \"200\"}", "default: {queue: \"200\"}", "menus[0].default", 'default: {queue',
     "unknown target kind"),
    ("after_hours: {voicemail: Sales box}", "after_hours: {external: \"+7 495\"}", "numbers[0].after_hours.external",
     "after_hours: {external", "E.164"),
    ("    mode: schedule\n", "    mode: sometimes\n", "numbers[0].mode", "mode: sometimes", "must be one of"),
    # schedules: start < end, max 48:00, weekday 0-6
    ('start: "09:00", end: "13:00"', 'start: "13:00", end: "09:00"', "schedules[0].intervals[0].end",
     'start: "13:00"', "after start"),
    ('start: "14:00", end: "18:00"', 'start: "14:00", end: "49:00"', "schedules[0].intervals[1].end",
     'end: "49:00"', "48:00"),
    ("weekdays: [0, 1, 2, 3, 4], start: \"14", "weekdays: [0, 7], start: \"14", "schedules[0].intervals[1].weekdays[1]",
     "weekdays: [0, 7]", "0 (Monday) to 6"),
    ("{date: 2026-01-01, name: New Year}", "{date: 2026-13-01, name: New Year}", "schedules[0].exceptions[0].date",
     "date: 2026-13-01", "date like"),
    # outbound calls: caller IDs are the tenant's own numbers; dial codes; menu "back"
    ('    extension: "103"\n', '    extension: "103"\n    outbound_caller_id: "+74951230009"\n',
     "employees[2].outbound_caller_id", 'outbound_caller_id: "+74951230009"', "not a number of this tenant"),
    ('    no_answer: {voicemail: Sales box}\n', '    no_answer: {voicemail: Sales box}\n    outbound_caller_id: "+74990000000"\n',
     "departments[0].outbound_caller_id", 'outbound_caller_id: "+7499', "not a number of this tenant"),
    ("    work: {menu: Main}\n", '    work: {menu: Main}\n    dial_code: "12a"\n', "numbers[0].dial_code",
     'dial_code: "12a"', "1-3 digits"),
    ('    default: {department: "200"}\n', '    default: {department: "200"}\n    back_digit: "#"\n',
     "menus[0].back_digit", 'back_digit: "#"', "back digit"),
    ('    default: {department: "200"}\n', '    default: {department: "200"}\n    back_digit: "1"\n',
     "menus[0].back_digit", 'back_digit: "1"', "also an option"),
    # queue announcements: every 5 to 600 s of music (the database's range)
    ('    no_answer: {voicemail: Sales box}\n', '    no_answer: {voicemail: Sales box}\n    queue: {music: m.wav, announce_every: 2}\n',
     "departments[0].queue.announce_every", "announce_every: 2", "at least 5"),
    ('    no_answer: {voicemail: Sales box}\n', '    no_answer: {voicemail: Sales box}\n    queue: {music: m.wav, announce_every: 900}\n',
     "departments[0].queue.announce_every", "announce_every: 900", "at most 600"),
    # unknown fields (typos) are refused
    ("    owners:", "    ownerz:", "voicemail_boxes[0].ownerz", "ownerz", "unknown field"),
    ('      "1": {department: "200"}', '      "1": {department: "200"}\n      "X": {department: "200"}',
     "menus[0].options.X", '"X"', "menu digit"),
])
def test_rule_names_field_and_line(old: str, new: str, field: str, snippet: str, words: str) -> None:
    assert old in BASE
    text = BASE.replace(old, new, 1)
    got_field, got_line, message = only(text)
    assert got_field == field
    nth = 1 if snippet.startswith('      - employee: "101"\n') else 0
    expected_line = line_of(text, snippet) + (1 if nth else 0)
    assert got_line == expected_line, (got_line, expected_line, message)
    assert words in message


def test_extension_clash_across_employees_departments_menus_and_boxes() -> None:
    text = BASE.replace('  - name: Sales box\n', '  - name: Sales box\n    extension: "101"\n')
    text = text.replace("  - name: Main\n", '  - name: Main\n    extension: "200"\n')
    found = errors(text)
    assert {(f, l) for f, l, _ in found} == {
        ("employees[0].extension", line_of(text, 'extension: "101"')),
        ("voicemail_boxes[0].extension", line_of(text, 'extension: "101"', 1)),
        ("departments[0].extension", line_of(text, 'extension: "200"')),
        ("menus[0].extension", line_of(text, 'extension: "200"', 1)),
    }
    assert all("already used" in m for _, _, m in found)


def test_overlapping_intervals_are_refused_including_across_midnight() -> None:
    text = BASE.replace('start: "14:00", end: "18:00"', 'start: "12:00", end: "18:00"')
    assert only(text)[:2] == ("schedules[0].intervals[1]", line_of(text, 'start: "12:00"'))
    night = BASE.replace("    exceptions:", '      - {weekday: 0, start: "22:00", end: "33:30"}\n    exceptions:')
    field, line, message = only(night)  # Monday 22:00 -> Tuesday 09:30 overlaps Tuesday 09:00
    assert (field, line) == ("schedules[0].intervals[0]", line_of(night, 'weekdays: [0, 1, 2, 3, 4], start: "09'))
    assert "overlaps" in message
    ok = BASE.replace("    exceptions:", '      - {weekday: 4, start: "22:00", end: "32:00"}\n    exceptions:')
    assert errors(ok) == []  # Friday night shift until Saturday 08:00 is fine


def test_only_one_default_schedule() -> None:
    text = BASE.replace("numbers:", "  - name: Night\n    default: true\nnumbers:")
    assert only(text)[:2] == ("schedules[1].default", line_of(text, "default: true", 1))


def test_route_target_cycles_are_refused() -> None:
    # menu Main -> department 200 -> (no answer) menu Main
    text = BASE.replace("no_answer: {voicemail: Sales box}", "no_answer: {menu: Main}")
    found = errors(text)
    # both edges closing the loop are named (option 1 and the default), each with its line
    assert [(f, l) for f, l, _ in found] == [
        ("menus[0].options.1", line_of(text, '"1": {department: "200"}')),
        ("menus[0].default", line_of(text, 'default: {department: "200"}')),
    ]
    for _, _, message in found:
        assert "cycle: department 200 -> menu Main -> department 200" in message
    # a menu that sends a key to itself
    self_loop = BASE.replace('      "1": {department: "200"}', '      "1": {department: "200"}\n      "9": {menu: Main}')
    assert only(self_loop)[:2] == ("menus[0].options.9", line_of(self_loop, '"9": {menu: Main}'))


def test_schedule_mode_needs_a_schedule_and_targets() -> None:
    text = BASE.replace("    default: true\n", "").replace("    after_hours: {voicemail: Sales box}\n", "")
    assert {f for f, _, _ in errors(text)} == {"numbers[0].schedule", "numbers[0].after_hours"}


def test_yaml_syntax_error_names_the_line() -> None:
    broken = BASE.replace("  timezone: Europe/Moscow", "  timezone: [Europe/Moscow")
    with pytest.raises(TenantDataError) as info:
        parse(broken)
    (error,) = info.value.errors
    assert error.line is not None and error.line >= line_of(broken, "timezone: [")


def test_plain_data_validates_without_lines_and_garbage_does_not_crash() -> None:
    found = validate({"tenant": {"name": "X", "sip_domain": "x.example"}, "employees": "nobody"})
    assert [(e.field, e.line) for e in found] == [("employees", None)]
    assert [e.field for e in validate(parse("- just\n- a list\n"))] == ["(document)"]
    assert [e.field for e in validate(parse(""))] == ["tenant"]


def test_dial_codes_are_unique_and_own_caller_ids_are_accepted() -> None:
    text = BASE.replace("    work: {menu: Main}\n", '    work: {menu: Main}\n    dial_code: "1"\n', 1)
    text += '  - number: "+74951230002"\n    work: {menu: Main}\n    dial_code: "1"\n'
    text = text.replace('    extension: "103"\n', '    extension: "103"\n    outbound_caller_id: "+74951230002"\n', 1)
    got_field, got_line, message = only(text)
    assert got_field == "numbers[1].dial_code" and "used twice (also numbers[0])" in message
    assert got_line == line_of(text, 'dial_code: "1"', 1)
    assert errors(text[:-2] + '2"\n') == []  # the second number's own code
