"""Applying control messages, one function per kind (SPEC 5): the handshake's accept, start and reject.

Each runs inside the dispatcher's transaction and returns follow-up work (broker calls) to run after the commit.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError
from sqlalchemy import Connection, select, update

from federationd import controls, linklog, links
from federationd.broker.endpoints import Endpoint
from federationd.broker.provisioning import token_user
from federationd.categories import RELEASED_CATEGORIES
from federationd.config import SITE_ID, VisitPolicy
from federationd.errors import LinkError, RejectedChange
from federationd.handlers.changes import tombstone
from federationd.links import regression_note, went_back
from federationd.runtime import Runtime
from federationd.schema import tokens
from federationd.store import load_site_state
from federationd.wire import BIGINT, ControlBody

log = logging.getLogger(__name__)

AfterCommit = Callable[[], None]


def _text(control: dict[str, Any], name: str) -> str:
    value = control.get(name)
    if not isinstance(value, str) or not value:
        raise RejectedChange("invalid_control", f"control {control.get('kind')!r} lacks {name!r}")
    return value


def on_accept(rt: Runtime, conn: Connection, body: ControlBody, user_id: str | None, routing_key: str,
              now: float) -> AfterCommit | None:
    """A partner accepted one of our tokens (on the handshake queue): the link awaits our start or reject."""
    control = body.control
    token_id = _text(control, "token_id")
    if routing_key != f"handshake.{token_id}" or user_id != token_user(rt.home, token_id):
        raise RejectedChange("user_id_mismatch", f"acceptance for token {token_id} not sent with its credential")
    token = conn.execute(select(tokens).where(tokens.c.id == token_id)).mappings().first()
    if token is None or token["revoked"] or token["used_at"] is not None:
        raise RejectedChange("token_used", f"acceptance from {body.origin!r} for a used or unknown token")
    if now >= token["expires_at"]:
        raise RejectedChange("token_expired", f"acceptance from {body.origin!r} for an expired token")
    if body.origin == rt.home:
        raise RejectedChange("origin_mismatch", "an acceptance claims to come from this site")
    if not SITE_ID.match(body.origin) or not _text(control, "public_url").startswith("amqps://"):
        raise RejectedChange("invalid_control", f"acceptance with an invalid site id or URL from {body.origin!r}")
    try:
        links.create(conn, now, site=body.origin, state=links.AWAITING_START, role=links.REQUESTER,
                     company=_text(control, "company"), name=_text(control, "name"),
                     public_url=_text(control, "public_url"), remote_user=_text(control, "user"),
                     remote_password=_text(control, "password"), partner_key=_text(control, "key"),
                     token_id=token_id)
    except LinkError as exc:
        raise RejectedChange("link_exists", str(exc)) from None
    conn.execute(update(tokens).where(tokens.c.id == token_id).values(used_at=now, used_by=body.origin))
    linklog.write(conn, now, body.origin, "receive", "the partner accepted our link token; start or reject it")
    log.info("%s accepted link token %s: run `federationd link start %s` or `link reject`", body.origin,
             token_id, body.origin)
    user = token_user(rt.home, token_id)
    return lambda: rt.management.delete_user(user)  # one acceptance per token: revoke it at once


def on_start(rt: Runtime, conn: Connection, body: ControlBody, now: float) -> AfterCommit | None:
    link = links.get(conn, body.origin)
    if link is None or link.state != links.AWAITING_START or link.role != links.ACCEPTOR:
        raise RejectedChange("unexpected_control", f"start from {body.origin!r} for no link awaiting it")
    links.change(conn, body.origin, now, state=links.LINKED, remote_user=_text(body.control, "user"),
                 remote_password=_text(body.control, "password"), snapshot_due=True)
    linklog.write(conn, now, body.origin, "receive", "the partner started the link; sending a full snapshot")
    log.info("link with %s started by the partner", body.origin)
    return None


def on_reject(rt: Runtime, conn: Connection, body: ControlBody, now: float) -> AfterCommit | None:
    link = links.get(conn, body.origin)
    if link is None or link.state != links.AWAITING_START:
        raise RejectedChange("unexpected_control", f"reject from {body.origin!r} for no link awaiting it")
    links.change(conn, body.origin, now, state=links.STOPPED, remote_user=None, remote_password=None)
    linklog.write(conn, now, body.origin, "receive", "the partner rejected the link")
    log.info("link with %s rejected by the partner", body.origin)
    user = link.local_user
    return (lambda: rt.management.delete_user(user)) if user else None


def on_release(rt: Runtime, conn: Connection, body: ControlBody, now: float) -> AfterCommit | None:
    """The partner released the link: stop, forget its credential, tombstone its data (schedules stay)."""
    link = links.get(conn, body.origin)
    assert link is not None  # the dispatcher only hands over messages of known links
    links.change(conn, body.origin, now, state=links.STOPPED, remote_user=None, remote_password=None,
                 local_user=None, snapshot_due=False, send_now=False)
    controls.drop(conn, body.origin)
    swept = tombstone(conn, body.origin, RELEASED_CATEGORIES, now)
    linklog.write(conn, now, body.origin, "receive", f"the partner released the link; {swept} of its record(s) "
                  "deleted")
    log.info("link with %s released by the partner", body.origin)
    user = link.local_user
    return (lambda: rt.management.delete_user(user)) if user else None


def on_relink(rt: Runtime, conn: Connection, body: ControlBody, now: float) -> AfterCommit | None:
    _require_linked(conn, body)
    links.change(conn, body.origin, snapshot_due=True, send_now=True, hold_seq=0)
    linklog.write(conn, now, body.origin, "receive", "the partner asked for a relink: sending a full snapshot")
    return None


def on_change_url(rt: Runtime, conn: Connection, body: ControlBody, now: float) -> AfterCommit | None:
    _require_linked(conn, body)
    url = _text(body.control, "public_url")
    try:
        endpoint = Endpoint.parse(url)
    except ValueError:
        raise RejectedChange("invalid_control", f"change_url with an unusable URL {url!r}") from None
    if not url.startswith("amqps://") or not endpoint.host:
        raise RejectedChange("invalid_control", f"change_url with an unusable URL {url!r}")
    links.change(conn, body.origin, public_url=endpoint.public_url)
    linklog.write(conn, now, body.origin, "receive", f"the partner's public endpoint is now {endpoint.public_url}")
    log.info("%s moved its broker to %s", body.origin, endpoint.public_url)
    return None


def on_visit_policy(rt: Runtime, conn: Connection, body: ControlBody, now: float) -> AfterCommit | None:
    """The partner's rules for which of its employees may sign in here (null: everybody)."""
    _require_linked(conn, body)
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


def on_watermark(rt: Runtime, conn: Connection, body: ControlBody, now: float) -> AfterCommit | None:
    """How far the partner holds our data. Newer than our own counters: this database went back in time."""
    _require_linked(conn, body)
    epoch, seq = _stamp(body.control.get("epoch")), _stamp(body.control.get("seq"))
    link = links.get(conn, body.origin)
    assert link is not None
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
    _require_linked(conn, body)
    link = links.get(conn, body.origin)
    assert link is not None
    controls.replace(conn, body.origin, "watermark", now, epoch=link.received_epoch, seq=link.received_seq)
    return None


def _require_linked(conn: Connection, body: ControlBody) -> None:
    link = links.get(conn, body.origin)
    if link is None or link.state != links.LINKED:
        raise RejectedChange("unexpected_control", f"{body.control['kind']} from {body.origin!r}, not linked")


HANDLERS: dict[str, Callable[[Runtime, Connection, ControlBody, float], AfterCommit | None]] = {
    "start": on_start,
    "reject": on_reject,
    "release": on_release,
    "relink": on_relink,
    "change_url": on_change_url,
    "visit_policy": on_visit_policy,
    "watermark": on_watermark,
    "hello": on_hello,
}
