"""The send loop's change mark is read twice a second on an idle daemon: each part must be an index look-up,
never a scan that grows with the outbox (SQLite answers `min(seq), max(seq)` in one statement by scanning)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import insert, text

from federationd import changemark
from federationd.schema import outbox
from federationd.store import make_engine, migrate


def test_the_outbox_ends_are_read_by_index_and_are_right(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'site.db'}")
    migrate(engine)
    try:
        with engine.begin() as conn:
            conn.execute(insert(outbox), [{"seq": seq, "category": "employee", "record_id": f"e{seq}",
                                           "created_at": 1.0} for seq in range(5, 2005)])
            sql = str(changemark._OUTBOX.compile(conn.engine))
            plan = [str(row[-1]) for row in conn.execute(text(f"EXPLAIN QUERY PLAN {sql}"))]
            assert not any(step.startswith("SCAN outbox") for step in plan), plan
            assert tuple(conn.execute(changemark._OUTBOX).one()) == (5, 2004)
    finally:
        engine.dispose()
