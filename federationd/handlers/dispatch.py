"""The one entry point for every inbound message: decode, check origin, apply in one transaction, decide.

Returns what the consumer must do with the delivery: ACK after the commit, REJECT (to the dead-letter queue)
for a message that can never apply, REQUEUE for a transient failure of ours (the database is down).
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.exc import DataError, IntegrityError, SQLAlchemyError

from federationd import controls, linklog, links, wire
from federationd.broker.provisioning import partner_user
from federationd.errors import RejectedChange, StoreError
from federationd.handlers import control
from federationd.handlers.changes import Applied, apply_changes, apply_snapshot, log_applied
from federationd.metrics import Metrics
from federationd.runtime import Runtime
from federationd.wire import ChangesBody, ControlBody

log = logging.getLogger(__name__)


class Outcome(enum.Enum):
    ACK = "ack"
    REJECT = "reject"
    REQUEUE = "requeue"


@dataclass(frozen=True)
class Delivery:
    """What the consumer hands over: the queue's partner (None for the handshake queue) and the message."""

    partner: str | None
    routing_key: str
    kind: str | None
    content_encoding: str | None
    user_id: str | None
    body: bytes


class Inbound:
    def __init__(self, rt: Runtime, metrics: Metrics | None = None) -> None:
        self.rt = rt
        self.metrics = metrics

    def handle(self, delivery: Delivery) -> Outcome:
        site = delivery.partner or "handshake"
        now = self.rt.now()
        decoded: ChangesBody | ControlBody | None = None
        try:
            decoded = wire.decode(delivery.kind, delivery.content_encoding, delivery.body)
            after = self._apply(delivery, decoded, now)
        except RejectedChange as exc:
            self._rejected(site, exc, decoded, now)
            return Outcome.REJECT
        except (DataError, IntegrityError) as exc:  # the message's values, not our database: retrying cannot help
            self._rejected(site, RejectedChange("invalid", f"the database refused its values: "
                                                f"{str(exc.orig).splitlines()[0] if exc.orig else exc}"), decoded, now)
            return Outcome.REJECT
        except (StoreError, SQLAlchemyError) as exc:
            log.error("could not apply a %s message from %s, will retry: %s", delivery.kind, site,
                      str(exc).splitlines()[0])
            return Outcome.REQUEUE
        except Exception:
            log.exception("unexpected error applying a %s message from %s; dead-lettered", delivery.kind, site)
            self._rejected(site, RejectedChange("internal_error", "unexpected error (see the daemon log)"),
                           decoded, now)
            return Outcome.REJECT
        if after is not None:
            try:
                after()
            except Exception:
                log.exception("follow-up after a %s message from %s failed", delivery.kind, site)
        return Outcome.ACK

    def _apply(self, delivery: Delivery, decoded: ChangesBody | ControlBody,
               now: float) -> Callable[[], None] | None:
        rt = self.rt
        if delivery.partner is None:
            if not isinstance(decoded, ControlBody) or decoded.control["kind"] != "accept":
                raise RejectedChange("unexpected_control", "only link acceptances belong on the handshake queue")
            with rt.engine.begin() as conn:
                return control.on_accept(rt, conn, decoded, delivery.user_id, delivery.routing_key, now)
        partner = delivery.partner
        wire.check_origin(decoded, partner, delivery.user_id, partner_user(rt.home, partner), rt.home)
        with rt.engine.begin() as conn:
            link = links.get(conn, partner)
            if link is None or not link.consumes:
                raise RejectedChange("unknown_link", f"message from {partner!r}, which is not linked")
            if isinstance(decoded, ControlBody):
                handler = control.HANDLERS.get(decoded.control["kind"])
                if handler is None:
                    raise RejectedChange("unknown_control", f"unknown control kind {decoded.control['kind']!r}")
                return handler(rt, conn, decoded, now)
            if link.state != links.LINKED:
                raise RejectedChange("unknown_link", f"data from {partner!r} before the link started")
            apply = apply_snapshot if decoded.snapshot is not None else apply_changes
            result = apply(conn, decoded, now)
            self._received(conn, link, decoded, result, now)
        return None

    def _received(self, conn: object, link: links.Link, body: ChangesBody, result: Applied, now: float) -> None:
        epoch, seq = link.received_epoch, link.received_seq
        epoch, seq = max((epoch, seq), (body.epoch, body.last))
        links.change(conn, link.site, last_receive_at=now, received_epoch=epoch, received_seq=seq)  # type: ignore[arg-type]
        # Tell the sender how far we hold its data: a sender whose database went back in time notices it.
        controls.replace(conn, link.site, "watermark", now, epoch=epoch, seq=seq)  # type: ignore[arg-type]
        log_applied(conn, link.site, "snapshot" if body.snapshot else "changes", result, now)  # type: ignore[arg-type]
        if result.problem:
            log.error("%s: %s", link.site, result.problem)
            if self.metrics is not None:
                self.metrics.rejected.labels(link.site, "snapshot_incomplete").inc()
        if self.metrics is not None:
            for category, count in result.received.items():
                self.metrics.received.labels(link.site, category).inc(count)
        log.info("%s: received %d record(s), applied %d, skipped %d duplicate(s)%s", link.site,
                 sum(result.received.values()), sum(result.applied.values()), result.skipped,
                 f", swept {result.swept}" if result.swept else "")

    def _rejected(self, site: str, exc: RejectedChange, decoded: ChangesBody | ControlBody | None,
                  now: float) -> None:
        count = len(decoded.changes) if isinstance(decoded, ChangesBody) and decoded.changes else 1
        log.warning("rejected a message from %s to the dead-letter queue (%s): %s", site, exc.reason, exc)
        if self.metrics is not None:
            self.metrics.rejected.labels(site, exc.reason).inc(count)
        try:
            with self.rt.engine.begin() as conn:
                linklog.write(conn, now, site, "receive", f"rejected a message ({exc.reason}): {exc}")
        except SQLAlchemyError as db_exc:
            log.error("could not write the link log: %s", str(db_exc).splitlines()[0])
