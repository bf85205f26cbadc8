"""Snapshot windows (`schedule.snapshot_windows`): the times of day when a large snapshot may start.

The manual advises against starting or relinking during the hours users sign in most (8:30-9:30 and
17:30-18:30): a snapshot sends, and makes the partner apply, every record at once. Windows are daily
`HH:MM-HH:MM` ranges in the site's local time, which is UTC shifted by the fixed `schedule.utc_offset` (no
daylight-saving rules: the same offset all year). A window whose start is later than its end wraps midnight
(`22:00-06:00`); `24:00` may end a window. No windows configured: a snapshot may start at any time.

Pure: the time comes in, the next allowed time goes out.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

DAY_SECONDS = 24 * 3600

_WINDOW = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")
_OFFSET = re.compile(r"^([+-])(\d{2}):(\d{2})$")
MAX_OFFSET_SECONDS = 14 * 3600  # the furthest offsets in use: -12:00 and +14:00


@dataclass(frozen=True)
class Window:
    """Seconds after local midnight: `start` in [0, 86400), `end` in (0, 86400]; `start > end` wraps midnight."""

    start: int
    end: int

    def is_open(self, second_of_day: float) -> bool:
        if self.start < self.end:
            return self.start <= second_of_day < self.end
        return second_of_day >= self.start or second_of_day < self.end


def _seconds(hours: str, minutes: str, text: str) -> int:
    h, m = int(hours), int(minutes)
    if m > 59 or h > 24 or (h == 24 and m):
        raise ValueError(f"invalid window {text!r}: times run from 00:00 to 24:00")
    return h * 3600 + m * 60


def parse_window(text: str) -> Window:
    """`HH:MM-HH:MM` to a Window; raises ValueError naming what is wrong."""
    match = _WINDOW.match(text)
    if match is None:
        raise ValueError(f"invalid window {text!r}: write it as HH:MM-HH:MM (e.g. 09:30-17:30)")
    start = _seconds(match[1], match[2], text)
    end = _seconds(match[3], match[4], text)
    if start == DAY_SECONDS:
        raise ValueError(f"invalid window {text!r}: a window starts at 24:00 nowhere (write 00:00)")
    if start == end:
        raise ValueError(f"invalid window {text!r}: it is empty (start and end are the same time)")
    return Window(start, end)


def parse_offset(text: str) -> int:
    """`+HH:MM` / `-HH:MM` (or `Z`) to seconds east of UTC; raises ValueError naming the expected form."""
    if text == "Z":
        return 0
    match = _OFFSET.match(text)
    if match is None or int(match[3]) > 59:
        raise ValueError(f"invalid UTC offset {text!r}: write it as +HH:MM or -HH:MM (e.g. +09:00)")
    seconds = int(match[2]) * 3600 + int(match[3]) * 60
    if seconds > MAX_OFFSET_SECONDS:
        raise ValueError(f"invalid UTC offset {text!r}: at most 14:00 either way")
    return -seconds if match[1] == "-" else seconds


def next_allowed(now: float, windows: Sequence[Window], offset_seconds: int) -> float:
    """The unix time a snapshot may start: `now` when a window is open (or none is configured), else the start
    of the next window to open."""
    if not windows:
        return now
    second_of_day = (now + offset_seconds) % DAY_SECONDS
    if any(window.is_open(second_of_day) for window in windows):
        return now
    return now + min((window.start - second_of_day) % DAY_SECONDS for window in windows)
