"""Is a schedule open at a given instant? Pure: the instant comes in as epoch ms.

Intervals are wall-clock times in the tenant's time zone (zoneinfo handles daylight
saving: 09:00 stays 09:00 local on both sides of a change). An interval whose end is
past 24:00 spans midnight into the next day. Exceptions (holidays, special hours) replace
the weekly intervals of their date; an interval spilling over midnight from the day
before still counts unless that next day is closed by an exception.
"""
from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from orchestrator.core.model import Schedule

MINUTES_PER_DAY = 24 * 60


def local_time(now_ms: int, tz_name: str) -> datetime:
    return datetime.fromtimestamp(now_ms / 1000.0, tz=timezone.utc).astimezone(ZoneInfo(tz_name))


def _day_intervals(schedule: Schedule, day: date) -> tuple[tuple[int, int], ...] | None:
    """Open intervals (start, end) in minutes for ``day``; None if an exception closes it."""
    for exc in schedule.exceptions:
        if exc.day == day:
            return None if exc.closed else exc.intervals
    return tuple((i.start, i.end) for i in schedule.intervals if i.weekday == day.weekday())


def is_open(schedule: Schedule, tz_name: str, now_ms: int) -> bool:
    local = local_time(now_ms, tz_name)
    minute = local.hour * 60 + local.minute
    today = local.date()
    todays = _day_intervals(schedule, today)
    if todays is None:
        return False
    if any(start <= minute < end for start, end in todays):
        return True
    yesterdays = _day_intervals(schedule, today - timedelta(days=1)) or ()
    return any(start <= minute + MINUTES_PER_DAY < end for start, end in yesterdays)
