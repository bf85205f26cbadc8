"""Receiving a snapshot whatever order its parts arrive in, in the caller's one transaction.

Each part's changes apply as they come (they are versioned like any change). The bookkeeping records the set of
parts applied and their record counts; the part that completes the set, first to final, whichever it is, checks
the counts and sweeps, once. A newer snapshot supersedes an unfinished older one; a part of a finished or
superseded snapshot applies as ordinary changes and never sweeps (docs/reliability.md, "Receiving").
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import date

from sqlalchemy import Connection, bindparam, delete, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite

from federationd.categories import schedule_in_window
from federationd.errors import RejectedChange
from federationd.handlers.changes import Applied, apply_changes
from federationd.handlers.ordering import NEW, STALE, SnapshotRef, complete, part_conflict, part_role
from federationd.schema import inbound_snapshot_parts, inbound_snapshots, inbound_sweeps, records
from federationd.sql import upsert
from federationd.wire import ChangesBody, SnapshotPart


def _lock(conn: Connection, origin: str) -> SnapshotRef | None:
    """Take the origin's snapshot lock (its inbound_sweeps row, created if need be: two transactions applying
    parts of one origin at once queue here) and return the newest snapshot finished from it."""
    dialect = sqlite if conn.dialect.name == "sqlite" else postgresql
    conn.execute(dialect.insert(inbound_sweeps).values(origin=origin).on_conflict_do_nothing())
    row = conn.execute(select(inbound_sweeps).where(inbound_sweeps.c.origin == origin).with_for_update()) \
        .mappings().one()
    if row["finished_id"] is None:
        return None
    return SnapshotRef(row["finished_epoch"], row["finished_id"])


def apply_snapshot(conn: Connection, body: ChangesBody, now: float) -> Applied:
    """Apply one snapshot part; sweep when it completes its snapshot and the counts match."""
    part = body.snapshot
    assert part is not None  # wire.decode guarantees it for snapshot messages
    origin = body.origin
    finished = _lock(conn, origin)
    progress = conn.execute(select(inbound_snapshots).where(inbound_snapshots.c.origin == origin)).mappings() \
        .first()
    current = SnapshotRef(progress["epoch"], progress["snapshot_id"]) if progress is not None else None
    incoming = SnapshotRef(body.epoch, part.id)
    role = part_role(incoming, current, finished)
    if role == STALE:
        return apply_changes(conn, body, now)
    if role == NEW:
        _start(conn, origin, incoming, now)
        final_part, seen, counts = None, 0, Counter[str]()
    else:
        assert progress is not None
        final_part, seen = progress["final_part"], progress["last_part"]
        counts = Counter(json.loads(progress["counts"]))
    highest = conn.execute(select(func.max(inbound_snapshot_parts.c.part)).where(
        inbound_snapshot_parts.c.origin == origin, inbound_snapshot_parts.c.snapshot_id == part.id)).scalar()
    conflict = part_conflict(part.part, part.final, final_part, int(highest or 0))
    if conflict is not None:
        raise RejectedChange("snapshot_inconsistent", f"snapshot {part.id}: {conflict}")
    result = apply_changes(conn, body, now)
    if _first_time(conn, origin, part, result, now):
        seen += 1
        counts.update(result.received)
    expected = progress["expected"] if role != NEW and progress is not None else None
    if part.final:
        final_part, expected = part.part, json.dumps(part.counts or {})
    conn.execute(update(inbound_snapshots).where(inbound_snapshots.c.origin == origin).values(
        last_part=seen, counts=json.dumps(counts), final_part=final_part, expected=expected))
    if complete(final_part, seen):
        _finish(conn, body, part, counts, json.loads(expected or "{}"), result, now)
    return result


def _start(conn: Connection, origin: str, snapshot: SnapshotRef, now: float) -> None:
    """A newer snapshot: forget the parts of the one it supersedes."""
    conn.execute(delete(inbound_snapshot_parts).where(inbound_snapshot_parts.c.origin == origin))
    conn.execute(delete(inbound_snapshots).where(inbound_snapshots.c.origin == origin))
    conn.execute(insert(inbound_snapshots).values(origin=origin, snapshot_id=snapshot.id, epoch=snapshot.epoch,
                                                  last_part=0, counts="{}", started_at=now))


def _first_time(conn: Connection, origin: str, part: SnapshotPart, result: Applied, now: float) -> bool:
    """Record the part as applied; False if it was already (a redelivery: applied again, harmlessly, but not
    counted twice)."""
    key = (inbound_snapshot_parts.c.origin == origin, inbound_snapshot_parts.c.snapshot_id == part.id,
           inbound_snapshot_parts.c.part == part.part)
    if conn.execute(select(inbound_snapshot_parts.c.part).where(*key)).first() is not None:
        return False
    conn.execute(insert(inbound_snapshot_parts).values(origin=origin, snapshot_id=part.id, part=part.part,
                                                       counts=json.dumps(result.received), received_at=now))
    return True


def _finish(conn: Connection, body: ChangesBody, part: SnapshotPart, counts: Counter[str],
            expected: dict[str, int], result: Applied, now: float) -> None:
    """Every part is in: sweep if the counts match, and remember the snapshot as finished either way."""
    origin = body.origin
    conn.execute(delete(inbound_snapshot_parts).where(inbound_snapshot_parts.c.origin == origin))
    conn.execute(delete(inbound_snapshots).where(inbound_snapshots.c.origin == origin))
    finished = {"finished_id": part.id, "finished_epoch": body.epoch, "finished_at": now}
    result.completed = part.id
    wanted = {category: n for category, n in expected.items() if n}
    got = {category: n for category, n in counts.items() if n}
    if got != wanted:
        result.problem = f"snapshot {part.id} incomplete: expected {wanted}, received {got}; not swept"
    else:
        since = date.fromisoformat(part.since) if part.since else None
        result.swept = sweep(conn, origin, body.epoch, part.categories, since, now)
        finished.update(floor_epoch=body.epoch, floor_since=part.since,
                        floor_categories=json.dumps(sorted(part.categories)))
    upsert(conn, inbound_sweeps, [{"origin": origin, **finished}], keys=("origin",))


_SCHEDULE_PAGE = 500  # stale schedules read per page for the window check: the sweep's memory stays bounded


def sweep(conn: Connection, origin: str, epoch: int, categories: list[str], since: date | None,
          now: float) -> int:
    """Tombstone the origin's records in `categories` that the snapshot of `epoch` did not carry (they hold an
    older epoch); schedules only inside the resent window.

    Set-based: one UPDATE for every category whose records all count, whatever their number (no ids go to
    Python and back in IN-lists, which PostgreSQL plans as a scan per list on a table without statistics).
    Only schedules need a look at their data: they are read in pages by id, and the ones inside the window
    are tombstoned by their whole key, one row each."""
    stale = (records.c.origin == origin, records.c.deleted.is_(False), records.c.epoch < epoch)
    gone = {"deleted": True, "data": "{}", "epoch": epoch, "updated_at": now}
    whole = sorted(category for category in categories if category != "schedule" or since is None)
    swept = 0
    if whole:
        swept += int(conn.execute(update(records).where(*stale, records.c.category.in_(whole)).values(**gone))
                     .rowcount)
    if since is None or "schedule" not in categories:
        return swept
    by_key = update(records).where(records.c.origin == origin, records.c.category == "schedule",
                                   records.c.id == bindparam("key_id")).values(**gone)
    after = ""
    while True:
        page = conn.execute(select(records.c.id, records.c.data).where(
            *stale, records.c.category == "schedule", records.c.id > after,
        ).order_by(records.c.id).limit(_SCHEDULE_PAGE)).all()
        if not page:
            return swept
        after = page[-1].id
        doomed = [{"key_id": row.id} for row in page if schedule_in_window(json.loads(row.data), since)]
        if doomed:
            conn.execute(by_key, doomed)
            swept += len(doomed)
