"""The link handshake verbs (handshake section of docs/operations.md): request, inspect, accept, start, reject.

Each verb either completes or leaves the database and both brokers as they were: broker users created for a step
that then fails are revoked again (durably: `revocations`) before the error is raised. The verification codes
(`codes`) are checked before anything is stored or sent.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass

from sqlalchemy import Connection, insert, select, update

from federationd import arrival, codes, controls, linklog, links, linkstate, revocations, site_details, usage, wire
from federationd.broker import topology
from federationd.broker.endpoints import Endpoints
from federationd.broker.provisioning import new_password, partner_user, token_user
from federationd.errors import CredentialsRefused, CredentialsRevoked, FederationError, LinkError, TransportError
from federationd.runtime import Runtime
from federationd.schema import tokens
from federationd.store import load_site_state, reading
from federationd.tokens import LIFETIME_SECONDS, LinkToken, decode

log = logging.getLogger(__name__)

CODE_MISMATCH = ("the verification code does not match this token: the token was changed on its way, or the code "
                 "was misread (nothing was stored or sent); compare the code with the requester's administrator "
                 "again, by phone, and ask for a new token if it still differs")


@dataclass(frozen=True)
class Accepted:
    token: LinkToken
    code: str  # the acceptor's own code, for the requester's administrator


def request(rt: Runtime, requested_by: str, for_site: str | None = None) -> LinkToken:
    """Issue a link token: a one-time broker user that may publish one acceptance to our handshake queue."""
    if for_site is not None:
        try:
            arrival.site_id(for_site, "--for site id")
        except ValueError as exc:
            raise LinkError(str(exc)) from None
    with reading(rt.engine) as conn:
        usage.refuse_past_maximum(conn, rt.config, for_site)  # limits: before anything is provisioned
    now = rt.now()
    with reading(rt.engine) as conn:
        load_site_state(conn)
        public_url = site_details.advertised_url(conn, rt.config.broker.public_url)
    token_id = secrets.token_hex(8)
    user = token_user(rt.home, token_id)
    password = new_password()
    rt.declare_home()
    rt.management.create_publisher(user, password, topology.handshake_key(token_id))
    token = LinkToken(token_id=token_id, site=rt.home, company=rt.config.site.company, name=rt.config.site.name,
                      public_url=public_url, requested_by=requested_by, requested_at=now,
                      expires_at=now + LIFETIME_SECONDS, key=rt.public_key, user=user, password=password,
                      for_site=for_site)
    try:
        with rt.engine.begin() as conn:
            load_site_state(conn)
            conn.execute(insert(tokens).values(id=token_id, broker_user=user, requested_by=requested_by,
                                               requested_at=now, expires_at=token.expires_at,
                                               digest=codes.token_digest(token.encode()), for_site=for_site))
    except FederationError:
        rt.management.delete_user(user)
        raise
    log.info("issued link token %s (requested by %s, expires in 24 h%s)", token_id, requested_by,
             f", for {for_site}" if for_site else "")
    return token


def inspect(text: str) -> dict[str, object]:
    """Decode a token and compute its code from the text as received; no side effect at all."""
    return decode(text).public(codes.token_code(text))


def accept(rt: Runtime, text: str, code: str, accepted_by: str) -> Accepted:
    """Accept a partner's token: provision its user on our broker and send it our details, once the code the
    requester's administrator read us matches the token as received."""
    token = decode(text)
    if not codes.matches(codes.token_code(text), code):
        raise LinkError(CODE_MISMATCH)
    now = rt.now()
    if token.site == rt.home:
        raise LinkError("this token was issued by this site itself")
    if token.expired(now):
        raise LinkError(f"the link token from {token.site!r} expired at {token.public()['expires_at']}")
    with rt.engine.begin() as conn:
        load_site_state(conn)
        existing = links.get(conn, token.site)
        usage.refuse_past_maximum(conn, rt.config, token.site)  # limits: before anything is provisioned
        public_url = site_details.advertised_url(conn, rt.config.broker.public_url)
    step = linkstate.decide(existing.state if existing else linkstate.NONE,
                            existing.role if existing else linkstate.ACCEPTOR, "accept")
    if not step.allowed:
        raise LinkError(f"{token.site}: {step.refusal}")
    claims = codes.acceptance_claims(site=rt.home, public_url=Endpoints.parse(public_url).wire(),
                                     key=rt.public_key, token_id=token.token_id,
                                     token_digest=codes.token_digest(text), accepted_by=accepted_by)
    user, password = partner_user(rt.home, token.site), new_password()
    rt.declare_partner_queues(token.site)
    rt.management.create_publisher(user, password, token.site)
    acceptance = wire.control_body(rt.home, "accept", company=rt.config.site.company, name=rt.config.site.name,
                                   user=user, password=password, incarnation=token.token_id,
                                   **{k: v for k, v in claims.items() if k != "site"})
    endpoint = Endpoints.parse(token.public_url).with_credentials(token.user, token.password)
    try:
        with rt.publisher(endpoint, token.site) as publisher:
            publisher.publish(wire.encode("control", acceptance), topology.handshake_key(token.token_id))
    except CredentialsRevoked:
        # Published, then the token user was deleted under us before the confirm came: the requester deletes it
        # as soon as it has read an acceptance. Ours, most likely; if it was another's, the requester refuses
        # ours and tells us back with the credential we sent, and this link goes `stopped` with the reason.
        log.info("%s took the acceptance and revoked the token's user before the broker's confirm reached us",
                 token.site)
    except CredentialsRefused:
        rt.management.delete_user(user)
        raise LinkError(f"{token.site}: the link token was refused by its broker: it was already used, "
                        "rejected or has expired") from None
    except TransportError:
        rt.management.delete_user(user)
        raise
    my_code = codes.acceptance_code(claims)
    with rt.engine.begin() as conn:
        links.create(conn, now, site=token.site, state=step.state, role=links.ACCEPTOR, company=token.company,
                     name=token.name, public_url=arrival.public_url(token.public_url), local_user=user,
                     partner_key=token.key, token_id=token.token_id, code=my_code,
                     requested_by=token.requested_by, requested_at=token.requested_at, accepted_by=accepted_by,
                     accepted_at=now)
        linklog.write(conn, now, token.site, "send", "accepted the link token; waiting for the partner to start")
    log.info("accepted the link token of %s; waiting for it to start the link", token.site)
    return Accepted(token, my_code)


def tell(rt: Runtime, public_url: str, credential: tuple[str, str], site: str, kind: str, **fields: object) -> None:
    """Publish one control message to a partner's broker with the credential (user, password) it gave us;
    `public_url` as stored: one URL or the JSON list of its cluster's nodes."""
    endpoint = Endpoints.parse(public_url).with_credentials(*credential)
    with rt.publisher(endpoint, site) as publisher:
        publisher.publish(wire.encode("control", wire.control_body(rt.home, kind, **fields)), rt.home)


def _tell(rt: Runtime, link: links.Link, kind: str, **fields: object) -> None:
    if not (link.remote_user and link.remote_password):
        raise LinkError(f"no credential for {link.site!r}'s broker")
    tell(rt, link.public_url, (link.remote_user, link.remote_password), link.site, kind,
         incarnation=link.token_id, **fields)


def start(rt: Runtime, partner: str, code: str) -> None:
    """Start an accepted link once the acceptor's code matches: provision the partner's user here, send it, go
    `linked`. Retrying after a partial failure is safe (the acceptor takes the newest credential)."""
    link = _awaiting_our_answer(rt, partner, "start")
    if link.code is None or not codes.matches(link.code, code):
        raise LinkError(f"the verification code does not match the acceptance received from {partner!r} (see "
                        f"`federationd link show {partner}`): it may not come from {partner}'s administrator; "
                        f"nothing was sent. If their code differs, run `federationd link reject {partner}` and "
                        "issue a new token")
    user, password = partner_user(rt.home, partner), new_password()
    rt.declare_partner_queues(partner)
    rt.management.create_publisher(user, password, partner)
    try:
        _tell(rt, link, "start", user=user, password=password)
    except CredentialsRefused:
        _stop(rt, link, "the partner's broker refused our credential: it withdrew its acceptance "
              "(link release) before the start", revoke=user)
        raise LinkError(f"{partner}: the partner withdrew its acceptance (its broker refused our credential); "
                        "the link is stopped: issue a new token to link again") from None
    except FederationError:
        rt.management.delete_user(user)
        raise
    now = rt.now()
    with rt.engine.begin() as conn:
        links.change(conn, partner, now, state=linkstate.LINKED, local_user=user, snapshot_due=True,
                     started_at=now, stop_reason=None)
        linklog.write(conn, now, partner, "send", "started the link; sending a full snapshot")
        _retire_token(conn, rt, link.token_id, now)
    revocations.retry_pending(rt)
    log.info("link with %s started", partner)


def reject(rt: Runtime, partner: str, local: bool = False) -> str:
    """Reject an accepted link: tell the partner, and both go `stopped`. With `local`, an unreachable partner
    does not stop us: the rejection is queued for when it can be reached. Returns what happened."""
    link = _awaiting_our_answer(rt, partner, "reject")
    reason = "the requester's administrator rejected the link"
    try:
        _tell(rt, link, "reject", reason=reason)
        told = "the partner was told"
    except CredentialsRefused:
        told = "the partner had already withdrawn its acceptance"
    except TransportError:
        if not local:
            raise
        told = "the partner is unreachable: it is told when it can be reached"
        with rt.engine.begin() as conn:
            controls.queue(conn, partner, "reject", rt.now(), reason=reason)
    _stop(rt, link, "rejected by this site's administrator", keep_credential=told.endswith("reached"))
    log.info("link with %s rejected (%s)", partner, told)
    return told


def _stop(rt: Runtime, link: links.Link, reason: str, revoke: str | None = None,
          keep_credential: bool = False) -> None:
    now = rt.now()
    with rt.engine.begin() as conn:
        credential = {} if keep_credential else {"remote_user": None, "remote_password": None}
        links.change(conn, link.site, now, state=linkstate.STOPPED, local_user=None, stop_reason=reason,
                     snapshot_due=False, send_now=False, **credential)
        revocations.schedule(conn, revoke or link.local_user, now)
        revocations.purge(conn, link.site, link.token_id, now)
        linklog.write(conn, now, link.site, "send", f"link stopped: {reason}")
        _retire_token(conn, rt, link.token_id, now)
    revocations.retry_pending(rt)


def _awaiting_our_answer(rt: Runtime, partner: str, event: str) -> links.Link:
    """The link `partner` accepted and that we, the requester, must now start or reject."""
    with reading(rt.engine) as conn:
        link = links.require(conn, partner)
    step = linkstate.decide(link.state, link.role, event)
    if not step.allowed:
        raise LinkError(f"{partner}: {step.refusal}")
    return link


def _retire_token(conn: Connection, rt: Runtime, token_id: str | None, now: float) -> None:
    if token_id is None:
        return
    row = conn.execute(select(tokens.c.revoked).where(tokens.c.id == token_id)).first()
    if row is None or row.revoked:
        return
    revocations.schedule(conn, token_user(rt.home, token_id), now)
    conn.execute(update(tokens).where(tokens.c.id == token_id).values(revoked=True))
