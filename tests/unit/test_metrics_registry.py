"""The metrics registry: process and platform collectors, build info, no `_created` series, handshake gauge."""

from __future__ import annotations

import socket

from prometheus_client import generate_latest

from federationd import __version__
from federationd.metrics import LinkFigures, Metrics


def test_process_platform_build_info_and_no_created_series() -> None:
    metrics = Metrics()
    metrics.sent.labels("site-b", "employee").inc()
    metrics.watch(lambda: [
        LinkFigures("site-b", 1, 2.0, None, None, False, 0, True, state="linked"),
        LinkFigures("site-c", 0, 0.0, None, None, False, None, False, state="awaiting_start"),
        LinkFigures("site-d", 0, 0.0, None, None, False, None, False)])
    text = generate_latest(metrics.registry).decode()
    assert "process_cpu_seconds_total" in text and "python_info" in text
    assert f'federationd_build_info{{host="{socket.gethostname()}",version="{__version__}"}} 1.0' in text
    assert "_created" not in text
    assert 'federationd_link_handshake_pending{site="site-b"} 0.0' in text
    assert 'federationd_link_handshake_pending{site="site-c"} 1.0' in text
    assert 'federationd_link_handshake_pending{site="site-d"}' not in text
