"""One send to one partner: a snapshot if one is due, then every pending change, each batch confirmed.

A batch is marked sent (the link's watermark moves) only after the partner's broker confirmed it. A crash
between the confirm and the mark resends the batch; the receiver skips the duplicates.
"""

from __future__ import annotations

import logging
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import text

from federationd import controls, linklog, links, wire
from federationd.broker.endpoints import Endpoint
from federationd.broker.publisher import Publisher
from federationd.categories import CATEGORIES, window_start
from federationd.errors import LinkError
from federationd.metrics import Metrics
from federationd.outbox.batches import Batch, next_batch, snapshot_batches
from federationd.runtime import Runtime
from federationd.store import bump_epoch, load_site_state, reading

log = logging.getLogger(__name__)

QUIET_CONTROLS = {"watermark", "hello"}  # routine acknowledgements: not worth a link-log row each


@dataclass
class SendReport:
    sent: Counter[str] = field(default_factory=Counter)
    messages: int = 0
    snapshot: bool = False


def send(rt: Runtime, partner: str, metrics: Metrics | None = None, data: bool = True) -> SendReport:
    """Send the waiting control messages and, with `data`, the snapshot if due and every pending change;
    raise TransportError (naming the partner) if its broker is unreachable."""
    with reading(rt.engine) as conn:
        link = links.require(conn, partner)
        waiting = controls.waiting(conn, partner)
    report = SendReport()
    data = data and link.state == links.LINKED
    if not data and not waiting:
        return report
    if not (link.remote_user and link.remote_password):
        raise LinkError(f"no credential for {partner!r}'s broker")
    endpoint = Endpoint.parse(link.public_url).with_credentials(link.remote_user, link.remote_password)
    with rt.publisher(endpoint, partner) as publisher:
        for control in waiting:
            message = wire.control_body(rt.home, control.kind, **control.fields)
            publisher.publish(wire.encode("control", message), rt.home)
            report.messages += 1
            with rt.engine.begin() as conn:
                controls.delivered(conn, control.id)
                if control.kind not in QUIET_CONTROLS:
                    linklog.write(conn, rt.now(), partner, "send", f"told the partner: {control.kind}")
        if data:
            if link.snapshot_due:
                _snapshot(rt, publisher, partner, report)
            _changes(rt, publisher, partner, report)
    if link.state == links.STOPPED:  # the release is delivered: the partner's credential is of no more use
        with rt.engine.begin() as conn:
            links.change(conn, partner, remote_user=None, remote_password=None)
    if metrics is not None:
        for category, count in report.sent.items():
            metrics.sent.labels(partner, category).inc(count)
    return report


def _publish(rt: Runtime, publisher: Publisher, kind: str, epoch: int, batch: Batch, report: SendReport,
             snapshot: dict[str, object] | None = None) -> None:
    message = wire.encode_changes(kind, rt.home, epoch, batch.changes, batch.first, batch.last, snapshot)
    publisher.publish(message, rt.home)
    report.messages += 1
    report.sent.update(batch.counts)


def _changes(rt: Runtime, publisher: Publisher, partner: str, report: SendReport) -> None:
    transport = rt.config.transport
    while True:
        with reading(rt.engine) as conn:
            sent_seq = links.require(conn, partner).sent_seq
            epoch = load_site_state(conn).epoch
            batch = next_batch(conn, rt.home, sent_seq, transport.batch_records, transport.batch_bytes)
        if batch is None:
            return
        _publish(rt, publisher, "changes", epoch, batch, report)
        now = rt.now()
        with rt.engine.begin() as conn:
            links.change(conn, partner, sent_seq=batch.last, last_send_at=now)
            for category, count in sorted(batch.counts.items()):
                linklog.write(conn, now, partner, "send", f"sent {count} {category} record(s)", category)


def _snapshot(rt: Runtime, publisher: Publisher, partner: str, report: SendReport) -> None:
    """A full snapshot under a new epoch; the final part carries the counts the receiver checks."""
    transport = rt.config.transport
    with rt.engine.begin() as conn:
        epoch = bump_epoch(conn)
        # The bump took the site_state row lock, so every version up to next_seq is committed.
        covered = int(conn.execute(text("SELECT next_seq FROM site_state WHERE id = 1")).scalar_one())
    since = window_start(datetime.fromtimestamp(rt.now(), UTC).date())
    snapshot_id, counts, part = uuid.uuid4().hex, Counter[str](), 0
    header = {"id": snapshot_id, "categories": list(CATEGORIES), "since": since.isoformat()}
    for batch in snapshot_batches(rt.engine, rt.home, transport.batch_records, transport.batch_bytes, since):
        part += 1
        _publish(rt, publisher, "snapshot", epoch, batch, report, {**header, "part": part, "final": False})
        counts.update(batch.counts)
    final = {**header, "part": part + 1, "final": True, "counts": dict(counts)}
    _publish(rt, publisher, "snapshot", epoch, Batch(), report, final)
    now = rt.now()
    with rt.engine.begin() as conn:
        links.change(conn, partner, sent_seq=covered, snapshot_due=False, last_send_at=now)
        linklog.write(conn, now, partner, "send", f"sent a full snapshot of {sum(counts.values())} record(s) "
                      f"in {part + 1} part(s) (epoch {epoch})")
    report.snapshot = True
    log.info("sent %s a snapshot of %d records (epoch %d)", partner, sum(counts.values()), epoch)
