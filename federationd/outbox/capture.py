"""The one write path for home records: the change and its outbox row, in the caller's transaction.

This is the host API (docs/host-api.md). The host application passes its own SQLAlchemy `Connection`, inside its own
transaction; the record and the outbox row commit or roll back with the host's change. The CLI's `records put`,
`records delete` and `import` call the same functions.

    with engine.begin() as conn:
        conn.execute(...)                                  # the host's own change
        capture.put(conn, "employee", "e-17", {"name": "..."})
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import Connection, insert, select, text

from federationd.categories import check_category, check_size, prepare
from federationd.errors import RejectedChange, StoreError
from federationd.records import Record
from federationd.schema import outbox, records
from federationd.sql import dumps, upsert

_ALLOCATE = text("UPDATE site_state SET next_seq = next_seq + :n WHERE id = 1 RETURNING next_seq, site_id, epoch")


def _allocate(conn: Connection, count: int) -> tuple[int, str, int]:
    """Reserve `count` versions; return (first version, home site id, epoch). The row lock this takes is held
    until the caller commits, so versions commit in order (see schema.site_state)."""
    row = conn.execute(_ALLOCATE, {"n": count}).first()
    if row is None:
        raise StoreError("the database is not initialised: run `federationd init`")
    last, site_id, epoch = row
    return last - count + 1, site_id, epoch


def put(conn: Connection, category: str, record_id: str, data: Mapping[str, Any], *,
        now: float | None = None) -> Record:
    """Create or change one home record."""
    return put_many(conn, category, [(record_id, data)], now=now)[0]


def put_many(conn: Connection, category: str, rows: Iterable[tuple[str, Mapping[str, Any]]], *,
             now: float | None = None) -> list[Record]:
    """Create or change many home records of one category in the caller's transaction (the CSV import path).

    Every row is checked before anything is written: one refused row refuses them all. A record whose data is
    over the bytes-per-record bound (bounds.MAX_RECORD_BYTES) is refused with an error naming it and the bound."""
    check_category(category)
    moment = time.time() if now is None else now
    today = _today(moment)
    prepared: list[tuple[str, bool, dict[str, Any], str | None, str]] = []
    for record_id, data in rows:
        _check_id(record_id)
        try:
            sent = prepare(category, data, today)
            data_json = dumps(sent)
            check_size(record_id, data_json)
        except RejectedChange as exc:
            raise RejectedChange(exc.reason, f"{category} {record_id!r}: {exc}", record_id=record_id) from None
        # A recurring schedule keeps the host's data (its rule) at home, for the rolling job (outbox/rolling.py).
        source = dumps(dict(data)) if category == "schedule" and data.get("recurrence") else None
        prepared.append((record_id, False, sent, source, data_json))
    if not prepared:
        return []
    return _write(conn, category, prepared, moment)


def delete(conn: Connection, category: str, record_id: str, *, now: float | None = None) -> Record:
    """Delete one home record, leaving a tombstone that partners receive."""
    check_category(category)
    moment = time.time() if now is None else now
    site_id = conn.execute(text("SELECT site_id FROM site_state WHERE id = 1")).scalar_one_or_none()
    existing = conn.execute(select(records.c.deleted).where(
        records.c.origin == site_id, records.c.category == category, records.c.id == record_id)).first()
    if existing is None or existing.deleted:
        raise RejectedChange("not_found", f"no {category} {record_id!r} at this site")
    return _write(conn, category, [(record_id, True, {}, None, "{}")], moment)[0]


def _write(conn: Connection, category: str, rows: list[tuple[str, bool, dict[str, Any], str | None, str]],
           moment: float) -> list[Record]:
    first, site_id, epoch = _allocate(conn, len(rows))
    result = [Record(site_id, category, rid, epoch, first + i, deleted, data)
              for i, (rid, deleted, data, _source, _json) in enumerate(rows)]
    upsert(conn, records, [
        {"origin": r.origin, "category": category, "id": r.id, "epoch": r.epoch, "version": r.version,
         "deleted": r.deleted, "data": row[4], "updated_at": moment, "source": row[3]}
        for r, row in zip(result, rows, strict=True)
    ], keys=("origin", "category", "id"))
    conn.execute(insert(outbox), [
        {"seq": r.version, "category": category, "record_id": r.id, "created_at": moment} for r in result
    ])
    return result


def _check_id(record_id: str) -> None:
    if not isinstance(record_id, str) or not record_id or len(record_id) > 255:
        raise RejectedChange("invalid_id", f"invalid record id {record_id!r} (1 to 255 characters)")


def _today(moment: float) -> date:
    return datetime.fromtimestamp(moment, UTC).date()
