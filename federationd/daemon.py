"""`federationd run`: builds the object graph in one place, runs it, tears it down in reverse order.

Threads: the main loop (the active lock, the send loop's tick, housekeeping, queue depths, reload, watchdog),
one consumer I/O thread and its apply worker on our own broker (broker/consumer.py), and a small pool of send
workers (sendloop.py; a send opens its own connection: 200 partners never hold 200 threads or connections).

One active daemon per site (active.py): until this daemon holds the site's lock it is a standby: it serves
metrics and /healthz, answers the watchdog, and its lock keeper (a thread of its own) tries the lock each second.
Once acting it greets the partners, consumes and sends; if it loses the lock (PostgreSQL: the lock session ended,
or its lease ran out) it stops sending and consuming at once (fencing) and goes back to standby. SIGHUP reloads
the config (validated first); SIGTERM drains and stops.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any

from sqlalchemy import update
from sqlalchemy.exc import SQLAlchemyError

from federationd import housekeeping, identity, links, logsetup, revocations, site_details, usage
from federationd.active import Keeper, daemon_label, make_lock
from federationd.broker.consumer import Consumer
from federationd.config import Config, load_config, unknown_partners
from federationd.errors import ConfigError, FederationError, StoreError, TransportError
from federationd.handlers.dispatch import Inbound
from federationd.lifecycle import greet_partners, sync_access_policies
from federationd.metrics import LinkFigures, Metrics
from federationd.notify import Notifier
from federationd.outage import Outage
from federationd.runtime import Runtime
from federationd.schema import links as link_rows
from federationd.sendloop import SendLoop
from federationd.status import figures, is_paused
from federationd.store import load_site_state, reading, schema_is_current
from federationd.supervision import ConsumerThread, Heartbeat, healthy

log = logging.getLogger(__name__)

TICK_SECONDS = 0.5  # how soon a due send starts; each tick reads every link, so not more often
HOUSEKEEPING_SECONDS = 60.0
POLICY_SYNC_SECONDS = 5.0
DEPTHS_SECONDS = 15.0  # how often the main loop reads the broker's queue depths for the metrics
DRAIN_SECONDS = 30.0


class Daemon:
    def __init__(self, config_path: Path, config: Config) -> None:
        self.config_path = config_path
        self.rt = Runtime(config)
        self.metrics = Metrics()
        self.notifier = Notifier()
        self.stop = threading.Event()
        self._reload = threading.Event()
        self._active = threading.Event()  # holding the lock: sends and the consumer may run (fencing)
        self._acting = False  # the main loop's side: became active and not yet back to standby
        self._lost_why: str | None = None
        self.rt.may_send = self._may_act
        self.guard_reason: str | None = None
        self._keeper = Keeper(make_lock(self.rt.engine, config.state_dir), on_lost=self._lost,
                              on_error=self._lock_unreachable, on_ok=self._lock_reachable)
        self._consumer = ConsumerThread(self._make_consumer)
        self._sends = SendLoop(self.rt, self.metrics, config.transport.send_workers)
        self._heartbeat = Heartbeat(config.state_dir)
        self._database = Outage(log, "our database")
        self._management = Outage(log, "our broker's management API")
        self._main_beat = time.monotonic()
        self._database_ok = True
        self._said_standby = False
        self._orphans = revocations.OrphanSweep()

    # -- lifecycle -----------------------------------------------------------------------------------------
    def run(self) -> None:
        rt = self.rt
        if not schema_is_current(rt.engine):
            raise StoreError("the database schema is missing or old: run `federationd init`")
        self._check_identity()
        self._export_config(rt.config)
        self.metrics.paused.set(1 if self.site_paused() else 0)  # true from the first scrape, not the first tick
        self.metrics.set_active(False)
        self.metrics.consumer_up(False)
        self.metrics.watch(self._figures)
        self.metrics.watch_limits(lambda: usage.exceeded(self.rt.engine, self.rt.config))
        server = self.metrics.serve(rt.config.metrics.host, rt.config.metrics.port, self.health)
        previous = self._install_signals()
        self._keeper.start()
        try:
            self.notifier.send("READY=1", f"STATUS={self._status_line()}")
            log.info("federationd %s running (site %s)", rt.home, self.guard_reason or "not paused")
            self._loop()
        finally:
            self.notifier.send("STOPPING=1", "STATUS=draining")
            log.info("stopping: finishing in-flight sends and the message being applied")
            self.stop.set()
            self._sends.shutdown()
            self._consumer.stop(DRAIN_SECONDS)
            self._active.clear()
            self._keeper.stop()
            self._heartbeat.remove()
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

    def _loop(self) -> None:
        watchdog = self.notifier.watchdog_interval_seconds()
        due = {"watchdog": 0.0, "housekeeping": 0.0, "policy": 0.0, "depths": 0.0}
        while not self.stop.is_set():
            now = time.monotonic()
            self._main_beat = now
            if self._reload.is_set():
                self._reload.clear()
                if self.reload():
                    due["policy"] = 0.0
            self._follow_lock()
            if self._active.is_set():
                self._active_round(now, due)
            self._heartbeat.beat(active=self._active.is_set(), consuming=self._consumer.consuming,
                                 database=self._database_ok)
            if watchdog is not None and now >= due["watchdog"] and self._healthy():
                self.notifier.send("WATCHDOG=1", f"STATUS={self._status_line()}")
                due["watchdog"] = now + watchdog
            self.stop.wait(TICK_SECONDS)

    def _active_round(self, now: float, due: dict[str, float]) -> None:
        try:
            if now >= due["policy"]:
                for site in sync_access_policies(self.rt):
                    log.info("access settings (visit and accept rules) for %s changed: telling it", site)
                site_details.announce(self.rt)
                due["policy"] = now + POLICY_SYNC_SECONDS
            self._tick()
            if now >= due["housekeeping"]:
                housekeeping.run(self.rt)
                self._orphans.look(self.rt)  # the second look, once its grace has passed
                due["housekeeping"] = now + HOUSEKEEPING_SECONDS
            self._database.recovered()
            self._database_ok = True
        except (StoreError, SQLAlchemyError) as exc:
            self._database.failed(exc)
            self._database_ok = False
        if now >= due["depths"]:
            self._read_queue_depths()
            due["depths"] = now + DEPTHS_SECONDS

    # -- one active daemon per site ---------------------------------------------------------------------------
    def _may_act(self) -> bool:
        """Asked before every publish: this daemon is active and its hold on the lock is current (fencing)."""
        return self._active.is_set() and self._keeper.acting()

    def _lost(self, why: str) -> None:
        """On the lock keeper's thread, the moment the lock is lost: nothing more is published, the consumer is
        told to stop; the main loop finishes the move to standby."""
        self._lost_why = why
        self._active.clear()
        self._consumer.halt()

    def _lock_unreachable(self, exc: Exception) -> None:
        self._database.failed(exc)
        self._database_ok = False

    def _lock_reachable(self) -> None:
        self._database.recovered()
        self._database_ok = True

    def _follow_lock(self) -> None:
        acting = self._keeper.acting()
        if self._acting and not (acting and self._active.is_set()):
            self._become_standby(self._lost_why or "this daemon's hold on the site's active lock lapsed (not "
                                 "confirmed within its lease)")
        elif not self._acting and acting:
            self._become_active()
        elif not self._acting and self._keeper.holder_seen and not self._said_standby:
            self._said_standby = True
            log.warning("standby: another federationd is active for site %s (%s); taking over when it stops",
                        self.rt.home, self._keeper.holder_seen)
            self.notifier.send(f"STATUS=standby: another federationd is active for site {self.rt.home}")

    def _become_active(self) -> None:
        rt = self.rt
        self._said_standby = False
        try:
            with rt.engine.begin() as conn:  # no send of ours is in flight: a mark left by a crash is stale
                conn.execute(update(link_rows).values(sending_since=None))
        except SQLAlchemyError as exc:
            self._database.failed(exc)  # tried again at the next round while the lock is still ours
            return
        self._acting = True
        self._lost_why = None
        self._active.set()
        self.metrics.set_active(True)
        log.info("active: this daemon (%s) now sends and consumes for site %s", daemon_label(), rt.home)
        try:
            self._warn_public_url(rt.config.broker.public_url)
            greet_partners(rt)
            self._orphans = revocations.OrphanSweep()  # broker users no live link or token needs: a first look
            self._orphans.look(rt)
        except (FederationError, SQLAlchemyError) as exc:
            log.warning("could not greet the partners yet: %s", str(exc).splitlines()[0])
        self._consumer.start()
        self.notifier.send(f"STATUS={self._status_line()}")

    def _become_standby(self, why: str) -> None:
        """Fencing: nothing more is published (the publisher asks `_may_act`), the consumer stops at once."""
        self._active.clear()
        self._acting = False
        self._lost_why = None
        self.metrics.set_active(False)
        log.error("fenced: %s: stopped sending and consuming; standby until the lock is free again", why)
        self._consumer.stop(DRAIN_SECONDS)
        self._said_standby = False  # say again who holds the lock once it is seen

    def _make_consumer(self, stop: threading.Event) -> Consumer:
        rt = self.rt
        return Consumer(rt.consumer_connection, Inbound(rt, self.metrics).handle, self._consumed_partners, stop,
                        probe=rt.probe_database, own_user=rt.own.user, events=self.metrics,
                        group_size=rt.config.broker.quorum_group_size)

    def _healthy(self) -> bool:
        return healthy(time.monotonic() - self._main_beat, self._consumer.age(), self._active.is_set())

    def health(self) -> dict[str, object]:
        """/healthz: the same document as `federationd health`, from inside the daemon."""
        active = self._active.is_set()
        consuming = self._consumer.consuming
        ok = self._healthy() and self._database_ok and (consuming or not active)
        return {"ok": ok, "daemon": True, "consuming": consuming, "database": self._database_ok, "active": active,
                "active_daemon": daemon_label() if active else self._keeper.holder_seen}

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
            if section == "site" and config.site.id == self.rt.config.site.id:
                continue  # a new company or site name applies now: partners are told (site_details)
            if getattr(config, section) != getattr(self.rt.config, section):
                log.warning("config: a change of %r takes effect at the next restart", section)
        site = config.site if config.site.id == self.rt.config.site.id else self.rt.config.site
        self.rt.config = self.rt.config.model_copy(update={"paused": config.paused, "links": config.links,
                                                           "schedule": config.schedule, "log": config.log,
                                                           "limits": config.limits, "site": site})
        logsetup.set_level(config.log.level)
        with reading(self.rt.engine) as conn:
            known = {link.site for link in links.all_links(conn)}
        for warning in unknown_partners(config, known):
            log.warning("config: %s", warning)
        self._check_identity()  # `adopt --i-am-the-site` followed by a reload lifts the guard
        if self._active.is_set():
            self._warn_public_url(config.broker.public_url)
        self._export_config(self.rt.config)
        self.metrics.reload_ok.set(1)
        log.info("config reloaded from %s", self.config_path)
        self.notifier.send("READY=1", f"STATUS={self._status_line()}")
        return True

    def _warn_public_url(self, configured: object) -> None:
        """Until `broker.public_url` says what `link change-url` set, every start and reload says so."""
        try:
            warning = site_details.settle_url(self.rt, configured)
        except SQLAlchemyError as exc:
            log.warning("could not compare broker.public_url with the endpoint `link change-url` set: %s",
                        str(exc).splitlines()[0])
            return
        if warning:
            log.warning("config: %s", warning)

    # -- the guard against a copied database -----------------------------------------------------
    def _check_identity(self) -> None:
        state_dir = self.rt.config.state_dir
        mine = identity.installation_id(state_dir)
        with reading(self.rt.engine) as conn:
            theirs = load_site_state(conn).installation_id
        copied = mine == theirs and identity.copied_database(state_dir, self.rt.engine, record=True)
        if mine == theirs and not copied:
            if self.guard_reason is not None:
                log.info("the database now carries this installation's identity: the guard pause is lifted")
            self.guard_reason = None
            return
        if copied:
            self.guard_reason = ("the database is a copy of this installation's (another database server or name "
                                 "than the one this state_dir's site runs on): the whole site stays paused until "
                                 "`federationd adopt --i-am-the-site`")
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
        if not self._active.is_set():
            return "standby"
        if self.guard_reason:
            return f"paused: {self.guard_reason}"
        try:
            return "paused (site-wide)" if self.site_paused() else "running"
        except SQLAlchemyError:
            return "running (our database is unavailable)"

    # -- what the consumer reads and what the send loop sends -----------------------------------------------
    def _consumed_partners(self) -> set[str]:
        if self.site_paused():
            return set()
        with reading(self.rt.engine) as conn:
            return {link.site for link in links.all_links(conn)
                    if link.consumes and not is_paused(self.rt.config, link)}

    def _tick(self) -> None:
        paused = self.site_paused()
        self.metrics.paused.set(1 if paused else 0)
        self._sends.tick(paused)  # paused: starts nothing, still hears a `clear` of a send in flight

    def _figures(self) -> list[LinkFigures]:
        now = self.rt.now()
        with reading(self.rt.engine) as conn:
            rows = figures(conn, self.rt.config, now, guard_paused=self.guard_reason is not None)
        result = []
        for row in rows:
            if row.site is None or row.state == links.STOPPED:
                continue
            self.metrics.send_errors.labels(row.site)  # every link's counter exists from 0, for increase()
            result.append(LinkFigures(row.site, row.pending_records, row.lag_seconds, row.next_send_at,
                                      row.last_send_at, row.paused, None, row.up, state=row.state))
        return result

    def _read_queue_depths(self) -> None:
        """Gathered here, on the main loop, so that a scrape never waits on the broker."""
        try:
            depths = self.rt.management.queue_depths()
        except TransportError as exc:
            self._management.failed(exc)
            return
        self._management.recovered()
        self.metrics.set_queue_depths(depths.inbound, depths.dead)
