"""On PostgreSQL, the bulk path's hot statements read what they return, not the whole table, even while `records`
has no planner statistics (a table filled from empty, before autovacuum's analyse: exactly a first bulk transfer).

Without statistics PostgreSQL guesses that a handful of rows match `origin = ?`, and then plans the sender's
`ORDER BY version LIMIT n` as a bitmap scan of every pending record plus a sort, and the receiver's look-up as a hash
of every record of the category: each message cost a read of the whole table, so a bulk transfer slowed as it grew
(docs/performance.md, "Bulk transfer on PostgreSQL"). The checks count the rows each statement fetched from
`records` in its transaction (`pg_stat_xact_user_tables`), not time.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from sqlalchemy import Connection, Engine

from federationd.handlers.changes import _held
from federationd.handlers.snapshots import sweep
from federationd.outbox.batches import _page, next_batch
from federationd.schema import records
from federationd.store import make_engine, migrate
from tests.support.pg import create_database, drop_database, pg_reachable

A = "site-a"
ROWS = 4000
BATCH = 100


@dataclass(frozen=True)
class _Key:
    category: str
    id: str


@pytest.fixture(scope="module")
def engine() -> Iterator[Engine]:
    if not pg_reachable():
        pytest.skip("PostgreSQL is not reachable")
    name = f"fedtest_plans_{uuid.uuid4().hex[:8]}"
    engine = make_engine(create_database(name))
    migrate(engine)
    with engine.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE records SET (autovacuum_enabled = false)")  # no statistics arrive
        conn.execute(records.insert(), [
            {"origin": A, "category": "employee", "id": f"e-{i:05d}", "epoch": 1, "version": i + 1, "deleted": False,
             "data": '{"bio":"' + "x" * 200 + '"}', "updated_at": 0.0} for i in range(ROWS)])
    yield engine
    engine.dispose()
    drop_database(name)


def _fetched(conn: Connection) -> int:
    """Rows of `records` this transaction has read so far (sequential and through an index)."""
    return int(conn.exec_driver_sql(
        "SELECT coalesce(seq_tup_read, 0) + coalesce(idx_tup_fetch, 0) FROM pg_stat_xact_user_tables "
        "WHERE relname = 'records'").scalar_one())


def test_tables_have_no_statistics(engine: Engine) -> None:
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM pg_stats WHERE tablename = 'records'").scalar_one() == 0


@pytest.mark.parametrize("after", [0, ROWS // 2])
def test_the_senders_read_fetches_one_batch(engine: Engine, after: int) -> None:
    with engine.begin() as conn:
        before = _fetched(conn)
        batch = next_batch(conn, A, after, BATCH, 1 << 20)
        fetched = _fetched(conn) - before
        settings = conn.exec_driver_sql("SELECT current_setting('enable_bitmapscan'), "
                                        "current_setting('enable_sort')").one()
    assert batch is not None and batch.first == after + 1 and batch.last == after + BATCH
    assert fetched <= 2 * BATCH, f"read {fetched} rows for a batch of {BATCH}"
    assert tuple(settings) == ("on", "on")  # the rest of the caller's transaction is planned as usual


def test_a_snapshot_page_fetches_one_page(engine: Engine) -> None:
    with engine.begin() as conn:
        before = _fetched(conn)
        page = _page(conn, A, ("employee", f"e-{ROWS // 2:05d}"), BATCH)
        fetched = _fetched(conn) - before
    assert [row.id for row in page] == [f"e-{i:05d}" for i in range(ROWS // 2 + 1, ROWS // 2 + 1 + BATCH)]
    assert fetched <= 2 * BATCH, f"read {fetched} rows for a page of {BATCH}"


def test_the_receivers_look_up_fetches_only_held_records(engine: Engine) -> None:
    keys = [_Key("employee", f"n-{i:05d}") for i in range(BATCH)] + [_Key("employee", "e-00007")]
    with engine.begin() as conn:
        before = _fetched(conn)
        held = _held(conn, A, keys)  # type: ignore[arg-type]
        fetched = _fetched(conn) - before
    assert held == {("employee", "e-00007"): (1, 8)}
    assert fetched <= len(keys), f"read {fetched} rows to look up {len(keys)} keys"


def test_a_sweep_fetches_each_doomed_record_once_more(engine: Engine) -> None:
    """The stale records are found with one read of the origin; each is then tombstoned through its key, not by a
    scan of the category per 500 ids."""
    doomed = 2000
    with engine.connect() as conn:
        conn.execute(records.insert(), [
            {"origin": "site-c", "category": "employee", "id": f"c-{i:05d}", "epoch": 1, "version": i + 1,
             "deleted": False, "data": "{}", "updated_at": 0.0} for i in range(doomed)])
        before = _fetched(conn)
        swept = sweep(conn, "site-c", 2, ["employee"], None, 1.0)
        fetched = _fetched(conn) - before
        live = conn.exec_driver_sql("SELECT count(*) FROM records WHERE origin = 'site-c' AND NOT deleted").scalar()
        conn.rollback()
    assert swept == doomed and live == 0
    assert fetched <= 2 * doomed + 10, f"read {fetched} rows to sweep {doomed}"
