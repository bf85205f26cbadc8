"""Benchmark 2: CSV import. Rows/s of `federationd import` (in process: `run_import`, no process start-up) into
records + outbox, against a plain `executemany` of the same CSV rows into one table, same database, same run."""

from __future__ import annotations

import contextlib
import csv
import time
from pathlib import Path

from sqlalchemy import Engine

from benchmarks.common import BASE_EMPLOYEES, FIELDS, Context, Result, placeholder, ratio, scaled, write_csv
from federationd.config import load_config
from federationd.outbox.importer import run_import
from federationd.runtime import Runtime
from federationd.store import reading


def _plain(engine: Engine, path: Path, table: str) -> float:
    """Read the CSV and insert every row, one column per field, in one transaction with one executemany."""
    mark = placeholder(engine)
    columns = ", ".join(f"{name} TEXT" + (" PRIMARY KEY" if name == "id" else "") for name in FIELDS)
    with engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE TABLE {table} ({columns})")
    started = time.perf_counter()
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        rows = [tuple(row) for row in reader]
    with engine.begin() as conn:
        conn.exec_driver_sql(f"INSERT INTO {table} ({', '.join(header)}) VALUES ({', '.join([mark] * len(header))})",
                             rows)
    return time.perf_counter() - started


def run(ctx: Context, backend: str) -> list[Result]:
    count = scaled(BASE_EMPLOYEES)
    path = ctx.root / f"employees-{count}.csv"
    if not path.exists():
        write_csv(path, count)
    with contextlib.ExitStack() as stack:
        site = ctx.site(stack, "import", backend, start=False)
        rt = Runtime(load_config(site.config_path))
        stack.callback(rt.dispose)
        engine = rt.engine
        plain_first = _plain(engine, path, "plain_import_1")
        started = time.perf_counter()
        imported = run_import(engine, "employee", path)
        fed_seconds = time.perf_counter() - started
        plain_second = _plain(engine, path, "plain_import_2")
        with reading(engine) as conn:
            outbox_rows = conn.exec_driver_sql("SELECT count(*) FROM outbox").scalar_one()
    if imported != count or outbox_rows < count:
        raise AssertionError(f"imported {imported} rows, {outbox_rows} outbox rows, expected {count}")
    best = min(plain_first, plain_second)
    value, baseline = count / fed_seconds, count / best
    return [Result("2 import", backend, f"{count:,} CSV rows (~1 KB) into records + outbox", value, baseline,
                   "rows/s", ratio(value, baseline), "report (no goal set)", None,
                   details={"rows": count, "federationd_seconds": fed_seconds,
                            "plain_seconds": [plain_first, plain_second], "csv_bytes": path.stat().st_size})]
