"""Benchmark 3: outbox cost. A host transaction that changes one employee through `capture.put`, against the same
transaction without federationd, on the same database and engine. Two shapes of host transaction:

* one statement: the host's own row update (about 1 KB of JSON) and commit;
* realistic: the host's row update touching two indexed columns (name, department) plus an audit row insert
  (who, when, which fields), and commit.

Each pair runs interleaved in blocks (ABBA...), so drift of a shared, noisy machine hits both alike; the figure is
the ratio of the median transaction times.

On PostgreSQL also: 32 concurrent host writers (threads, one connection each, each on its own rows), realistic
transactions, throughput with `capture.put` against without, and against one writer with `capture.put` (the
version counter is one row every capturing transaction locks until commit: concurrent writers must not be slower
in total than one). Variants run in the order without, with, with, without (and one writer between), the better
of each variant's two runs counts.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import statistics
import threading
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, text

from benchmarks.common import Context, Result, employees
from federationd.config import load_config
from federationd.outbox import capture
from federationd.runtime import Runtime

RECORDS = 1000
BLOCK = 100
GOAL = 0.15
WRITERS = 32

_HOST_DDL = ("CREATE TABLE host_employees (id VARCHAR(255) PRIMARY KEY, name VARCHAR(255) NOT NULL, "
             "department VARCHAR(64) NOT NULL, data TEXT NOT NULL, updated_at FLOAT NOT NULL)")
_HOST_INDEXES = ("CREATE INDEX host_employees_name ON host_employees (name)",
                 "CREATE INDEX host_employees_department ON host_employees (department)")
_AUDIT_DDL = {
    "sqlite": "CREATE TABLE host_audit (id INTEGER PRIMARY KEY AUTOINCREMENT, ",
    "postgresql": "CREATE TABLE host_audit (id BIGSERIAL PRIMARY KEY, ",
}
_AUDIT_COLUMNS = ("employee_id VARCHAR(255) NOT NULL, actor VARCHAR(64) NOT NULL, at FLOAT NOT NULL, "
                  "fields TEXT NOT NULL)")
_HOST_UPDATE = text("UPDATE host_employees SET name = :name, data = :data, updated_at = :at WHERE id = :id")
_HOST_UPDATE_INDEXED = text("UPDATE host_employees SET name = :name, department = :dept, data = :data, "
                            "updated_at = :at WHERE id = :id")
_AUDIT_INSERT = text("INSERT INTO host_audit (employee_id, actor, at, fields) VALUES (:id, :actor, :at, :fields)")


def iterations() -> int:
    return max(2 * BLOCK, int(os.environ.get("FED_BENCH_OUTBOX_ITERATIONS", "2000")))


def _one_statement(conn: Connection, record_id: str, data: dict[str, Any]) -> None:
    conn.execute(_HOST_UPDATE, {"id": record_id, "name": data["name"], "data": json.dumps(data), "at": time.time()})


def _realistic(conn: Connection, record_id: str, data: dict[str, Any]) -> None:
    now = time.time()
    conn.execute(_HOST_UPDATE_INDEXED, {"id": record_id, "name": data["name"], "dept": data["main_department"],
                                        "data": json.dumps(data), "at": now})
    conn.execute(_AUDIT_INSERT, {"id": record_id, "actor": "hr-app", "at": now,
                                 "fields": json.dumps(["name", "main_department", "phone", "title"])})


HostChange = Callable[[Connection, str, dict[str, Any]], None]


class _Changes:
    """Changed employees drawn from the host's rows: a fresh phone, title, name and department each time."""

    def __init__(self, rows: list[tuple[str, dict[str, Any]]], seed: int) -> None:
        self.rows = rows
        self.rng = random.Random(seed)
        self.step = 0

    def next(self, index: int | None = None) -> tuple[str, dict[str, Any]]:
        self.step += 1
        step = self.step
        record_id, data = self.rows[self.rng.randrange(len(self.rows)) if index is None else index]
        return record_id, {**data, "phone": f"+81-3-0000-{step % 10000:04d}", "title": f"Rank {step % 7}",
                           "name": f"{data['name'][:15]} {step % 97}", "main_department": f"d-{step % 40:02d}"}


def _transaction(engine: Engine, host: HostChange, outbox: bool, record_id: str, data: dict[str, Any]) -> None:
    with engine.begin() as conn:
        host(conn, record_id, data)
        if outbox:
            capture.put(conn, "employee", record_id, data)


def _interleaved(engine: Engine, host: HostChange, changes: _Changes, n: int) -> dict[str, list[float]]:
    """Transaction times of both variants, ABBA blocks of BLOCK, after a warm-up of both."""
    def one(outbox: bool) -> None:
        _transaction(engine, host, outbox, *changes.next())

    for outbox in (False, True):  # warm caches (statement compilation, pages) before timing
        for _ in range(50):
            one(outbox)
    times: dict[str, list[float]] = {"without": [], "with": []}
    variants = [("without", False), ("with", True)]
    for block in range(n // BLOCK):
        for name, outbox in variants if block % 2 == 0 else variants[::-1]:
            bucket = times[name]
            for _ in range(BLOCK):
                started = time.perf_counter()
                one(outbox)
                bucket.append(time.perf_counter() - started)
    return times


def _result(backend: str, shape: str, times: dict[str, list[float]]) -> Result:
    base, fed = statistics.median(times["without"]), statistics.median(times["with"])
    extra = fed / base - 1
    mean_extra = statistics.fmean(times["with"]) / statistics.fmean(times["without"]) - 1
    return Result(
        "3 outbox cost", backend, f"{shape} host transaction, {len(times['with']):,} iterations each",
        fed * 1e3, base * 1e3, "ms/txn (median)", fed / base, "< 1.15x (< 15% extra)", extra < GOAL,
        f"+{extra:.0%} (mean +{mean_extra:.0%}); +{(fed - base) * 1e3:.3f} ms per transaction",
        details={"median_ms": {"with": fed * 1e3, "without": base * 1e3},
                 "mean_ms": {k: statistics.fmean(v) * 1e3 for k, v in times.items()},
                 "p90_ms": {k: statistics.quantiles(v, n=10)[-1] * 1e3 for k, v in times.items()},
                 "extra_median": extra, "extra_mean": mean_extra})


def _throughput(engine: Engine, rows: list[tuple[str, dict[str, Any]]], writers: int, per_writer: int,
                outbox: bool) -> float:
    """Realistic transactions per second of `writers` threads, each changing only its own slice of the rows."""
    barrier = threading.Barrier(writers + 1)
    failures: list[BaseException] = []

    def writer(number: int) -> None:
        changes = _Changes(rows, seed=number)
        mine = range(number, len(rows), writers)
        try:
            barrier.wait()
            for step in range(per_writer):
                _transaction(engine, _realistic, outbox, *changes.next(mine[step % len(mine)]))
        except BaseException as exc:  # noqa: BLE001 - re-raised in the main thread below
            failures.append(exc)

    threads = [threading.Thread(target=writer, args=(i,), daemon=True) for i in range(writers)]
    for thread in threads:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    if failures:
        raise failures[0]
    return writers * per_writer / seconds


def _concurrent(engine: Engine, rows: list[tuple[str, dict[str, Any]]], n: int) -> list[Result]:
    per_writer = max(10, n // WRITERS)
    pool = create_engine(engine.url, pool_size=WRITERS + 1, max_overflow=0)
    try:
        _throughput(pool, rows, WRITERS, 5, True)  # warm-up: open every connection
        runs: dict[str, list[float]] = {"without": [], "with": [], "one": []}
        for name in ("without", "with", "one", "with", "without", "one"):
            writers = 1 if name == "one" else WRITERS
            count = per_writer * WRITERS // writers if name == "one" else per_writer
            runs[name].append(_throughput(pool, rows, writers, min(count, 2000), name != "without"))
    finally:
        pool.dispose()
    without, with_, one = max(runs["without"]), max(runs["with"]), max(runs["one"])
    details = {"writers": WRITERS, "transactions_per_writer": per_writer, "runs_txn_per_second": runs}
    return [
        Result("3 outbox, 32 writers", "postgresql", f"{WRITERS} concurrent host writers (realistic txn) with "
               "capture.put vs without", with_, without, "txn/s", with_ / without, "report (no goal set)", None,
               f"{with_ / without - 1:+.0%} throughput with capture.put", details=details),
        Result("3 outbox, 32 writers", "postgresql", f"{WRITERS} concurrent writers with capture.put vs one "
               "writer with capture.put", with_, one, "txn/s", with_ / one, ">= 1.0x (never slower than one)",
               with_ >= one, "the version counter serialises capturing transactions until commit",
               details=details),
    ]


def run(ctx: Context, backend: str) -> list[Result]:
    rows = list(employees(RECORDS, seed=11))
    n = iterations()
    with contextlib.ExitStack() as stack:
        site = ctx.site(stack, "outbox", backend, start=False)
        rt = Runtime(load_config(site.config_path))
        stack.callback(rt.dispose)
        engine = rt.engine
        with engine.begin() as conn:
            conn.exec_driver_sql(_HOST_DDL)
            for ddl in _HOST_INDEXES:
                conn.exec_driver_sql(ddl)
            conn.exec_driver_sql(_AUDIT_DDL[engine.dialect.name] + _AUDIT_COLUMNS)
            conn.execute(text("INSERT INTO host_employees VALUES (:id, :name, :dept, :data, :at)"),
                         [{"id": rid, "name": data["name"], "dept": data["main_department"],
                           "data": json.dumps(data), "at": time.time()} for rid, data in rows])
            capture.put_many(conn, "employee", rows)
        results = [_result(backend, "one-statement", _interleaved(engine, _one_statement, _Changes(rows, 3), n)),
                   _result(backend, "realistic (indexed row update + audit row)",
                           _interleaved(engine, _realistic, _Changes(rows, 4), n))]
        if backend == "postgresql":
            results.extend(_concurrent(engine, rows, n))
    return results
