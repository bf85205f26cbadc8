"""The link log: what was sent to and received from each partner, and the link's own events.

Bounded: a row's text is clipped, and each partner has at most MAX_LOG_ROWS_PER_DAY rows a day (docs/reliability.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, delete, func, insert, select, update

from federationd.bounds import MAX_LOG_ROWS_PER_DAY, MAX_LOGGED_CHARS, clip
from federationd.schema import link_log, link_log_suppressed
from federationd.tokens import iso

MAX_ROWS = 10_000


# A row's message: our own words plus partner text already clipped (bounds.clip) stay far below this.
MAX_MESSAGE_CHARS = 4 * MAX_LOGGED_CHARS
DAY_SECONDS = 86_400


def write(conn: Connection, at: float, site: str, direction: str, message: str,
          category: str | None = None) -> None:
    """Add a row; past MAX_LOG_ROWS_PER_DAY rows for `site` on this UTC day, count it in one summary row instead
    (a partner cannot grow the log without bound)."""
    day = int(at // DAY_SECONDS)
    start = day * DAY_SECONDS
    today = conn.execute(select(func.count()).select_from(link_log).where(
        link_log.c.site == site, link_log.c.at >= start, link_log.c.at < start + DAY_SECONDS)).scalar_one()
    if today < MAX_LOG_ROWS_PER_DAY:
        conn.execute(insert(link_log).values(at=at, site=site, direction=direction, category=category,
                                             message=clip(message, MAX_MESSAGE_CHARS)))
        return
    _suppress(conn, at, site, day)


def _summary(count: int, day: int) -> str:
    return (f"{count} more link-log row(s) for this partner suppressed on {str(iso(day * DAY_SECONDS))[:10]} "
            f"(bound: {MAX_LOG_ROWS_PER_DAY:,} rows per partner per day)")


def _suppress(conn: Connection, at: float, site: str, day: int) -> None:
    row = conn.execute(select(link_log_suppressed).where(link_log_suppressed.c.site == site,
                                                         link_log_suppressed.c.day == day)
                       .with_for_update()).mappings().first()
    if row is None:
        row_id = conn.execute(insert(link_log).values(at=at, site=site, direction="receive", category=None,
                                                      message=_summary(1, day))).inserted_primary_key[0]  # type: ignore[index]
        conn.execute(insert(link_log_suppressed).values(site=site, day=day, suppressed=1, row_id=row_id))
        return
    count = row["suppressed"] + 1
    conn.execute(update(link_log_suppressed).where(link_log_suppressed.c.site == site,
                                                   link_log_suppressed.c.day == day).values(suppressed=count))
    conn.execute(update(link_log).where(link_log.c.id == row["row_id"]).values(message=_summary(count, day)))


@dataclass(frozen=True)
class LogQuery:
    site: str | None = None
    direction: str | None = None
    category: str | None = None
    since: float | None = None
    until: float | None = None
    limit: int = MAX_ROWS


def read(conn: Connection, query: LogQuery) -> tuple[list[dict[str, Any]], int]:
    """Rows newest first (at most `limit`, capped at 10,000) and how many matched in all."""
    where = []
    if query.site:
        where.append(link_log.c.site == query.site)
    if query.direction:
        where.append(link_log.c.direction == query.direction)
    if query.category:
        where.append(link_log.c.category == query.category)
    if query.since is not None:
        where.append(link_log.c.at >= query.since)
    if query.until is not None:
        where.append(link_log.c.at <= query.until)
    limit = max(0, min(query.limit, MAX_ROWS))
    rows = conn.execute(select(link_log).where(*where).order_by(link_log.c.at.desc(), link_log.c.id.desc())
                        .limit(limit)).mappings().all()
    total = conn.execute(select(func.count()).select_from(link_log).where(*where)).scalar_one()
    return ([{"at": iso(row["at"]), "site": row["site"], "direction": row["direction"],
              "category": row["category"], "message": row["message"]} for row in rows], int(total))


def purge(conn: Connection, before: float) -> int:
    """Delete rows older than `before`; return how many."""
    conn.execute(delete(link_log_suppressed).where(link_log_suppressed.c.day < int(before // DAY_SECONDS) - 1))
    return conn.execute(delete(link_log).where(link_log.c.at < before)).rowcount
