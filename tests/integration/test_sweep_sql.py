"""The snapshot sweep's SQL on SQLite and PostgreSQL, in-process (no broker): it tombstones exactly the origin's
live records that the snapshot's epoch did not reach, in the categories it covers, schedules only inside the
resent window, and touches nothing else."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date

import pytest
from sqlalchemy import Engine, insert, select

from federationd.categories import CATEGORIES
from federationd.handlers.snapshots import sweep
from federationd.schema import records
from federationd.store import ensure_site_state, make_engine, migrate, reading

pytestmark = pytest.mark.integration

HOME, PARTNER, OTHER = "site-home", "site-partner", "site-other"
OLD, NEW = 5, 6  # the epoch the receiver held, the snapshot's
SINCE = date(2026, 8, 1)


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    migrate(engine)
    with engine.begin() as conn:
        ensure_site_state(conn, HOME)
    try:
        yield engine
    finally:
        engine.dispose()


def _row(origin: str, category: str, record_id: str, epoch: int, data: dict[str, object],
         deleted: bool = False) -> dict[str, object]:
    return {"origin": origin, "category": category, "id": record_id, "epoch": epoch, "version": 1,
            "deleted": deleted, "data": "{}" if deleted else json.dumps(data), "updated_at": 1.0}


def test_the_sweep_tombstones_exactly_the_records_the_snapshot_did_not_reach(engine: Engine) -> None:
    rows = [_row(PARTNER, "employee", f"e-{i:04}", NEW if i % 3 else OLD, {"name": f"n{i}"}) for i in range(1500)]
    rows += [
        _row(PARTNER, "department", "d-gone", OLD, {"name": "old"}),
        _row(PARTNER, "department", "d-kept", NEW, {"name": "kept"}),
        _row(PARTNER, "employee", "e-deleted", OLD, {}, deleted=True),
        _row(PARTNER, "schedule", "s-old", OLD, {"start": "2026-01-10", "end": "2026-01-15"}),
        _row(PARTNER, "schedule", "s-gone", OLD, {"start": "2026-09-01", "end": "2026-10-01"}),
        _row(PARTNER, "schedule", "s-gone-too", OLD, {"start": "2026-07-01", "end": "2026-07-02",
                                                       "occurrences": [{"end": "2026-08-15"}]}),
        _row(PARTNER, "schedule", "s-kept", NEW, {"start": "2026-09-02", "end": "2026-09-03"}),
        _row(OTHER, "employee", "e-0000", OLD, {"name": "someone else's"}),
    ]
    rows += [_row(PARTNER, "schedule", f"s-{i:04}", OLD, {"start": "2026-09-01", "end": "2026-09-01"})
             for i in range(1200)]  # more than one page of schedules
    with engine.begin() as conn:
        conn.execute(insert(records), rows)
    before = {(r["origin"], r["category"], r["id"]): r for r in rows}
    doomed = {key for key, r in before.items() if key[0] == PARTNER and r["epoch"] == OLD and not r["deleted"]
              and key[2] != "s-old"}

    with engine.begin() as conn:
        swept = sweep(conn, PARTNER, NEW, list(CATEGORIES), SINCE, 99.0)

    assert swept == len(doomed) == 500 + 1 + 2 + 1200
    with reading(engine) as conn:
        after = {(r.origin, r.category, r.id): r for r in conn.execute(select(records))}
    for key, row in after.items():
        if key in doomed:
            assert (row.deleted, row.data, row.epoch, row.updated_at) == (True, "{}", NEW, 99.0), key
        else:
            was = before[key]
            assert (row.deleted, row.data, row.epoch) == (was["deleted"], was["data"], was["epoch"]), key


def test_without_a_window_every_stale_schedule_goes_and_other_categories_stay(engine: Engine) -> None:
    rows = [_row(PARTNER, "schedule", "s-old", OLD, {"start": "2026-01-10", "end": "2026-01-15"}),
            _row(PARTNER, "employee", "e-1", OLD, {"name": "not in the snapshot's categories"})]
    with engine.begin() as conn:
        conn.execute(insert(records), rows)
        assert sweep(conn, PARTNER, NEW, ["schedule"], None, 99.0) == 1
    with reading(engine) as conn:
        deleted = dict(conn.execute(select(records.c.id, records.c.deleted)).all())
    assert deleted == {"s-old": True, "e-1": False}
