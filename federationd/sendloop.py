"""The send loop: each tick, start a send to every partner that is due (federationd/due.py decides), on a small
pool of workers; record the outcome on the link (backoff after a failure).

A worker never lets an exception vanish: a partner's refusal or an unreachable broker, and any unexpected
exception as well, is logged with the partner, counted in `federationd_send_errors_total` and backed off like a
partner failure. A database failure of ours is not the partner's fault: no backoff, the next tick retries.

`federationd clear` reaches a send in flight through the database, like pause and send-now: it clears the link's
sending mark, and the next tick cancels the send whose mark is gone (federationd/broker/cancel.py): its
connection is closed, what the partner's broker had not confirmed stays pending, and the worker is free.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy.exc import SQLAlchemyError

from federationd import changemark, linklog, links
from federationd.broker.cancel import Cancel
from federationd.due import decide, wake_at
from federationd.errors import FederationError, Fenced, SendCancelled, StoreError
from federationd.metrics import Metrics
from federationd.outbox import sender
from federationd.outbox.importer import lock_held
from federationd.retry import send_backoff_seconds
from federationd.runtime import Runtime
from federationd.status import LinkStatus, figures, timing
from federationd.store import reading

log = logging.getLogger(__name__)


class SendLoop:
    def __init__(self, rt: Runtime, metrics: Metrics, workers: int) -> None:
        self.rt = rt
        self.metrics = metrics
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="send")
        self._in_flight: set[str] = set()
        self._cancels: dict[str, Cancel] = {}  # sends running, whose sending mark is committed
        self._lock = threading.Lock()
        # what the last full read of the figures saw, and when it said a send falls due next (see tick)
        self._seen: tuple[object, ...] | None = None
        self._seen_config: object = None
        self._wake = 0.0

    def tick(self, paused: bool = False) -> None:
        """Start every send that is due now (raises the database's errors: the main loop reports them).

        Every link's figures are read only when something they depend on changed (the change mark, the config,
        the bulk lock, the sends in flight) or the earliest due time they gave has come: an idle tick is a few
        small reads whatever the number of links. A `clear` moves the mark (it takes a sending mark away)."""
        now, config = self.rt.now(), self.rt.config
        with self._lock:  # taken before the read: each of these marks is committed, so the read sees it
            marked = dict(self._cancels)
        if paused:  # the whole site paused: nothing starts, but a send still in flight can be cleared
            if marked:
                with reading(self.rt.engine) as conn:
                    self._abandon_cleared(figures(conn, config, now), marked)
            return
        with reading(self.rt.engine) as conn:
            locked = lock_held(conn, now)
            mark = changemark.read(conn)  # before the figures: a change in between only costs one more read
            with self._lock:
                key = (mark, locked, frozenset(self._in_flight))
            if key == self._seen and config is self._seen_config and now < self._wake:
                return
            rows = figures(conn, config, now)
        self._abandon_cleared(rows, marked)
        with self._lock:
            decision = decide(rows, now, bulk_locked=locked, in_flight=set(self._in_flight))
            self._in_flight.update(due.site for due in decision.start)
            self._seen, self._seen_config = (mark, locked, frozenset(self._in_flight)), config
            self._wake = wake_at(rows, self._in_flight)
        for site in decision.defer:
            self._defer(site, now)
        for due in decision.start:
            self._pool.submit(self._send, due.site, due.data)

    def shutdown(self) -> None:
        """Let the sends in flight finish (each batch is confirmed or stays pending), start no new one."""
        self._pool.shutdown(wait=True, cancel_futures=True)

    def idle(self) -> bool:
        with self._lock:
            return not self._in_flight

    def _abandon_cleared(self, rows: list[LinkStatus], marked: dict[str, Cancel]) -> None:
        """A send whose sending mark is gone was cleared by the operator: cancel it."""
        for row in rows:
            cancel = marked.get(row.site or "")
            if cancel is not None and not row.sending and not cancel.is_set:
                log.warning("abandoning the send in flight to %s: cleared by the operator", row.site)
                cancel.cancel()

    def _defer(self, site: str, now: float) -> None:
        until = now + timing(self.rt.config).busy_retry_seconds
        with self.rt.engine.begin() as conn:
            links.change(conn, site, deferred_until=until)
        log.info("send to %s waits: a bulk job holds the lock", site)

    def _send(self, site: str, data: bool) -> None:
        """Send what is due to `site`: waiting control messages always, the data only if `data`."""
        rt = self.rt
        cancel = Cancel()
        try:
            with rt.engine.begin() as conn:  # the mark `status` shows, and that `clear` takes away
                if data:
                    links.change(conn, site, sending_since=rt.now(), send_now=False, deferred_until=None)
                else:
                    links.change(conn, site, sending_since=rt.now())
            with self._lock:
                self._cancels[site] = cancel
            report = sender.send(rt, site, self.metrics, data=data, cancel=cancel)
            with rt.engine.begin() as conn:
                links.change(conn, site, failures=0, retry_at=None, last_error=None)
            if report.messages:
                log.info("sent %s %d record(s) in %d message(s)", site, sum(report.sent.values()), report.messages)
        except Fenced as exc:  # we lost the active lock mid-send: what was not confirmed stays pending
            log.warning("%s", exc)
        except SendCancelled as exc:  # `clear`: no backoff, the schedule is the operator's now
            log.warning("%s; what %s's broker had not confirmed stays pending for the next send", exc, site)
        except (StoreError, SQLAlchemyError) as exc:  # ours, not the partner's: no backoff, the next tick retries
            log.error("send to %s interrupted by the database: %s", site, str(exc).splitlines()[0])
        except FederationError as exc:  # the partner's broker refused or is unreachable, or the link has no way
            self._failed(site, exc)
        except Exception as exc:  # a bug or a value nobody foresaw: never silent, never retried every tick
            log.exception("send to %s failed unexpectedly", site)
            self._failed(site, exc, unexpected=True)
        finally:
            self._clear_mark(site)

    def _clear_mark(self, site: str) -> None:
        with self._lock:
            self._cancels.pop(site, None)
        try:
            with self.rt.engine.begin() as conn:
                links.change(conn, site, sending_since=None)
        except SQLAlchemyError as exc:
            log.error("could not clear the sending mark of %s: %s", site, str(exc).splitlines()[0])
        finally:
            with self._lock:
                self._in_flight.discard(site)

    def _failed(self, site: str, exc: Exception, unexpected: bool = False) -> None:
        self.metrics.send_failed(site)
        reason = f"unexpected error: {type(exc).__name__}: {exc}" if unexpected else str(exc)
        try:
            now = self.rt.now()
            with reading(self.rt.engine) as conn:
                link = links.require(conn, site)
            failures = link.failures + 1
            delay = send_backoff_seconds(failures, self.rt.config.transport.retry_max.total_seconds())
            log.warning("send to %s failed (attempt %d), next try in %.0fs: %s", site, failures, delay, reason)
            with self.rt.engine.begin() as conn:
                links.change(conn, site, failures=failures, retry_at=now + delay, last_error=reason[:500])
                if failures == 1:
                    linklog.write(conn, now, site, "send", f"send failed, retrying with backoff: {reason[:200]}")
        except (FederationError, SQLAlchemyError) as db_exc:
            log.error("could not record the failed send to %s: %s", site, str(db_exc).splitlines()[0])
