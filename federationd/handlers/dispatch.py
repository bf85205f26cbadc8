"""The one entry point for every inbound message: decode, check origin, apply in one transaction, decide.

Returns what the consumer must do with the delivery: ACK after the commit, REJECT (to the dead-letter queue)
for a message that can never apply, BACK_OFF for a transient failure of ours (the database is down).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from sqlalchemy import Connection
from sqlalchemy.exc import DataError, IntegrityError, SQLAlchemyError

from federationd import controls, linklog, links, wire
from federationd.bounds import clip, quoted
from federationd.broker.delivery import Delivery, Outcome
from federationd.broker.provisioning import partner_user
from federationd.categories import CATEGORIES
from federationd.errors import RejectedChange, StoreError
from federationd.handlers import control, parking
from federationd.handlers.changes import Applied, apply_changes, log_applied
from federationd.handlers.snapshots import apply_snapshot
from federationd.linklog import MAX_MESSAGE_CHARS
from federationd.metrics import Observer
from federationd.runtime import Runtime
from federationd.wire import ChangesBody, ControlBody

log = logging.getLogger(__name__)


class Inbound:
    def __init__(self, rt: Runtime, metrics: Observer | None = None) -> None:
        self.rt = rt
        self.metrics = metrics if metrics is not None else Observer()  # the daemon passes its Metrics

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
            problem = str(exc.orig).splitlines()[0] if exc.orig else str(exc)
            self._rejected(site, RejectedChange("invalid", f"the database refused its values: {clip(problem)}"),
                           decoded, now)
            return Outcome.REJECT
        except (StoreError, SQLAlchemyError) as exc:
            log.error("could not apply a %s message from %s, will retry: %s", clip(delivery.kind, 20), site,
                      clip(str(exc).splitlines()[0]))
            return Outcome.BACK_OFF
        except Exception:
            log.exception("unexpected error applying a %s message from %s; dead-lettered", clip(delivery.kind, 20),
                          site)
            self._rejected(site, RejectedChange("internal_error", "unexpected error (see the daemon log)"),
                           decoded, now)
            return Outcome.REJECT
        if after is not None:
            try:
                after()
            except Exception:
                log.exception("follow-up after a %s message from %s failed", clip(delivery.kind, 20), site)
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
                    raise RejectedChange("unknown_control", f"unknown control kind {quoted(decoded.control['kind'])}")
                if control.stale(conn, link, decoded, now):  # an earlier incarnation's, left in the queue
                    return None
                after = handler(rt, conn, decoded, now)
                self._after_control(conn, partner, now)
                return after
            control.check_epoch(decoded, now)
            if link.state != links.LINKED:
                # Data before `start` (the partner's initial snapshot overtook it): kept until start applies.
                parking.park(conn, partner, str(delivery.kind), delivery.content_encoding, delivery.body, now)
                linklog.write(conn, now, partner, "receive", f"a {delivery.kind} message arrived before the link "
                              "started: kept, it applies when the start does")
                log.info("%s: a %s message arrived before the link started; kept until it does", partner,
                         delivery.kind)
                return None
            self._unpark(conn, partner, now)
            self._data(conn, partner, decoded, now)
        return None

    def _after_control(self, conn: Connection, partner: str, now: float) -> None:
        """Once a control made the link `linked`, apply what waited for it; if it ended the link, drop that."""
        link = links.get(conn, partner)
        if link is not None and link.state == links.LINKED:
            self._unpark(conn, partner, now)
        elif link is None or not link.consumes:
            dropped = parking.drop(conn, partner)
            if dropped:
                linklog.write(conn, now, partner, "receive", f"{dropped} message(s) that waited for the link to "
                              "start were dropped: it did not start")

    def _unpark(self, conn: Connection, partner: str, now: float) -> None:
        if not parking.waiting(conn, partner):
            return
        for parked in parking.take(conn, partner):
            decoded = wire.decode(parked.kind, parked.content_encoding, parked.body)  # it decoded when parked
            assert isinstance(decoded, ChangesBody)
            self._data(conn, partner, decoded, now)
            log.info("%s: applied a %s message that waited for the link to start", partner, parked.kind)

    def _data(self, conn: Connection, partner: str, body: ChangesBody, now: float) -> None:
        apply = apply_snapshot if body.snapshot is not None else apply_changes
        result = apply(conn, body, now)
        link = links.require(conn, partner)
        self._received(conn, link, body, result, now)

    def _received(self, conn: Connection, link: links.Link, body: ChangesBody, result: Applied,
                  now: float) -> None:
        epoch, seq = link.received_epoch, link.received_seq
        epoch, seq = max((epoch, seq), (body.epoch, body.last))
        links.change(conn, link.site, last_receive_at=now, received_epoch=epoch, received_seq=seq)
        # Tell the sender how far we hold its data: a sender whose database went back in time notices it.
        controls.replace(conn, link.site, "watermark", now, epoch=epoch, seq=seq)
        log_applied(conn, link.site, "snapshot" if body.snapshot else "changes", result, now)
        if result.problem:
            log.error("%s: %s", link.site, result.problem)
            self.metrics.records_rejected(link.site, "snapshot_incomplete", 1)
        if result.rejected:
            log.warning("%s: skipped %d bad record(s) of a %s message (%s); the rest applied. First: %s",
                        link.site, sum(result.rejected.values()), "snapshot" if body.snapshot else "changes",
                        ", ".join(f"{n} {reason}" for reason, n in sorted(result.rejected.items())),
                        result.notes[0] if result.notes else "?")
        for reason, count in result.rejected.items():
            self.metrics.records_rejected(link.site, reason, count)
        for category, count in result.received.items():
            if category in CATEGORIES:  # a partner's unknown category is no label of ours
                self.metrics.records_received(link.site, category, count)
        log.info("%s: received %d record(s), applied %d, skipped %d duplicate(s)%s%s", link.site,
                 sum(result.received.values()), sum(result.applied.values()), result.skipped,
                 f", swept {result.swept}" if result.swept else "",
                 f", snapshot {result.completed} complete" if result.completed else "")

    def _rejected(self, site: str, exc: RejectedChange, decoded: ChangesBody | ControlBody | None,
                  now: float) -> None:
        count = len(decoded.changes) if isinstance(decoded, ChangesBody) and decoded.changes else 1
        log.warning("rejected a message from %s to the dead-letter queue (%s): %s", site, exc.reason,
                    clip(str(exc), MAX_MESSAGE_CHARS))
        self.metrics.records_rejected(site, exc.reason, count)
        try:
            with self.rt.engine.begin() as conn:
                linklog.write(conn, now, site, "receive", f"rejected a message ({exc.reason}): "
                              f"{clip(str(exc), MAX_MESSAGE_CHARS)}")
        except SQLAlchemyError as db_exc:
            log.error("could not write the link log: %s", str(db_exc).splitlines()[0])
