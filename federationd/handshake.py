"""The link handshake verbs (SPEC 3.2): request, inspect, accept, start, reject.

Each verb either completes or leaves the database and both brokers as they were: broker users created for a step
that then fails are deleted again before the error is raised.
"""

from __future__ import annotations

import logging
import secrets

from sqlalchemy import insert, update

from federationd import linklog, links, wire
from federationd.broker import topology
from federationd.broker.endpoints import Endpoint
from federationd.broker.provisioning import new_password, partner_user, token_user
from federationd.errors import CredentialsRefused, FederationError, LinkError, TransportError
from federationd.runtime import Runtime
from federationd.schema import tokens
from federationd.store import load_site_state, reading
from federationd.tokens import LIFETIME_SECONDS, LinkToken, decode

log = logging.getLogger(__name__)


def request(rt: Runtime, requested_by: str) -> LinkToken:
    """Issue a link token: a one-time broker user that may publish one acceptance to our handshake queue."""
    now = rt.now()
    token_id = secrets.token_hex(8)
    user = token_user(rt.home, token_id)
    password = new_password()
    rt.declare_home()
    rt.management.create_publisher(user, password, topology.handshake_key(token_id))
    token = LinkToken(token_id=token_id, site=rt.home, company=rt.config.site.company, name=rt.config.site.name,
                      public_url=rt.config.broker.public_url, requested_by=requested_by, requested_at=now,
                      expires_at=now + LIFETIME_SECONDS, key=rt.public_key, user=user, password=password)
    try:
        with rt.engine.begin() as conn:
            load_site_state(conn)
            conn.execute(insert(tokens).values(id=token_id, broker_user=user, requested_by=requested_by,
                                               requested_at=now, expires_at=token.expires_at))
    except FederationError:
        rt.management.delete_user(user)
        raise
    log.info("issued link token %s (requested by %s, expires in 24 h)", token_id, requested_by)
    return token


def inspect(text: str) -> LinkToken:
    """Decode a token; no side effect at all (nothing sent, nothing stored)."""
    return decode(text)


def accept(rt: Runtime, text: str) -> LinkToken:
    """Accept a partner's token: provision its user on our broker and send it our details (SPEC 3.2 step 3)."""
    token = decode(text)
    now = rt.now()
    if token.site == rt.home:
        raise LinkError("this token was issued by this site itself")
    if token.expired(now):
        raise LinkError(f"the link token from {token.site!r} expired at {token.public()['expires_at']}")
    with rt.engine.begin() as conn:
        load_site_state(conn)
        existing = links.get(conn, token.site)
    if existing is not None and existing.state != links.STOPPED:
        raise LinkError(f"a link with {token.site!r} already exists ({existing.state})")
    user, password = partner_user(rt.home, token.site), new_password()
    rt.declare_partner_queues(token.site)
    rt.management.create_publisher(user, password, token.site)
    acceptance = wire.control_body(rt.home, "accept", token_id=token.token_id, company=rt.config.site.company,
                                   name=rt.config.site.name, public_url=rt.config.broker.public_url,
                                   user=user, password=password, key=rt.public_key)
    endpoint = Endpoint.parse(token.public_url).with_credentials(token.user, token.password)
    try:
        with rt.publisher(endpoint, token.site) as publisher:
            publisher.publish(wire.encode("control", acceptance), topology.handshake_key(token.token_id))
    except CredentialsRefused:
        rt.management.delete_user(user)
        raise LinkError(f"{token.site}: the link token was refused by its broker: it was already used, "
                        "rejected or has expired") from None
    except TransportError:
        rt.management.delete_user(user)
        raise
    with rt.engine.begin() as conn:
        links.create(conn, now, site=token.site, state=links.AWAITING_START, role=links.ACCEPTOR,
                     company=token.company, name=token.name, public_url=token.public_url, local_user=user,
                     partner_key=token.key, token_id=token.token_id)
        linklog.write(conn, now, token.site, "send", "accepted the link token; waiting for the partner to start")
    log.info("accepted the link token of %s; waiting for it to start the link", token.site)
    return token


def _tell(rt: Runtime, link: links.Link, kind: str, **fields: object) -> None:
    if not (link.remote_user and link.remote_password):
        raise LinkError(f"no credential for {link.site!r}'s broker")
    endpoint = Endpoint.parse(link.public_url).with_credentials(link.remote_user, link.remote_password)
    with rt.publisher(endpoint, link.site) as publisher:
        publisher.publish(wire.encode("control", wire.control_body(rt.home, kind, **fields)), rt.home)


def start(rt: Runtime, partner: str) -> None:
    """Start an accepted link: provision the partner's user here, send it, go `linked` (SPEC 3.2 step 4)."""
    link = _awaiting_our_answer(rt, partner)
    user, password = partner_user(rt.home, partner), new_password()
    rt.declare_partner_queues(partner)
    rt.management.create_publisher(user, password, partner)
    try:
        _tell(rt, link, "start", user=user, password=password)
    except FederationError:
        rt.management.delete_user(user)
        raise
    now = rt.now()
    with rt.engine.begin() as conn:
        links.change(conn, partner, now, state=links.LINKED, local_user=user, snapshot_due=True)
        linklog.write(conn, now, partner, "send", "started the link; sending a full snapshot")
    _revoke_token(rt, link.token_id)
    log.info("link with %s started", partner)


def reject(rt: Runtime, partner: str) -> None:
    """Reject an accepted link: tell the partner, and both go `stopped`."""
    link = _awaiting_our_answer(rt, partner)
    _tell(rt, link, "reject")
    now = rt.now()
    with rt.engine.begin() as conn:
        links.change(conn, partner, now, state=links.STOPPED, remote_user=None, remote_password=None)
        linklog.write(conn, now, partner, "send", "rejected the link")
    _revoke_token(rt, link.token_id)
    log.info("link with %s rejected", partner)


def _awaiting_our_answer(rt: Runtime, partner: str) -> links.Link:
    """The link `partner` accepted and that we, the requester, must now start or reject."""
    with reading(rt.engine) as conn:
        link = links.require(conn, partner, links.AWAITING_START)
    if link.role != links.REQUESTER:
        raise LinkError(f"{partner!r} requested this link: only {partner!r} starts or rejects it "
                        "(`link release` withdraws our acceptance)")
    return link


def _revoke_token(rt: Runtime, token_id: str | None) -> None:
    if token_id is None:
        return
    rt.management.delete_user(token_user(rt.home, token_id))
    with rt.engine.begin() as conn:
        conn.execute(update(tokens).where(tokens.c.id == token_id).values(revoked=True))
