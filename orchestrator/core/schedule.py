"""Is a schedule open at a given instant? Pure: the instant comes in as epoch ms.

Intervals are wall-clock times in the tenant's time zone (zoneinfo handles daylight
saving: 09:00 stays 09:00 local on both sides of a change). An interval whose end is
past 24:00 spans midnight into the next day. Exceptions (holidays, special hours) replace
the weekly intervals of their date; an interval spilling over midnight from the day
before still counts unless that next day is closed by an exception.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from orchestrator.core.model import Schedule, ScheduleException

MINUTES_PER_DAY = 24 * 60


def local_time(now_ms: int, tz_name: str) -> datetime:
    return datetime.fromtimestamp(now_ms / 1000.0, tz=timezone.utc).astimezone(ZoneInfo(tz_name))


WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


@dataclass(frozen=True)
class Verdict:
    """Whether a schedule is open, and why in words (for the explainer and logs)."""

    open: bool
    reason: str


def hhmm(minutes: int) -> str:
    return "%02d:%02d" % divmod(minutes, 60)


def _spans(intervals: tuple[tuple[int, int], ...]) -> str:
    return ", ".join("%s-%s" % (hhmm(start), hhmm(end)) for start, end in intervals)


def _exception_of(schedule: Schedule, day: date) -> ScheduleException | None:
    for exc in schedule.exceptions:
        if exc.day == day:
            return exc
    return None


def _day_intervals(schedule: Schedule, day: date) -> tuple[tuple[int, int], ...] | None:
    """Open intervals (start, end) in minutes for ``day``; None if an exception closes it."""
    exc = _exception_of(schedule, day)
    if exc is not None:
        return None if exc.closed else exc.intervals
    return tuple((i.start, i.end) for i in schedule.intervals if i.weekday == day.weekday())


def check(schedule: Schedule, tz_name: str, now_ms: int) -> Verdict:
    """``is_open`` with its reason: the interval, holiday or special hours that decided."""
    local = local_time(now_ms, tz_name)
    minute = local.hour * 60 + local.minute
    today = local.date()
    weekday = WEEKDAYS[today.weekday()]
    exc = _exception_of(schedule, today)
    day_name = "%s %s" % (weekday, today.isoformat())
    if exc is not None:
        day_name = "%s (%s %s)" % (exc.name or "exception", weekday, today.isoformat())
    todays = _day_intervals(schedule, today)
    if todays is None:
        return Verdict(False, "closed all day: %s" % day_name)
    for start, end in todays:
        if start <= minute < end:
            kind = "special hours of %s" % day_name if exc is not None else "%s interval" % weekday
            return Verdict(True, "open: %s %s-%s" % (kind, hhmm(start), hhmm(end)))
    yesterday = today - timedelta(days=1)
    for start, end in _day_intervals(schedule, yesterday) or ():
        if start <= minute + MINUTES_PER_DAY < end:
            return Verdict(True, "open: %s interval %s-%s spans midnight" % (WEEKDAYS[yesterday.weekday()], hhmm(start), hhmm(end)))
    if exc is not None:
        return Verdict(False, "closed: outside the special hours of %s (%s)" % (day_name, _spans(todays) or "none"))
    if not todays:
        return Verdict(False, "closed: no work hours on %s" % weekday)
    return Verdict(False, "closed: outside %s's work hours (%s)" % (weekday, _spans(todays)))


def is_open(schedule: Schedule, tz_name: str, now_ms: int) -> bool:
    return check(schedule, tz_name, now_ms).open
