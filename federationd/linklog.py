"""The link log (SPEC 6): what was sent to and received from each partner, and the link's own events."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, delete, func, insert, select

from federationd.schema import link_log
from federationd.tokens import iso

MAX_ROWS = 10_000


def write(conn: Connection, at: float, site: str, direction: str, message: str,
          category: str | None = None) -> None:
    conn.execute(insert(link_log).values(at=at, site=site, direction=direction, category=category,
                                         message=message))


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
    return conn.execute(delete(link_log).where(link_log.c.at < before)).rowcount
