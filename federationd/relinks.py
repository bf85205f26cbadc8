"""Relink and fetch requests from partners: rate-limited (`transport.relink_interval`, default 1 h).

A partner's `relink` asks us for a full snapshot. The first one in an interval marks the snapshot due (it then
waits for the failure backoff like any send); later ones only set `relink_after`, the end of the interval,
where housekeeping turns them into one snapshot, unless a bulk job holds the lock (it waits) or the operator ran
`clear` (the request is dropped). An operator's own `relink` is never limited.

A partner's `fetch` asks for what we have pending now: the first one in an interval sets `send_now` (our pause
still wins: a paused link sends nothing); one within the interval of the last granted fetch, or while a bulk
job holds the lock, is declined (logged): the pending changes go at their ordinary time.
"""

from __future__ import annotations

import logging

from sqlalchemy import Connection

from federationd import linklog, links
from federationd.config import Config
from federationd.outbox.importer import lock_held
from federationd.runtime import Runtime
from federationd.tokens import iso

log = logging.getLogger(__name__)


def decide(last: float | None, pending_after: float | None, snapshot_due: bool, locked: bool, interval: float,
           now: float) -> tuple[bool, float | None]:
    """(snapshot now?, relink_after) for one more request: pure."""
    if snapshot_due:
        return False, pending_after  # one is coming anyway: this request rides with it
    if locked:
        return False, pending_after if pending_after is not None else now
    if last is None or now >= last + interval:
        return True, None
    return False, pending_after if pending_after is not None else last + interval


def on_request(conn: Connection, config: Config, link: links.Link, now: float) -> str:
    """Apply one partner relink request to `link`; returns the link-log line."""
    interval = config.transport.relink_interval.total_seconds()
    now_due, after = decide(link.partner_relink_at, link.relink_after, link.snapshot_due, lock_held(conn, now),
                            interval, now)
    if now_due:
        links.change(conn, link.site, snapshot_due=True, partner_relink_at=now, relink_after=None)
        return "the partner asked for a relink: sending a full snapshot"
    links.change(conn, link.site, relink_after=after)
    return f"the partner asked for a relink: coalesced, a snapshot goes at {iso(after) or 'the next send'}"


def promote(rt: Runtime) -> list[str]:
    """Housekeeping: coalesced requests whose time has come become one snapshot each (not under the bulk lock)."""
    now = rt.now()
    started = []
    with rt.engine.begin() as conn:
        if lock_held(conn, now):
            return []
        for link in links.all_links(conn):
            if link.state != links.LINKED or link.relink_after is None or link.relink_after > now:
                continue
            links.change(conn, link.site, snapshot_due=True, partner_relink_at=now, relink_after=None)
            linklog.write(conn, now, link.site, "send", "a coalesced relink request of the partner: sending a "
                          "full snapshot")
            started.append(link.site)
    for site in started:
        log.info("%s: coalesced relink requests, sending one snapshot", site)
    return started


def decide_fetch(last: float | None, locked: bool, interval: float, now: float) -> str | None:
    """Why a partner's fetch request is declined, or None to send now: pure."""
    if locked:
        return "a bulk job holds the lock"
    if last is not None and now < last + interval:
        return f"the last fetch was granted at {iso(last)} (at most one per {interval:.0f}s)"
    return None


def on_fetch(conn: Connection, config: Config, link: links.Link, now: float) -> str:
    """Apply one partner fetch request to `link`; returns the link-log line."""
    declined = decide_fetch(link.partner_fetch_at, lock_held(conn, now),
                            config.transport.relink_interval.total_seconds(), now)
    if declined is not None:
        return f"the partner asked us to send now: declined, {declined}; pending changes go at their usual time"
    links.change(conn, link.site, send_now=True, hold_seq=0, partner_fetch_at=now)
    return "the partner asked us to send now: sending what is pending"
