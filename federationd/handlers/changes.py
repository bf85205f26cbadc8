"""Applying `changes` and `snapshot` messages to replica records, in the caller's one transaction.

Only records of the sending origin are read or written here (the dispatcher has checked that every change's
origin is the partner's, and never this site's).
"""

from __future__ import annotations

import json
import logging
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date

from sqlalchemy import Connection, and_, delete, insert, or_, select, update

from federationd import linklog
from federationd.categories import CATEGORIES, find_credential, schedule_in_window
from federationd.errors import RejectedChange
from federationd.handlers.ordering import Stamp, plan
from federationd.schema import inbound_snapshots, receive_history, records
from federationd.sql import dumps, upsert
from federationd.wire import ChangesBody, WireChange

log = logging.getLogger(__name__)

_LOOKUP_CHUNK = 500


@dataclass
class Applied:
    """What one message did, for the log, the metrics and the link's receive figures."""

    received: Counter[str] = field(default_factory=Counter)  # per category, every change in the message
    applied: Counter[str] = field(default_factory=Counter)
    skipped: int = 0
    swept: int = 0
    problem: str | None = None  # set when a snapshot's final counts did not match (no sweep was done)


def _validate(changes: list[WireChange]) -> None:
    for change in changes:
        if change.category not in CATEGORIES:
            raise RejectedChange("unknown_category", f"unknown category {change.category!r}")
        field_name = find_credential(change.data)
        if field_name is not None:
            raise RejectedChange("credential_field", f"{change.category}/{change.id} carries credential field "
                                 f"{field_name!r}")


def _by_category(keys: Iterable[tuple[str, str]]) -> Iterator[tuple[str, list[str]]]:
    """(category, up to _LOOKUP_CHUNK ids) groups: `category = :c AND id IN (...)` is planned well on every
    database, where PostgreSQL plans a row-value `(category, id) IN (...)` of 500 keys slowly."""
    grouped: dict[str, list[str]] = defaultdict(list)
    for category, record_id in keys:
        grouped[category].append(record_id)
    for category, ids in sorted(grouped.items()):
        for start in range(0, len(ids), _LOOKUP_CHUNK):
            yield category, ids[start:start + _LOOKUP_CHUNK]


def _held(conn: Connection, origin: str, changes: list[WireChange]) -> dict[tuple[str, str], Stamp]:
    held: dict[tuple[str, str], Stamp] = {}
    for category, ids in _by_category({(change.category, change.id) for change in changes}):
        rows = conn.execute(select(records.c.id, records.c.epoch, records.c.version).where(
            records.c.origin == origin, records.c.category == category, records.c.id.in_(ids)))
        held.update({(category, row.id): (row.epoch, row.version) for row in rows})
    return held


def _newer_than_held(excluded: object) -> object:
    return or_(records.c.epoch < excluded.epoch,  # type: ignore[attr-defined]
               and_(records.c.epoch == excluded.epoch,  # type: ignore[attr-defined]
                    records.c.version < excluded.version))  # type: ignore[attr-defined]


def apply_changes(conn: Connection, body: ChangesBody, now: float) -> Applied:
    """Write every change newer than what we hold; count the rest as duplicates."""
    _validate(body.changes)
    result = Applied(received=Counter(change.category for change in body.changes))
    decided = plan(body.changes, body.epoch, _held(conn, body.origin, body.changes))
    rows = [{"origin": body.origin, "category": c.category, "id": c.id, "epoch": body.epoch, "version": c.version,
             "deleted": c.deleted, "data": dumps({} if c.deleted else c.data), "updated_at": now}
            for c in decided.apply if isinstance(c, WireChange)]
    # The WHERE guard repeats the plan's decision in SQL, so even a concurrent writer could not go backwards.
    upsert(conn, records, rows, keys=("origin", "category", "id"), where=_newer_than_held)  # type: ignore[arg-type]
    result.applied.update(str(row["category"]) for row in rows)
    result.skipped = decided.skipped
    _note_history(conn, body.origin, set(result.received), now)
    return result


def apply_snapshot(conn: Connection, body: ChangesBody, now: float) -> Applied:
    """Apply one snapshot part; on the final part check the counts, then sweep what the snapshot did not carry."""
    part = body.snapshot
    assert part is not None  # wire.decode guarantees it for snapshot messages
    progress = conn.execute(select(inbound_snapshots).where(inbound_snapshots.c.origin == body.origin)).mappings() \
        .first()
    if progress is None or progress["snapshot_id"] != part.id:
        if part.part != 1:
            raise RejectedChange("snapshot_out_of_order", f"snapshot {part.id} part {part.part} without its start")
        conn.execute(delete(inbound_snapshots).where(inbound_snapshots.c.origin == body.origin))
        conn.execute(insert(inbound_snapshots).values(origin=body.origin, snapshot_id=part.id, epoch=body.epoch,
                                                      last_part=0, counts="{}", started_at=now))
        counts: Counter[str] = Counter()
        last_part = 0
    else:
        counts = Counter(json.loads(progress["counts"]))
        last_part = progress["last_part"]
    result = apply_changes(conn, body, now)
    if part.part > last_part:  # a redelivered part is applied (idempotently) but not counted again
        counts.update(result.received)
    if not part.final:
        conn.execute(update(inbound_snapshots).where(inbound_snapshots.c.origin == body.origin).values(
            last_part=max(last_part, part.part), counts=json.dumps(counts)))
        return result
    conn.execute(delete(inbound_snapshots).where(inbound_snapshots.c.origin == body.origin))
    expected = {category: n for category, n in (part.counts or {}).items() if n}
    if dict(counts) != expected:
        result.problem = f"snapshot {part.id} incomplete: expected {expected}, received {dict(counts)}; not swept"
        return result
    since = date.fromisoformat(part.since) if part.since else None
    result.swept = sweep(conn, body.origin, body.epoch, part.categories, since, now)
    return result


def sweep(conn: Connection, origin: str, epoch: int, categories: list[str], since: date | None,
          now: float) -> int:
    """Tombstone the origin's records in `categories` that the snapshot of `epoch` did not carry (they hold an
    older epoch); schedules only inside the resent window."""
    stale = select(records.c.category, records.c.id, records.c.data).where(
        records.c.origin == origin, records.c.category.in_(categories), records.c.deleted.is_(False),
        records.c.epoch < epoch)
    doomed = [(row.category, row.id) for row in conn.execute(stale)
              if row.category != "schedule" or since is None or schedule_in_window(json.loads(row.data), since)]
    for category, ids in _by_category(doomed):
        conn.execute(update(records).where(
            records.c.origin == origin, records.c.category == category, records.c.id.in_(ids),
        ).values(deleted=True, data="{}", epoch=epoch, updated_at=now))
    return len(doomed)


def tombstone(conn: Connection, origin: str, categories: tuple[str, ...], now: float) -> int:
    """Delete (tombstone) every live record of `origin` in `categories`, keeping its stamp, so that a late
    older message cannot bring it back; a later snapshot (a newer epoch) can."""
    return int(conn.execute(update(records).where(
        records.c.origin == origin, records.c.category.in_(categories), records.c.deleted.is_(False),
    ).values(deleted=True, data="{}", updated_at=now)).rowcount)


def _note_history(conn: Connection, origin: str, categories: set[str], now: float) -> None:
    if categories:
        upsert(conn, receive_history, [{"site": origin, "category": c, "last_received_at": now}
                                       for c in sorted(categories)], keys=("site", "category"))


def log_applied(conn: Connection, origin: str, kind: str, result: Applied, now: float) -> None:
    for category, count in sorted(result.received.items()):
        applied = result.applied.get(category, 0)
        message = f"received {count} {category} record(s) in a {kind} message, applied {applied}"
        linklog.write(conn, now, origin, "receive", message, category)
    if result.swept:
        linklog.write(conn, now, origin, "receive", f"snapshot complete: {result.swept} record(s) no longer "
                      "at the partner were deleted")
    if result.problem:
        linklog.write(conn, now, origin, "receive", result.problem)
