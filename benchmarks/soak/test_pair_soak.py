"""Soak of the daemon pair (issue 16): failovers on a timer for N minutes while the origin keeps changing.

Site A runs two daemons on one PostgreSQL database (a copy of the state_dir each, as on two hosts); partner B logs
every apply (tests/support/pg.audit_applies). Every FED_SOAK_PAIR_INTERVAL seconds (default 20) the active daemon
is killed with SIGKILL (every third time it is frozen with SIGSTOP instead, until the other took over, then woken:
it must find itself fenced); the victim comes back as the standby. At the end B must hold exactly A's records:
lost, stale, unexpected, duplicated-applied (the same record version applied twice) and out-of-order applies are
counted and must all be 0.

Not part of the suite: it lives under benchmarks/ and is skipped unless FED_SOAK=1.

    FED_SOAK=1 FED_SOAK_PAIR_MINUTES=10 .venv/bin/pytest -p no:cacheprovider -s benchmarks/soak/test_pair_soak.py
"""

from __future__ import annotations

import collections
import os
import random
import signal
import time

import pytest

from tests.faults.common import Writer, converge, link
from tests.support.pg import applied, audit_applies
from tests.support.sites import Site, second_daemon
from tests.support.waiting import wait_until

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.skipif(os.environ.get("FED_SOAK") != "1", reason="soak: set FED_SOAK=1 to run"),
    pytest.mark.timeout(6 * 3600),
]

MINUTES = float(os.environ.get("FED_SOAK_PAIR_MINUTES", "10"))
INTERVAL = float(os.environ.get("FED_SOAK_PAIR_INTERVAL", "20"))
CATS = ("company", "employee", "department")
FAST = {"schedule": {"quiet_period": "500ms", "max_delay": "1s", "busy_retry": "1s"},
        "transport": {"batch_records": 25, "heartbeat": "4s"}}


def active(site: Site) -> bool:
    try:
        return bool(site.metric("federationd_active"))
    except OSError:  # frozen or not serving
        return False


def doubles_and_disorder(entries: list[tuple[str, str, int, int]]) -> tuple[int, int]:
    """(duplicated-applied, out-of-order): a record version applied more than once; a record going back."""
    seen = collections.Counter(entries)
    doubles = sum(n - 1 for n in seen.values() if n > 1)
    last: dict[tuple[str, str], tuple[int, int]] = {}
    disorder = 0
    for category, record_id, epoch, version in entries:
        key = (category, record_id)
        disorder += key in last and last[key] > (epoch, version)
        last[key] = (epoch, version)
    return doubles, disorder


def test_soak_pair_failovers_on_a_timer(make_site, backend):
    if backend != "postgresql":
        pytest.skip("the daemon pair shares a PostgreSQL database")
    seed = random.randrange(2**32)
    a = make_site("alpha", **FAST)
    b = make_site("beta", **FAST)
    assert b.pg_name is not None
    audit_applies(b.pg_name)
    link(a, b)
    other = second_daemon(a)
    other.start()
    wait_until(lambda: "standby: another federationd is active" in other.log_text(), 60, what="the standby")
    writer = Writer(a, seed)
    writer.start()
    pair, kills, freezes = [a, other], 0, 0
    deadline = time.monotonic() + MINUTES * 60
    try:
        while time.monotonic() < deadline:
            time.sleep(INTERVAL)
            victim = next(site for site in pair if active(site))
            survivor = pair[1 - pair.index(victim)]
            assert victim.proc is not None
            if (kills + freezes) % 3 == 2:
                victim.proc.send_signal(signal.SIGSTOP)
                try:
                    wait_until(lambda: active(survivor), 90, what=f"takeover from a frozen daemon (seed {seed})")  # noqa: B023
                finally:
                    victim.proc.send_signal(signal.SIGCONT)
                wait_until(lambda: not active(victim), 60, what="the woken daemon fenced")  # noqa: B023
                freezes += 1
            else:
                victim.stop(signal.SIGKILL)
                wait_until(lambda: active(survivor), 60, what=f"takeover after kill -9 (seed {seed})")  # noqa: B023
                victim.start()
                kills += 1
            assert sum(active(site) for site in pair) == 1, "two daemons active"
    finally:
        writer.stop()
    diff = converge(a, b, 300, CATS)
    doubles, disorder = doubles_and_disorder(applied(b.pg_name, a.id))
    figures = {"minutes": MINUTES, "kills": kills, "freezes": freezes, "writes": writer.writes,
               "compared": diff.compared, "lost": len(diff.lost), "stale": len(diff.stale),
               "unexpected": len(diff.unexpected), "duplicated_applied": doubles, "out_of_order": disorder}
    print(f"\npair soak (seed {seed}): {figures}")
    other.stop()
    assert (diff.lost, diff.stale, diff.unexpected, doubles, disorder) == ([], [], [], 0, 0), figures
