"""This site's details as its partners know them: the company and site name last announced to them (a rename in
the config reaches every partner, on a reload or a start), and the public endpoint `link change-url` set (which
new link tokens and acceptances carry, even before `broker.public_url` in the config says the same).

The rules (what a `site_details` control may carry, whether the config's URL matches the one set) are pure; the
functions that read or write take the caller's connection or the runtime.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection, select, update

from federationd import arrival, controls, linklog, links
from federationd.broker.endpoints import Endpoints
from federationd.outbox import capture
from federationd.records import get_record
from federationd.runtime import Runtime
from federationd.schema import site_state
from federationd.store import reading

log = logging.getLogger(__name__)

KIND = "site_details"  # the control message's kind (docs/protocol.md)
TOLD_STATES = (links.AWAITING_START, links.LINKED)


# -- the pure rules ----------------------------------------------------------------------------------------------
def check_details(control: Mapping[str, Any]) -> tuple[str, str]:
    """A `site_details` control's company and site name, validated as the handshake validates them (1 to 255
    characters, no control characters); a missing or empty site name is "" (the company name is shown for it).
    Raises ValueError naming the field and the bound."""
    company = arrival.name(control.get("company"), "company name")
    name = control.get("name")
    if name is None or name == "":
        return company, ""
    return company, arrival.name(name, "site name")


def configured_url(value: object) -> list[str]:
    """`broker.public_url` of the config as a list of public URLs (one URL, or the nodes of a cluster)."""
    urls = [str(url) for url in value] if isinstance(value, list | tuple) else str(value)
    return [node.public_url for node in Endpoints.parse(urls).nodes]


def url_mismatch(stored: list[str] | None, configured: object) -> str | None:
    """The warning while the endpoint `link change-url` set differs from the config's `broker.public_url`."""
    if not stored or stored == configured_url(configured):
        return None
    return (f"`link change-url` set this site's public endpoint to {', '.join(stored)} (new link tokens carry it), "
            f"but broker.public_url in the config file still says {', '.join(configured_url(configured))}: set it "
            "there too")


# -- the public endpoint -----------------------------------------------------------------------------------------
def stored_url(conn: Connection) -> list[str] | None:
    """The public endpoint `link change-url` set, or None (the config's `broker.public_url` holds)."""
    text = conn.execute(select(site_state.c.public_url).where(site_state.c.id == 1)).scalar()
    if not text:
        return None
    value = json.loads(text)
    return [str(url) for url in value] if isinstance(value, list) else [str(value)]


def set_url(conn: Connection, urls: list[str]) -> None:
    conn.execute(update(site_state).where(site_state.c.id == 1).values(public_url=json.dumps(urls)))


def advertised_url(conn: Connection, configured: str | list[str]) -> str | list[str]:
    """The public endpoint new link tokens and acceptances carry (one URL, or every node of our cluster): the one
    `link change-url` set, else the config's."""
    stored = stored_url(conn)
    return Endpoints.parse(stored if stored else configured).wire()


def url_warning(rt: Runtime) -> str | None:
    """For `status`, `check-config` and the daemon: why the config's `broker.public_url` needs editing, if it
    does."""
    with reading(rt.engine) as conn:
        return url_mismatch(stored_url(conn), rt.config.broker.public_url)


def settle_url(rt: Runtime, configured: object) -> str | None:
    """At the daemon's start and each reload, with the config file's `broker.public_url`: once it says what
    `link change-url` set, the config is the source again (the stored value is forgotten); else return the
    warning to log."""
    with rt.engine.begin() as conn:
        stored = stored_url(conn)
        if stored and stored == configured_url(configured):
            conn.execute(update(site_state).where(site_state.c.id == 1).values(public_url=None))
            return None
        return url_mismatch(stored, configured)


# -- renames -----------------------------------------------------------------------------------------------------
def announce(rt: Runtime) -> list[str]:
    """After a start or a reload: if the config's company or site name differs from what was last announced,
    write our company record (it replicates as any change) and queue a `site_details` control to every partner a
    message can reach (linked, or awaiting its start with a credential for it). Returns the partners told."""
    company, name = rt.config.site.company, rt.config.site.name
    try:
        check_details({"company": company, "name": name})
    except ValueError as exc:
        log.error("config: site.company or site.name cannot be sent to partners (%s): they keep the names "
                  "announced before", exc)
        return []
    now = rt.now()
    with rt.engine.begin() as conn:
        row = conn.execute(select(site_state.c.announced_company, site_state.c.announced_name)
                           .where(site_state.c.id == 1)).first()
        if row is None or (row.announced_company, row.announced_name) == (company, name):
            return []
        record = get_record(conn, rt.home, "company", rt.home)
        wanted = {"company": company, "name": name}
        # Nothing announced yet (a new or upgraded database): partners know the names `init` last wrote, which the
        # handshake carried too; only names that differ from that record are news.
        first = row.announced_company is None
        news = not first or record is None or record.deleted or record.data != wanted
        if record is None or record.deleted or record.data != wanted:
            record = capture.put(conn, "company", rt.home, wanted, now=now)
        told = []
        for link in links.all_links(conn) if news else []:
            if link.state in TOLD_STATES and link.remote_user:
                controls.replace(conn, link.site, KIND, now, company=company, name=name, epoch=record.epoch,
                                 version=record.version)
                linklog.write(conn, now, link.site, "send", f"our company is now {company!r}, our site name "
                              f"{name!r}: telling the partner")
                told.append(link.site)
        conn.execute(update(site_state).where(site_state.c.id == 1).values(announced_company=company,
                                                                           announced_name=name))
    if told:
        log.info("site details changed (company %r, site name %r): telling %s", company, name, ", ".join(told))
    return told
