"""A scrape never waits on the broker: with the management API blackholed (a port that accepts connections and
never answers), `/metrics` still answers at once, and the figures read from the database are all there."""

from __future__ import annotations

import urllib.request

import pytest

from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration

SCRAPE_TIMEOUT_SECONDS = 5.0  # far below any management API timeout: a scrape that called it would not return


def test_metrics_answer_while_the_management_api_is_blackholed(make_site, blackhole):
    a = make_site("alpha", start=False)
    a.cfg["broker"]["management_url"] = f"https://127.0.0.1:{blackhole}"
    a.write_config()
    a.start()
    for _ in range(5):
        with urllib.request.urlopen(f"http://127.0.0.1:{a.metrics_port}/metrics",
                                    timeout=SCRAPE_TIMEOUT_SECONDS) as reply:
            body = reply.read().decode()
        assert "federationd_build_info{" in body and "federationd_active " in body
    # proof that the management API really was in the path and hanging: the daemon's own reads of it fail
    wait_until(lambda: "management" in a.log_text().lower() and ("timed out" in a.log_text().lower()
                                                                  or "timeout" in a.log_text().lower()),
               180, what="the daemon's management API reads timing out against the blackhole")
    with urllib.request.urlopen(f"http://127.0.0.1:{a.metrics_port}/metrics", timeout=SCRAPE_TIMEOUT_SECONDS) as reply:
        assert "federationd_build_info{" in reply.read().decode()
