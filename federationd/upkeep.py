"""The handshake's share of the daemon's housekeeping: revocations that failed before, handshakes that outlived
their token, coalesced relink requests (broker users nothing needs any more: revocations.OrphanSweep)."""

from __future__ import annotations

import logging

from federationd import linklog, links, linkstate, relinks, revocations
from federationd.runtime import Runtime
from federationd.tokens import LIFETIME_SECONDS

log = logging.getLogger(__name__)

GRACE_SECONDS = 3600  # `awaiting_start` ends on both sides this long after the token's expiry


def housekeeping(rt: Runtime) -> None:
    expire_handshakes(rt)
    relinks.promote(rt)
    revocations.retry_pending(rt)


def expire_handshakes(rt: Runtime) -> list[str]:
    """Stop every link still `awaiting_start` past its token's expiry plus the grace period (both sides do)."""
    now = rt.now()
    ended = []
    with rt.engine.begin() as conn:
        for link in links.all_links(conn):
            if link.state != links.AWAITING_START:
                continue
            issued = link.requested_at if link.requested_at is not None else link.state_changed_at
            if now < issued + LIFETIME_SECONDS + GRACE_SECONDS:
                continue
            step = linkstate.decide(link.state, link.role, "expired")
            reason = "the handshake expired: the link was not started before the token's expiry plus 1 hour"
            links.change(conn, link.site, now, state=step.state, local_user=None, remote_user=None,
                         remote_password=None, stop_reason=reason)
            revocations.schedule(conn, link.local_user, now)
            revocations.purge(conn, link.site, link.token_id, now)
            linklog.write(conn, now, link.site, "send", reason)
            ended.append(link.site)
    for site in ended:
        log.warning("the handshake with %s expired unstarted; the link is stopped", site)
    return ended
