"""A snapshot reads its records page by page in key order; each page must be an ordered scan of the primary key
that stops after the page, whatever the planner knows: on PostgreSQL a table filled since its last analyse has no
statistics, and a page planned as a scan of every remaining record and a sort makes a snapshot quadratic."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date

import pytest
from sqlalchemy import Connection, Engine, insert, text

from federationd.outbox import batches
from federationd.schema import records
from federationd.sql import index_order
from federationd.store import ensure_site_state, make_engine, migrate, reading

pytestmark = pytest.mark.integration

HOME = "site-home"


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    migrate(engine)
    with engine.begin() as conn:
        ensure_site_state(conn, HOME)
        conn.execute(insert(records), [
            {"origin": HOME, "category": "employee", "id": f"e-{i:05}", "epoch": 1, "version": i + 1,
             "deleted": False, "data": json.dumps({"name": "x" * 500}), "updated_at": 1.0} for i in range(5000)])
    try:
        yield engine
    finally:
        engine.dispose()


def _plan(conn: Connection, after: tuple[str, str] | None) -> str:
    query = batches.snapshot_page(HOME, after, 1000).compile(conn.engine, compile_kwargs={"literal_binds": True})
    explain = "EXPLAIN" if conn.dialect.name == "postgresql" else "EXPLAIN QUERY PLAN"
    return "\n".join(str(row[-1]) for row in conn.execute(text(f"{explain} {query}")))


@pytest.mark.parametrize("after", [None, ("employee", "e-02000")])
def test_a_snapshot_page_is_an_ordered_key_scan_without_statistics(engine: Engine,
                                                                    after: tuple[str, str] | None) -> None:
    with reading(engine) as conn, index_order(conn):
        plan = _plan(conn, after)
    assert "Sort" not in plan and "Bitmap" not in plan and "TEMP B-TREE" not in plan, plan
    assert ("Index Scan using pk_records" if engine.dialect.name == "postgresql" else "USING INDEX") in plan, plan


def test_the_pages_carry_every_record_once_in_key_order(engine: Engine) -> None:
    pages = batches.snapshot_batches(engine, HOME, 700, 10**7, since=date(2026, 8, 1))
    seen = [change for batch in pages for change in batch.changes]
    ids = [json.loads(change)["id"] for change in seen]
    assert ids == [f"e-{i:05}" for i in range(5000)]
