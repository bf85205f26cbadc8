"""Which partners the send loop starts a send to now: a pure decision over plain data, with the time passed in.

The figures come from `status.figures` (LinkStatus rows); the caller passes the clock's `now`, whether a bulk
job holds the site's bulk lock, and which partners already have a send in flight.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Set
from dataclasses import dataclass
from typing import Protocol


class LinkFigures(Protocol):
    @property
    def site(self) -> str | None: ...
    @property
    def paused(self) -> bool: ...
    @property
    def next_send_at(self) -> float | None: ...
    @property
    def control_due(self) -> float | None: ...
    @property
    def send_now(self) -> bool: ...
    @property
    def snapshot_due(self) -> bool: ...


@dataclass(frozen=True)
class Due:
    site: str
    data: bool  # the data is due too (else only waiting control messages go)


@dataclass(frozen=True)
class Decision:
    start: list[Due]
    defer: list[str]  # data due but a bulk job holds the lock: postpone by busy_retry


def decide(rows: Iterable[LinkFigures], now: float, *, bulk_locked: bool, in_flight: Set[str]) -> Decision:
    """A send starts for a link whose data is due (unless a bulk job holds the lock: every send waits for it,
    snapshots too, except an operator's explicit `send-now` or `relink`, which set `send_now`) or whose control
    messages are due; never for a paused link or one with a send in flight."""
    start: list[Due] = []
    defer: list[str] = []
    for row in rows:
        if row.site is None or row.paused or row.site in in_flight:
            continue
        data = row.next_send_at is not None and row.next_send_at <= now
        if data and bulk_locked and not row.send_now:
            defer.append(row.site)
            data = False
        if data or (row.control_due is not None and row.control_due <= now):
            start.append(Due(row.site, data))
    return Decision(start, defer)


def wake_at(rows: Iterable[LinkFigures], in_flight: Set[str]) -> float:
    """The earliest time `decide` could start a send for these figures if none of them changes (math.inf: never):
    the send loop skips re-reading them until then, or until the database's change mark or the sends in flight
    differ (federationd/changemark.py)."""
    times = [when for row in rows if row.site is not None and not row.paused and row.site not in in_flight
             for when in (row.next_send_at, row.control_due) if when is not None]
    return min(times, default=math.inf)
