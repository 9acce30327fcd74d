"""Opening hours written as text, e.g. ``"09:00-13:00, 14:00-18:00"`` or ``"22:00-26:00"``
(past 24:00 = spans midnight). Used for schedule exceptions' special hours and by the
tenant documents. Pure functions."""
from __future__ import annotations

import re

MAX_MINUTE = 48 * 60
_TIME = re.compile(r"^(\d{1,2}):(\d{2})$")


def parse_time(text: str) -> int:
    """``"09:30"`` -> 570 minutes; hours up to 48 (``"26:00"`` = 02:00 next day)."""
    match = _TIME.match(text.strip())
    if not match or int(match.group(2)) >= 60:
        raise ValueError("time must look like HH:MM, got %r" % text)
    minutes = int(match.group(1)) * 60 + int(match.group(2))
    if minutes > MAX_MINUTE:
        raise ValueError("time %r is past 48:00" % text)
    return minutes


def format_time(minutes: int) -> str:
    return "%02d:%02d" % divmod(minutes, 60)


def parse_range(text: str) -> tuple[int, int]:
    start, sep, end = text.partition("-")
    if not sep:
        raise ValueError("hours must look like HH:MM-HH:MM, got %r" % text)
    return parse_time(start), parse_time(end)


def parse_hours(text: str | None) -> list[tuple[int, int]]:
    if not text or not text.strip():
        return []
    return [parse_range(part) for part in text.split(",") if part.strip()]


def format_hours(intervals: list[tuple[int, int]] | tuple[tuple[int, int], ...]) -> str:
    return ", ".join("%s-%s" % (format_time(s), format_time(e)) for s, e in intervals)
