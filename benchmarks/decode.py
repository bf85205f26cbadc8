"""The receiver's CPU per record in process, no broker: decode + screen, and decode + apply into SQLite.

    PYTHONPATH=. .venv/bin/python -m benchmarks.decode

Builds MESSAGES messages of RECORDS benchmark employees (~1 KB each) the way the sender does (stored canonical JSON
spliced into `change_json`, gzip level 1), then measures with `time.process_time()`, best of ROUNDS:
- `decode + screen`: `wire.decode` and `handlers.changes._screen` of every message (what `docs/performance.md`
  tracks since 2026-11-29);
- `decode + apply`: `wire.decode`, `apply_changes` and `log_applied` of every message, one transaction each, into
  a fresh SQLite database in a temporary directory (the whole receiver's Python work but the broker's);
- the baseline's consume-and-apply part (`benchmarks.pipeline`): gunzip, `json.loads` and one `executemany`
  versioned upsert per message into a fresh SQLite database with the same engine settings.
"""

from __future__ import annotations

import gzip
import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import Engine

from benchmarks.common import employees
from benchmarks.pipeline import _TARGET_DDL, upsert_sql
from federationd import wire
from federationd.handlers import changes
from federationd.sql import dumps
from federationd.store import make_engine, migrate

ORIGIN = "site-a"
MESSAGES = int(os.environ.get("FED_BENCH_DECODE_MESSAGES", "5"))
RECORDS = int(os.environ.get("FED_BENCH_DECODE_RECORDS", "1000"))
ROUNDS = int(os.environ.get("FED_BENCH_DECODE_ROUNDS", "5"))


def messages() -> list[wire.Outgoing]:
    out = []
    for number in range(MESSAGES):
        rows = list(employees(RECORDS, start=number * RECORDS))
        texts = [wire.change_json("employee", record_id, ORIGIN, number * RECORDS + n + 1, False, dumps(data))
                 for n, (record_id, data) in enumerate(rows)]
        first, last = number * RECORDS + 1, (number + 1) * RECORDS
        out.append(wire.encode_changes("changes", ORIGIN, 1, texts, first, last))
    return out


def best(run: Callable[[], None], prepare: Callable[[], None] | None = None) -> float:
    """The lowest CPU seconds of ROUNDS runs of `run` (`prepare` runs before each, untimed)."""
    times = []
    for _ in range(ROUNDS):
        if prepare is not None:
            prepare()
        started = time.process_time()
        run()
        times.append(time.process_time() - started)
    return min(times)


def main() -> None:
    sent = messages()
    total = MESSAGES * RECORDS

    def screen() -> None:
        for message in sent:
            body = wire.decode(message.kind, message.content_encoding, message.body)
            assert isinstance(body, wire.ChangesBody)
            kept, bad = changes._screen(body)
            assert len(kept) == RECORDS and not bad

    print(f"decode + screen: {best(screen) / total * 1e6:.1f} us/record CPU "
          f"({MESSAGES} messages of {RECORDS} employees, best of {ROUNDS})")

    with tempfile.TemporaryDirectory() as folder:
        state = {"n": 0}
        engines: list[Engine] = []

        def fresh(baseline: bool = False) -> None:
            state["n"] += 1
            engine = make_engine(f"sqlite:///{Path(folder) / str(state['n'])}.db")
            if baseline:
                with engine.begin() as conn:
                    conn.exec_driver_sql(_TARGET_DDL)
            else:
                migrate(engine)
            engines.append(engine)

        def baseline() -> None:
            upsert = upsert_sql("?")
            for message in sent:
                params = [(c["origin"], c["category"], c["id"], 1, c["version"], False,
                           json.dumps(c["data"], separators=(",", ":"), ensure_ascii=False), 1.0)
                          for c in json.loads(gzip.decompress(message.body))["changes"]]
                with engines[-1].begin() as conn:
                    conn.exec_driver_sql(upsert, params)

        reference = best(baseline, lambda: fresh(baseline=True))

        def apply() -> None:
            engine = engines[-1]
            for message in sent:
                body = wire.decode(message.kind, message.content_encoding, message.body)
                assert isinstance(body, wire.ChangesBody)
                with engine.begin() as conn:
                    result = changes.apply_changes(conn, body, 1.0)
                    changes.log_applied(conn, ORIGIN, "changes", result, 1.0)
                assert sum(result.applied.values()) == RECORDS

        seconds = best(apply, fresh)
        for engine in engines:
            engine.dispose()
    print(f"decode + apply (SQLite): {seconds / total * 1e6:.1f} us/record CPU, baseline consume-and-apply "
          f"{reference / total * 1e6:.1f} us/record: {seconds / reference:.2f}x "
          f"({MESSAGES} messages of {RECORDS} employees, best of {ROUNDS})")


if __name__ == "__main__":
    main()
