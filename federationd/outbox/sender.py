"""One send to one partner: a snapshot if one is due, then every pending change, each batch confirmed.

Up to `SEND_WINDOW` batches await their confirm while the next is read and encoded (broker/confirms.py). A
batch is marked sent (the link's watermark moves) only once the partner's broker confirmed it and every batch
before it; a nack, a return or a lost connection leaves the watermark at the last batch confirmed in order, and
the next send starts after it. A crash between the confirm and the mark resends the batch; the receiver skips
the duplicates.
"""

from __future__ import annotations

import functools
import logging
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import Connection, select, text, update

from federationd import controls, linklog, links, wire
from federationd.bounds import MAX_RECORD_BYTES
from federationd.broker.cancel import Cancel
from federationd.broker.endpoints import Endpoints
from federationd.broker.publisher import Publisher
from federationd.categories import CATEGORIES, window_start
from federationd.errors import LinkError
from federationd.metrics import Observer
from federationd.outbox.batches import Batch, next_batch, snapshot_batches
from federationd.runtime import Runtime
from federationd.schema import links as links_table
from federationd.store import bump_epoch, load_site_state, reading
from federationd.tokens import iso

log = logging.getLogger(__name__)

QUIET_CONTROLS = {"watermark", "hello"}  # routine acknowledgements: not worth a link-log row each


@dataclass
class SendReport:
    sent: Counter[str] = field(default_factory=Counter)
    messages: int = 0
    snapshot: bool = False


def send(rt: Runtime, partner: str, metrics: Observer | None = None, data: bool = True,
         cancel: Cancel | None = None) -> SendReport:
    """Send the waiting control messages and, with `data`, the snapshot if due and every pending change;
    raise TransportError (naming the partner) if its broker is unreachable, SendCancelled once `cancel` is
    cancelled from another thread (what was confirmed before stays marked sent, nothing else)."""
    with reading(rt.engine) as conn:
        link = links.require(conn, partner)
        waiting = controls.waiting(conn, partner)
    report = SendReport()
    data = data and link.state == links.LINKED
    if not data and not waiting:
        return report
    if not (link.remote_user and link.remote_password):
        raise LinkError(f"no credential for {partner!r}'s broker")
    endpoint = Endpoints.parse(link.public_url).with_credentials(link.remote_user, link.remote_password)
    publisher = rt.publisher(endpoint, partner)
    if cancel is not None:
        publisher.watch(cancel)
    with publisher:
        for control in waiting:
            message = wire.control_body(rt.home, control.kind, **control.fields)
            publisher.publish(wire.encode("control", message), rt.home)
            report.messages += 1
            with rt.engine.begin() as conn:
                controls.delivered(conn, control.id)
                if control.kind in controls.ACCESS_CONTROLS:
                    _access_confirmed(conn, rt.now(), partner, control.kind)
                elif control.kind not in QUIET_CONTROLS:
                    linklog.write(conn, rt.now(), partner, "send", f"told the partner: {control.kind}")
        if data:
            if link.snapshot_due:
                _snapshot(rt, publisher, partner, report)
            _changes(rt, publisher, partner, report)
    if link.state == links.STOPPED:  # the release is delivered: the partner's credential is of no more use
        with rt.engine.begin() as conn:
            links.change(conn, partner, remote_user=None, remote_password=None)
    observer = metrics if metrics is not None else Observer()
    for category, count in report.sent.items():
        observer.records_sent(partner, category, count)
    return report


def _access_confirmed(conn: Connection, now: float, partner: str, kind: str) -> None:
    """The partner's broker confirmed our visit or accept rules: note when (`status`, the link log)."""
    links.change(conn, partner, access_synced_at=now)
    what = "visit rules" if kind == "visit_policy" else "accept rules"
    linklog.write(conn, now, partner, "send", f"access settings sync confirmed: our {what} reached the partner's "
                  f"broker at {iso(now)}")


def _publish(rt: Runtime, publisher: Publisher, kind: str, epoch: int, batch: Batch, report: SendReport,
             snapshot: dict[str, object] | None = None, on_confirmed: Callable[[], None] | None = None) -> None:
    """Publish `batch` without waiting for its confirm; `on_confirmed` runs once it (and all before) are."""
    message = wire.encode_changes(kind, rt.home, epoch, batch.changes, batch.first, batch.last, snapshot)
    publisher.stream(message, rt.home, on_confirmed)
    report.messages += 1
    report.sent.update(batch.counts)


def _changes(rt: Runtime, publisher: Publisher, partner: str, report: SendReport) -> None:
    transport = rt.config.transport
    with reading(rt.engine) as conn:
        cursor = links.require(conn, partner).sent_seq
    while True:
        with reading(rt.engine) as conn:
            epoch = load_site_state(conn).epoch
            batch = next_batch(conn, rt.home, cursor, transport.batch_records, transport.batch_bytes)
        if batch is None:
            break
        cursor = batch.last
        mark = functools.partial(_mark_sent, rt, partner, batch)
        if batch.changes:
            _publish(rt, publisher, "changes", epoch, batch, report, on_confirmed=mark)
        else:  # only oversized records: nothing to publish, marked once everything before is confirmed
            publisher.then(mark)
        _log_oversized(partner, batch)
    publisher.drain()


def _mark_sent(rt: Runtime, partner: str, batch: Batch) -> None:
    """The broker confirmed `batch` and every batch before it: move the watermark past it."""
    now = rt.now()
    with rt.engine.begin() as conn:
        links.change(conn, partner, sent_seq=batch.last, last_send_at=now)
        for category, count in sorted(batch.counts.items()):
            linklog.write(conn, now, partner, "send", f"sent {count} {category} record(s)", category)


def _log_oversized(partner: str, batch: Batch) -> None:
    for name in batch.oversized:  # stored before capture refused them: they can never be sent
        log.error("not sending %s to %s: its data is over the bound of %d bytes per record (change it at the host)",
                  name, partner, MAX_RECORD_BYTES)


def _snapshot_requests(conn: Connection, partner: str) -> int:
    """How many snapshots were requested so far (a trigger counts every `SET snapshot_due = true`)."""
    return int(conn.execute(select(links_table.c.snapshot_requests).where(links_table.c.site == partner))
               .scalar_one())


def _clear_snapshot_due(conn: Connection, partner: str, requests: int) -> bool:
    """Clear snapshot_due unless a newer request arrived since the snapshot began (compare and clear, in SQL)."""
    cleared = conn.execute(update(links_table).where(links_table.c.site == partner,
                                                      links_table.c.snapshot_requests == requests)
                           .values(snapshot_due=False))
    return bool(cleared.rowcount)


def _snapshot(rt: Runtime, publisher: Publisher, partner: str, report: SendReport) -> None:
    """A full snapshot under a new epoch; the final part carries the counts the receiver checks."""
    transport = rt.config.transport
    with rt.engine.begin() as conn:
        epoch = bump_epoch(conn, rt.now())
        # The bump took the site_state row lock, so every version up to next_seq is committed.
        covered = int(conn.execute(text("SELECT next_seq FROM site_state WHERE id = 1")).scalar_one())
        requests = _snapshot_requests(conn, partner)
    since = window_start(datetime.fromtimestamp(rt.now(), UTC).date())
    snapshot_id, counts, part = uuid.uuid4().hex, Counter[str](), 0
    header = {"id": snapshot_id, "categories": list(CATEGORIES), "since": since.isoformat()}
    for batch in snapshot_batches(rt.engine, rt.home, transport.batch_records, transport.batch_bytes, since):
        part += 1
        _publish(rt, publisher, "snapshot", epoch, batch, report, {**header, "part": part, "final": False})
        _log_oversized(partner, batch)
        counts.update(batch.counts)
    final = {**header, "part": part + 1, "final": True, "counts": dict(counts)}
    _publish(rt, publisher, "snapshot", epoch, Batch(), report, final)
    publisher.drain()  # every part confirmed before the snapshot counts as sent
    now = rt.now()
    with rt.engine.begin() as conn:
        links.change(conn, partner, sent_seq=covered, last_send_at=now)
        if not _clear_snapshot_due(conn, partner, requests):
            log.info("%s asked for another snapshot while this one was sent: it follows", partner)
        linklog.write(conn, now, partner, "send", f"sent a full snapshot of {sum(counts.values())} record(s) "
                      f"in {part + 1} part(s) (epoch {epoch})")
    report.snapshot = True
    log.info("sent %s a snapshot of %d records (epoch %d)", partner, sum(counts.values()), epoch)
