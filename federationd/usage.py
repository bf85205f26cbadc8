"""What this site carries, read from the database for the limits (federationd/limits.py decides): partner sites
linked or awaiting start, and employees held per origin. Also the one check the handshake's edges call."""

from __future__ import annotations

from sqlalchemy import Connection, Engine, func, select

from federationd import limits, links
from federationd.config import Config
from federationd.errors import LinkError
from federationd.schema import records
from federationd.store import load_site_state, reading

COUNTED = (links.LINKED, links.AWAITING_START)  # a link in progress takes its place too (no race past the max)


def read(conn: Connection, home: str | None = None, *, leaving_out: str | None = None) -> limits.Usage:
    """The figures; `leaving_out` a partner that is not counted (the one a new link is being decided for)."""
    if home is None:
        home = load_site_state(conn).site_id
    sites = sum(1 for link in links.all_links(conn) if link.state in COUNTED and link.site != leaving_out)
    rows = conn.execute(select(records.c.origin, func.count()).where(
        records.c.category == "employee", records.c.deleted.is_(False)).group_by(records.c.origin))
    return limits.Usage(home=home, sites=sites, employees={origin: int(count) for origin, count in rows})


def findings(conn: Connection, config: Config) -> list[limits.Finding]:
    return limits.findings(read(conn, config.site.id), config.limits.as_limits())


def exceeded(engine: Engine, config: Config) -> dict[str, bool]:
    """`federationd_limit_exceeded`: each limit key, whether this site is past it (read at scrape time)."""
    with reading(engine) as conn:
        return limits.exceeded(findings(conn, config))


def refusal(conn: Connection, config: Config, partner: str | None) -> str | None:
    """Why a new link with `partner` would go past a maximum, or None."""
    return limits.refusal(read(conn, config.site.id, leaving_out=partner), config.limits.as_limits(), partner)


def refuse_past_maximum(conn: Connection, config: Config, partner: str | None) -> None:
    """Raise LinkError if a new link with `partner` would go past a maximum (`link request`, `link accept`)."""
    why = refusal(conn, config, partner)
    if why is not None:
        raise LinkError(why)
