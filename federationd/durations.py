"""Durations as operators write them in YAML (`15m`, `2h`, `1s`, `365d`, `500ms`) and how we show them."""

from __future__ import annotations

import re
from datetime import timedelta

_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
MAX_SECONDS = 100 * 365 * 86400.0  # anything longer is a typo, and past timedelta's range soon after
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: object) -> timedelta:
    """Parse `<number><unit>` with unit ms, s, m, h or d; raise ValueError naming the accepted form."""
    if isinstance(text, timedelta):
        return text
    match = _PATTERN.match(str(text)) if isinstance(text, (str, int, float)) else None
    if match is None:
        raise ValueError(f"invalid duration {text!r} (write a number and a unit: 500ms, 30s, 15m, 2h, 1d)")
    seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    if seconds > MAX_SECONDS:
        raise ValueError(f"duration {text!r} is longer than {MAX_SECONDS // 86400:.0f} days")
    return timedelta(seconds=seconds)


def format_duration(value: timedelta) -> str:
    """The shortest exact `<number><unit>` form of a duration."""
    seconds = value.total_seconds()
    for unit in ("d", "h", "m", "s"):
        size = _UNIT_SECONDS[unit]
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{round(seconds * 1000)}ms"
