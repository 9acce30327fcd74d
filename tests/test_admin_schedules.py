"""Schedules as people think of them (admin.schedules): weekday checkboxes with HH:MM
from-to rows (a break is a second row), a week view, holidays with a date input that
keeps what is typed, the company's time zone shown."""
from __future__ import annotations

import re
from datetime import date
from types import SimpleNamespace

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import sessionmaker

from admin.schedules import HoursRow, hhmm, intervals_of, overlaps, parse_time, rows_from_intervals, week_view
from orchestrator.db import schema as db
from tests.test_admin_isolation import scrape
from tests.admin_env import app_for, seed, signed_in



@pytest.fixture
def factory(migrated_pg: sessionmaker) -> sessionmaker:
    return seed(migrated_pg)


@pytest.fixture
def client(factory: sessionmaker) -> FlaskClient:
    return signed_in(app_for(factory))


def office_hours(factory: sessionmaker) -> int:
    with factory() as s:
        return s.scalars(select(db.Schedule.id).join(db.Tenant).where(
            db.Tenant.sip_domain == "demo.pbx.local", db.Schedule.name == "Office hours")).one()


def stored(factory: sessionmaker, schedule: int) -> list[tuple[int, int, int]]:
    with factory() as s:
        return [(i.weekday, i.start_minute, i.end_minute) for i in s.get(db.Schedule, schedule).intervals]


def iv(day: int, start: int, end: int) -> SimpleNamespace:
    return SimpleNamespace(weekday=day, start_minute=start, end_minute=end)


# -- the pure part ---------------------------------------------------------------------

@pytest.mark.parametrize("text, end, minute", [("09:00", False, 540), ("9:30", False, 570), ("23:59", False, 1439),
                                               ("24:00", True, 1440), ("00:00", True, 0), ("18.15", False, 1095)])
def test_parse_time(text: str, end: bool, minute: int) -> None:
    assert parse_time(text, end=end) == minute


@pytest.mark.parametrize("text, message", [("", "is not a time"), ("9", "is not a time"), ("25:00", "00:00 to 23:59"),
                                           ("24:00", "00:00 to 23:59"), ("09:60", "is not a time of day"),
                                           ("x" * 5000, "is not a time")])
def test_parse_time_refuses_in_words(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)) as caught:
        parse_time(text)
    assert len(str(caught.value)) < 120


def test_rows_group_days_with_the_same_hours_and_convert_back() -> None:
    stored_rows = [iv(d, 540, 780) for d in range(5)] + [iv(d, 840, 1080) for d in range(5)] + [iv(5, 1320, 1800)]
    rows = rows_from_intervals(stored_rows)
    assert rows == [HoursRow((0, 1, 2, 3, 4), 540, 780), HoursRow((0, 1, 2, 3, 4), 840, 1080),
                    HoursRow((5,), 1320, 1800)]
    assert intervals_of(rows) == sorted((i.weekday, i.start_minute, i.end_minute) for i in stored_rows)
    assert [hhmm(m) for m in (0, 540, 1440, 1800)] == ["00:00", "09:00", "24:00", "06:00"]


def test_overlaps_name_both_intervals() -> None:
    assert overlaps([(0, 540, 780), (0, 840, 1080), (1, 540, 780)]) == []
    assert overlaps([(0, 540, 780), (0, 720, 900)]) == ["Mon 12:00-15:00 overlaps Mon 09:00-13:00: change or untick "
                                                        "one of them"]
    assert overlaps([(0, 0, 60), (6, 1380, 1500)]) == ["Sun 23:00-01:00 overlaps Mon 00:00-01:00: change or untick "
                                                       "one of them"]


def test_week_view_bars_and_night_shifts() -> None:
    week = week_view([iv(4, 1320, 1800), iv(0, 540, 1080)])
    assert week[0]["hours"] == ["09:00-18:00"] and week[4]["hours"] == ["22:00-06:00 (next day)"]
    assert week[5]["hours"] == [] and week[5]["bars"] == [(0.0, 360 * 100 / 1440)]  # Saturday morning's end
    assert week[6]["hours"] == [] and week[6]["bars"] == []


# -- the form ----------------------------------------------------------------------------

def test_edit_form_shows_rows_with_checkboxes_and_the_time_zone(client: FlaskClient, factory: sessionmaker) -> None:
    url = "/admin/schedule/edit/?id=%d" % office_hours(factory)
    page = client.get(url).get_data(as_text=True)
    assert "Weekday (0 = Monday)" not in page and "minutes after midnight" not in page
    form = scrape(client, url)
    assert {k for k in form.data if k.startswith("hours-0-day-")} == {"hours-0-day-%d" % d for d in range(5)}
    assert (form.data["hours-0-start"], form.data["hours-0-end"]) == ("09:00", "13:00")
    assert (form.data["hours-1-start"], form.data["hours-1-end"]) == ("14:00", "18:00")  # the break: a 2nd row
    assert form.data["hours-2-start"] == "" and 'type="time"' in page
    assert "Europe/Moscow" in page
    before = stored(factory, office_hours(factory))
    assert client.post(url, data=form.data).status_code == 302  # saved unchanged: the same intervals
    assert stored(factory, office_hours(factory)) == before


def test_hours_are_changed_by_ticking_and_typing(client: FlaskClient, factory: sessionmaker) -> None:
    schedule = office_hours(factory)
    url = "/admin/schedule/edit/?id=%d" % schedule
    form = scrape(client, url)
    form.data.update({"hours-2-day-5": "y", "hours-2-start": "10:00", "hours-2-end": "14:00"})  # Saturdays too
    del form.data["hours-0-day-4"]  # Friday: afternoon only
    assert client.post(url, data=form.data).status_code == 302
    got = stored(factory, schedule)
    assert (5, 600, 840) in got and (4, 540, 780) not in got and (4, 840, 1080) in got and (3, 540, 780) in got


@pytest.mark.parametrize("row, message", [
    ({"hours-0-start": "09:00", "hours-0-end": "18:00"}, "Row 1: tick the days 09:00-18:00 applies to."),
    ({"hours-0-day-0": "y", "hours-0-start": "9", "hours-0-end": "18:00"}, "Row 1: &#39;9&#39; is not a time"),
    ({"hours-0-day-0": "y"}, "Row 1: enter the hours (from and to)"),
])
def test_hours_rows_are_refused_in_words(client: FlaskClient, factory: sessionmaker, row: dict[str, str],
                                         message: str) -> None:
    form = scrape(client, "/admin/schedule/new/")
    page = client.post("/admin/schedule/new/", data={**form.data, "name": "Broken", **row}).get_data(as_text=True)
    assert message in page
    with factory() as s:
        assert s.scalar(select(db.Schedule.id).where(db.Schedule.name == "Broken")) is None


def test_a_night_shift_ends_the_next_morning(client: FlaskClient, factory: sessionmaker) -> None:
    form = scrape(client, "/admin/schedule/new/")
    data = {**form.data, "name": "Night", "hours-0-day-4": "y", "hours-0-day-5": "y", "hours-0-start": "22:00",
            "hours-0-end": "06:00"}
    assert client.post("/admin/schedule/new/", data=data).status_code == 302
    with factory() as s:
        night = s.scalars(select(db.Schedule.id).where(db.Schedule.name == "Night")).one()
    assert stored(factory, night) == [(4, 1320, 1800), (5, 1320, 1800)]
    page = client.get("/admin/schedule/details/?id=%d" % night).get_data(as_text=True)
    assert "22:00-06:00 (next day)" in page


def test_details_page_has_the_week_view_and_holidays(client: FlaskClient, factory: sessionmaker) -> None:
    page = client.get("/admin/schedule/details/?id=%d" % office_hours(factory)).get_data(as_text=True)
    week = page[page.index('id="week-view"'):]
    assert re.search(r"Monday</th>\s*<td[^>]*>09:00-13:00, 14:00-18:00</td>", week)
    assert re.search(r"Saturday</th>\s*<td[^>]*>closed</td>", week)
    assert "Europe/Moscow" in week and "New Year" in week and "Thu 01 Jan 2026" in week


def test_a_typed_holiday_date_is_kept_as_typed(client: FlaskClient, factory: sessionmaker) -> None:
    schedule = office_hours(factory)
    url = "/admin/schedule/edit/?id=%d" % schedule
    page = client.get(url).get_data(as_text=True)
    day_input = re.search(r'<input[^>]*name="exceptions-0-day"[^>]*>', page).group(0)
    assert 'type="date"' in day_input and "datepicker" not in day_input and 'value="2026-01-01"' in day_input
    form = scrape(client, url)
    form.data.update({"exceptions-2-day": "2026-03-08", "exceptions-2-name": "Women's Day",
                      "exceptions-2-closed": "y", "exceptions-2-intervals": ""})
    assert client.post(url, data=form.data).status_code == 302
    with factory() as s:
        days = {e.day: e.name for e in s.get(db.Schedule, schedule).exceptions}
    assert days[date(2026, 3, 8)] == "Women's Day" and date(2026, 1, 1) in days
    form = scrape(client, url)
    form.data.update({"exceptions-3-day": "08.03.2026x", "exceptions-3-name": "Typo"})
    page = client.post(url, data=form.data).get_data(as_text=True)
    assert page.count("Not a valid date value") or "Pick the date" in page
    with factory() as s:
        assert "Typo" not in {e.name for e in s.get(db.Schedule, schedule).exceptions}


def test_two_special_days_on_one_date_are_refused_in_words(client: FlaskClient, factory: sessionmaker) -> None:
    schedule = office_hours(factory)
    url = "/admin/schedule/edit/?id=%d" % schedule
    form = scrape(client, url)
    form.data.update({"exceptions-2-day": "2026-01-01", "exceptions-2-name": "Again", "exceptions-2-closed": "y",
                      "exceptions-2-intervals": ""})
    page = client.post(url, data=form.data).get_data(as_text=True)
    assert "2026-01-01 is already a special day: keep one row per date." in page
    assert "IntegrityError" not in page and "[SQL:" not in page
    with factory() as s:
        assert sorted(e.name for e in s.get(db.Schedule, schedule).exceptions) == ["New Year", "Victory Day"]
