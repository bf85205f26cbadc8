"""Snapshot windows (federationd/windows.py): when a large snapshot may start, in DST-free site-local time."""

from __future__ import annotations

import pytest

from federationd.windows import DAY_SECONDS, Window, next_allowed, parse_offset, parse_window

MIDNIGHT = 1_767_225_600.0  # 2026-01-01T00:00:00Z, a UTC midnight
H = 3600.0

MANUAL = [parse_window(w) for w in ("00:00-08:30", "09:30-17:30", "18:30-24:00")]


@pytest.mark.parametrize(("text", "window"), [
    ("00:00-08:30", Window(0, 30600)),
    ("18:30-24:00", Window(66600, DAY_SECONDS)),
    ("22:00-06:00", Window(79200, 21600)),  # wraps midnight
    (" 9:05 - 17:00 ", Window(32700, 61200)),
    ("00:00-24:00", Window(0, DAY_SECONDS)),
])
def test_parse_window(text: str, window: Window) -> None:
    assert parse_window(text) == window


@pytest.mark.parametrize(("text", "why"), [
    ("", "HH:MM-HH:MM"),
    ("08:30", "HH:MM-HH:MM"),
    ("8-9", "HH:MM-HH:MM"),
    ("08:30-08:30", "empty"),
    ("25:00-26:00", "00:00 to 24:00"),
    ("08:60-09:00", "00:00 to 24:00"),
    ("24:00-01:00", "starts at 24:00"),
    ("09:00-24:01", "00:00 to 24:00"),
])
def test_parse_window_refuses(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        parse_window(text)


@pytest.mark.parametrize(("text", "seconds"), [
    ("+00:00", 0), ("+09:00", 9 * 3600), ("-05:30", -(5 * 3600 + 1800)), ("Z", 0), ("+14:00", 14 * 3600),
])
def test_parse_offset(text: str, seconds: int) -> None:
    assert parse_offset(text) == seconds


@pytest.mark.parametrize("text", ["09:00", "+9", "+15:00", "Asia/Tokyo", "+09:60", ""])
def test_parse_offset_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="UTC offset"):
        parse_offset(text)


@pytest.mark.parametrize(("local_hour", "opens_after_hours"), [
    (0.0, 0.0),  # open: now
    (8.0, 0.0),
    (8.5, 1.0),  # 08:30 closed until 09:30
    (9.0, 0.5),
    (9.5, 0.0),
    (17.75, 0.75),  # 17:45 -> 18:30
    (23.99, 0.0),
])
def test_next_allowed_in_utc(local_hour: float, opens_after_hours: float) -> None:
    now = MIDNIGHT + local_hour * H
    assert next_allowed(now, MANUAL, 0) == pytest.approx(now + opens_after_hours * H)


def test_no_windows_means_always() -> None:
    assert next_allowed(MIDNIGHT + 8.75 * H, (), 0) == MIDNIGHT + 8.75 * H


def test_midnight_wrap() -> None:
    night = [parse_window("22:00-06:00")]
    assert next_allowed(MIDNIGHT + 23 * H, night, 0) == MIDNIGHT + 23 * H  # before midnight: open
    assert next_allowed(MIDNIGHT + 5 * H, night, 0) == MIDNIGHT + 5 * H  # after midnight: open
    assert next_allowed(MIDNIGHT + 6 * H, night, 0) == MIDNIGHT + 22 * H  # 06:00 closes it until 22:00
    assert next_allowed(MIDNIGHT + 21.5 * H, night, 0) == MIDNIGHT + 22 * H


def test_next_window_is_tomorrow() -> None:
    morning = [parse_window("02:00-03:00")]
    assert next_allowed(MIDNIGHT + 4 * H, morning, 0) == MIDNIGHT + 26 * H


def test_local_time_from_the_offset() -> None:
    """At +09:00, 08:45 local is 23:45 UTC the day before: closed until 09:30 local = 00:30 UTC."""
    tokyo = 9 * 3600
    now = MIDNIGHT - 0.25 * H  # 23:45Z = 08:45 at +09:00
    assert next_allowed(now, MANUAL, tokyo) == pytest.approx(MIDNIGHT + 0.5 * H)
    assert next_allowed(now, MANUAL, 0) == now  # the same instant is open at UTC
    assert next_allowed(MIDNIGHT + 8.75 * H, MANUAL, -5 * 3600) == MIDNIGHT + 8.75 * H  # 03:45 at -05:00


@pytest.mark.parametrize(("windows", "why"), [
    ([], "snapshot_windows is empty"),
    (["08:30-08:30"], "it is empty"),
    (["9-10"], "HH:MM-HH:MM"),
])
def test_config_refuses_bad_windows(windows: list[str], why: str) -> None:
    from pydantic import ValidationError

    from federationd.config import ScheduleSection

    with pytest.raises(ValidationError, match=why):
        ScheduleSection.model_validate({"snapshot_windows": windows})


def test_config_windows_in_site_local_time() -> None:
    from federationd.config import ScheduleSection

    schedule = ScheduleSection.model_validate({"snapshot_windows": ["09:30-17:30"], "utc_offset": "+09:00"})
    assert schedule.snapshot_allowed_at(MIDNIGHT) == MIDNIGHT + 0.5 * H  # 09:00 at +09:00: opens 09:30
    assert ScheduleSection().snapshot_allowed_at(MIDNIGHT) == MIDNIGHT
