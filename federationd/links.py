"""Links as stored: their states (docs/protocol.md), reading them, and the guarded state changes."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

from sqlalchemy import Connection, RowMapping, insert, select, update

from federationd import sealing
from federationd.errors import LinkError
from federationd.schema import links, records

REQUESTED = "requested"
AWAITING_START = "awaiting_start"
LINKED = "linked"
STOPPED = "stopped"
REQUESTER = "requester"
ACCEPTOR = "acceptor"


@dataclass(frozen=True)
class Link:
    site: str
    state: str
    role: str
    company: str
    name: str
    public_url: str
    remote_user: str | None
    remote_password: str | None
    local_user: str | None
    partner_key: str | None
    token_id: str | None
    paused: bool
    sent_seq: int
    snapshot_due: bool
    send_now: bool
    sending_since: float | None
    failures: int
    retry_at: float | None
    deferred_until: float | None
    hold_seq: int
    visit_sent: str | None
    partner_visit: str | None
    watermark_epoch: int
    watermark_seq: int
    last_send_at: float | None
    last_receive_at: float | None
    last_error: str | None
    received_epoch: int
    received_seq: int
    created_at: float
    state_changed_at: float
    code: str | None = None  # the acceptor's verification code
    requested_by: str | None = None
    requested_at: float | None = None
    accepted_by: str | None = None
    accepted_at: float | None = None
    started_at: float | None = None
    stop_reason: str | None = None
    relink_after: float | None = None
    partner_relink_at: float | None = None
    accept_sent: str | None = None  # our accept policy for the partner's employees, as last queued to it (JSON)
    partner_accept: str | None = None  # the partner's accept policy for our employees, as it told us (JSON)
    access_synced_at: float | None = None  # when the partner's broker last confirmed our visit/accept rules
    partner_fetch_at: float | None = None  # when a partner's `fetch` last caused a send now

    @classmethod
    def from_row(cls, row: RowMapping) -> Link:
        return cls(**{name: row[name] for name in _FIELDS})

    @property
    def consumes(self) -> bool:
        """Whether our inbound queue for this partner exists and carries messages we must read."""
        return self.state == LINKED or (self.state == AWAITING_START and self.role == ACCEPTOR)


def get(conn: Connection, site: str) -> Link | None:
    row = conn.execute(select(links).where(links.c.site == site)).mappings().first()
    return _opened(conn, Link.from_row(row)) if row is not None else None


def require(conn: Connection, site: str, *states: str) -> Link:
    """The link with `site`, which must be in one of `states` (any if none given)."""
    link = get(conn, site)
    if link is None:
        raise LinkError(f"unknown partner {site!r}: no link with it at this site")
    if states and link.state not in states:
        raise LinkError(f"the link with {site!r} is {link.state}, not {' or '.join(states)}")
    return link


def all_links(conn: Connection) -> list[Link]:
    return [_opened(conn, Link.from_row(row)) for row in conn.execute(select(links).order_by(links.c.site)).mappings()]


def _opened(conn: Connection, link: Link) -> Link:  # partner credentials are sealed at rest (sealing.py)
    return replace(link, remote_password=sealing.open_sealed(conn, link.remote_password, link.site))


def create(conn: Connection, now: float, **values: Any) -> None:
    """Insert a link, or restart a stopped one with fresh values (a released link can be requested again)."""
    existing = get(conn, values["site"])
    if existing is not None and existing.state != STOPPED:
        raise LinkError(f"a link with {values['site']!r} already exists ({existing.state})")
    fresh = {"paused": False, "sent_seq": 0, "snapshot_due": False, "send_now": False, "sending_since": None,
             "failures": 0, "retry_at": None, "deferred_until": None, "hold_seq": 0,
             "visit_sent": None, "partner_visit": None, "watermark_epoch": 0, "watermark_seq": 0,
             "last_error": None, "received_epoch": 0, "received_seq": 0, "remote_user": None,
             "remote_password": None, "local_user": None, "partner_key": None, "token_id": None,
             "code": None, "requested_by": None, "requested_at": None, "accepted_by": None, "accepted_at": None,
             "started_at": None, "stop_reason": None, "relink_after": None, "partner_relink_at": None,
             "accept_sent": None, "partner_accept": None, "access_synced_at": None, "partner_fetch_at": None,
             "state_changed_at": now, **values}
    fresh["remote_password"] = sealing.seal(conn, fresh["remote_password"])
    if existing is None:
        conn.execute(insert(links).values(created_at=now, last_send_at=None, last_receive_at=None, **fresh))
    else:
        conn.execute(update(links).where(links.c.site == values["site"]).values(**fresh))


def change(conn: Connection, site: str, now: float | None = None, **values: Any) -> None:
    if now is not None and "state" in values:
        values["state_changed_at"] = now
    if "remote_password" in values:
        values["remote_password"] = sealing.seal(conn, values["remote_password"])
    conn.execute(update(links).where(links.c.site == site).values(**values))


def reset_stamps(conn: Connection, site: str) -> None:
    """Forget the partner's version stamps (a release): the next incarnation's data wins over anything held,
    a poisoned future epoch included."""
    conn.execute(update(records).where(records.c.origin == site).values(epoch=0, version=0))
    conn.execute(update(links).where(links.c.site == site).values(received_epoch=0, received_seq=0))


def went_back(own_epoch: int, own_seq: int, held_epoch: int, held_seq: int) -> bool:
    """Whether a partner holds a newer (epoch, version) of ours than this database ever handed out."""
    return (held_epoch, held_seq) > (own_epoch, own_seq)


def regression_note(partner: str, held_epoch: int, held_seq: int, own_epoch: int, own_seq: int) -> str:
    return (f"{partner} holds our data up to epoch {held_epoch} version {held_seq}, newer than this database "
            f"(epoch {own_epoch}, version {own_seq}): it went back in time (restored from an older backup?); "
            f"run `federationd relink {partner}`")


_FIELDS = tuple(f.name for f in fields(Link))
