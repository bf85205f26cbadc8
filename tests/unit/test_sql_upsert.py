"""`sql.upsert` on SQLite builds its own positional parameters (no per-row work in SQLAlchemy): it must store
exactly what SQLAlchemy's own parameter building stores, conversions included (booleans, floats, NULLs), and keep
the version guard of its WHERE."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.exc import StatementError

from federationd import sql
from federationd.handlers.changes import _newer_than_held
from federationd.schema import records
from federationd.store import make_engine, migrate

KEYS = ("origin", "category", "id")


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    engine = make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    migrate(engine)
    return engine


def row(record_id: str, version: int, deleted: Any = False, updated_at: Any = 1.5) -> dict[str, Any]:
    return {"origin": "site-b", "category": "employee", "id": record_id, "epoch": 3, "version": version,
            "deleted": deleted, "data": '{"name":"佐藤"}', "updated_at": updated_at}


def stored(engine: Engine) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(select(records.c.id, records.c.version, records.c.deleted,
                                                      records.c.data, records.c.updated_at).order_by(records.c.id))]


def test_the_positional_path_stores_what_sqlalchemy_stores(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    rows = [row("a", 2), row("b", 5, deleted=True, updated_at=7), row("c", 1, updated_at=2**40)]
    with engine.begin() as conn:
        assert sql._positional(conn.dialect, sql._upsert_statement("sqlite", records, tuple(rows[0]), KEYS,
                                                                   _newer_than_held), records, tuple(rows[0]))
        sql.upsert(conn, records, rows, KEYS, where=_newer_than_held)
    ours = stored(engine)
    with engine.begin() as conn:
        conn.execute(records.delete())
    monkeypatch.setattr(sql, "_positional", lambda *args: None)
    with engine.begin() as conn:
        sql.upsert(conn, records, rows, KEYS, where=_newer_than_held)
    assert ours == stored(engine)
    assert [(r[0], r[2], type(r[4])) for r in ours] == [("a", False, float), ("b", True, float), ("c", False, float)]


def test_the_version_guard_still_holds(engine: Engine) -> None:
    with engine.begin() as conn:
        sql.upsert(conn, records, [row("a", 5), row("b", 5)], KEYS, where=_newer_than_held)
        sql.upsert(conn, records, [row("a", 4, deleted=True), row("b", 6, deleted=True)], KEYS,
                   where=_newer_than_held)
    assert [(r[0], r[1], r[2]) for r in stored(engine)] == [("a", 5, False), ("b", 6, True)]


@pytest.mark.parametrize("positional", [True, False])
def test_a_value_sqlalchemy_refuses_is_still_refused(engine: Engine, monkeypatch: pytest.MonkeyPatch,
                                                     positional: bool) -> None:
    """The Boolean column's own bind conversion runs: a non-boolean is the same error either way, not a stored 2
    (a StatementError, which the dispatcher handles as a database error)."""
    if not positional:
        monkeypatch.setattr(sql, "_positional", lambda *args: None)
    with pytest.raises(StatementError, match="is not None, True, or False"), engine.begin() as conn:
        sql.upsert(conn, records, [row("a", 1, deleted=2)], KEYS, where=_newer_than_held)
    assert stored(engine) == []
