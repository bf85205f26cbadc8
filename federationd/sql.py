"""Small SQL helpers shared by the write paths: the dialect's upsert and compact JSON for the data column."""

from __future__ import annotations

import contextlib
import functools
import json
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import msgspec
from sqlalchemy import Connection, Dialect, Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import StatementError
from sqlalchemy.sql.elements import ColumnElement


def dumps(data: Any) -> str:
    """Canonical compact JSON: sorted keys, UTF-8 kept as is."""
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False, sort_keys=True)


_CANONICAL = msgspec.json.Encoder(order="sorted")


def canonical(data: dict[str, Any]) -> str:
    """`dumps` of data that msgspec decoded from JSON (only JSON types, finite numbers, valid Unicode), eight times
    faster. The same compact, sorted, UTF-8 text but for how some floats are spelt (`1e16`, not `1e+16`): the
    same numbers. Not for anything else: it writes NaN as null and encodes types `dumps` refuses."""
    return _CANONICAL.encode(data).decode()


# The previous values first (OFFSET 0 keeps the subquery from being merged into the outer list), then off for the
# rest of the transaction; `is_local` = true: a rollback or commit restores them in any case.
_INDEX_ORDER_ON = ("SELECT bitmap, sort, set_config('enable_bitmapscan', 'off', true), "
                   "set_config('enable_sort', 'off', true) "
                   "FROM (SELECT current_setting('enable_bitmapscan') AS bitmap, "
                   "current_setting('enable_sort') AS sort OFFSET 0) AS previous")
_INDEX_ORDER_OFF = ("SELECT set_config('enable_bitmapscan', %(bitmap)s, true), "
                    "set_config('enable_sort', %(sort)s, true)")


@contextlib.contextmanager
def index_order(conn: Connection) -> Iterator[None]:
    """On PostgreSQL, plan the `ORDER BY ... LIMIT n` reads inside as a scan of the index in its order that stops
    after n rows, whatever the planner's statistics say. A table filled from empty has none until autovacuum's
    analyse (and a site's own records can grow far past what an old analyse saw among many partners' records):
    PostgreSQL then guesses that a handful of rows match and plans a bitmap scan of every matching row and a sort,
    so each page read every pending record and a bulk send slowed as it grew. Nothing else changes on SQLite."""
    if conn.dialect.name != "postgresql":
        yield
        return
    previous = conn.exec_driver_sql(_INDEX_ORDER_ON).one()
    yield  # on an error the transaction is aborted and rolls the settings back itself
    conn.exec_driver_sql(_INDEX_ORDER_OFF, {"bitmap": previous.bitmap, "sort": previous.sort})


def upsert(
    conn: Connection,
    table: Table,
    rows: Sequence[dict[str, Any]],
    keys: Sequence[str],
    where: Callable[[Any], ColumnElement[bool]] | None = None,
) -> None:
    """INSERT ... ON CONFLICT (keys) DO UPDATE every other column [WHERE where(excluded)], as one executemany."""
    if not rows:
        return
    names = tuple(rows[0])
    statement = _upsert_statement(conn.dialect.name, table, names, tuple(keys), where)
    driver = _positional(conn.dialect, statement, table, names)
    if driver is None:
        conn.execute(statement, list(rows))
        return
    sql, order, processors = driver
    if not any(processors):
        conn.exec_driver_sql(sql, [tuple(row[name] for name in order) for row in rows])
        return
    try:
        params = [tuple(convert(row[name]) if convert else row[name]
                        for name, convert in zip(order, processors, strict=True)) for row in rows]
    except (TypeError, ValueError) as exc:  # a value its column's type refuses: as SQLAlchemy itself reports it
        raise StatementError(str(exc), sql, None, exc) from exc
    conn.exec_driver_sql(sql, params)


Processor = Callable[[Any], Any] | None


@functools.lru_cache(maxsize=64)
def _positional(dialect: Dialect, statement: Any, table: Table,
                names: tuple[str, ...]) -> tuple[str, tuple[str, ...], tuple[Processor, ...]] | None:
    """The statement as driver SQL with positional parameters (SQLite's `?`), the column of each and its type's
    bind processor; None where the driver takes named parameters (PostgreSQL). SQLAlchemy's per-row parameter
    building cost as much as the driver's executemany on the receiver's 1,000-row upserts; this builds the tuples
    itself, with the same conversions."""
    compiled = statement.compile(dialect=dialect, column_keys=list(names))
    order = compiled.positiontup
    if order is None or set(order) != set(names) or len(order) != len(names):
        return None
    processors = tuple(table.c[name].type.dialect_impl(dialect).bind_processor(dialect) for name in order)
    return str(compiled), tuple(order), processors


@functools.lru_cache(maxsize=64)
def _upsert_statement(dialect_name: str, table: Table, names: tuple[str, ...], keys: tuple[str, ...],
                      where: Callable[[Any], ColumnElement[bool]] | None) -> Any:
    """Built once per shape: building the statement cost as much as running it on the host's hot path."""
    dialect = sqlite if dialect_name == "sqlite" else postgresql
    statement = dialect.insert(table)
    return statement.on_conflict_do_update(
        index_elements=list(keys),
        set_={name: statement.excluded[name] for name in names if name not in keys},
        where=where(statement.excluded) if where is not None else None,
    )
