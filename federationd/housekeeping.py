"""Housekeeping, once a minute on the active daemon: a list of small steps, each in its own transaction.

A failing step is logged and the others still run; the next round retries it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from sqlalchemy import delete, select, update
from sqlalchemy.exc import SQLAlchemyError

from federationd import linklog, links, upkeep
from federationd.broker import policies
from federationd.errors import FederationError, TransportError
from federationd.outbox import rolling
from federationd.runtime import Runtime
from federationd.schema import outbox, site_state, tokens, used_tickets

log = logging.getLogger(__name__)


def purge_link_log(rt: Runtime, now: float) -> None:
    with rt.engine.begin() as conn:
        purged = linklog.purge(conn, now - rt.config.log.retention.total_seconds())
    if purged:
        log.info("purged %d link log row(s) older than the retention", purged)


def trim_outbox(rt: Runtime, _now: float) -> None:
    """Outbox rows every linked partner has (a link waiting for a snapshot needs none: the snapshot reads the
    records themselves)."""
    with rt.engine.begin() as conn:
        live = [link for link in links.all_links(conn) if link.state == links.LINKED and not link.snapshot_due]
        floor = min((link.sent_seq for link in live), default=None)
        if floor is None:
            floor = conn.execute(select(site_state.c.next_seq)).scalar_one()
        conn.execute(delete(outbox).where(outbox.c.seq <= floor))


def forget_used_tickets(rt: Runtime, now: float) -> None:
    with rt.engine.begin() as conn:
        conn.execute(delete(used_tickets).where(used_tickets.c.expires_at < now - 3600))


def roll_schedules(rt: Runtime, now: float) -> None:
    with rt.engine.begin() as conn:
        if rolling.due(conn, now):
            rolling.roll(conn, rt.home, now)


def revoke_expired_tokens(rt: Runtime, now: float) -> None:
    with rt.engine.begin() as conn:
        expired = conn.execute(select(tokens.c.id, tokens.c.broker_user).where(
            tokens.c.expires_at <= now, tokens.c.revoked.is_(False))).all()
    for token_id, user in expired:
        try:
            rt.management.delete_user(user)
        except TransportError as exc:
            log.warning("could not revoke expired link token %s yet: %s", token_id, exc)
            continue
        with rt.engine.begin() as conn:
            conn.execute(update(tokens).where(tokens.c.id == token_id).values(revoked=True))
        log.info("link token %s expired unused and was revoked", token_id)


def broker_policies(rt: Runtime, _now: float) -> None:
    """The broker-side bounds (broker/policies.py): re-applied each round, so a broker rebuilt or a policy
    removed by hand is repaired within a minute."""
    policies.apply(rt.management)


def handshakes(rt: Runtime, _now: float) -> None:
    """Pending revocations, handshakes that outlived their token, coalesced relink requests (upkeep.py)."""
    upkeep.housekeeping(rt)


STEPS: list[Callable[[Runtime, float], None]] = [
    purge_link_log,
    trim_outbox,
    forget_used_tickets,
    roll_schedules,
    revoke_expired_tokens,
    broker_policies,
    handshakes,
]


def run(rt: Runtime) -> None:
    """Every step once; a step that fails is logged and retried at the next round."""
    now = rt.now()
    for step in STEPS:
        try:
            step(rt, now)
        except (FederationError, SQLAlchemyError) as exc:
            log.warning("housekeeping step %s failed, retrying next round: %s", step.__name__,
                        str(exc).splitlines()[0])
