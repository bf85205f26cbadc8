"""Long soaks of the faults in tests/faults: many more kills, broker restarts and a long partner outage.

Not part of the suite's CI budget: it lives under benchmarks/ (pytest only collects tests/), is marked `slow` and is
skipped unless FED_SOAK=1. It uses the suite's fixtures (see conftest.py beside it).

    FED_SOAK=1 .venv/bin/pytest -p no:cacheprovider benchmarks/soak -k sqlite
    FED_SOAK_KILLS=200 FED_SOAK_RESTARTS=50 FED_SOAK_OUTAGE=900 ...   # the knobs, with their defaults below
"""

from __future__ import annotations

import os
import random
import re
import time

import pytest

from tests.faults.common import BROKER_RESTARTS, FIGURES, OUTAGES, Writer, converge, kill9, link
from tests.support.waiting import holds_for, wait_until

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.skipif(os.environ.get("FED_SOAK") != "1", reason="soak: set FED_SOAK=1 to run"),
    pytest.mark.timeout(6 * 3600),
]

KILLS = int(os.environ.get("FED_SOAK_KILLS", "50"))
RESTARTS = int(os.environ.get("FED_SOAK_RESTARTS", "20"))
OUTAGE = float(os.environ.get("FED_SOAK_OUTAGE", "300"))
CATS = ("company", "employee", "department")


def test_soak_kill9_both_daemons_under_load(make_site):
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    a = make_site("alpha", schedule={"quiet_period": "500ms", "max_delay": "1s", "busy_retry": "1s"},
                  transport={"batch_records": 25, "heartbeat": "4s"})
    b = make_site("beta", schedule={"quiet_period": "500ms", "max_delay": "1s", "busy_retry": "1s"},
                  transport={"batch_records": 25, "heartbeat": "4s"})
    link(a, b)
    writers = [Writer(a, seed), Writer(b, seed + 1)]
    for writer in writers:
        writer.start()
    try:
        for _ in range(KILLS):
            time.sleep(rng.uniform(0.1, 3.0))
            victim = rng.choice((a, b))
            kill9(victim)
            victim.start()
    finally:
        for writer in writers:
            writer.stop()
    for origin, partner in ((a, b), (b, a)):
        diff = converge(origin, partner, 300, CATS)
        assert diff.clean, f"seed {seed}: {partner.id}'s copy of {origin.id}: {diff}"


def test_soak_broker_restarts_under_load(private_broker, site_on):
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    transport = {"heartbeat": "5s", "retry_max": "10s", "batch_records": 50}
    a = site_on(private_broker, "alpha", transport=transport)
    b = site_on(private_broker, "beta", transport=transport)
    link(a, b)
    writers = [Writer(a, seed), Writer(b, seed + 1)]
    for writer in writers:
        writer.start()
    try:
        for _ in range(RESTARTS):
            time.sleep(rng.uniform(1, 10))
            private_broker.stop_app()
            FIGURES[BROKER_RESTARTS] += 1
            holds_for(lambda: a.proc.poll() is None and b.proc.poll() is None, rng.uniform(0.5, 8), "daemons up")
            private_broker.start_app()
    finally:
        for writer in writers:
            writer.stop()
    for origin, partner in ((a, b), (b, a)):
        diff = converge(origin, partner, 300, CATS)
        assert diff.clean, f"seed {seed}: {partner.id}'s copy of {origin.id}: {diff}"


def test_soak_partner_away_for_long(make_site, private_broker, site_on):
    """The default backoff (cap transport.retry_max = 5 min): few attempts over a long outage, all delivered."""
    a = make_site("alpha")
    b = site_on(private_broker, "beta")
    link(a, b)
    private_broker.stop_app()
    FIGURES[OUTAGES] += 1
    writer = Writer(a, 1)
    writer.start()
    try:
        holds_for(lambda: a.proc.poll() is None, OUTAGE, "A running while B is away")
    finally:
        writer.stop()
        private_broker.start_app()
    attempts = re.findall(rf"send to {re.escape(b.id)} failed \(attempt (\d+)\), next try in (\d+)s", a.log_text())
    assert len(attempts) <= OUTAGE / 30 + 10, f"{len(attempts)} attempts in {OUTAGE:g} s"
    assert all(int(wait) <= 300 for _, wait in attempts)
    wait_until(lambda: a.metric("federationd_link_up", site=b.id) == 1, 400, what="A's sends to B succeed again")
    diff = converge(a, b, 300, CATS)
    assert diff.clean, diff
