"""The bookkeeping of publisher confirms in flight (broker/confirms.py): in-order settling, whatever the order
and grouping of the broker's answers."""

from __future__ import annotations

import pytest

from federationd.broker.confirms import Window
from federationd.wire import encode


def _window(count: int, settled: list[int]) -> Window:
    window = Window()
    for i in range(1, count + 1):
        window.put(encode("control", {"n": i}), "site-a", lambda i=i: settled.append(i))
    return window


def _settle(window: Window) -> None:
    for on_confirmed in window.confirmed():
        on_confirmed()


def test_a_multiple_ack_confirms_every_message_up_to_its_tag() -> None:
    settled: list[int] = []
    window = _window(5, settled)
    window.ack(3, True)
    _settle(window)
    assert settled == [1, 2, 3] and window.unconfirmed == 2 and window.outstanding() == [4, 5]


def test_an_ack_after_a_gap_waits_for_the_gap() -> None:
    settled: list[int] = []
    window = _window(3, settled)
    window.ack(2, False)
    window.ack(3, False)
    _settle(window)
    assert settled == []
    window.ack(1, False)
    _settle(window)
    assert settled == [1, 2, 3] and window.empty


@pytest.mark.parametrize("failure", ["nack", "multiple nack", "return", "lost"])
def test_nothing_from_the_failed_message_on_settles(failure: str) -> None:
    settled: list[int] = []
    window = _window(5, settled)
    window.ack(2, True)
    if failure == "nack":
        window.nack(3, False)
    elif failure == "multiple nack":
        window.nack(4, True)
    elif failure == "return":
        returned = window.message(3)
        assert returned is not None
        window.returned(returned.message_id)
    else:
        window.lost(OSError("reset"))
    window.ack(5, True)  # a broker acks a returned message; later answers never heal the failure
    _settle(window)
    assert settled == [1, 2]
    assert window.failure is not None and window.failure.message is not None
    assert window.failure.message.tag == 3


def test_a_marker_settles_once_everything_before_it_is_confirmed() -> None:
    settled: list[int] = []
    window = _window(2, settled)
    window.mark(lambda: settled.append(0))
    window.ack(1, False)
    _settle(window)
    assert settled == [1]
    window.ack(2, False)
    _settle(window)
    assert settled == [1, 2, 0]


def test_a_return_before_the_earlier_confirms_waits_for_them() -> None:
    """A broker returns an unroutable message at once but confirms persisted ones after their write."""
    settled: list[int] = []
    window = _window(4, settled)
    returned = window.message(3)
    assert returned is not None
    window.returned(returned.message_id)
    assert window.answering
    window.ack(4, True)
    _settle(window)
    assert settled == [1, 2] and not window.answering


def test_a_lost_connection_ends_the_wait_for_earlier_confirms() -> None:
    settled: list[int] = []
    window = _window(4, settled)
    window.nack(3, False)
    assert window.answering
    window.lost(OSError("reset"))
    _settle(window)
    assert settled == [] and not window.answering
    assert window.failure is not None and window.failure.what == "nack"
