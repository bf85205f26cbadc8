"""What the send loop's decision depends on in the database, read cheaply, so an idle tick can tell that nothing
changed and skip reading every link's figures (docs/performance.md, benchmark 4).

The mark is exact for what `status.figures` and `due.decide` read: every link's columns that decide whether and
when it is due, the site's version counter, epoch and pause (every local write moves `next_seq`), the outbox's
ends (written and pruned at the ends only), and the waiting control messages. Equal marks mean equal figures,
except for the time, which `due.wake_at` accounts for.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, func, select

from federationd.schema import control_outbox, links, outbox, site_state

_LINKS = select(links.c.site, links.c.state, links.c.paused, links.c.sent_seq, links.c.snapshot_due,
                links.c.send_now, links.c.sending_since, links.c.failures, links.c.retry_at, links.c.deferred_until,
                links.c.hold_seq).order_by(links.c.site)
_SITE = select(site_state.c.next_seq, site_state.c.epoch, site_state.c.paused)
# Two scalar subqueries, each an index look-up: SQLite answers `min(seq), max(seq)` in one statement by scanning
# the whole outbox (its min/max optimisation takes a lone aggregate only), twice a second on an idle daemon.
_OUTBOX = select(select(func.min(outbox.c.seq)).scalar_subquery(), select(func.max(outbox.c.seq)).scalar_subquery())
_CONTROLS = select(control_outbox.c.id, control_outbox.c.site).order_by(control_outbox.c.id)


def read(conn: Connection) -> tuple[Any, ...]:
    """The mark: compare it with `==` to the last one read."""
    return (tuple(map(tuple, conn.execute(_SITE))), tuple(conn.execute(_OUTBOX).one()),
            tuple(map(tuple, conn.execute(_CONTROLS))), tuple(map(tuple, conn.execute(_LINKS))))
