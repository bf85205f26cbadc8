"""Operating a link after the handshake (docs/operations.md): pause, resume, send-now, clear, relink, release,
change-url, and `adopt` for the copied-database guard.

The verbs only write the database; the running daemon picks the change up at its next tick (and delivers the
control messages they queue). Broker users are revoked through `revocations` (at once if the broker answers,
else retried by the daemon).
"""

from __future__ import annotations

import json
import logging

from sqlalchemy import Connection, func, select, update

from federationd import controls, identity, linklog, links, linkstate, revocations, site_details
from federationd.broker.endpoints import Endpoints
from federationd.categories import RELEASED_CATEGORIES
from federationd.config import BrokerSection
from federationd.errors import LinkError
from federationd.handlers.changes import tombstone
from federationd.runtime import Runtime
from federationd.schema import outbox, site_state
from federationd.tokens import iso

log = logging.getLogger(__name__)

ACTIVE = (links.AWAITING_START, links.LINKED)


def _targets(conn: Connection, site: str | None, *states: str) -> list[links.Link]:
    """The named link (which must be in `states`), or every link in `states`."""
    if site is not None:
        return [links.require(conn, site, *states)]
    return [link for link in links.all_links(conn) if link.state in states]


def pause(rt: Runtime, site: str | None) -> list[str]:
    """Pause one link, or the whole site: nothing is sent or consumed until `resume`."""
    with rt.engine.begin() as conn:
        if site is None:
            conn.execute(update(site_state).where(site_state.c.id == 1).values(paused=True))
            return []
        links.require(conn, site, *ACTIVE)
        links.change(conn, site, paused=True)
        linklog.write(conn, rt.now(), site, "send", "paused by the operator")
    return [site]


def resume(rt: Runtime, site: str | None) -> list[str]:
    """Undo `pause`; returns what still keeps it paused in the config file, if anything."""
    with rt.engine.begin() as conn:
        if site is None:
            conn.execute(update(site_state).where(site_state.c.id == 1).values(paused=False))
        else:
            links.require(conn, site, *ACTIVE)
            links.change(conn, site, paused=False)
            linklog.write(conn, rt.now(), site, "send", "resumed by the operator")
    still = []
    if rt.config.paused:
        still.append("`paused: true` in the config file pauses the whole site")
    if site is not None and rt.config.link(site).paused:
        still.append(f"`links.{site}.paused: true` in the config file pauses this link")
    return still


def send_now(rt: Runtime, site: str | None) -> list[str]:
    with rt.engine.begin() as conn:
        targets = _targets(conn, site, links.LINKED)
        for link in targets:
            links.change(conn, link.site, send_now=True, hold_seq=0)
    return [link.site for link in targets]


def clear(rt: Runtime, site: str | None) -> list[str]:
    """Clear a send stuck "sending" and the schedule. Pending changes stay pending: they all go at the next send,
    which the next change (or send-now) schedules. A running daemon sees the sending mark gone and abandons the
    send still in flight (federationd/sendloop.py)."""
    with rt.engine.begin() as conn:
        targets = _targets(conn, site, links.LINKED)
        newest = conn.execute(select(func.max(outbox.c.seq))).scalar_one() or 0
        for link in targets:
            links.change(conn, link.site, sending_since=None, send_now=False, retry_at=None, deferred_until=None,
                         failures=0, hold_seq=newest, relink_after=None)
            linklog.write(conn, rt.now(), link.site, "send", "send schedule cleared by the operator")
    return [link.site for link in targets]


def relink(rt: Runtime, site: str, at_once: bool = False) -> float | None:
    """Full resynchronisation: we send a snapshot under a new epoch, and ask the partner to do the same. Outside
    `schedule.snapshot_windows` our snapshot waits for the next window (returned) unless `at_once` (`--now`)."""
    now = rt.now()
    allowed = rt.config.schedule.snapshot_allowed_at(now)
    waits = allowed if allowed > now and not at_once else None
    with rt.engine.begin() as conn:
        links.require(conn, site, links.LINKED)
        links.change(conn, site, snapshot_due=True, send_now=waits is None, hold_seq=0)
        controls.queue(conn, site, "relink", now)
        linklog.write(conn, now, site, "send", "relink: sending a full snapshot and asking the partner for one"
                      if waits is None else f"relink: asking the partner for a full snapshot; ours waits for "
                      f"its window (schedule.snapshot_windows) until {iso(waits)}")
    return waits


def fetch(rt: Runtime, site: str) -> None:
    """Ask the partner to send what it has pending now (at most once per its `transport.relink_interval`; its
    pause and its bulk lock win): a control message, delivered by the daemon's next send."""
    now = rt.now()
    with rt.engine.begin() as conn:
        links.require(conn, site, links.LINKED)
        controls.replace(conn, site, "fetch", now)
        linklog.write(conn, now, site, "send", "fetch: asking the partner to send what it has pending now")


def release(rt: Runtime, site: str, local: bool = False) -> None:
    """Release a link: both sides `stopped`, credentials revoked, the partner's non-schedule data tombstoned and
    its version stamps forgotten. The partner is told by the daemon's next send (queued: `local` changes
    nothing, an unreachable partner never blocks a release). An acceptor that releases from `awaiting_start` has
    no way to tell the requester yet: the requester's start is then refused by our broker, or its
    `awaiting_start` expires after the token's expiry plus a grace period."""
    now = rt.now()
    with rt.engine.begin() as conn:
        link = links.require(conn, site)
        step = linkstate.decide(link.state, link.role, "release")
        if step.state is None:
            raise LinkError(f"{site}: {step.refusal}")
        links.change(conn, site, now, state=step.state, local_user=None, snapshot_due=False, send_now=False,
                     relink_after=None, stop_reason="released by this site's administrator")
        revocations.schedule(conn, link.local_user, now)  # revoked now if the broker answers, else retried
        revocations.purge(conn, site, link.token_id, now)
        if link.remote_user:
            controls.queue(conn, site, "release", now)
        swept = tombstone(conn, site, RELEASED_CATEGORIES, now)
        links.reset_stamps(conn, site)
        linklog.write(conn, now, site, "send", f"released the link; {swept} record(s) of the partner deleted")
    revocations.retry_pending(rt)
    log.info("released the link with %s%s", site, " (this side only for now)" if local else "")


def change_url(rt: Runtime, url: str | list[str]) -> list[str]:
    """Make `url` this site's public endpoint (one URL, or every public node of our cluster): new link tokens and
    acceptances carry it from now on (stored in the database until the config's `broker.public_url` says the
    same), and every partner a message can reach is told: linked ones, and those awaiting the start that gave us a
    credential. Returns the partners told."""
    try:
        BrokerSection.model_validate({"url": rt.config.broker.url, "management_url": rt.config.broker.management_url,
                                      "public_url": url})
    except ValueError as exc:
        raise LinkError(f"invalid URL {url!r}: {str(exc).splitlines()[-1].strip()}") from None
    endpoints = Endpoints.parse(url)
    public = endpoints.wire()
    now = rt.now()
    told = []
    with rt.engine.begin() as conn:
        site_details.set_url(conn, [node.public_url for node in endpoints.nodes])
        for link in _targets(conn, None, *ACTIVE):
            if link.remote_user:
                controls.queue(conn, link.site, "change_url", now, public_url=public)
                linklog.write(conn, now, link.site, "send", f"our public endpoint is now {endpoints}")
                told.append(link.site)
            else:  # we accepted its token: it reaches us at the old endpoint to start the link, we cannot reach it
                linklog.write(conn, now, link.site, "send", f"our public endpoint is now {endpoints}; the partner "
                              "cannot be told before it starts the link (it starts it at the old endpoint)")
                log.warning("%s awaits its start at our old endpoint and cannot be told of %s before then",
                            link.site, endpoints)
    return told


def sync_access_policies(rt: Runtime) -> list[str]:
    """Queue our visit rules (which of our employees may visit) and our accept rules (what the partner's
    employees get here) to every linked partner whose copy differs from the config (after a start or a reload);
    returns the partners told."""
    now = rt.now()
    told = []
    with rt.engine.begin() as conn:
        for link in links.all_links(conn):
            if link.state != links.LINKED:
                continue
            section = rt.config.link(link.site)
            visit = json.dumps(section.visit.model_dump() if section.visit is not None else None, sort_keys=True)
            accept = json.dumps(section.accept.model_dump(), sort_keys=True)
            if visit != link.visit_sent:
                controls.replace(conn, link.site, "visit_policy", now, visit=json.loads(visit))
                links.change(conn, link.site, visit_sent=visit)
            if accept != link.accept_sent:
                controls.replace(conn, link.site, "accept_policy", now, accept=json.loads(accept))
                links.change(conn, link.site, accept_sent=accept)
            if (visit, accept) != (link.visit_sent, link.accept_sent):
                linklog.write(conn, now, link.site, "send", "access settings (visit and accept rules) changed: "
                              "telling the partner")
                told.append(link.site)
    return told


def greet_partners(rt: Runtime) -> None:
    """At daemon start: ask every linked partner how far it holds our data (it answers with a watermark)."""
    now = rt.now()
    with rt.engine.begin() as conn:
        for link in links.all_links(conn):
            if link.state == links.LINKED:
                controls.replace(conn, link.site, "hello", now)


def adopt(rt: Runtime) -> str:
    """Declare this installation the site: write state_dir's identity into the database (docs/operations.md)."""
    mine = identity.installation_id(rt.config.state_dir, create=True)
    assert mine is not None
    with rt.engine.begin() as conn:
        conn.execute(update(site_state).where(site_state.c.id == 1).values(installation_id=mine))
    fingerprint = identity.database_fingerprint(rt.engine)
    if fingerprint is not None:  # and this is the database the site runs on from now on (PostgreSQL)
        identity.record_database(rt.config.state_dir, fingerprint)
    return mine
