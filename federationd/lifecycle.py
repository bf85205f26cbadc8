"""Operating a link after the handshake (SPEC 3.3, 4): pause, resume, send-now, clear, relink, release,
change-url, and `adopt` for the copied-database guard (SPEC 3.1).

The verbs only write the database; the running daemon picks the change up at its next tick (and delivers the
control messages they queue). Broker users are revoked at once, by the verb itself.
"""

from __future__ import annotations

import json
import logging

from sqlalchemy import Connection, func, select, update

from federationd import controls, identity, linklog, links
from federationd.broker.endpoints import Endpoint
from federationd.categories import RELEASED_CATEGORIES
from federationd.config import BrokerSection
from federationd.errors import LinkError
from federationd.handlers.changes import tombstone
from federationd.runtime import Runtime
from federationd.schema import outbox, site_state

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
    which the next change (or send-now) schedules."""
    with rt.engine.begin() as conn:
        targets = _targets(conn, site, links.LINKED)
        newest = conn.execute(select(func.max(outbox.c.seq))).scalar_one() or 0
        for link in targets:
            links.change(conn, link.site, sending_since=None, send_now=False, retry_at=None, deferred_until=None,
                         failures=0, hold_seq=newest)
            linklog.write(conn, rt.now(), link.site, "send", "send schedule cleared by the operator")
    return [link.site for link in targets]


def relink(rt: Runtime, site: str) -> None:
    """Full resynchronisation: we send a snapshot under a new epoch, and ask the partner to do the same."""
    now = rt.now()
    with rt.engine.begin() as conn:
        links.require(conn, site, links.LINKED)
        links.change(conn, site, snapshot_due=True, send_now=True, hold_seq=0)
        controls.queue(conn, site, "relink", now)
        linklog.write(conn, now, site, "send", "relink: sending a full snapshot and asking the partner for one")


def release(rt: Runtime, site: str) -> None:
    """Release a link: both sides `stopped`, credentials revoked, the partner's non-schedule data tombstoned."""
    now = rt.now()
    with rt.engine.begin() as conn:
        link = links.require(conn, site, *ACTIVE)
        if link.state == links.AWAITING_START and link.role == links.REQUESTER:
            raise LinkError(f"{site!r} is awaiting our start: use `link reject {site}` instead")
    if link.local_user:
        rt.management.delete_user(link.local_user)  # revoked now, live connections closed
    with rt.engine.begin() as conn:
        links.change(conn, site, now, state=links.STOPPED, local_user=None, snapshot_due=False, send_now=False)
        if link.remote_user:
            controls.queue(conn, site, "release", now)
        swept = tombstone(conn, site, RELEASED_CATEGORIES, now)
        linklog.write(conn, now, site, "send", f"released the link; {swept} record(s) of the partner deleted")
    log.info("released the link with %s", site)


def change_url(rt: Runtime, url: str) -> list[str]:
    """Tell every partner our broker's new public endpoint."""
    try:
        BrokerSection.model_validate({"url": rt.config.broker.url, "management_url": rt.config.broker.management_url,
                                      "public_url": url})
    except ValueError as exc:
        raise LinkError(f"invalid URL {url!r}: {str(exc).splitlines()[-1].strip()}") from None
    public = Endpoint.parse(url).public_url
    now = rt.now()
    with rt.engine.begin() as conn:
        targets = _targets(conn, None, *ACTIVE)
        for link in targets:
            if link.remote_user:
                controls.queue(conn, link.site, "change_url", now, public_url=public)
                linklog.write(conn, now, link.site, "send", f"our public endpoint is now {public}")
    return [link.site for link in targets if link.remote_user]


def sync_visit_policies(rt: Runtime) -> list[str]:
    """Queue our visit rules to every linked partner whose copy differs from the config (after a start or a
    reload); returns the partners told."""
    now = rt.now()
    told = []
    with rt.engine.begin() as conn:
        for link in links.all_links(conn):
            if link.state != links.LINKED:
                continue
            visit = rt.config.link(link.site).visit
            current = json.dumps(visit.model_dump() if visit is not None else None, sort_keys=True)
            if current != link.visit_sent:
                controls.queue(conn, link.site, "visit_policy", now, visit=json.loads(current))
                links.change(conn, link.site, visit_sent=current)
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
    """Declare this installation the site: write state_dir's identity into the database (SPEC 3.1)."""
    mine = identity.installation_id(rt.config.state_dir, create=True)
    assert mine is not None
    with rt.engine.begin() as conn:
        conn.execute(update(site_state).where(site_state.c.id == 1).values(installation_id=mine))
    return mine
