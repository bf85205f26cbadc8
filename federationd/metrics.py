"""Prometheus metrics (docs/operations.md), labelled `site` = the partner.

Metrics observe the daemon: the parts report events through small methods (`consumer_up`, `message_received`,
`send_failed`, `set_active`; `Observer` is the no-op default for code run without metrics), never through
`Metrics | None` branches. Values that live in the database (pending records, lag, next and last send, paused
links) are read by a collector at scrape time; values that live in the broker (inbound and dead-letter queue
depths) are gathered by the main loop (`set_queue_depths`) so that a scrape never waits on the broker. A scrape
whose database read fails counts `federationd_scrape_errors_total` and keeps the last known series.
Everything hangs off one registry per Metrics object: importing this module registers nothing.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from typing import Any
from wsgiref.simple_server import make_server

from prometheus_client import (
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    disable_created_metrics,
    make_wsgi_app,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import ThreadingWSGIServer, _SilentHandler
from prometheus_client.registry import Collector

from federationd import __version__
from federationd.outage import Outage

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LinkFigures:
    """One partner's figures as the database has them at scrape time."""

    site: str
    pending_records: int
    lag_seconds: float
    next_send_at: float | None
    last_send_at: float | None
    paused: bool
    inbound_messages: int | None
    up: bool
    state: str | None = None  # the link's state; a handshake in progress is no outage (FederationdLinkDown)
    dead_letters: int | None = None


class Observer:
    """What the daemon's parts report; this default does nothing (tests, the CLI)."""

    def consumer_up(self, up: bool) -> None:
        return None

    def message_received(self, site: str) -> None:
        return None

    def send_failed(self, site: str) -> None:
        return None

    def set_active(self, active: bool) -> None:
        return None

    def records_sent(self, site: str, category: str, count: int) -> None:
        return None

    def records_received(self, site: str, category: str, count: int) -> None:
        return None

    def records_rejected(self, site: str, reason: str, count: int) -> None:
        return None


class Metrics(Observer):
    def __init__(self) -> None:
        # No `_created` series: they double every counter for nothing an alert or panel uses.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = CollectorRegistry()
        r = self.registry
        r.register(PROCESS_COLLECTOR)  # process_* (CPU, memory, open fds, start time)
        r.register(PLATFORM_COLLECTOR)  # python_info
        self.build_info = Gauge("federationd_build_info", "1, labelled with the federationd version and host",
                                ["version", "host"], registry=r)
        self.build_info.labels(__version__, socket.gethostname()).set(1)
        # Registered first, so that it runs first at a scrape: reading the links also creates every link's
        # counters (at 0) before the counters themselves are collected (an alert's increase() needs the 0).
        self._figures: Callable[[], list[LinkFigures]] = list
        self._depths: tuple[dict[str, int], dict[str, int]] | None = None
        self._last_rows: list[LinkFigures] = []
        self._lock = threading.Lock()
        self._scrape_outage = Outage(log, "the link figures for the metrics scrape (serving the last known)")
        r.register(_FiguresCollector(self._read_figures))
        self.sent = Counter("federationd_sent_records", "Records confirmed by the partner's broker",
                            ["site", "category"], registry=r)
        self.received = Counter("federationd_received_records", "Records received and applied (or skipped as "
                                "duplicates) from the partner", ["site", "category"], registry=r)
        self.rejected = Counter("federationd_rejected_records", "Records (or undecodable messages) refused",
                                ["site", "reason"], registry=r)
        self.send_errors = Counter("federationd_send_errors", "Failed send attempts to the partner", ["site"],
                                   registry=r)
        self.reload_ok = Gauge("federationd_config_last_reload_successful",
                               "1 if the last config (re)load was valid", registry=r)
        self.quiet_period = Gauge("federationd_quiet_period_seconds", "schedule.quiet_period", registry=r)
        self.max_delay = Gauge("federationd_max_delay_seconds", "schedule.max_delay", registry=r)
        self.paused = Gauge("federationd_paused", "1 if the whole site is paused", registry=r)
        self.consumer = Gauge("federationd_consumer_up", "1 while the consumer is connected to our broker and "
                              "subscribed", registry=r)
        self.last_receive = Gauge("federationd_last_receive_timestamp_seconds", "When a message from the partner "
                                  "was last applied and acked (since this daemon started)", ["site"], registry=r)
        self.active = Gauge("federationd_active", "1 on the site's active daemon, 0 on a standby", registry=r)
        self._limits: Callable[[], dict[str, bool]] = dict
        self._last_limits: dict[str, bool] = {}
        r.register(_LimitsCollector(self._read_limits))
        self.scrape_errors = Counter("federationd_scrape_errors", "Scrapes whose figures could not be read "
                                     "(the last known values were served)", registry=r)
        self.reload_ok.set(1)

    # -- the observer --------------------------------------------------------------------------------------
    def consumer_up(self, up: bool) -> None:
        self.consumer.set(1 if up else 0)

    def message_received(self, site: str) -> None:
        self.last_receive.labels(site).set(time.time())

    def send_failed(self, site: str) -> None:
        self.send_errors.labels(site).inc()

    def set_active(self, active: bool) -> None:
        self.active.set(1 if active else 0)

    def records_sent(self, site: str, category: str, count: int) -> None:
        self.sent.labels(site, category).inc(count)

    def records_received(self, site: str, category: str, count: int) -> None:
        self.received.labels(site, category).inc(count)

    def records_rejected(self, site: str, reason: str, count: int) -> None:
        self.rejected.labels(site, reason).inc(count)

    def set_queue_depths(self, inbound: dict[str, int], dead: dict[str, int]) -> None:
        """The main loop's latest reading of the broker's queue depths (served by every scrape until the next)."""
        with self._lock:
            self._depths = (dict(inbound), dict(dead))

    def watch(self, figures: Callable[[], list[LinkFigures]]) -> None:
        """Read the database-held gauges through `figures` at every scrape."""
        self._figures = figures

    def watch_limits(self, exceeded: Callable[[], dict[str, bool]]) -> None:
        """Read `federationd_limit_exceeded` through `exceeded` (limit key -> past it?) at every scrape."""
        self._limits = exceeded

    def _read_limits(self) -> dict[str, bool]:
        try:
            self._last_limits = self._limits()
        except Exception as exc:  # noqa: BLE001 - counted and served from the last known values
            self._scrape_outage.failed(exc)
            self.scrape_errors.inc()
        return self._last_limits

    def _read_figures(self) -> list[LinkFigures]:
        try:
            rows = self._figures()  # late-bound: `watch` sets the source after the collector is registered
        except Exception as exc:  # noqa: BLE001 - counted and served from the last known values
            self._scrape_outage.failed(exc)
            self.scrape_errors.inc()
            rows = self._last_rows
        else:
            self._scrape_outage.recovered()
            self._last_rows = rows
        with self._lock:
            depths = self._depths
        if depths is None:
            return rows
        inbound, dead = depths
        return [replace(row, inbound_messages=inbound.get(row.site), dead_letters=dead.get(row.site))
                for row in rows]

    def serve(self, host: str, port: int, healthz: Callable[[], dict[str, object]] | None = None) -> object:
        """Serve /metrics and, with `healthz`, /healthz (its JSON; HTTP 200 when `ok`, else 503)."""
        metrics_app = make_wsgi_app(self.registry)

        def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            if healthz is None or environ.get("PATH_INFO") != "/healthz":
                return metrics_app(environ, start_response)  # type: ignore[no-any-return]
            document = healthz()
            start_response("200 OK" if document.get("ok") else "503 Service Unavailable",
                           [("Content-Type", "application/json")])
            return [json.dumps(document).encode()]

        server = make_server(host, port, app, ThreadingWSGIServer, handler_class=_SilentHandler)
        threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
        log.info("metrics on http://%s:%d/metrics, health on /healthz", host, port)
        return server


class _FiguresCollector(Collector):
    def __init__(self, figures: Callable[[], list[LinkFigures]]) -> None:
        self._figures = figures

    def collect(self) -> Iterator[GaugeMetricFamily]:
        pending = GaugeMetricFamily("federationd_outbox_pending_records", "Home records not yet sent to the "
                                    "partner", labels=["site"])
        lag = GaugeMetricFamily("federationd_outbox_lag_seconds", "Age of the oldest change not yet sent to "
                                "the partner (0 when none)", labels=["site"])
        next_send = GaugeMetricFamily("federationd_next_send_timestamp_seconds", "When the next send is due "
                                      "(0 when none)", labels=["site"])
        last_send = GaugeMetricFamily("federationd_last_send_timestamp_seconds", "When the last send "
                                      "completed (0 when never)", labels=["site"])
        paused = GaugeMetricFamily("federationd_link_paused", "1 if the link is paused", labels=["site"])
        inbound = GaugeMetricFamily("federationd_inbound_queue_messages", "Messages waiting in the partner's "
                                    "inbound queue on our broker", labels=["site"])
        handshake = GaugeMetricFamily("federationd_link_handshake_pending", "1 while the link's handshake is in "
                                      "progress (requested or awaiting_start)", labels=["site"])
        up = GaugeMetricFamily("federationd_link_up", "1 if linked and the last send to the partner's broker "
                               "succeeded", labels=["site"])
        dead = GaugeMetricFamily("federationd_dead_letter_messages", "Messages in the partner's dead-letter queue "
                                 "on our broker (`federationd redrive SITE` moves them back)", labels=["site"])
        for row in self._figures():
            labels = [row.site]
            pending.add_metric(labels, row.pending_records)
            lag.add_metric(labels, row.lag_seconds)
            next_send.add_metric(labels, row.next_send_at or 0)
            last_send.add_metric(labels, row.last_send_at or 0)
            paused.add_metric(labels, 1 if row.paused else 0)
            up.add_metric(labels, 1 if row.up else 0)
            if row.state is not None:
                handshake.add_metric(labels, 1 if row.state in ("requested", "awaiting_start") else 0)
            if row.inbound_messages is not None:
                inbound.add_metric(labels, row.inbound_messages)
            if row.dead_letters is not None:
                dead.add_metric(labels, row.dead_letters)
        yield from (pending, lag, next_send, last_send, paused, inbound, up, handshake, dead)


class _LimitsCollector(Collector):
    def __init__(self, exceeded: Callable[[], dict[str, bool]]) -> None:
        self._exceeded = exceeded

    def collect(self) -> Iterator[GaugeMetricFamily]:
        gauge = GaugeMetricFamily("federationd_limit_exceeded", "1 while this site is past the limit (a `limits:` "
                                  "key: recommended_sites, max_sites, recommended_employees_per_site, "
                                  "recommended_employees, max_employees)", labels=["limit"])
        for limit, past in sorted(self._exceeded().items()):
            gauge.add_metric([limit], 1 if past else 0)
        yield gauge
