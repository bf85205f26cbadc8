"""Unit tests for federationd.retry.send_backoff_seconds: capped exponential backoff with full jitter (SPEC 4)."""

from __future__ import annotations

import itertools
import random

import pytest

from federationd.retry import send_backoff_seconds

CAP = 300.0  # retry.SEND_BACKOFF's max


def upper_bound(failures: int) -> float:
    return float(min(2 * 2 ** (max(1, failures) - 1), int(CAP)))


@pytest.mark.parametrize("failures", [0, 1, 2, 3, 5, 8, 9, 12, 64, 10_000])
def test_within_zero_and_the_bound(failures: int) -> None:
    samples = [send_backoff_seconds(failures) for _ in range(300)]
    assert all(0.0 <= s <= upper_bound(failures) for s in samples)
    assert all(s <= CAP for s in samples)
    # full jitter: over 300 draws the largest lands in the top fifth of the window (P(miss) = 0.8**300)
    assert max(samples) >= 0.8 * upper_bound(failures)
    assert min(samples) <= 0.2 * upper_bound(failures)


@pytest.mark.parametrize("cap", [0.0, 0.5, 5.0, 60.0])
@pytest.mark.parametrize("failures", [1, 4, 20])
def test_caller_cap(failures: int, cap: float) -> None:
    samples = [send_backoff_seconds(failures, cap) for _ in range(100)]
    assert all(0.0 <= s <= cap for s in samples)


def test_upper_bound_grows_with_failures(monkeypatch: pytest.MonkeyPatch) -> None:
    # Pin the jitter to the top of its window to read the bound itself.
    monkeypatch.setattr(random, "uniform", lambda low, high: high)
    bounds = [send_backoff_seconds(n) for n in range(1, 15)]
    assert bounds[:9] == [2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 300.0]
    assert all(b >= a for a, b in itertools.pairwise(bounds))
    assert set(bounds[8:]) == {CAP}
    assert send_backoff_seconds(0) == send_backoff_seconds(1) == 2.0
    assert send_backoff_seconds(10, cap_seconds=30) == 30.0


def test_lower_bound_is_zero(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(random, "uniform", lambda low, high: low)
    assert {send_backoff_seconds(n) for n in (1, 5, 50)} == {0.0}


def test_sampled_mean_grows_with_failures() -> None:
    means = [sum(send_backoff_seconds(n) for _ in range(400)) / 400 for n in (1, 3, 5, 7)]
    assert means == sorted(means)
