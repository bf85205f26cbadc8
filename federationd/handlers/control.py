"""Applying control messages, one function per kind (wire format in docs/protocol.md): the handshake's accept,
start and reject, and release, relink, fetch, change_url, site_details, visit_policy, accept_policy, watermark
and hello on a live link.

Each runs inside the dispatcher's transaction, asks the link state machine (`linkstate`) before it changes a
link, writes revocations as rows (`revocations`), and returns follow-up work to run after the commit.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError
from sqlalchemy import Connection, select, update

from federationd import arrival, codes, controls, linklog, links, linkstate, revocations, usage
from federationd.broker.provisioning import token_user
from federationd.broker.topology import handshake_key
from federationd.categories import RELEASED_CATEGORIES
from federationd.config import AcceptPolicy, VisitPolicy
from federationd.errors import FederationError, RejectedChange
from federationd.handlers.changes import apply_changes, tombstone
from federationd.links import regression_note, went_back
from federationd.runtime import Runtime
from federationd.schema import tokens
from federationd.store import load_site_state
from federationd.wire import BIGINT, ChangesBody, ControlBody

log = logging.getLogger(__name__)

AfterCommit = Callable[[], None]
MAX_REASON = 200  # a partner's reason is cut to this many characters before it reaches a log or status


def _text(control: dict[str, Any], name: str, limit: int = 255) -> str:
    value = control.get(name)
    if not isinstance(value, str) or not value or len(value) > limit:
        raise RejectedChange("invalid_control", f"control {str(control.get('kind'))[:40]!r} lacks {name!r} "
                             f"(text of 1 to {limit} characters)")
    return value


def _reason(control: dict[str, Any], default: str) -> str:
    value = control.get("reason")
    if not isinstance(value, str) or not value.strip():
        return default
    return "".join(ch if ch.isprintable() else " " for ch in value)[:MAX_REASON]


def _retry_revocations(rt: Runtime) -> AfterCommit:
    def retry() -> None:
        revocations.retry_pending(rt)
    return retry


# -- the handshake, at the requester ---------------------------------------------------------------------------
class _Refused(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def _claims(control: dict[str, Any], origin: str) -> tuple[dict[str, Any], dict[str, str]]:
    """The acceptance's claims (what the acceptor's code covers) and its other details, validated."""
    try:
        arrival.site_id(origin, "acceptor site id")
        claims = codes.acceptance_claims(
            site=origin, public_url=_public_url(control), key=_text(control, "key"),
            token_id=_text(control, "token_id", 64), token_digest=_text(control, "token_digest", 64),
            accepted_by=arrival.name(control.get("accepted_by"), "acceptor"))
        arrival.public_url(claims["public_url"])
        arrival.signing_key(claims["key"])
        details = {"company": arrival.name(control.get("company"), "company name"),
                   "name": arrival.name(control.get("name"), "site name"),
                   "user": _text(control, "user"), "password": _text(control, "password")}
    except (ValueError, RejectedChange) as exc:
        raise _Refused("invalid_control", f"an invalid acceptance: {exc}") from None
    return claims, details


def _public_url(control: dict[str, Any]) -> str | list[str]:
    """The acceptor's endpoint as it sent it (its code covers that): one URL, or its cluster's public nodes."""
    value = control.get("public_url")
    arrival.public_url(value)
    return value  # type: ignore[return-value] # validated just above


def _check_token(conn: Connection, claims: dict[str, Any], now: float) -> Any:
    token = conn.execute(select(tokens).where(tokens.c.id == claims["token_id"])).mappings().first()
    if token is None or token["used_at"] is not None:
        raise _Refused("token_used", "the link token was already used, or is unknown here")
    if now >= token["expires_at"]:  # before `revoked`: housekeeping revokes an expired token, the reason is expiry
        raise _Refused("token_expired", "the link token had expired when the acceptance arrived")
    if token["revoked"]:
        raise _Refused("token_used", "the link token was withdrawn here (rejected or revoked)")
    if token["digest"] is not None and token["digest"] != claims["token_digest"]:
        raise _Refused("token_digest", "the acceptance answers a token that differs from the one issued "
                       "(the token was changed on its way)")
    if token["for_site"] is not None and token["for_site"] != claims["site"]:
        raise _Refused("wrong_site", f"the token was issued for {token['for_site']!r}, not for "
                       f"{claims['site']!r}")
    return token


def _reply(rt: Runtime, control: dict[str, Any], origin: str, token_id: str, why: str) -> AfterCommit | None:
    """After a refusal: tell the acceptor, with the credential its acceptance carries, if it is usable."""
    try:
        url = arrival.public_url(control.get("public_url"))
        user, password = _text(control, "user"), _text(control, "password")
    except (ValueError, RejectedChange):
        return None

    def tell_back() -> None:
        from federationd.handshake import tell  # noqa: PLC0415 - the verbs' publishing helper, after the commit

        try:
            tell(rt, url, (user, password), origin[:64], "reject", reason=why, incarnation=token_id)
        except FederationError as exc:
            log.warning("could not tell %r that its acceptance was refused: %s", origin[:64], exc)
    return tell_back


def on_accept(rt: Runtime, conn: Connection, body: ControlBody, user_id: str | None, routing_key: str,
              now: float) -> AfterCommit | None:
    """A partner accepted one of our tokens (on the handshake queue): the link awaits our start or reject.

    A refusal (expired, used, edited, for another site, a site id already linked) is told back to the
    acceptor, so that neither side stays `awaiting_start`."""
    control = body.control
    token_id = _text(control, "token_id", 64)
    if routing_key != handshake_key(token_id) or user_id != token_user(rt.home, token_id):
        raise RejectedChange("user_id_mismatch", f"acceptance for token {token_id} not sent with its credential")
    if body.origin == rt.home:
        raise RejectedChange("origin_mismatch", "an acceptance claims to come from this site")
    try:
        claims, details = _claims(control, body.origin)
        token = _check_token(conn, claims, now)
        existing = links.get(conn, body.origin)
        step = linkstate.decide(existing.state if existing else linkstate.NONE,
                                existing.role if existing else linkstate.REQUESTER, "accepted")
        if not step.allowed:
            raise _Refused("link_exists", f"{body.origin} cannot accept: {step.refusal}")
        past = usage.refusal(conn, rt.config, body.origin)
        if past is not None:
            raise _Refused("limit", past)
    except _Refused as refused:
        answer = _reply(rt, control, body.origin, token_id, str(refused))
        if answer is None:  # nobody to tell: dead-lettered (and logged) by the dispatcher
            raise RejectedChange(refused.reason, f"acceptance from {body.origin[:64]!r}: {refused}") from None
        origin = body.origin[:64]
        linklog.write(conn, now, origin, "receive", f"refused an acceptance ({refused.reason}): {refused}")
        log.warning("refused an acceptance from %r for token %s (%s): %s", origin, token_id, refused.reason, refused)
        return answer
    links.create(conn, now, site=body.origin, state=step.state, role=links.REQUESTER, company=details["company"],
                 name=details["name"], public_url=arrival.public_url(claims["public_url"]),
                 remote_user=details["user"], remote_password=details["password"], partner_key=claims["key"],
                 token_id=token_id, code=codes.acceptance_code(claims), requested_by=token["requested_by"],
                 requested_at=token["requested_at"], accepted_by=claims["accepted_by"], accepted_at=now)
    conn.execute(update(tokens).where(tokens.c.id == token_id).values(used_at=now, used_by=body.origin,
                                                                      revoked=True))
    revocations.schedule(conn, token_user(rt.home, token_id), now)  # one acceptance per token
    linklog.write(conn, now, body.origin, "receive", "the partner accepted our link token; compare its code "
                  f"({codes.acceptance_code(claims)}) with its administrator, then start or reject")
    log.info("%s accepted link token %s: compare its code, then `federationd link start %s --code CODE` or "
             "`link reject`", body.origin, token_id, body.origin)
    return _retry_revocations(rt)


# -- the handshake, at the acceptor ----------------------------------------------------------------------------
def _step(conn: Connection, body: ControlBody, event: str) -> tuple[links.Link, str]:
    link = links.get(conn, body.origin)
    step = linkstate.decide(link.state if link else linkstate.NONE, link.role if link else linkstate.ACCEPTOR,
                            event)
    if link is None or step.state is None:
        raise RejectedChange("unexpected_control", f"{event} from {body.origin!r}: {step.refusal}")
    return link, step.state


def on_start(rt: Runtime, conn: Connection, body: ControlBody, now: float) -> AfterCommit | None:
    """The requester started the link (or retried its start: the newest credential wins)."""
    link, state = _step(conn, body, "started")
    values: dict[str, Any] = {"remote_user": _text(body.control, "user"),
                              "remote_password": _text(body.control, "password")}
    past = usage.refusal(conn, rt.config, body.origin) if link.state != state else None
    if past is not None:  # the limits were lowered since we accepted: release it at once, saying why
        return _past_limit(rt, conn, link, values, past, now)
    if link.state != state:
        values.update(state=state, snapshot_due=True, started_at=now, stop_reason=None)
    links.change(conn, body.origin, now, **values)
    linklog.write(conn, now, body.origin, "receive", "the partner started the link; sending a full snapshot"
                  if link.state != state else "the partner repeated its start; using its newest credential")
    log.info("link with %s started by the partner", body.origin)
    return None


def _past_limit(rt: Runtime, conn: Connection, link: links.Link, credential: dict[str, Any], why: str,
                now: float) -> AfterCommit:
    """A start that arrives past a maximum: stopped here, and a release (with the reason) queued to the partner
    with the credential its start carries."""
    links.change(conn, link.site, now, state=linkstate.STOPPED, local_user=None, snapshot_due=False,
                 send_now=False, stop_reason=why, **credential)
    revocations.schedule(conn, link.local_user, now)
    controls.queue(conn, link.site, "release", now, reason=why)
    linklog.write(conn, now, link.site, "receive", f"the partner started the link, released at once: {why}")
    log.warning("%s started the link; released at once: %s", link.site, why)
    return _retry_revocations(rt)


def _stopped(rt: Runtime, conn: Connection, link: links.Link, reason: str, now: float) -> AfterCommit:
    links.change(conn, link.site, now, state=linkstate.STOPPED, remote_user=None, remote_password=None,
                 local_user=None, snapshot_due=False, send_now=False, stop_reason=reason)
    revocations.schedule(conn, link.local_user, now)
    revocations.purge(conn, link.site, link.token_id, now)
    controls.drop(conn, link.site)
    return _retry_revocations(rt)


def on_reject(rt: Runtime, conn: Connection, body: ControlBody, now: float) -> AfterCommit | None:
    """The requester rejected our acceptance, or refused it (the reason says why)."""
    link, _state = _step(conn, body, "rejected")
    reason = _reason(body.control, "the partner rejected the link")
    linklog.write(conn, now, body.origin, "receive", f"the partner rejected the link: {reason}")
    log.warning("link with %s rejected by the partner: %s", body.origin, reason)
    return _stopped(rt, conn, link, f"rejected by the partner: {reason}", now)


def on_release(rt: Runtime, conn: Connection, body: ControlBody, now: float) -> AfterCommit | None:
    """The partner released the link: stop, forget its credential and version stamps, tombstone its data."""
    link, _state = _step(conn, body, "released")
    effect = _stopped(rt, conn, link, f"released by the partner: {_reason(body.control, 'no reason given')}"
                      if body.control.get("reason") else "released by the partner", now)
    swept = tombstone(conn, body.origin, RELEASED_CATEGORIES, now)
    links.reset_stamps(conn, body.origin)
    linklog.write(conn, now, body.origin, "receive", f"the partner released the link; {swept} of its record(s) "
                  "deleted")
    log.info("link with %s released by the partner", body.origin)
    return effect


# -- a live link -------------------------------------------------------------------------------------------------
def on_relink(rt: Runtime, conn: Connection, body: ControlBody, now: float) -> AfterCommit | None:
    """The partner asks for a full snapshot: at most one per `transport.relink_interval`, later requests are
    coalesced into one; never past the bulk lock, the failure backoff or `clear`."""
    from federationd.relinks import on_request  # noqa: PLC0415

    link, _state = _step(conn, body, "relink_requested")
    linklog.write(conn, now, body.origin, "receive", on_request(conn, rt.config, link, now))
    return None


def on_change_url(rt: Runtime, conn: Connection, body: ControlBody, now: float) -> AfterCommit | None:
    _step(conn, body, "change_url")
    try:
        url = arrival.public_url(body.control.get("public_url"))
    except ValueError as exc:
        raise RejectedChange("invalid_control", f"change_url: {exc}") from None
    links.change(conn, body.origin, public_url=url)
    linklog.write(conn, now, body.origin, "receive", f"the partner's public endpoint is now {url}")
    log.info("%s moved its broker to %s", body.origin, url)
    return None


def on_site_details(rt: Runtime, conn: Connection, body: ControlBody, now: float) -> AfterCommit | None:
    """The partner's company or site name changed: its link details, and its company record at the version the
    partner wrote it (the same change arriving later with its data is then a duplicate)."""
    from federationd.site_details import check_details  # noqa: PLC0415

    link, _state = _step(conn, body, "site_details")
    try:
        company, name = check_details(body.control)
    except ValueError as exc:
        raise RejectedChange("invalid_control", f"site_details: {exc}") from None
    if body.control.get("epoch") is not None or body.control.get("version") is not None:
        epoch, version = _record_stamp(body.control.get("epoch"), body.control.get("version"), now)
        apply_changes(conn, ChangesBody.model_validate({
            "schema": 1, "origin": body.origin, "epoch": epoch, "first": version, "last": version,
            "changes": [{"category": "company", "id": body.origin, "origin": body.origin, "version": version,
                         "deleted": False, "data": {"company": company, "name": name}}]}), now)
    links.change(conn, body.origin, company=company, name=name)
    shown = f"{company} ({name})" if name else company
    linklog.write(conn, now, body.origin, "receive", f"the partner is now {shown}"
                  + ("" if (link.company, link.name) != (company, name) else " (unchanged)"))
    log.info("%s is now %s", body.origin, shown)
    return None


def _record_stamp(epoch: object, version: object, now: float) -> tuple[int, int]:
    """The (epoch, version) at which the partner wrote its company record: integers in range, epoch not ahead."""
    if not (isinstance(epoch, int) and isinstance(version, int)) or isinstance(epoch, bool) \
            or isinstance(version, bool) or not (0 < epoch <= BIGINT and 0 < version <= BIGINT):
        raise RejectedChange("invalid_control", "site_details: epoch and version of the company record must be "
                             f"integers from 1 to {BIGINT}")
    try:
        arrival.epoch(epoch, now)
    except ValueError as exc:
        raise RejectedChange("future_epoch", f"site_details: {exc}") from None
    return epoch, version


def on_visit_policy(rt: Runtime, conn: Connection, body: ControlBody, now: float) -> AfterCommit | None:
    """The partner's rules for which of its employees may sign in here (null: everybody)."""
    _step(conn, body, "visit_policy")
    visit = body.control.get("visit")
    if visit is not None:
        try:
            visit = VisitPolicy.model_validate(visit).model_dump()
        except ValidationError:
            raise RejectedChange("invalid_control", "visit_policy with an invalid policy") from None
    links.change(conn, body.origin, partner_visit=json.dumps(visit) if visit is not None else None)
    linklog.write(conn, now, body.origin, "receive", "the partner's visit rules for this site: "
                  + ("everybody" if visit is None else json.dumps(visit, sort_keys=True)))
    return None


def on_accept_policy(rt: Runtime, conn: Connection, body: ControlBody, now: float) -> AfterCommit | None:
    """The partner's accept rules for our employees (what they get when they sign in there), for `access list`."""
    _step(conn, body, "accept_policy")
    try:
        accept = AcceptPolicy.model_validate(body.control.get("accept")).model_dump()
    except ValidationError:
        raise RejectedChange("invalid_control", "accept_policy with an invalid policy") from None
    links.change(conn, body.origin, partner_accept=json.dumps(accept, sort_keys=True))
    linklog.write(conn, now, body.origin, "receive", f"the partner's accept rules for our employees: "
                  f"{len(accept['rules'])} rule(s), default role {accept['default']['role']}")
    return None


def on_fetch(rt: Runtime, conn: Connection, body: ControlBody, now: float) -> AfterCommit | None:
    """The partner asks for what we have pending now (`federationd fetch`): rate-limited like its relinks."""
    from federationd.relinks import on_fetch as fetch  # noqa: PLC0415

    link, _state = _step(conn, body, "fetch_requested")
    linklog.write(conn, now, body.origin, "receive", fetch(conn, rt.config, link, now))
    return None


def on_watermark(rt: Runtime, conn: Connection, body: ControlBody, now: float) -> AfterCommit | None:
    """How far the partner holds our data. Newer than our own counters: this database went back in time."""
    link, _state = _step(conn, body, "watermark")
    epoch, seq = _stamp(body.control.get("epoch")), _stamp(body.control.get("seq"))
    site = load_site_state(conn)
    was_behind = went_back(site.epoch, site.next_seq, link.watermark_epoch, link.watermark_seq)
    links.change(conn, body.origin, watermark_epoch=epoch, watermark_seq=seq)
    if went_back(site.epoch, site.next_seq, epoch, seq) and not was_behind:
        message = regression_note(body.origin, epoch, seq, site.epoch, site.next_seq)
        log.error("%s", message)
        linklog.write(conn, now, body.origin, "receive", message)
    return None


def _stamp(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= BIGINT:
        raise RejectedChange("invalid_control", "watermark without integer epoch and seq in range")
    return value


def on_hello(rt: Runtime, conn: Connection, body: ControlBody, now: float) -> AfterCommit | None:
    """The partner's daemon started: answer with our watermark of its data, so that a partner whose database
    was restored from an older backup learns it before it sends anything."""
    link, _state = _step(conn, body, "hello")
    controls.replace(conn, body.origin, "watermark", now, epoch=link.received_epoch, seq=link.received_seq)
    return None


# -- checks the dispatcher makes before any handler ----------------------------------------------------------
_UNSTAMPED = {"release": "released", "reject": "rejected", "start": "started"}


def stale(conn: Connection, link: links.Link, body: ControlBody, now: float) -> bool:
    """Whether a control belongs to an earlier incarnation of the link (a message left in the queue while the
    link was stopped): it is dropped and logged, never applied."""
    incarnation = body.control.get("incarnation")
    if link.token_id is None or incarnation == link.token_id:
        return False
    if incarnation is None:
        # Without one, only what would end or restart the link is taken for an earlier incarnation's (a message
        # from before incarnations existed); the rest is checked by its handler as before.
        event = _UNSTAMPED.get(str(body.control.get("kind")))
        if event is None or not linkstate.decide(link.state, link.role, event).allowed:
            return False
    kind, was = str(body.control.get("kind"))[:32], str(incarnation)[:64]
    log.warning("dropped a %s from %s of an earlier link (incarnation %s, the link is now %s)", kind, link.site,
                was, link.token_id)
    linklog.write(conn, now, link.site, "receive", f"dropped a {kind} of an earlier link (incarnation {was})")
    return True


def check_epoch(body: ChangesBody, now: float) -> None:
    """Refuse data whose epoch lies in the future beyond the allowed skew (it would freeze the records)."""
    try:
        arrival.epoch(body.epoch, now)
    except ValueError as exc:
        raise RejectedChange("future_epoch", str(exc)) from None


HANDLERS: dict[str, Callable[[Runtime, Connection, ControlBody, float], AfterCommit | None]] = {
    "start": on_start,
    "reject": on_reject,
    "release": on_release,
    "relink": on_relink,
    "change_url": on_change_url,
    "site_details": on_site_details,
    "visit_policy": on_visit_policy,
    "accept_policy": on_accept_policy,
    "fetch": on_fetch,
    "watermark": on_watermark,
    "hello": on_hello,
}
