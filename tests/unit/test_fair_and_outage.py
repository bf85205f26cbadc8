"""The consumer's hand-off (one FIFO per partner, served in turn) and the outage log (start, once a minute, end)."""

from __future__ import annotations

import logging

import pytest

from federationd.broker.fair import FairQueue
from federationd.outage import Outage


def test_partners_take_turns_and_each_keeps_its_order() -> None:
    queue: FairQueue[str] = FairQueue()
    for i in range(4):
        queue.put("a", f"a{i}")
    queue.put("b", "b0")
    queue.put("c", "c0")
    queue.put("b", "b1")
    taken = [queue.take(0) for _ in range(7)]
    assert taken == ["a0", "b0", "c0", "a1", "b1", "a2", "a3"]
    assert queue.take(0) is None


def test_a_busy_partner_delays_another_by_at_most_one_message() -> None:
    queue: FairQueue[str] = FairQueue()
    for i in range(8):
        queue.put("slow", f"s{i}")
    assert queue.take(0) == "s0"  # being applied
    queue.put("other", "o0")
    assert queue.take(0) == "s1"  # already in line before it
    assert queue.take(0) == "o0"


def test_clear_drops_everything_waiting() -> None:
    queue: FairQueue[int] = FairQueue()
    queue.put("a", 1)
    queue.put("b", 2)
    assert queue.clear() == 2 and len(queue) == 0


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_an_outage_is_logged_at_start_once_a_minute_and_at_the_end(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    outage = Outage(logging.getLogger("test.outage"), "our database", clock)
    outage.recovered()  # nothing was down: nothing to say
    with caplog.at_level(logging.INFO, logger="test.outage"):
        for second in range(0, 150, 1):
            clock.now = float(second)
            outage.failed(RuntimeError("connection refused\nwith a second line"))
        clock.now = 150.0
        outage.recovered()
        outage.recovered()
    messages = [record.getMessage() for record in caplog.records]
    assert messages == [
        "our database is unavailable: connection refused",
        "our database still unavailable after 60s: connection refused",
        "our database still unavailable after 120s: connection refused",
        "our database is back after 150s",
    ]
