"""The watchdog's rule (federationd/supervision.py): WATCHDOG=1 only while the main loop and the consumer beat."""

from __future__ import annotations

import pytest

from federationd.supervision import CONSUMER_STALE_SECONDS, MAIN_STALE_SECONDS, healthy


@pytest.mark.parametrize(("main_age", "consumer_age", "active", "expected"), [
    (0.5, 0.5, True, True),
    (0.5, None, True, False),  # the consumer thread died
    (0.5, CONSUMER_STALE_SECONDS + 1, True, False),  # the consumer thread hangs
    (MAIN_STALE_SECONDS + 1, 0.5, True, False),  # the main loop hangs
    (0.5, None, False, True),  # a standby has no consumer
    (MAIN_STALE_SECONDS + 1, None, False, False),
])
def test_healthy(main_age: float, consumer_age: float | None, active: bool, expected: bool) -> None:
    assert healthy(main_age, consumer_age, active) is expected
