"""`federationd run`: builds the object graph in one place, runs it, tears it down in reverse order.

Threads: the main loop (schedule sends, housekeeping, reload, watchdog), one consumer thread on our own broker,
a small pool of send workers (sends to partners open a connection per send: 200 partners never hold 200
threads or connections). SIGHUP reloads the config (validated first); SIGTERM drains and stops.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import FrameType
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.exc import SQLAlchemyError

from federationd import identity, linklog, links
from federationd.broker.consumer import Consumer
from federationd.config import Config, load_config
from federationd.errors import ConfigError, FederationError, StoreError, TransportError
from federationd.handlers.dispatch import Inbound
from federationd.lifecycle import greet_partners, sync_visit_policies
from federationd.metrics import LinkFigures, Metrics
from federationd.notify import Notifier
from federationd.outbox import rolling, sender
from federationd.outbox.importer import lock_held
from federationd.retry import send_backoff_seconds
from federationd.runtime import Runtime
from federationd.schema import links as link_rows
from federationd.schema import outbox, site_state, tokens, used_tickets
from federationd.status import figures, is_paused, timing
from federationd.store import load_site_state, reading, schema_is_current

log = logging.getLogger(__name__)

TICK_SECONDS = 0.5  # how soon a due send starts; each tick reads every link, so not more often
HOUSEKEEPING_SECONDS = 60.0
POLICY_SYNC_SECONDS = 5.0
DRAIN_SECONDS = 30.0


class Daemon:
    def __init__(self, config_path: Path, config: Config) -> None:
        self.config_path = config_path
        self.rt = Runtime(config)
        self.metrics = Metrics()
        self.notifier = Notifier()
        self.stop = threading.Event()
        self._reload = threading.Event()
        self._in_flight: set[str] = set()
        self._lock = threading.Lock()
        self.guard_reason: str | None = None

    # -- lifecycle -----------------------------------------------------------------------------------------
    def run(self) -> None:
        rt = self.rt
        if not schema_is_current(rt.engine):
            raise StoreError("the database schema is missing or old: run `federationd init`")
        self._check_identity()
        with rt.engine.begin() as conn:  # no send is in flight before we start: a mark left by a crash is stale
            conn.execute(update(link_rows).values(sending_since=None))
        greet_partners(rt)
        self._export_config(rt.config)
        self.metrics.watch(self._figures)
        server = self.metrics.serve(rt.config.metrics.host, rt.config.metrics.port)
        consumer = Consumer(rt, Inbound(rt, self.metrics).handle, self._consumed_partners, self.stop)
        consumer_thread = threading.Thread(target=consumer.run, name="consumer", daemon=True)
        pool = ThreadPoolExecutor(rt.config.transport.send_workers, thread_name_prefix="send")
        previous = self._install_signals()
        try:
            consumer_thread.start()
            self.notifier.send("READY=1", f"STATUS={self._status_line()}")
            log.info("federationd %s running (site %s)", rt.home, self.guard_reason or "active")
            self._loop(pool)
        finally:
            self.notifier.send("STOPPING=1", "STATUS=draining")
            log.info("stopping: finishing in-flight sends and the message being applied")
            self.stop.set()
            pool.shutdown(wait=True, cancel_futures=True)
            consumer_thread.join(DRAIN_SECONDS)
            getattr(server, "shutdown", lambda: None)()
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            rt.dispose()
            log.info("stopped")

    def _install_signals(self) -> dict[signal.Signals, Any]:
        def on_term(_signum: int, _frame: FrameType | None) -> None:
            self.stop.set()

        def on_hup(_signum: int, _frame: FrameType | None) -> None:
            self._reload.set()

        previous: dict[signal.Signals, Any] = {
            signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
        signal.signal(signal.SIGTERM, on_term)
        signal.signal(signal.SIGINT, on_term)
        signal.signal(signal.SIGHUP, on_hup)
        return previous

    def _loop(self, pool: ThreadPoolExecutor) -> None:
        watchdog = self.notifier.watchdog_interval_seconds()
        next_watchdog = next_housekeeping = next_policy_sync = 0.0
        while not self.stop.is_set():
            now = time.monotonic()
            if self._reload.is_set():
                self._reload.clear()
                if self.reload():
                    next_policy_sync = 0.0
            try:
                if now >= next_policy_sync:
                    for site in sync_visit_policies(self.rt):
                        log.info("visit rules for %s changed: telling it", site)
                    next_policy_sync = now + POLICY_SYNC_SECONDS
                self._schedule(pool)
                if now >= next_housekeeping:
                    self._housekeeping()
                    next_housekeeping = now + HOUSEKEEPING_SECONDS
            except (StoreError, SQLAlchemyError) as exc:
                log.error("database unavailable, will retry: %s", str(exc).splitlines()[0])
            if watchdog is not None and now >= next_watchdog:
                self.notifier.send("WATCHDOG=1", f"STATUS={self._status_line()}")
                next_watchdog = now + watchdog
            self.stop.wait(TICK_SECONDS)

    def reload(self) -> bool:
        """Re-read the config; on an invalid file keep the running one and say why."""
        self.notifier.send("RELOADING=1", f"MONOTONIC_USEC={time.monotonic_ns() // 1000}")
        try:
            config = load_config(self.config_path)
        except ConfigError as exc:
            log.error("config reload refused, keeping the running config: %s", exc)
            self.metrics.reload_ok.set(0)
            self.notifier.send("READY=1", f"STATUS=config reload failed: {exc}")
            return False
        for section in ("site", "state_dir", "database", "broker", "tls", "metrics", "transport"):
            if getattr(config, section) != getattr(self.rt.config, section):
                log.warning("config: a change of %r takes effect at the next restart", section)
        self.rt.config = self.rt.config.model_copy(update={"paused": config.paused, "links": config.links,
                                                           "schedule": config.schedule, "log": config.log})
        self._check_identity()  # `adopt --i-am-the-site` followed by a reload lifts the guard
        self._export_config(self.rt.config)
        self.metrics.reload_ok.set(1)
        log.info("config reloaded from %s", self.config_path)
        self.notifier.send("READY=1", f"STATUS={self._status_line()}")
        return True

    # -- the guard against a copied database (SPEC 3.1) -----------------------------------------------------
    def _check_identity(self) -> None:
        mine = identity.installation_id(self.rt.config.state_dir)
        with reading(self.rt.engine) as conn:
            theirs = load_site_state(conn).installation_id
        if mine == theirs:
            if self.guard_reason is not None:
                log.info("the database now carries this installation's identity: the guard pause is lifted")
            self.guard_reason = None
        else:
            self.guard_reason = ("the database belongs to another installation (a copy of another server?): "
                                 "the whole site stays paused until `federationd adopt --i-am-the-site`")
            log.error("%s", self.guard_reason)

    def site_paused(self) -> bool:
        """Paused site-wide: in the YAML, by `federationd pause`, or by the copied-database guard."""
        if self.rt.config.paused or self.guard_reason is not None:
            return True
        with reading(self.rt.engine) as conn:
            return load_site_state(conn).paused

    def _export_config(self, config: Config) -> None:
        self.metrics.quiet_period.set(config.schedule.quiet_period.total_seconds())
        self.metrics.max_delay.set(config.schedule.max_delay.total_seconds())

    def _status_line(self) -> str:
        if self.guard_reason:
            return f"paused: {self.guard_reason}"
        return "paused (site-wide)" if self.site_paused() else "running"

    # -- what the consumer reads and what the send loop sends -----------------------------------------------
    def _consumed_partners(self) -> set[str]:
        if self.site_paused():
            return set()
        with reading(self.rt.engine) as conn:
            return {link.site for link in links.all_links(conn)
                    if link.consumes and not is_paused(self.rt.config, link)}

    def _schedule(self, pool: ThreadPoolExecutor) -> None:
        paused = self.site_paused()
        self.metrics.paused.set(1 if paused else 0)
        if paused:
            return
        now = self.rt.now()
        with reading(self.rt.engine) as conn:
            rows = figures(conn, self.rt.config, now)
            locked = lock_held(conn, now)
        for row in rows:
            if row.site is None or row.paused:
                continue
            data = row.next_send_at is not None and row.next_send_at <= now
            if data and locked and not (row.send_now or row.snapshot_due):
                self._defer(row.site, now)
                data = False
            if not data and (row.control_due is None or row.control_due > now):
                continue
            with self._lock:
                if row.site in self._in_flight:
                    continue
                self._in_flight.add(row.site)
            pool.submit(self._send, row.site, data)

    def _defer(self, site: str, now: float) -> None:
        until = now + timing(self.rt.config).busy_retry_seconds
        with self.rt.engine.begin() as conn:
            links.change(conn, site, deferred_until=until)
        log.info("send to %s waits: a bulk job holds the lock", site)

    def _send(self, site: str, data: bool) -> None:
        """Send what is due to `site`: waiting control messages always, the data only if `data`."""
        rt = self.rt
        try:
            if data:
                with rt.engine.begin() as conn:
                    links.change(conn, site, sending_since=rt.now(), send_now=False, deferred_until=None)
            report = sender.send(rt, site, self.metrics, data=data)
            with rt.engine.begin() as conn:
                links.change(conn, site, failures=0, retry_at=None, last_error=None)
            if report.messages:
                log.info("sent %s %d record(s) in %d message(s)", site, sum(report.sent.values()), report.messages)
        except (StoreError, SQLAlchemyError) as exc:  # ours, not the partner's: no backoff, the next tick retries
            log.error("send to %s interrupted by the database: %s", site, str(exc).splitlines()[0])
        except FederationError as exc:  # the partner's broker refused or is unreachable, or the link has no way
            self._failed(site, exc)
        finally:
            try:
                with rt.engine.begin() as conn:
                    links.change(conn, site, sending_since=None)
            except SQLAlchemyError as exc:
                log.error("could not clear the sending mark of %s: %s", site, str(exc).splitlines()[0])
            with self._lock:
                self._in_flight.discard(site)

    def _failed(self, site: str, exc: FederationError) -> None:
        now = self.rt.now()
        with reading(self.rt.engine) as conn:
            link = links.require(conn, site)
        failures = link.failures + 1
        delay = send_backoff_seconds(failures, self.rt.config.transport.retry_max.total_seconds())
        self.metrics.send_errors.labels(site).inc()
        log.warning("send to %s failed (attempt %d), next try in %.0fs: %s", site, failures, delay, exc)
        with self.rt.engine.begin() as conn:
            links.change(conn, site, failures=failures, retry_at=now + delay, last_error=str(exc))
            if failures == 1:
                linklog.write(conn, now, site, "send", f"send failed, retrying with backoff: {exc}")

    # -- housekeeping ------------------------------------------------------------------------------------
    def _housekeeping(self) -> None:
        rt = self.rt
        now = rt.now()
        with rt.engine.begin() as conn:
            purged = linklog.purge(conn, now - rt.config.log.retention.total_seconds())
            live = [link for link in links.all_links(conn) if link.state == links.LINKED and not link.snapshot_due]
            floor = min((link.sent_seq for link in live), default=None)
            if floor is None:
                floor = conn.execute(select(site_state.c.next_seq)).scalar_one()
            conn.execute(delete(outbox).where(outbox.c.seq <= floor))
            expired = conn.execute(select(tokens.c.id, tokens.c.broker_user).where(
                tokens.c.expires_at <= now, tokens.c.revoked.is_(False))).all()
            conn.execute(delete(used_tickets).where(used_tickets.c.expires_at < now - 3600))
            if rolling.due(conn, now):
                rolling.roll(conn, rt.home, now)
        if purged:
            log.info("purged %d link log row(s) older than the retention", purged)
        for token_id, user in expired:
            try:
                rt.management.delete_user(user)
            except TransportError as exc:
                log.warning("could not revoke expired link token %s yet: %s", token_id, exc)
                continue
            with rt.engine.begin() as conn:
                conn.execute(update(tokens).where(tokens.c.id == token_id).values(revoked=True))
            log.info("link token %s expired unused and was revoked", token_id)

    def _figures(self) -> list[LinkFigures]:
        now = self.rt.now()
        with reading(self.rt.engine) as conn:
            rows = figures(conn, self.rt.config, now, guard_paused=self.guard_reason is not None)
        depths = self._queue_depths()
        result = []
        for row in rows:
            if row.site is None or row.state == links.STOPPED:
                continue
            self.metrics.send_errors.labels(row.site)  # every link's counter exists from 0, for increase()
            result.append(LinkFigures(row.site, row.pending_records, row.lag_seconds, row.next_send_at,
                                      row.last_send_at, row.paused, depths.get(row.site), row.up))
        return result

    def _queue_depths(self) -> dict[str, int]:
        try:
            return self.rt.management.queue_depths()
        except TransportError as exc:
            log.warning("could not read inbound queue depths: %s", exc)
            return {}
