"""Durable revocations: broker users to delete and inbound queues to purge, as rows.

A state change that makes a revocation due writes its row in the same transaction (`schedule`, `purge`), so a
management API that is down at that moment delays the revocation but never loses it. `retry_pending` runs right
after such a commit (best effort) and from the daemon's housekeeping; a row is deleted only once the broker
confirmed. After a daemon starts, `OrphanSweep` deletes `fed.<home>.*` users that no live link or token explains.
"""

from __future__ import annotations

import logging

from sqlalchemy import Connection, delete, insert, select, update

from federationd import links
from federationd.broker.provisioning import partner_user, token_user
from federationd.errors import TransportError
from federationd.runtime import Runtime
from federationd.schema import revocations, tokens

log = logging.getLogger(__name__)

USER = "user"
QUEUE = "queue"


def schedule(conn: Connection, user: str | None, now: float) -> None:
    """Revoke broker user `user` (no-op for None), durably: pure SQL, in the caller's transaction."""
    if user:
        conn.execute(insert(revocations).values(kind=USER, name=user, created_at=now))


def purge(conn: Connection, partner: str, incarnation: str | None, now: float) -> None:
    """Empty `partner`'s inbound queue (the link stopped): only while it is still that stopped incarnation."""
    conn.execute(insert(revocations).values(kind=QUEUE, name=partner, incarnation=incarnation, created_at=now))


def retry_pending(rt: Runtime) -> int:
    """Carry out every pending revocation the broker accepts now; returns how many are still pending."""
    with rt.engine.begin() as conn:
        rows = conn.execute(select(revocations).order_by(revocations.c.id)).mappings().all()
    left = 0
    for row in rows:
        try:
            _carry_out(rt, row["kind"], row["name"], row["incarnation"])
        except TransportError as exc:
            left += 1
            with rt.engine.begin() as conn:
                conn.execute(update(revocations).where(revocations.c.id == row["id"]).values(
                    attempts=revocations.c.attempts + 1, last_error=str(exc)[:500]))
            if row["attempts"] == 0:
                log.warning("could not revoke %s %s yet (will retry): %s", row["kind"], row["name"], exc)
            continue
        with rt.engine.begin() as conn:
            conn.execute(delete(revocations).where(revocations.c.id == row["id"]))
    return left


def _carry_out(rt: Runtime, kind: str, name: str, incarnation: str | None) -> None:
    if kind == USER:
        rt.management.delete_user(name)
        return
    with rt.engine.begin() as conn:
        link = links.get(conn, name)
    if link is None or link.state != links.STOPPED or link.token_id != incarnation:
        return  # a new incarnation began meanwhile: its messages are not ours to drop
    rt.management.purge_queue(name)
    log.info("purged the inbound queue of %s (the link stopped)", name)


# How long a broker user must stay unexplained before it is removed: `link accept` (in another process) creates
# its partner's user before it records the link, so one look can catch a user that is about to be explained.
ORPHAN_GRACE_SECONDS = 120.0


def unexplained_users(rt: Runtime) -> set[str]:
    """Our broker's `fed.<home>.*` users that no live link or open token explains. The broker is listed before the
    database is read: a user whose link or token was recorded before it was created is then always explained."""
    prefix = f"fed.{rt.home}."
    listed = {user for user in rt.management.users() if user.startswith(prefix)}
    now = rt.now()
    with rt.engine.begin() as conn:
        live = [link for link in links.all_links(conn) if link.state in (links.AWAITING_START, links.LINKED)]
        wanted = {partner_user(rt.home, link.site) for link in live}
        wanted |= {token_user(rt.home, link.token_id) for link in live if link.token_id}
        wanted |= {token_user(rt.home, token_id) for token_id in conn.execute(select(tokens.c.id).where(
            tokens.c.revoked.is_(False), tokens.c.expires_at > now)).scalars()}
    return listed - wanted


class OrphanSweep:
    """Once per daemon start: remove the broker users no live link or token needs (left by a crash between a
    state change and its revocation, or by an older version). A user is removed only if it was unexplained at
    two looks at least `ORPHAN_GRACE_SECONDS` apart, so an accept running meanwhile keeps the user it created."""

    def __init__(self) -> None:
        self._first: set[str] | None = None
        self._first_at = 0.0
        self.done = False

    def look(self, rt: Runtime) -> list[str]:
        """Take the first look, or, once the grace has passed, the second; returns the users removed."""
        if self.done:
            return []
        now = rt.now()
        if self._first is not None and now < self._first_at + ORPHAN_GRACE_SECONDS:
            return []
        try:
            seen = unexplained_users(rt)
        except TransportError as exc:
            log.warning("could not list our broker's users to remove unneeded ones (retried): %s", exc)
            return []
        if self._first is None:
            self._first, self._first_at, self.done = seen, now, not seen
            return []
        orphans = sorted(self._first & seen)
        self.done = True
        with rt.engine.begin() as conn:
            for user in orphans:
                schedule(conn, user, now)
        if orphans:
            log.info("removing %d broker user(s) no live link or token needs: %s", len(orphans), ", ".join(orphans))
            retry_pending(rt)
        return orphans
