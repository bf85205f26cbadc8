"""Records as the CLI and the host read them: `(origin, category, id) -> (version, deleted, data)`."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, RowMapping, select

from federationd.schema import records


@dataclass(frozen=True)
class Record:
    origin: str
    category: str
    id: str
    epoch: int
    version: int
    deleted: bool
    data: dict[str, Any]

    def as_json(self) -> dict[str, Any]:
        """The `records get --json` shape (docs/cli.md)."""
        return {"origin": self.origin, "category": self.category, "id": self.id, "version": self.version,
                "deleted": self.deleted, "data": self.data}

    @classmethod
    def from_row(cls, row: RowMapping) -> Record:
        return cls(row["origin"], row["category"], row["id"], row["epoch"], row["version"], bool(row["deleted"]),
                   json.loads(row["data"]))


def get_record(conn: Connection, origin: str, category: str, record_id: str) -> Record | None:
    row = conn.execute(select(records).where(records.c.origin == origin, records.c.category == category,
                                             records.c.id == record_id)).mappings().first()
    return Record.from_row(row) if row is not None else None


def list_records(conn: Connection, origin: str, category: str, include_deleted: bool = False) -> list[Record]:
    query = select(records).where(records.c.origin == origin, records.c.category == category)
    if not include_deleted:
        query = query.where(records.c.deleted.is_(False))
    return [Record.from_row(row) for row in conn.execute(query.order_by(records.c.id)).mappings()]
