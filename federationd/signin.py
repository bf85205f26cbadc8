"""`access check`, `access ticket` and `access redeem`: the policy decisions of `access.py` applied to
what this site's database knows (the partner's employees and departments, its visit rules, its key)."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Connection, insert, select
from sqlalchemy.exc import IntegrityError

from federationd import arrival, links, tickets
from federationd.access import Decision, Employee, may_visit, refused, resolve
from federationd.config import VisitPolicy
from federationd.errors import AccessDenied, LinkError
from federationd.identity import load_public_key, signing_key
from federationd.records import get_record
from federationd.runtime import Runtime
from federationd.schema import records, used_tickets
from federationd.store import reading


def department_parents(conn: Connection, origin: str) -> dict[str, str | None]:
    rows = conn.execute(select(records.c.id, records.c.data).where(
        records.c.origin == origin, records.c.category == "department", records.c.deleted.is_(False)))
    parents: dict[str, str | None] = {}
    for record_id, data in rows:
        parent = json.loads(data).get("parent")
        parents[record_id] = str(parent) if parent else None
    return parents


def _employee(conn: Connection, origin: str, employee_id: str) -> Employee | None:
    record = get_record(conn, origin, "employee", employee_id)
    if record is None or record.deleted:
        return None
    return Employee.from_data(record.id, record.data)


def check(rt: Runtime, site: str, employee_id: str, ip: str | None = None) -> Decision:
    """At the accepting site: may `site`'s employee sign in here, with what, and by which rule."""
    with reading(rt.engine) as conn:
        link = links.require(conn, site)
        if link.state != links.LINKED:
            raise LinkError(f"the link with {site!r} is {link.state}: nobody from it may sign in")
        employee = _employee(conn, site, employee_id)
        if employee is None:
            return refused(f"no employee {employee_id!r} of {site!r} is known here")
        parents = department_parents(conn, site)
    visit = VisitPolicy.model_validate(json.loads(link.partner_visit)) if link.partner_visit else None
    if not may_visit(employee, visit, parents):
        return refused(f"{site}'s visit rules do not let {employee_id} visit this site")
    return resolve(employee, rt.config.link(site).accept, parents, ip)


def ticket(rt: Runtime, site: str, employee_id: str) -> str:
    """At the home site: a 60-second, single-use ticket for one of our employees to present at `site`."""
    now = rt.now()
    with reading(rt.engine) as conn:
        links.require(conn, site, links.LINKED)
        employee = _employee(conn, rt.home, employee_id)
        parents = department_parents(conn, rt.home)
    if employee is None:
        raise AccessDenied(f"no employee {employee_id!r} at this site")
    if not may_visit(employee, rt.config.link(site).visit, parents):
        raise AccessDenied(f"our visit rules for {site!r} do not let {employee_id} visit it")
    return tickets.issue(signing_key(rt.config.state_dir), rt.home, site, employee_id, now)


def redeem(rt: Runtime, text: str, ip: str | None = None) -> dict[str, Any]:
    """At the partner: verify the ticket, burn it, then answer like `check` plus who it is."""
    now = rt.now()
    issuer = tickets.peek(text)[0].iss
    with reading(rt.engine) as conn:
        link = links.get(conn, issuer)
    keys = {}
    if link is not None and link.state == links.LINKED and link.partner_key:
        try:  # only the issuer's key is loaded: one partner's bad key never breaks sign-in for the others
            keys[issuer] = load_public_key(arrival.signing_key(link.partner_key))
        except ValueError:
            raise AccessDenied(f"the signing key held for {issuer!r} is unusable: relink with it") from None
    verified = tickets.verify(text, keys, rt.home, now)
    try:
        with rt.engine.begin() as conn:
            conn.execute(insert(used_tickets).values(id=verified.jti, origin=verified.iss, employee=verified.sub,
                                                     used_at=now, expires_at=verified.exp))
    except IntegrityError:
        raise AccessDenied("ticket already used (tickets are single use)") from None
    decision = check(rt, verified.iss, verified.sub, ip)
    return {**decision.as_json(), "employee": verified.sub, "origin": verified.iss}
