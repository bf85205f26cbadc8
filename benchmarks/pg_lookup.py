"""The receiver's look-up of held versions on PostgreSQL, before and after the table has planner statistics:
`PYTHONPATH=. .venv/bin/python -m benchmarks.pg_lookup` (a scratch database, dropped afterwards).

federationd's own schema (migrated), ROWS records of ~1 KB of one origin written from empty as a bulk transfer
writes them, then the look-up `handlers/changes.py` makes (`origin = ? AND category = ? AND id IN (500 bound
parameters)`),
timed (median of REPEATS) with the same 500 ids each time and with new ids each time; then `ANALYZE records` and the
same again; and, before and after, the same keys as one array parameter (`id = ANY(:ids)`) and the look-up as
`handlers/changes.py` makes it in the tree that runs (`held_*`). Prints the plans' first lines.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, String, bindparam, select
from sqlalchemy.dialects.postgresql import ARRAY

from federationd.handlers.changes import _held as _held_lookup
from federationd.schema import records
from federationd.store import make_engine, migrate
from tests.support.pg import create_database, drop_database, pg_reachable

ROWS = int(os.environ.get("FED_BENCH_LOOKUP_ROWS", "20000"))
KEYS = 500
REPEATS = 20
_DATA = '{"bio": "' + "x" * 1000 + '"}'  # about the size of benchmark 1's employees
_COLUMNS = (records.c.id, records.c.epoch, records.c.version)
_WHERE = (records.c.origin == "a", records.c.category == "employee")
@dataclass(frozen=True)
class _Change:
    category: str
    id: str


_ANY = select(*_COLUMNS).where(*_WHERE, records.c.id == bindparam("ids", type_=ARRAY(String)).any_())


_UNNEST = ("SELECT r.id, r.epoch, r.version FROM unnest(%(ids)s::text[]) AS k(id) JOIN records r "
           "ON r.origin = 'a' AND r.category = 'employee' AND r.id = k.id")


def _ids(start: int) -> list[str]:
    return [f"e-{(start + i) % ROWS:06d}" for i in range(KEYS)]


def _in_list(conn: Connection, ids: list[str]) -> int:
    return len(conn.execute(select(*_COLUMNS).where(*_WHERE, records.c.id.in_(ids))).all())


def _any_array(conn: Connection, ids: list[str]) -> int:
    return len(conn.execute(_ANY, {"ids": ids}).all())


def _unnest(conn: Connection, ids: list[str]) -> int:
    return len(conn.exec_driver_sql(_UNNEST, {"ids": ids}).all())


def _held(conn: Connection, ids: list[str]) -> int:
    """The receiver's own look-up (`handlers/changes.py`), whatever form it takes in this tree."""
    return len(_held_lookup(conn, "a", [_Change("employee", i) for i in ids]))  # type: ignore[list-item]


def _median_ms(engine: Engine, lookup: Callable[[Connection, list[str]], int], fresh: bool) -> float:
    times = []
    for step in range(REPEATS):
        ids = _ids(step * KEYS if fresh else ROWS // 4)
        with engine.begin() as conn:
            started = time.perf_counter()
            found = lookup(conn, ids)
            times.append(time.perf_counter() - started)
        if found != KEYS:
            raise AssertionError(f"look-up found {found} of {KEYS}")
    return statistics.median(times) * 1e3


def _plan(engine: Engine) -> str:
    literal = ", ".join(f"'{i}'" for i in _ids(ROWS // 4))
    with engine.connect() as conn:
        lines = conn.exec_driver_sql(
            "EXPLAIN ANALYZE SELECT id, epoch, version FROM records WHERE origin = 'a' AND category = 'employee' "
            f"AND id IN ({literal})").scalars().all()
    return " | ".join(line[:90] for line in lines if not line.lstrip().startswith(("Index Cond", "Filter")))


def measure(engine: Engine) -> dict[str, Any]:
    migrate(engine)
    with engine.begin() as conn:
        conn.execute(records.insert(), [
            {"origin": "a", "category": "employee", "id": f"e-{i:06d}", "epoch": 1, "version": i + 1,
             "deleted": False, "data": _DATA, "updated_at": 0.0} for i in range(ROWS)])
    result: dict[str, Any] = {"rows": ROWS, "keys": KEYS, "repeats": REPEATS, "plan_before": _plan(engine),
                              "in_same_ids_ms": _median_ms(engine, _in_list, False),
                              "in_new_ids_ms": _median_ms(engine, _in_list, True),
                              "any_same_ids_ms": _median_ms(engine, _any_array, False),
                              "any_new_ids_ms": _median_ms(engine, _any_array, True),
                              "unnest_new_ids_ms": _median_ms(engine, _unnest, True),
                              "held_new_ids_ms": _median_ms(engine, _held, True)}
    with engine.begin() as conn:
        conn.exec_driver_sql("ANALYZE records")
    result.update({"plan_after_analyze": _plan(engine),
                   "analyzed_in_same_ids_ms": _median_ms(engine, _in_list, False),
                   "analyzed_in_new_ids_ms": _median_ms(engine, _in_list, True),
                   "analyzed_any_new_ids_ms": _median_ms(engine, _any_array, True),
                   "analyzed_held_new_ids_ms": _median_ms(engine, _held, True)})
    return result


def main() -> int:
    if not pg_reachable():
        print("PostgreSQL is not reachable on 127.0.0.1:5432")
        return 1
    name = f"fedbench_lookup_{os.getpid()}"
    engine = make_engine(create_database(name))
    try:
        result = measure(engine)
    finally:
        engine.dispose()
        drop_database(name)
    for key, value in result.items():
        print(f"{key}: {value:.2f}" if isinstance(value, float) else f"{key}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
