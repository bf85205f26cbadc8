"""Prometheus metrics (SPEC 8), labelled `site` = the partner.

Counters are incremented where the events happen; values that live in the database (pending records, lag,
next and last send, paused links) and in the broker (inbound queue depth) are read by a collector at scrape time.
Everything hangs off one registry per Metrics object: importing this module registers nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

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


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        # Registered first, so that it runs first at a scrape: reading the links also creates every link's
        # counters (at 0) before the counters themselves are collected (an alert's increase() needs the 0).
        self._figures: Callable[[], list[LinkFigures]] = list
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
        self.reload_ok.set(1)

    def watch(self, figures: Callable[[], list[LinkFigures]]) -> None:
        """Read the database-held gauges through `figures` at every scrape."""
        self._figures = figures

    def _read_figures(self) -> list[LinkFigures]:
        return self._figures()  # late-bound: `watch` sets the source after the collector is registered

    def serve(self, host: str, port: int) -> object:
        server, _thread = start_http_server(port, addr=host, registry=self.registry)
        log.info("metrics on http://%s:%d/metrics", host, port)
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
        up = GaugeMetricFamily("federationd_link_up", "1 if linked and the last send to the partner's broker "
                               "succeeded", labels=["site"])
        try:
            rows = self._figures()
        except Exception:
            log.exception("could not read link figures for the metrics scrape")
            rows = []
        for row in rows:
            labels = [row.site]
            pending.add_metric(labels, row.pending_records)
            lag.add_metric(labels, row.lag_seconds)
            next_send.add_metric(labels, row.next_send_at or 0)
            last_send.add_metric(labels, row.last_send_at or 0)
            paused.add_metric(labels, 1 if row.paused else 0)
            up.add_metric(labels, 1 if row.up else 0)
            if row.inbound_messages is not None:
                inbound.add_metric(labels, row.inbound_messages)
        yield from (pending, lag, next_send, last_send, paused, inbound, up)
