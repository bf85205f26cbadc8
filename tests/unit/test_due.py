"""The send loop's pure decision: which partners get a send now (federationd/due.py)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from federationd.due import Due, decide


@dataclass
class Row:
    site: str | None
    paused: bool = False
    next_send_at: float | None = None
    control_due: float | None = None
    send_now: bool = False
    snapshot_due: bool = False


NOW = 1000.0


@pytest.mark.parametrize(("row", "locked", "expected", "deferred"), [
    (Row("b", next_send_at=NOW), False, [Due("b", True)], []),
    (Row("b", next_send_at=NOW + 1), False, [], []),
    (Row("b", next_send_at=NOW - 5, paused=True), False, [], []),
    (Row(None, next_send_at=NOW), False, [], []),
    (Row("b", next_send_at=NOW), True, [], ["b"]),
    (Row("b", next_send_at=NOW, send_now=True), True, [Due("b", True)], []),
    (Row("b", next_send_at=NOW, snapshot_due=True), True, [], ["b"]),  # a due snapshot waits for the lock too
    (Row("b", next_send_at=NOW, snapshot_due=True, send_now=True), True, [Due("b", True)], []),  # `relink`
    (Row("b", next_send_at=NOW, control_due=NOW), True, [Due("b", False)], ["b"]),
    (Row("b", control_due=NOW - 1), False, [Due("b", False)], []),
    (Row("b", control_due=NOW + 1), False, [], []),
])
def test_decide(row: Row, locked: bool, expected: list[Due], deferred: list[str]) -> None:
    decision = decide([row], NOW, bulk_locked=locked, in_flight=set())
    assert decision.start == expected
    assert decision.defer == deferred


def test_a_send_in_flight_is_not_started_again() -> None:
    rows = [Row("b", next_send_at=NOW), Row("c", next_send_at=NOW)]
    assert decide(rows, NOW, bulk_locked=False, in_flight={"b"}).start == [Due("c", True)]


def test_a_partner_fetch_is_granted_once_per_interval_and_never_under_the_bulk_lock() -> None:
    from federationd.relinks import decide_fetch

    assert decide_fetch(None, False, 3600, NOW) is None
    assert decide_fetch(NOW - 3600, False, 3600, NOW) is None
    assert "at most one per 3600s" in (decide_fetch(NOW - 10, False, 3600, NOW) or "")
    assert decide_fetch(None, True, 3600, NOW) == "a bulk job holds the lock"
