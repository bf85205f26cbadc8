"""Scrapes never block on the broker and never drop series (federationd/metrics.py)."""

from __future__ import annotations

from prometheus_client import generate_latest

from federationd.metrics import LinkFigures, Metrics


def sample(text: str, line_start: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(line_start):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_a_failed_read_keeps_the_last_known_series_and_counts_the_error() -> None:
    metrics = Metrics()
    rows = [LinkFigures("site-b", 5, 12.0, None, None, False, None, True)]
    failing = {"now": False}

    def figures() -> list[LinkFigures]:
        if failing["now"]:
            raise RuntimeError("database is down")
        return rows

    metrics.watch(figures)
    metrics.set_queue_depths({"site-b": 7}, {"site-b": 2})
    first = generate_latest(metrics.registry).decode()
    failing["now"] = True
    second = generate_latest(metrics.registry).decode()
    for text in (first, second):
        assert sample(text, 'federationd_outbox_pending_records{site="site-b"}') == 5
        assert sample(text, 'federationd_inbound_queue_messages{site="site-b"}') == 7
        assert sample(text, 'federationd_dead_letter_messages{site="site-b"}') == 2
    assert sample(first, "federationd_scrape_errors_total") == 0
    assert sample(second, "federationd_scrape_errors_total") == 1


def test_the_observer_sets_the_runtime_gauges() -> None:
    metrics = Metrics()
    metrics.consumer_up(True)
    metrics.set_active(True)
    metrics.message_received("site-b")
    metrics.send_failed("site-b")
    text = generate_latest(metrics.registry).decode()
    assert sample(text, "federationd_consumer_up") == 1
    assert sample(text, "federationd_active") == 1
    assert (sample(text, 'federationd_last_receive_timestamp_seconds{site="site-b"}') or 0) > 0
    assert sample(text, 'federationd_send_errors_total{site="site-b"}') == 1
