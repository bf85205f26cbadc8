"""Recurring schedules across DST: expanded in the schedule's IANA time zone, wall-clock time kept."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from federationd.categories import RECURRENCE_WINDOW, occurrences, window_start
from federationd.errors import RejectedChange

ZONES = ["America/New_York", "Europe/Berlin", "Australia/Sydney", "Asia/Tokyo", "America/Sao_Paulo"]


@settings(max_examples=60, deadline=None)
@given(zone=st.sampled_from(ZONES), today=st.dates(date(2024, 1, 1), date(2030, 12, 31)),
       hour=st.integers(0, 23), freq=st.sampled_from(["DAILY;INTERVAL=3", "WEEKLY", "MONTHLY"]))
def test_wall_clock_is_kept_across_dst_and_the_window_holds(zone, today, hour, freq):
    start = datetime.combine(window_start(today), datetime.min.time()).replace(hour=hour)
    data = {"start": start.isoformat(), "end": (start + timedelta(hours=1)).isoformat(),
            "recurrence": f"FREQ={freq}", "timezone": zone}
    listed = occurrences(data, today)
    assert listed
    tz = ZoneInfo(zone)
    horizon = today + RECURRENCE_WINDOW
    for item in listed:
        begins, ends = datetime.fromisoformat(item["start"]), datetime.fromisoformat(item["end"])
        local = begins.astimezone(tz)
        assert window_start(today) <= local.date() <= horizon
        # the local hour is kept, except where DST skips it (then the clock moves forward)
        assert local.hour == hour or local.replace(tzinfo=None) != begins.replace(tzinfo=None)
        assert begins.utcoffset() == tz.utcoffset(begins.replace(tzinfo=None))
        # wall-clock length (across a DST jump the elapsed time differs, as it does on the wall calendar)
        assert ends.replace(tzinfo=None) - begins.replace(tzinfo=None) == timedelta(hours=1)


def test_offsets_change_with_dst_in_new_york():
    listed = occurrences({"start": "2026-10-26T09:00:00", "end": "2026-10-26T09:30:00",
                          "recurrence": "FREQ=WEEKLY;COUNT=3", "timezone": "America/New_York"}, date(2026, 10, 26))
    assert [o["start"] for o in listed] == ["2026-10-26T09:00:00-04:00", "2026-11-02T09:00:00-05:00",
                                            "2026-11-09T09:00:00-05:00"]


def test_an_unknown_time_zone_is_refused():
    with pytest.raises(RejectedChange) as refused:
        occurrences({"start": "2026-10-26T09:00:00", "recurrence": "FREQ=DAILY", "timezone": "Mars/Olympus"},
                    date(2026, 10, 26))
    assert refused.value.reason == "invalid_data" and "Mars/Olympus" in str(refused.value)
