"""Applying the changes of a `changes` or `snapshot` message to replica records, in the caller's one transaction.

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

from sqlalchemy import Connection, Text, and_, bindparam, cast, func, or_, select, true, update
from sqlalchemy.dialects.postgresql import ARRAY

from federationd import linklog
from federationd.bounds import MAX_CHANGES, clip, quoted
from federationd.categories import CATEGORIES, check_size, find_credential
from federationd.errors import RejectedChange
from federationd.handlers.ordering import Floor, Stamp, floor_stamp, plan
from federationd.schema import inbound_sweeps, receive_history, records
from federationd.sql import canonical, dumps, upsert
from federationd.wire import ChangesBody, Skipped, WireChange

log = logging.getLogger(__name__)

_LOOKUP_CHUNK = 500


@dataclass
class Applied:
    """What one message did, for the log, the metrics and the link's receive figures."""

    received: Counter[str] = field(default_factory=Counter)  # per category, every change in the message
    applied: Counter[str] = field(default_factory=Counter)
    skipped: int = 0  # duplicates: older than or equal to what we hold
    swept: int = 0
    problem: str | None = None  # set when a snapshot's final counts did not match (no sweep was done)
    completed: str | None = None  # the snapshot this message completed (every part in: checked, swept once)
    rejected: Counter[str] = field(default_factory=Counter)  # records skipped as bad, per reason
    notes: list[str] = field(default_factory=list)  # one short line per bad record (the first few are logged)


def _screen(body: ChangesBody) -> tuple[list[tuple[WireChange, str]], list[Skipped]]:
    """Each change with its canonical data JSON, and the bad ones (unknown category, credential field, oversized):
    those are skipped on their own, the rest of the message applies (docs/reliability.md)."""
    kept: list[tuple[WireChange, str]] = []
    bad = list(body.skipped)
    store = canonical if body.plain else dumps
    for change in body.changes:
        name = f"{change.category}/{change.id}"
        if change.category not in CATEGORIES:
            bad.append(Skipped(change.category, change.id, "unknown_category",
                               f"{clip(name)}: unknown category {quoted(change.category)}"))
            continue
        field_name = find_credential(change.data)
        if field_name is not None:
            bad.append(Skipped(change.category, change.id, "credential_field",
                               f"{clip(name)}: carries the credential field {clip(field_name)}"))
            continue
        data_json = "{}" if change.deleted else store(change.data)
        try:
            check_size(change.id, data_json)
        except RejectedChange as exc:
            bad.append(Skipped(change.category, change.id, exc.reason, f"{clip(name)}: {exc}"))
            continue
        kept.append((change, data_json))
    return kept, bad


def _by_category(keys: Iterable[tuple[str, str]], chunk: int = _LOOKUP_CHUNK) -> Iterator[tuple[str, list[str]]]:
    """(category, up to _LOOKUP_CHUNK ids) groups: `category = :c AND id IN (...)` is planned well on every
    database, where PostgreSQL plans a row-value `(category, id) IN (...)` of 500 keys slowly."""
    grouped: dict[str, list[str]] = defaultdict(list)
    for category, record_id in keys:
        grouped[category].append(record_id)
    for category, ids in sorted(grouped.items()):
        for start in range(0, len(ids), chunk):
            yield category, ids[start:start + chunk]


# PostgreSQL: the ids as ONE array parameter, each looked up through a LATERAL subquery with LIMIT 1, which the
# planner cannot merge into a join: one probe of the primary key per id, whatever the planner knows. A table filled
# from empty has no statistics until autovacuum's analyse; PostgreSQL then plans `id IN (500 parameters)` (and
# `id = ANY(:ids)` alike) as a scan of the (origin, category) prefix that filters every record of the category, and a
# plain join against `unnest(:ids)` as a hash of every record of the category: each message read the whole
# category, slower as the table fills (benchmarks/pg_lookup.py, tests/stub/test_pg_plans.py).
_PG_KEYS = func.unnest(cast(bindparam("ids"), ARRAY(Text))).table_valued("id").render_derived(name="k")
_PG_ONE = select(records.c.id, records.c.epoch, records.c.version).where(
    records.c.origin == bindparam("origin"), records.c.category == bindparam("category"),
    records.c.id == _PG_KEYS.c.id).limit(1).lateral("r")
_PG_HELD = select(_PG_ONE.c.id, _PG_ONE.c.epoch, _PG_ONE.c.version).select_from(_PG_KEYS.join(_PG_ONE, true()))


def _held(conn: Connection, origin: str, changes: list[WireChange]) -> dict[tuple[str, str], Stamp]:
    held: dict[tuple[str, str], Stamp] = {}
    keys = {(change.category, change.id) for change in changes}
    if conn.dialect.name == "postgresql":
        for category, ids in _by_category(keys, chunk=MAX_CHANGES):  # one array: no length limit but the message's
            rows = conn.execute(_PG_HELD, {"ids": ids, "origin": origin, "category": category})
            held.update({(category, row.id): (row.epoch, row.version) for row in rows})
        return held
    for category, ids in _by_category(keys):
        rows = conn.execute(select(records.c.id, records.c.epoch, records.c.version).where(
            records.c.origin == origin, records.c.category == category, records.c.id.in_(ids)))
        held.update({(category, row.id): (row.epoch, row.version) for row in rows})
    return held


def floor(conn: Connection, origin: str) -> Floor | None:
    """What the newest swept snapshot from `origin` covered (see schema.inbound_sweeps), or None."""
    row = conn.execute(select(inbound_sweeps).where(inbound_sweeps.c.origin == origin)).mappings().first()
    if row is None or row["floor_epoch"] is None:
        return None
    since = date.fromisoformat(row["floor_since"]) if row["floor_since"] else None
    return Floor(row["floor_epoch"], frozenset(json.loads(row["floor_categories"] or "[]")), since)


def _newer_than_held(excluded: object) -> object:
    return or_(records.c.epoch < excluded.epoch,  # type: ignore[attr-defined]
               and_(records.c.epoch == excluded.epoch,  # type: ignore[attr-defined]
                    records.c.version < excluded.version))  # type: ignore[attr-defined]


def apply_changes(conn: Connection, body: ChangesBody, now: float) -> Applied:
    """Write every good change newer than what we hold (or than the last swept snapshot said); count the rest
    as duplicates, and skip and count the bad ones."""
    kept, bad = _screen(body)
    result = Applied(received=Counter(change.category for change in body.changes))
    result.received.update(skip.category for skip in body.skipped if skip.category is not None)
    result.rejected.update(skip.reason for skip in bad)
    result.notes.extend(skip.message for skip in bad)
    changes = [change for change, _ in kept]
    held = _held(conn, body.origin, changes)
    covered = floor(conn, body.origin)
    # The floor's stamp is (its epoch, 0): a change of a later or the same epoch (version >= 1) is newer than it
    # whatever the record, so only a message of an older epoch needs a look at each change.
    for change in changes if covered is not None and body.epoch < covered.epoch else ():
        assumed = floor_stamp(covered, change.category, change.data)
        if assumed is not None and held.get((change.category, change.id), assumed) <= assumed:
            held[(change.category, change.id)] = assumed
    decided = plan(changes, body.epoch, held)
    data_json = {id(change): text for change, text in kept}
    rows = [{"origin": body.origin, "category": c.category, "id": c.id, "epoch": body.epoch, "version": c.version,
             "deleted": c.deleted, "data": data_json[id(c)], "updated_at": now}
            for c in decided.apply if isinstance(c, WireChange)]
    # The WHERE guard repeats the plan's decision in SQL, so even a concurrent writer could not go backwards.
    upsert(conn, records, rows, keys=("origin", "category", "id"), where=_newer_than_held)  # type: ignore[arg-type]
    result.applied.update(str(row["category"]) for row in rows)
    result.skipped = decided.skipped
    _note_history(conn, body.origin, {c.category for c in changes}, now)
    return result


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
        message = f"received {count} {clip(category, 40)} record(s) in a {kind} message, applied {applied}"
        linklog.write(conn, now, origin, "receive", message, category if category in CATEGORIES else None)
    if result.rejected:
        reasons = ", ".join(f"{n} {reason}" for reason, n in sorted(result.rejected.items()))
        linklog.write(conn, now, origin, "receive", f"skipped {sum(result.rejected.values())} bad record(s) "
                      f"({reasons}); first: {result.notes[0] if result.notes else '?'}")
    if result.completed and not result.problem:
        linklog.write(conn, now, origin, "receive", f"snapshot complete: {result.swept} record(s) no longer "
                      "at the partner were deleted")
    if result.problem:
        linklog.write(conn, now, origin, "receive", result.problem)
