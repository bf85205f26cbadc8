"""Data that arrived before its link was `linked`, kept in the database until it can apply.

At the acceptor the partner's initial snapshot can overtake the partner's `start` (a `start` given back after a
database error, prefetched messages handled in another order). Such data is well formed and authenticated: it is
neither refused nor handed back to the broker (which could dead-letter it after a number of deliveries), but
stored here as received, acked, and applied in the transaction that makes the link `linked`. Bounded per partner
(bounds.MAX_PARKED_MESSAGES, MAX_PARKED_BYTES); dropped if the link stops instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from sqlalchemy import Connection, delete, func, insert, select

from federationd.bounds import MAX_PARKED_BYTES, MAX_PARKED_MESSAGES
from federationd.errors import RejectedChange
from federationd.schema import inbound_parked


@dataclass(frozen=True)
class Parked:
    id: int
    kind: str
    content_encoding: str | None
    body: bytes


def park(conn: Connection, origin: str, kind: str, content_encoding: str | None, body: bytes,
         now: float) -> None:
    count, size = conn.execute(select(func.count(), func.coalesce(func.sum(inbound_parked.c.size), 0))
                               .where(inbound_parked.c.origin == origin)).one()
    if count >= MAX_PARKED_MESSAGES:
        raise RejectedChange("parked_limit", f"{count:,} messages already wait for the link to start, the bound "
                             f"of {MAX_PARKED_MESSAGES:,} parked messages per partner")
    if size + len(body) > MAX_PARKED_BYTES:
        raise RejectedChange("parked_limit", f"{size + len(body):,} bytes would wait for the link to start, over "
                             f"the bound of {MAX_PARKED_BYTES:,} parked bytes per partner")
    conn.execute(insert(inbound_parked).values(origin=origin, kind=kind, content_encoding=content_encoding,
                                               body=body, size=len(body), received_at=now))


def waiting(conn: Connection, origin: str) -> bool:
    return conn.execute(select(inbound_parked.c.id).where(inbound_parked.c.origin == origin).limit(1)) \
        .first() is not None


def take(conn: Connection, origin: str) -> Iterator[Parked]:
    """The origin's parked messages, oldest first, each deleted as it is handed out (in the caller's
    transaction: they are gone only if what applies them commits)."""
    while True:
        row = conn.execute(select(inbound_parked).where(inbound_parked.c.origin == origin)
                           .order_by(inbound_parked.c.id).limit(1)).mappings().first()
        if row is None:
            return
        conn.execute(delete(inbound_parked).where(inbound_parked.c.id == row["id"]))
        yield Parked(row["id"], row["kind"], row["content_encoding"], bytes(row["body"]))


def drop(conn: Connection, origin: str) -> int:
    """Forget what waited for a link that will not start."""
    return int(conn.execute(delete(inbound_parked).where(inbound_parked.c.origin == origin)).rowcount)
