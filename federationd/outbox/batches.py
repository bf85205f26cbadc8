"""What goes in each message: home changes after a link's watermark, and full snapshots, bounded in size.

Reading is paged by an index (version for changes, (category, id) for snapshots) so memory stays bounded
whatever the size of the site. Several pending changes of one record go once, as the newest: the records table
holds only the newest version, and a batch selects records, not outbox rows. The stored JSON of each record's
data goes into the message as it is, never parsed and dumped again.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from sqlalchemy import Connection, Engine, Select, select, tuple_

from federationd.bounds import MAX_RECORD_BYTES
from federationd.categories import schedule_in_window
from federationd.schema import records
from federationd.sql import index_order
from federationd.store import reading
from federationd.wire import change_json

# The JSON around each change's data, for the byte budget (braces, keys, quotes).
_OVERHEAD_BYTES = 120


@dataclass
class Batch:
    """Changes as wire JSON text (`wire.change_json`), ready to be joined into a message body."""

    changes: list[str] = field(default_factory=list)
    versions: list[int] = field(default_factory=list)  # of the changes, and of records left out as oversized
    oversized: list[str] = field(default_factory=list)  # category/id of records over the bytes-per-record bound
    counts: Counter[str] = field(default_factory=Counter)
    size: int = 0

    @property
    def first(self) -> int:
        return min(self.versions, default=0)

    @property
    def last(self) -> int:
        return max(self.versions, default=0)

    def fits(self, max_records: int, max_bytes: int, extra: int) -> bool:
        return not self.changes or (len(self.changes) < max_records and self.size + extra <= max_bytes)

    def add(self, row: Any, origin: str) -> None:
        if _oversized(row):  # stored before capture bounded records: never sent (it could block the link)
            self.versions.append(row.version)
            self.oversized.append(f"{row.category}/{row.id}")
            return
        text = change_json(row.category, row.id, origin, row.version, bool(row.deleted), row.data)
        self.changes.append(text)
        self.versions.append(row.version)
        self.counts[row.category] += 1
        self.size += len(text)


def _oversized(row: Any) -> bool:
    return len(row.data) * 4 > MAX_RECORD_BYTES and len(row.data.encode()) > MAX_RECORD_BYTES


def _size(row: Any) -> int:
    return len(row.data) + len(row.id) + _OVERHEAD_BYTES


_COLUMNS = (records.c.category, records.c.id, records.c.version, records.c.deleted, records.c.data)


def next_batch(conn: Connection, origin: str, after_seq: int, max_records: int, max_bytes: int) -> Batch | None:
    """The oldest pending home changes after `after_seq`, as one batch within the limits, or None."""
    with index_order(conn):
        rows = conn.execute(select(*_COLUMNS).where(records.c.origin == origin, records.c.version > after_seq)
                            .order_by(records.c.version).limit(max_records)).all()
    batch = Batch()
    for row in rows:
        if not batch.fits(max_records, max_bytes, _size(row)):
            break
        batch.add(row, origin)
    return batch if batch.versions else None


def snapshot_page(origin: str, after: tuple[str, str] | None, max_records: int) -> Select[Any]:
    """The next page of live home records after (category, id) `after`, in key order."""
    query = select(*_COLUMNS).where(records.c.origin == origin, records.c.deleted.is_(False))
    if after is not None:
        query = query.where(tuple_(records.c.category, records.c.id) > after)
    return query.order_by(records.c.category, records.c.id).limit(max_records)


def snapshot_batches(engine: Engine, origin: str, max_records: int, max_bytes: int,
                     since: date) -> Iterator[Batch]:
    """Every live home record (schedules only from `since`), in bounded batches, one short read per page."""
    after: tuple[str, str] | None = None
    batch = Batch()
    while True:
        with reading(engine) as conn:
            page = _page(conn, origin, after, max_records)
        if not page:
            break
        after = (page[-1].category, page[-1].id)
        for row in page:
            if row.category == "schedule" and not schedule_in_window(json.loads(row.data), since):
                continue
            if not batch.fits(max_records, max_bytes, _size(row)):
                yield batch
                batch = Batch()
            batch.add(row, origin)
    if batch.changes or batch.oversized:
        yield batch


def _page(conn: Connection, origin: str, after: tuple[str, str] | None, limit: int) -> list[Any]:
    """Up to `limit` live home records after the (category, id) `after`, in that order (an ordered key scan on
    PostgreSQL too, whatever its statistics: `sql.index_order`)."""
    with index_order(conn):
        return list(conn.execute(snapshot_page(origin, after, limit)).all())
