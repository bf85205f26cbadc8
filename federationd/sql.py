"""Small SQL helpers shared by the write paths: the dialect's upsert and compact JSON for the data column."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Connection, Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.elements import ColumnElement


def dumps(data: Any) -> str:
    """Canonical compact JSON: sorted keys, UTF-8 kept as is."""
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False, sort_keys=True)


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
    conn.execute(_upsert_statement(conn.dialect.name, table, tuple(rows[0]), tuple(keys), where), list(rows))


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
