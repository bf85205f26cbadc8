"""Unit tests for federationd.durations: `<number><unit>` as operators write them in YAML, and back."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from federationd.durations import MAX_SECONDS, format_duration, parse_duration


@pytest.mark.parametrize(("text", "expected"), [
    ("500ms", timedelta(milliseconds=500)),
    ("1s", timedelta(seconds=1)),
    ("30s", timedelta(seconds=30)),
    ("15m", timedelta(minutes=15)),
    ("2h", timedelta(hours=2)),
    ("1d", timedelta(days=1)),
    ("365d", timedelta(days=365)),
    ("0s", timedelta(0)),
    ("1.5h", timedelta(minutes=90)),
    ("0.5s", timedelta(milliseconds=500)),
    (" 15m ", timedelta(minutes=15)),
    ("15 m", timedelta(minutes=15)),
    ("007s", timedelta(seconds=7)),
])
def test_parse(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


def test_a_timedelta_passes_through() -> None:
    assert parse_duration(timedelta(minutes=3)) == timedelta(minutes=3)


@pytest.mark.parametrize("text", [
    "fifteen", "", " ", "15", 15, 1.5, "m", "15min", "15M", "2H", "15 minutes", "-5m", "+5m", "5x", "1.5.2h", "1,5h",
    ".5s", "5.s", "1h30m", "1e3s", "inf s", None, True, [], {"m": 15}, b"15m",
])
def test_parse_refuses(text: Any) -> None:
    with pytest.raises(ValueError, match="500ms, 30s, 15m, 2h, 1d"):
        parse_duration(text)


@pytest.mark.parametrize(("value", "expected"), [
    (timedelta(days=365), "365d"),
    (timedelta(days=1), "1d"),
    (timedelta(hours=2), "2h"),
    (timedelta(hours=36), "36h"),
    (timedelta(minutes=15), "15m"),
    (timedelta(minutes=90), "90m"),
    (timedelta(seconds=1), "1s"),
    (timedelta(seconds=90), "90s"),
    (timedelta(milliseconds=500), "500ms"),
    (timedelta(milliseconds=1500), "1500ms"),
    (timedelta(0), "0ms"),
])
def test_format(value: timedelta, expected: str) -> None:
    assert format_duration(value) == expected


@settings(max_examples=200)
@given(milliseconds=st.integers(0, 10**12))
def test_round_trip_of_whole_milliseconds(milliseconds: int) -> None:
    value = timedelta(milliseconds=milliseconds)
    text = format_duration(value)
    assert parse_duration(text) == value
    assert len(text) <= len(f"{milliseconds}ms")  # the shortest exact form


@settings(max_examples=100)
@given(number=st.integers(0, 10**6), unit=st.sampled_from(["ms", "s", "m", "h", "d"]))
def test_parse_then_format_is_canonical(number: int, unit: str) -> None:
    if number * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}[unit] > MAX_SECONDS:
        with pytest.raises(ValueError, match="longer than"):
            parse_duration(f"{number}{unit}")
        return
    value = parse_duration(f"{number}{unit}")
    assert parse_duration(format_duration(value)) == value
