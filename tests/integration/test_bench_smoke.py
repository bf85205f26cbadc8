"""`make bench` keeps working: benchmark 1 at its smallest scale (100 records) on one backend, through the same
entry point, with its baseline, its RabbitMQ Shovel peer and the CPU per record of each side in the results file.

Nothing here looks at a figure's size: a benchmark's numbers are reported, never asserted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(900)  # boots a broker of its own and runs four transfers: minutes on a loaded machine
def test_bulk_benchmark_smoke_reports_baseline_shovel_and_cpu(tmp_path: Path, backend: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "FED_BENCH_SCALE": "0.002", "FED_BENCH_ONLY": "bulk",
           "FED_BENCH_BACKENDS": backend, "FED_BENCH_RESULTS": str(tmp_path), "COLUMNS": "200"}
    done = subprocess.run([sys.executable, "-m", "benchmarks"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=840, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (results_file,) = tmp_path.glob("*.json")
    report = json.loads(results_file.read_text())
    assert report["errors"] == []
    results = report["results"]
    assert {r["backend"] for r in results} == {backend}
    rates = {r["metric"].rsplit("; ", 1)[-1]: r for r in results if r["bench"] == "1 bulk end to end"}
    assert set(rates) == {"vs the baseline", "vs RabbitMQ Shovel"}
    assert all(r["value"] > 0 and r["baseline"] > 0 and r["ratio"] > 0 for r in rates.values()), rates
    cpu = {r["metric"].split(" ")[0]: r for r in results if r["bench"] == "1 bulk CPU"}
    assert set(cpu) == {"sender", "receiver"}
    # /proc counts in clock ticks: 100 records may cost a daemon less than one tick, so only the baseline is > 0
    assert all(r["value"] >= 0 and r["baseline"] > 0 for r in cpu.values()), cpu
    details = rates["vs the baseline"]["details"]
    assert len(details["baseline_runs"]) == 2 and len(details["shovel_runs"]) == 2
    assert all(run["records"] == 100 for run in details["baseline_runs"])
