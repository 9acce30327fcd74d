"""Schedule rules of a tenant document: weekly intervals and exceptions (holidays).

    schedules:
      - name: Office hours
        default: true
        intervals:
          - {weekdays: [0, 1, 2, 3, 4], start: "09:00", end: "13:00"}
          - {weekday: 5, start: "22:00", end: "26:00"}   # past 24:00: spans midnight
        exceptions:
          - {date: 2025-01-01, name: New Year}            # closed all day
          - {date: 2025-03-07, name: Short day, hours: "09:00-16:00"}
"""
from __future__ import annotations

from typing import Any

from orchestrator.db.hours import parse_hours, parse_time
from orchestrator.tenant_doc.checker import Checker
from orchestrator.tenant_doc.source import join

SCHEDULE_KEYS = ("name", "default", "intervals", "exceptions")
INTERVAL_KEYS = ("weekday", "weekdays", "start", "end")
EXCEPTION_KEYS = ("date", "name", "closed", "hours")
WEEK = 7 * 1440


def check_schedules(c: Checker, items: list[tuple[str, dict]]) -> list[dict[str, Any]]:
    out = [_schedule(c, p, s) for p, s in items]
    defaults = [s for s in out if s["default"]]
    for extra in defaults[1:]:
        c.error(join(extra["_path"], "default"), "only one schedule can be the default (also %s)"
                % defaults[0]["_path"])
    seen: dict[str, str] = {}
    for s in out:
        if s["name"] in seen:
            c.error(join(s["_path"], "name"), "schedule name %r is used twice (also %s)" % (s["name"], seen[s["name"]]))
        elif s["name"]:
            seen[s["name"]] = s["_path"]
    return out


def _time(c: Checker, obj: dict, key: str, path: str) -> int | None:
    value = c.text(obj, key, path, required=True)
    if value is None:
        return None
    try:
        return parse_time(value)
    except ValueError as exc:
        c.error(join(path, key), str(exc))
        return None


def _schedule(c: Checker, p: str, s: dict) -> dict[str, Any]:
    c.known_keys(s, p, SCHEDULE_KEYS)
    intervals: list[tuple[int, int, int, str]] = []  # weekday, start, end, path
    for path, i in c.items(s, "intervals", p):
        c.known_keys(i, path, INTERVAL_KEYS)
        days = _weekdays(c, i, path)
        start, end = _time(c, i, "start", path), _time(c, i, "end", path)
        if start is None or end is None:
            continue
        if start >= end:
            c.error(join(path, "end"), "must be after start (for a night shift write e.g. 22:00-26:00)")
            continue
        if end - start > 24 * 60:
            c.error(join(path, "end"), "an interval cannot be longer than 24 hours")
            continue
        intervals.extend((day, start, end, path) for day in days)
    _overlaps(c, intervals)
    exceptions = []
    seen_days: set[Any] = set()
    for path, x in c.items(s, "exceptions", p):
        c.known_keys(x, path, EXCEPTION_KEYS)
        day = c.day(x, "date", path)
        if day is not None and day in seen_days:
            c.error(join(path, "date"), "date %s is listed twice" % day)
        seen_days.add(day)
        hours: list[tuple[int, int]] = []
        raw = x.get("hours")
        if raw is not None:
            text = ", ".join(raw) if isinstance(raw, list) and all(isinstance(r, str) for r in raw) else raw
            if not isinstance(text, str):
                c.error(join(path, "hours"), "must be text like \"09:00-16:00\"")
            else:
                try:
                    hours = parse_hours(text)
                except ValueError as exc:
                    c.error(join(path, "hours"), str(exc))
                for start, end in hours:
                    if start >= end:
                        c.error(join(path, "hours"), "each range must end after it starts")
        closed = c.boolean(x, "closed", path, not hours)
        if closed and hours:
            c.error(join(path, "closed"), "a closed day cannot have hours; remove one of them")
        exceptions.append({"_path": path, "date": day, "name": c.text(x, "name", path) or "",
                           "closed": closed, "hours": hours})
    return {
        "_path": p, "name": c.text(s, "name", p, required=True),
        "default": _flag(c, s, "default", p),
        "intervals": sorted((d, st, en) for d, st, en, _ in intervals),
        "exceptions": exceptions,
    }


def _flag(c: Checker, obj: dict, key: str, path: str) -> bool | None:
    """Like ``Checker.boolean`` but None (unknown) when malformed, so that rules that
    depend on it ("no default schedule") do not report a second, confusing error."""
    value = obj.get(key, False)
    if isinstance(value, bool):
        return value
    c.error(join(path, key), "must be true or false, got %r" % (value,))
    return None


def _weekdays(c: Checker, i: dict, path: str) -> list[int]:
    if ("weekday" in i) == ("weekdays" in i):
        c.error(path, "give either weekday: N or weekdays: [N, ...] (0 = Monday ... 6 = Sunday)")
        return []
    raw: list[Any]
    if "weekday" in i:
        raw, paths = [i["weekday"]], [join(path, "weekday")]
    else:
        if not isinstance(i["weekdays"], list):
            c.error(join(path, "weekdays"), "must be a list like [0, 1, 2, 3, 4]")
            return []
        raw = i["weekdays"]
        paths = [join(join(path, "weekdays"), n) for n in range(len(raw))]
    days = []
    for day, day_path in zip(raw, paths):
        if isinstance(day, bool) or not isinstance(day, int) or not 0 <= day <= 6:
            c.error(day_path, "weekday must be 0 (Monday) to 6 (Sunday), got %r" % (day,))
        else:
            days.append(day)
    return days


def _overlaps(c: Checker, intervals: list[tuple[int, int, int, str]]) -> None:
    """Refuse intervals overlapping on the weekly clock (a night shift spills into the
    next day; Sunday's spills into Monday)."""
    spans = []
    for day, start, end, path in intervals:
        a, b = day * 1440 + start, day * 1440 + end
        spans.append((a, min(b, WEEK), path))
        if b > WEEK:
            spans.append((0, b - WEEK, path))
    spans.sort()
    reach, reach_path = -1, ""
    reported: set[str] = set()
    for a, b, path in spans:
        if a < reach and path not in reported:
            reported.add(path)
            c.error(path if path != reach_path else join(path, "weekdays"),
                    "overlaps another interval (%s)" % reach_path)
        if b > reach:
            reach, reach_path = b, path
