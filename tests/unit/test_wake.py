"""due.wake_at: until when the send loop may skip re-reading the links' figures."""

from __future__ import annotations

import math
from dataclasses import dataclass

from federationd.due import wake_at


@dataclass(frozen=True)
class Row:
    site: str | None
    paused: bool = False
    next_send_at: float | None = None
    control_due: float | None = None
    send_now: bool = False
    snapshot_due: bool = False


def test_the_earliest_data_or_control_time_of_a_link_that_can_send() -> None:
    rows = [Row("a", next_send_at=50.0), Row("b", control_due=20.0), Row("c"), Row("d", next_send_at=30.0)]
    assert wake_at(rows, set()) == 20.0
    assert wake_at(rows, {"b"}) == 30.0  # in flight: its end is a change of its own


def test_paused_unknown_and_idle_links_never_wake_it() -> None:
    rows = [Row("a", paused=True, next_send_at=1.0), Row(None, next_send_at=2.0), Row("c")]
    assert wake_at(rows, set()) == math.inf
    assert wake_at([], set()) == math.inf
