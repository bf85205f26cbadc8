"""What the worst bodies cost in memory, measured in a fresh process (benchmarks/receive_bounds.py); the figures
are stated in docs/reliability.md."""

from __future__ import annotations

import sys

import pytest

from benchmarks.receive_bounds import measure

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self")

LIMITS_MB = {"bomb": 40, "tiny_changes": 40, "empty_objects": 64, "short_strings": 128, "largest_accepted": 96}


@pytest.mark.parametrize("case", list(LIMITS_MB))
def test_peak_memory_of_the_worst_bodies_is_bounded(case: str) -> None:
    result = measure(case)
    assert float(result["growth_mb"]) < LIMITS_MB[case], result  # type: ignore[arg-type]
    if case in ("bomb", "tiny_changes"):
        assert str(result["outcome"]).startswith("refused (oversized)")
        assert "bound" in str(result["outcome"])
