"""The rolling job: every 7 days, recurring schedules get their occurrences window moved forward.

Each home schedule that has a rule is recomputed from the host's data (kept in `records.source`) through the
ordinary write path; only those whose occurrences changed get a new version and are sent.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

from sqlalchemy import Connection, select, update

from federationd.categories import prepare
from federationd.outbox import capture
from federationd.schema import records, site_state

log = logging.getLogger(__name__)

ROLL_EVERY_SECONDS = 7 * 86400


def due(conn: Connection, now: float) -> bool:
    rolled_at = conn.execute(select(site_state.c.rolled_at).where(site_state.c.id == 1)).scalar_one_or_none()
    return rolled_at is None or now - rolled_at >= ROLL_EVERY_SECONDS


def roll(conn: Connection, home: str, now: float) -> int:
    """Recompute every recurring home schedule's window; write the ones that moved. Returns how many."""
    today = datetime.fromtimestamp(now, UTC).date()
    rows = conn.execute(select(records.c.id, records.c.data, records.c.source).where(
        records.c.origin == home, records.c.category == "schedule", records.c.deleted.is_(False),
        records.c.source.is_not(None))).all()
    moved = [(row.id, json.loads(row.source)) for row in rows
             if prepare("schedule", json.loads(row.source), today) != json.loads(row.data)]
    if moved:
        capture.put_many(conn, "schedule", moved, now=now)
    conn.execute(update(site_state).where(site_state.c.id == 1).values(rolled_at=now))
    if moved:
        log.info("rolling job: moved the occurrences window of %d recurring schedule(s)", len(moved))
    return len(moved)
