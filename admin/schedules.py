"""Schedules as people think of them: rows of weekday checkboxes with a from-to time
(a lunch break is a second row: 09:00-13:00 and 14:00-18:00), a week view, and holidays
and special days with a date picker, in the company's time zone.

Stored as before (``ScheduleInterval``: weekday 0 = Monday, minutes after midnight, an
end past 1440 spans midnight): a row whose "to" is not after its "from" ends the next
morning (22:00 to 06:00 is 1320-1800). The pure functions here convert both ways and find
overlaps, naming both intervals; the tenant-document rules still run on every save.
"""
from __future__ import annotations

import re
from typing import Any, Iterable, NamedTuple

from markupsafe import Markup, escape
from wtforms import Field
from wtforms.utils import unset_value

DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
DAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
WEEK = 7 * 1440
TIME = re.compile(r"^\s*(\d{1,2})[:.](\d{2})\s*$")
BLANK_ROWS = 2  # empty rows under the filled ones: room for a break or another day's hours


class HoursRow(NamedTuple):
    days: tuple[int, ...]  # 0 = Monday
    start: int  # minutes after midnight
    end: int  # minutes after the start day's midnight (past 1440: the next morning)


def parse_time(text: str, *, end: bool = False) -> int:
    """``"09:30"`` -> 570; ``"24:00"`` only as an end. Raises ValueError in words."""
    match = TIME.match(text or "")
    if not match:
        raise ValueError("%r is not a time: write hours and minutes, e.g. 09:00" % (text or "")[:20])
    hours, minutes = int(match.group(1)), int(match.group(2))
    if minutes > 59 or hours > 24 or (hours == 24 and (minutes or not end)):
        raise ValueError("%s is not a time of day: use 00:00 to 23:59%s" % (text.strip()[:20],
                                                                            " (or 24:00 as an end)" if end else ""))
    return hours * 60 + minutes


def hhmm(minute: int) -> str:
    """570 -> "09:30"; an end at midnight (1440) -> "24:00"; past it, the next morning's time."""
    return "24:00" if minute == 1440 else "%02d:%02d" % divmod(minute % 1440, 60)


def span(start: int, end: int) -> str:
    return "%s-%s" % (hhmm(start), hhmm(end))


def rows_from_intervals(intervals: Iterable[Any]) -> list[HoursRow]:
    """Stored intervals grouped into rows: the same hours on several days are one row."""
    grouped: dict[tuple[int, int], list[int]] = {}
    for i in intervals:
        grouped.setdefault((i.start_minute, i.end_minute), []).append(i.weekday)
    rows = [HoursRow(tuple(sorted(set(days))), start, end) for (start, end), days in grouped.items()]
    return sorted(rows, key=lambda r: (r.days[0], r.start))


def intervals_of(rows: Iterable[HoursRow]) -> list[tuple[int, int, int]]:
    """(weekday, start_minute, end_minute) per ticked day of each row."""
    return sorted((day, r.start, r.end) for r in rows for day in r.days)


def describe(weekday: int, start: int, end: int) -> str:
    return "%s %s" % (DAYS[weekday], span(start, end))


def overlaps(intervals: list[tuple[int, int, int]]) -> list[str]:
    """Each pair of intervals that overlap in the week (Sunday night into Monday too)."""
    placed = [(day * 1440 + start, day * 1440 + end, (day, start, end)) for day, start, end in intervals]
    problems = []
    for i, (a_start, a_end, a) in enumerate(placed):
        for b_start, b_end, b in placed[i + 1:]:
            for shift in (-WEEK, 0, WEEK):
                if a_start < b_end + shift and b_start + shift < a_end:
                    problems.append("%s overlaps %s: change or untick one of them" % (describe(*b), describe(*a)))
                    break
    return problems


def week_view(intervals: Iterable[Any]) -> list[dict[str, Any]]:
    """Per weekday its open hours as text and as bars (percent of the day) for the page."""
    days: list[dict[str, Any]] = [{"name": DAY_NAMES[d], "hours": [], "bars": []} for d in range(7)]
    for i in sorted(intervals, key=lambda i: (i.weekday, i.start_minute)):
        day = days[i.weekday]
        day["hours"].append(span(i.start_minute, i.end_minute) + (" (next day)" if i.end_minute > 1440 else ""))
        day["bars"].append((i.start_minute * 100 / 1440, (min(i.end_minute, 1440) - i.start_minute) * 100 / 1440))
        if i.end_minute > 1440:
            nxt = days[(i.weekday + 1) % 7]
            nxt["bars"].append((0.0, (i.end_minute - 1440) * 100 / 1440))
    return days


class WeekHoursField(Field):
    """Rows of weekday checkboxes and from-to times (``hours-<row>-day-<d>``,
    ``hours-<row>-start``, ``hours-<row>-end``); ``data`` is a list of ``HoursRow``."""

    MAX_ROWS = 50

    def __init__(self, label: str | None = None, validators: Any = None, **kwargs: Any) -> None:
        super().__init__(label, validators, **kwargs)
        self.typed: list[dict[str, Any]] = []
        self.data: list[HoursRow] = []

    def process(self, formdata: Any, data: Any = unset_value, extra_filters: Any = None) -> None:
        self.process_errors = []
        self.typed = []
        prefix = self.name + "-"
        if formdata is not None and any(k.startswith(prefix) for k in formdata):
            for row in range(self.MAX_ROWS):
                start = formdata.get("%s%d-start" % (prefix, row), "")
                end = formdata.get("%s%d-end" % (prefix, row), "")
                days = tuple(d for d in range(7) if formdata.get("%s%d-day-%d" % (prefix, row, d)))
                if start or end or days:
                    self.typed.append({"days": days, "start": start[:20], "end": end[:20]})
        elif isinstance(data, list):
            self.set_rows(data)

    def set_rows(self, rows: list[HoursRow]) -> None:
        self.typed = [{"days": r.days, "start": hhmm(r.start), "end": hhmm(r.end)} for r in rows]
        self.data = list(rows)

    def pre_validate(self, form: Any) -> None:
        rows, problems = [], []
        for n, typed in enumerate(self.typed, 1):
            if not typed["start"] and not typed["end"]:
                problems.append("Row %d: enter the hours (from and to), or untick its days." % n)
                continue
            try:
                start = parse_time(typed["start"])
                end = parse_time(typed["end"], end=True)
            except ValueError as exc:
                problems.append("Row %d: %s." % (n, exc))
                continue
            if not typed["days"]:
                problems.append("Row %d: tick the days %s applies to." % (n, span(start, end)))
                continue
            if end == start:
                problems.append("Row %d: from and to are the same time; for all day write 00:00 to 24:00." % n)
                continue
            rows.append(HoursRow(typed["days"], start, end if end > start else end + 1440))
        problems += overlaps(intervals_of(rows))
        self.data = rows
        self.errors = list(self.errors or []) + problems  # WTForms' validate() then fails the form

    def populate_obj(self, obj: Any, name: str) -> None:
        """The rows become the schedule's intervals (done by the view, which knows the model)."""

    def __call__(self, **kwargs: Any) -> Markup:
        rows = self.typed + [{"days": (), "start": "", "end": ""} for _ in range(BLANK_ROWS)]
        head = "".join("<th>%s</th>" % d for d in DAYS)
        body = []
        for n, row in enumerate(rows):
            cells = "".join(
                '<td><input type="checkbox" class="form-check-input position-static" name="%s-%d-day-%d" '
                'value="y" aria-label="%s"%s></td>' % (self.name, n, d, DAY_NAMES[d], " checked" if d in row["days"]
                                                        else "") for d in range(7))
            times = "".join(
                '<td><input type="time" step="60" class="form-control form-control-sm" name="%s-%d-%s" '
                'value="%s" aria-label="%s"></td>' % (self.name, n, key, escape(row[key]), label)
                for key, label in (("start", "from"), ("end", "to")))
            body.append('<tr data-hours-row="%d">%s%s</tr>' % (n, cells, times))
        return Markup('<table class="table table-sm w-auto" id="%s"><thead><tr>%s<th>From</th><th>To</th></tr>'
                      '</thead><tbody>%s</tbody></table>' % (escape(self.id), head, "".join(body)))


WEEK_VIEW = """<div class="card mt-4" id="week-view"><div class="card-body">
  <h5 class="card-title">Week</h5>
  <p class="text-muted">Times in the company's time zone: <strong>{{ timezone }}</strong>.</p>
  <table class="table table-sm">
    {% for day in week %}
    <tr><th class="w-25">{{ day.name }}</th>
      <td class="w-25">{{ day.hours|join(', ') if day.hours else 'closed' }}</td>
      <td><div class="position-relative bg-light" style="height: 1rem">
        {% for left, width in day.bars %}<div class="position-absolute bg-success h-100"
          style="left: {{ '%.2f'|format(left) }}%; width: {{ '%.2f'|format(width) }}%"></div>{% endfor %}
      </div></td></tr>
    {% endfor %}
  </table>
  {% if exceptions %}
  <h6>Holidays and special days</h6>
  <ul>{% for e in exceptions %}<li>{{ e.day.strftime('%a %d %b %Y') }}{% if e.name %} ({{ e.name }}){% endif %}:
    {{ 'closed' if e.closed else 'open ' ~ e.intervals }}</li>{% endfor %}</ul>
  {% endif %}
</div></div>
"""

SCHEDULE_DETAILS = """{% extends 'admin/model/details.html' %}
{% block body %}{{ super() }}{% include 'pbx/week_view.html' %}{% endblock %}
"""

SCHEDULE_EDIT = """{% extends 'admin/model/edit.html' %}
{% block body %}{{ super() }}{% include 'pbx/week_view.html' %}{% endblock %}
"""

TEMPLATES = {"pbx/week_view.html": WEEK_VIEW, "pbx/schedule_details.html": SCHEDULE_DETAILS,
             "pbx/schedule_edit.html": SCHEDULE_EDIT}
