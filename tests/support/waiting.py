"""The one polling primitive of the test suite.

Tests and support code never ``time.sleep`` in open-ended loops: they state
what they wait for and how long it may take, through :func:`wait_until`, so
that a hang becomes a ``TimeoutError`` that says what never happened.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

__all__ = ["GiveUp", "holds_for", "never", "wait_until"]

T = TypeVar("T")

FIRST_PAUSE, LONGEST_PAUSE = 0.05, 0.3  # wait_until's pauses between calls, when the caller gives no interval


class GiveUp(Exception):
    """Raised by a predicate to stop :func:`wait_until` at once (e.g. "the process died").

    Every other exception from the predicate counts as "not yet" and is retried.
    """


def wait_until(
    predicate: Callable[[], T],
    timeout: float = 30.0,
    interval: float | None = None,
    what: str = "condition",
) -> T:
    """Call ``predicate`` until it returns a truthy value, and return that value.

    Exceptions raised by ``predicate`` are treated as "not yet" (and reported
    if time runs out), except :class:`GiveUp`, which propagates immediately.
    The predicate is always called at least once, and once more right at the
    deadline so a slow predicate is not cut short by the clock.

    Without ``interval`` the pause between calls starts at 50 ms and grows by half each time up to 300 ms: a
    quick condition is seen quickly, and a long wait does not spend a core on polling (each call of a verb costs
    about 12 ms of CPU, and four workers poll at once). A test racing a short window passes its own interval.

    Raises ``TimeoutError`` naming ``what`` and the last value or exception.
    """
    pause = interval if interval is not None else FIRST_PAUSE
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            value = predicate()
        except GiveUp:
            raise
        except Exception as exc:  # any failure means "not yet"; kept for the report
            last = exc
        else:
            if value:
                return value
            last = value
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}; last: {last!r}") from (
                last if isinstance(last, BaseException) else None
            )
        time.sleep(min(pause, remaining))
        if interval is None:
            pause = min(pause * 1.5, LONGEST_PAUSE)


def holds_for(predicate: Callable[[], object], seconds: float, what: str, interval: float = 0.25) -> None:
    """Assert that ``predicate`` stays truthy for ``seconds`` (for "nothing happens" checks, e.g. while paused).

    Raises AssertionError naming ``what`` as soon as it turns falsy."""
    deadline = time.monotonic() + seconds
    while True:
        if not predicate():
            raise AssertionError(f"{what} stopped holding")
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return
        time.sleep(min(interval, remaining))


def never(predicate: Callable[[], object], seconds: float, what: str) -> None:
    """Assert that `predicate` stays false for `seconds` (polled; an error in the predicate fails at once)."""

    def strict() -> object:
        try:
            return predicate()
        except Exception as exc:
            raise GiveUp(f"while checking that {what} never happens: {exc!r}") from exc

    try:
        value = wait_until(strict, seconds, interval=0.25, what=what)
    except TimeoutError:
        return
    raise AssertionError(f"{what} happened: {value!r}")
