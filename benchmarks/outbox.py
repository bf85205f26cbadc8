"""Benchmark 3: outbox overhead. A host transaction that changes one employee through `capture.put`, against the
same transaction without federationd (the host's own row update only), on the same database and engine.

Both variants update the host's own row (about 1 KB of JSON) in one transaction and commit; the federationd one
also calls `capture.put` in that transaction. They run interleaved in blocks (ABBA...), so drift of a shared,
noisy machine hits both alike; the figure is the ratio of the median transaction times.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import statistics
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection, text

from benchmarks.common import Context, Result, employees
from federationd.config import load_config
from federationd.outbox import capture
from federationd.runtime import Runtime

RECORDS = 1000
BLOCK = 100
GOAL = 0.15

_HOST_DDL = ("CREATE TABLE host_employees (id VARCHAR(255) PRIMARY KEY, name VARCHAR(255) NOT NULL, "
             "data TEXT NOT NULL, updated_at FLOAT NOT NULL)")
_HOST_UPDATE = text("UPDATE host_employees SET name = :name, data = :data, updated_at = :at WHERE id = :id")


def iterations() -> int:
    return max(2 * BLOCK, int(os.environ.get("FED_BENCH_OUTBOX_ITERATIONS", "2000")))


def run(ctx: Context, backend: str) -> list[Result]:
    rows = list(employees(RECORDS, seed=11))
    n = iterations()
    rng = random.Random(3)
    plan = [rng.randrange(RECORDS) for _ in range(2 * n)]
    with contextlib.ExitStack() as stack:
        site = ctx.site(stack, "outbox", backend, start=False)
        rt = Runtime(load_config(site.config_path))
        stack.callback(rt.dispose)
        engine = rt.engine
        with engine.begin() as conn:
            conn.exec_driver_sql(_HOST_DDL)
            conn.execute(text("INSERT INTO host_employees VALUES (:id, :name, :data, :at)"),
                         [{"id": rid, "name": data["name"], "data": json.dumps(data), "at": time.time()}
                          for rid, data in rows])
            capture.put_many(conn, "employee", rows)
        counter = iter(range(10**9))

        def change() -> tuple[str, dict[str, Any]]:
            step = next(counter)
            record_id, data = rows[plan[step % len(plan)]]
            return record_id, {**data, "phone": f"+81-3-0000-{step % 10000:04d}", "title": f"Rank {step % 7}"}

        def host_change(conn: Connection, record_id: str, data: dict[str, Any]) -> None:
            conn.execute(_HOST_UPDATE, {"id": record_id, "name": data["name"], "data": json.dumps(data),
                                        "at": time.time()})

        def without() -> None:
            record_id, data = change()
            with engine.begin() as conn:
                host_change(conn, record_id, data)

        def with_outbox() -> None:
            record_id, data = change()
            with engine.begin() as conn:
                host_change(conn, record_id, data)
                capture.put(conn, "employee", record_id, data)

        for fn in (without, with_outbox):  # warm caches (statement compilation, pages) before timing
            for _ in range(50):
                fn()
        times: dict[str, list[float]] = {"without": [], "with": []}
        variants: list[tuple[str, Callable[[], None]]] = [("without", without), ("with", with_outbox)]
        for block in range(n // BLOCK):
            order = variants if block % 2 == 0 else variants[::-1]
            for name, fn in order:
                bucket = times[name]
                for _ in range(BLOCK):
                    started = time.perf_counter()
                    fn()
                    bucket.append(time.perf_counter() - started)
    base, fed = statistics.median(times["without"]), statistics.median(times["with"])
    extra = fed / base - 1
    mean_extra = statistics.fmean(times["with"]) / statistics.fmean(times["without"]) - 1
    return [Result(
        "3 outbox overhead", backend, f"one-record host transaction, {len(times['with']):,} iterations each",
        fed * 1e3, base * 1e3, "ms/txn (median)", fed / base, "< 1.15x (< 15% extra)", extra < GOAL,
        f"+{extra:.0%} (mean +{mean_extra:.0%})",
        details={"median_ms": {"with": fed * 1e3, "without": base * 1e3},
                 "mean_ms": {"with": statistics.fmean(times["with"]) * 1e3,
                             "without": statistics.fmean(times["without"]) * 1e3},
                 "p90_ms": {k: statistics.quantiles(v, n=10)[-1] * 1e3 for k, v in times.items()},
                 "extra_median": extra, "extra_mean": mean_extra})]
