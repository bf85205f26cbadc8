"""What goes in each message: home changes after a link's watermark, and full snapshots, bounded in size.

Reading is paged by an index (version for changes, (category, id) for snapshots) so memory stays bounded
whatever the size of the site. Several pending changes of one record go once, as the newest: the records table
holds only the newest version, and a batch selects records, not outbox rows.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from sqlalchemy import Connection, Engine, select, tuple_

from federationd.categories import schedule_in_window
from federationd.schema import records
from federationd.store import reading

# The JSON around each change's data, for the byte budget (braces, keys, quotes).
_OVERHEAD_BYTES = 120


@dataclass
class Batch:
    changes: list[dict[str, Any]] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)
    size: int = 0

    @property
    def last(self) -> int:
        return max(int(change["version"]) for change in self.changes)

    def fits(self, max_records: int, max_bytes: int, extra: int) -> bool:
        return not self.changes or (len(self.changes) < max_records and self.size + extra <= max_bytes)

    def add(self, change: dict[str, Any], size: int) -> None:
        self.changes.append(change)
        self.counts[change["category"]] += 1
        self.size += size


def _change(row: Any, origin: str) -> tuple[dict[str, Any], int]:
    change = {"category": row.category, "id": row.id, "origin": origin, "version": row.version,
              "deleted": bool(row.deleted), "data": json.loads(row.data)}
    return change, len(row.data) + len(row.id) + _OVERHEAD_BYTES


_COLUMNS = (records.c.category, records.c.id, records.c.version, records.c.deleted, records.c.data)


def next_batch(conn: Connection, origin: str, after_seq: int, max_records: int, max_bytes: int) -> Batch | None:
    """The oldest pending home changes after `after_seq`, as one batch within the limits, or None."""
    rows = conn.execute(select(*_COLUMNS).where(records.c.origin == origin, records.c.version > after_seq)
                        .order_by(records.c.version).limit(max_records))
    batch = Batch()
    for row in rows:
        change, size = _change(row, origin)
        if not batch.fits(max_records, max_bytes, size):
            break
        batch.add(change, size)
    return batch if batch.changes else None


def snapshot_batches(engine: Engine, origin: str, max_records: int, max_bytes: int,
                     since: date) -> Iterator[Batch]:
    """Every live home record (schedules only from `since`), in bounded batches, one short read per page."""
    after: tuple[str, str] | None = None
    batch = Batch()
    while True:
        query = select(*_COLUMNS).where(records.c.origin == origin, records.c.deleted.is_(False))
        if after is not None:
            query = query.where(tuple_(records.c.category, records.c.id) > after)
        with reading(engine) as conn:
            page = conn.execute(query.order_by(records.c.category, records.c.id).limit(max_records)).all()
        if not page:
            break
        after = (page[-1].category, page[-1].id)
        for row in page:
            change, size = _change(row, origin)
            if row.category == "schedule" and not schedule_in_window(change["data"], since):
                continue
            if not batch.fits(max_records, max_bytes, size):
                yield batch
                batch = Batch()
            batch.add(change, size)
    if batch.changes:
        yield batch
