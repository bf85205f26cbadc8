"""Unit tests for federationd.outbox.scheduler: when a link's pending changes go out (SPEC 4).

Sending starts `quiet_period` after the last change, `max_delay` after the first caps constant churn; send-now
skips everything; a due snapshot skips the quiet period but not the backoff; backoff and a bulk lock push it later.
"""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from federationd.outbox.scheduler import Pending, Timing, defer_for_bulk, due_at

QUIET, MAX_DELAY, BUSY = 900.0, 7200.0, 900.0
TIMING = Timing(QUIET, MAX_DELAY, BUSY)
T0 = 1_800_000_000.0


CASES = [
    # (id, pending, keyword arguments, expected due)
    ("nothing-pending", Pending(), {}, None),
    ("zero-rows-with-times", Pending(0, T0, T0), {}, None),
    ("rows-without-times", Pending(3, None, None), {}, None),
    ("one-change", Pending(1, T0, T0), {}, T0 + QUIET),
    ("quiet-after-the-last-change", Pending(5, T0, T0 + 600), {}, T0 + 600 + QUIET),
    ("churn-capped-by-max-delay", Pending(500, T0, T0 + 7000), {}, T0 + MAX_DELAY),
    ("cap-exactly-reached", Pending(2, T0, T0 + MAX_DELAY - QUIET), {}, T0 + MAX_DELAY),
    ("send-now", Pending(5, T0, T0 + 600), {"send_now": True}, 0.0),
    ("send-now-overrides-retry", Pending(5, T0, T0), {"send_now": True, "retry_at": T0 + 10_000}, 0.0),
    ("send-now-overrides-deferral", Pending(5, T0, T0), {"send_now": True, "deferred_until": T0 + 10_000}, 0.0),
    ("send-now-with-nothing-pending", Pending(), {"send_now": True}, 0.0),
    ("snapshot-due-now", Pending(), {"snapshot_due": True}, 0.0),
    ("snapshot-skips-the-quiet-period", Pending(5, T0, T0), {"snapshot_due": True}, 0.0),
    ("snapshot-respects-retry", Pending(), {"snapshot_due": True, "retry_at": T0 + 30}, T0 + 30),
    ("snapshot-respects-deferral", Pending(), {"snapshot_due": True, "deferred_until": T0 + 45}, T0 + 45),
    ("retry-pushes-later", Pending(1, T0, T0), {"retry_at": T0 + QUIET + 60}, T0 + QUIET + 60),
    ("retry-already-passed", Pending(1, T0, T0), {"retry_at": T0 - 60}, T0 + QUIET),
    ("deferral-pushes-later", Pending(1, T0, T0), {"deferred_until": T0 + QUIET + 5}, T0 + QUIET + 5),
    ("deferral-already-passed", Pending(1, T0, T0), {"deferred_until": T0}, T0 + QUIET),
    ("latest-of-retry-and-deferral", Pending(1, T0, T0), {"retry_at": T0 + 2000, "deferred_until": T0 + 3000},
     T0 + 3000),
    ("retry-beats-the-cap", Pending(9, T0, T0 + 7000), {"retry_at": T0 + 9000}, T0 + 9000),
    ("no-retry-with-nothing-pending", Pending(), {"retry_at": T0 + 5}, None),
]


@pytest.mark.parametrize(("pending", "kwargs", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_due_at(pending: Pending, kwargs: dict[str, object], expected: float | None) -> None:
    assert due_at(pending, TIMING, **kwargs) == expected  # type: ignore[arg-type]


def test_defer_for_bulk_waits_busy_retry() -> None:
    assert defer_for_bulk(T0, TIMING) == T0 + BUSY
    assert defer_for_bulk(T0, Timing(1, 2, 3.5)) == T0 + 3.5


def test_each_new_change_postpones_until_the_cap() -> None:
    first = T0
    dues = [due_at(Pending(n + 1, first, first + 300 * n), TIMING) for n in range(40)]  # a change every 5 minutes
    assert dues[0] == first + QUIET
    assert all(b is not None and a is not None and b >= a for a, b in itertools.pairwise(dues))
    assert max(d for d in dues if d is not None) == first + MAX_DELAY


times = st.floats(0, 4e9, allow_nan=False, allow_infinity=False)
optional_times = st.none() | times
durations = st.floats(0.001, 1e6, allow_nan=False, allow_infinity=False)


@settings(max_examples=200)
@given(first=times, gap=st.floats(0, 1e6), rows=st.integers(1, 10**6), quiet=durations, extra=st.floats(0, 1e6),
       busy=durations, snapshot_due=st.booleans(), retry_at=optional_times, deferred_until=optional_times)
def test_due_is_never_earlier_than_the_rules_allow(first: float, gap: float, rows: int, quiet: float, extra: float,
                                                   busy: float, snapshot_due: bool, retry_at: float | None,
                                                   deferred_until: float | None) -> None:
    timing = Timing(quiet, quiet + extra, busy)  # config guarantees max_delay >= quiet_period
    pending = Pending(rows, first, first + gap)
    due = due_at(pending, timing, snapshot_due=snapshot_due, retry_at=retry_at, deferred_until=deferred_until)
    assert due is not None
    assert pending.last_at is not None
    cap = first + timing.max_delay_seconds
    rule = min(pending.last_at + quiet, cap)
    if not snapshot_due:
        assert due >= rule
        assert due <= max(rule, retry_at or 0.0, deferred_until or 0.0)
    assert due >= (retry_at or 0.0)
    assert due >= (deferred_until or 0.0)
    assert due <= cap or due in (retry_at, deferred_until)  # the cap holds but for backoff
    assert due_at(pending, timing, send_now=True, snapshot_due=snapshot_due, retry_at=retry_at,
                  deferred_until=deferred_until) == 0.0


def test_clear_holds_the_schedule_until_a_newer_change() -> None:
    pending = Pending(3, T0, T0 + 10, last_seq=42)
    assert due_at(pending, TIMING, hold_seq=42) is None
    assert due_at(Pending(4, T0, T0 + 20, last_seq=43), TIMING, hold_seq=42) == T0 + 20 + QUIET
    assert due_at(pending, TIMING, hold_seq=42, send_now=True) == 0.0
