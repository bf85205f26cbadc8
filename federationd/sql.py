"""Small SQL helpers shared by the write paths: the dialect's upsert and compact JSON for the data column."""

from __future__ import annotations

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
    dialect = sqlite if conn.dialect.name == "sqlite" else postgresql
    statement = dialect.insert(table)
    columns = [name for name in rows[0] if name not in keys]
    statement = statement.on_conflict_do_update(
        index_elements=list(keys),
        set_={name: statement.excluded[name] for name in columns},
        where=where(statement.excluded) if where is not None else None,
    )
    conn.execute(statement, list(rows))
