"""When a link's pending changes go out (docs/design.md): pure decisions over plain figures and an injected `now`.

Sending starts `quiet_period` after the last change; `max_delay` after the first pending one caps how long
constant churn can postpone it. `send-now` and a due snapshot skip the quiet period. After failures the next
attempt waits the backoff; while a bulk job holds the lock a due send waits `busy_retry`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Pending:
    """A link's unsent changes: how many outbox rows, and when the first and the last were written."""

    rows: int = 0
    first_at: float | None = None
    last_at: float | None = None
    last_seq: int = 0


@dataclass(frozen=True)
class Timing:
    quiet_period_seconds: float
    max_delay_seconds: float
    busy_retry_seconds: float


def due_at(pending: Pending, timing: Timing, *, send_now: bool = False, snapshot_due: bool = False,
           retry_at: float | None = None, deferred_until: float | None = None, hold_seq: int = 0) -> float | None:
    """The unix time the next send is due, or None if there is nothing to send.

    `snapshot_due` also stands for control messages waiting: they go without a quiet period. `hold_seq` is set by
    `federationd clear`: nothing is scheduled until a change newer than it arrives."""
    if send_now:
        return 0.0  # an operator's explicit ask overrides backoff and the quiet period
    if snapshot_due:
        due = 0.0
    elif pending.rows == 0 or pending.first_at is None or pending.last_at is None:
        return None
    elif hold_seq and pending.last_seq <= hold_seq:
        return None  # cleared: held until a newer change
    else:
        due = min(pending.last_at + timing.quiet_period_seconds, pending.first_at + timing.max_delay_seconds)
    return max(due, retry_at or 0.0, deferred_until or 0.0)


def defer_for_bulk(now: float, timing: Timing) -> float:
    """A send that fell due while a bulk job held the lock waits this long."""
    return now + timing.busy_retry_seconds
