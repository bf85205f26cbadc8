"""Fixtures: one private TLS RabbitMQ node per session, and sites on SQLite or PostgreSQL.

Integration tests run once per database backend. PostgreSQL is used when reachable; in CI (CI=true) an
unreachable PostgreSQL or a missing broker binary is a failure, not a skip.
"""

from __future__ import annotations

import functools
import itertools
import os
import socket
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

from tests.faults import tally
from tests.support.broker import TestBroker, ensure_broker_binary
from tests.support.pg import create_database, drop_database, pg_reachable
from tests.support.pki import PKI, make_pki
from tests.support.sites import Site, site_maker

IN_CI = os.environ.get("CI") == "true"

# No timed assertions, Hypothesis's included: the suite shares a 2-core machine with brokers and daemons, where a
# 200 ms per-example deadline or the "input generation is slow" check fails on load, not on a defect.
settings.register_profile("shared-machine", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("shared-machine")
_counter = itertools.count(1)


def _unavailable(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"{reason} (required in CI)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory, pki: PKI) -> Iterator[TestBroker]:
    try:
        ensure_broker_binary()
    except Exception as exc:  # the binary is missing: skip locally, fail in CI
        _unavailable(f"no rabbitmq-server: {exc}")
    node = TestBroker(tmp_path_factory.mktemp("broker"), pki)
    node.start()
    try:
        yield node
    finally:
        node.stop()


@pytest.fixture(params=["sqlite", "postgresql"], scope="session")
def backend(request: pytest.FixtureRequest) -> str:
    if request.param == "postgresql" and not pg_reachable():
        _unavailable("PostgreSQL is not reachable on 127.0.0.1:5432")
    return str(request.param)


@pytest.fixture
def database_url(tmp_path: Path, backend: str) -> Iterator[str]:
    """An empty database of the selected backend (no broker needed)."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'site.db'}"
        return
    name = f"fedtest_db_{next(_counter)}_{os.getpid()}"
    url = create_database(name)
    try:
        yield url
    finally:
        drop_database(name)


@pytest.fixture
def make_site(tmp_path: Path, broker: TestBroker, backend: str) -> Iterator[Callable[..., Site]]:
    """`make_site(name, start=True, **config)`: an initialised (by default running) site on the session broker."""
    with site_maker(tmp_path, backend) as make:
        yield functools.partial(make, broker)


# -- the fault suite's tally, summed over every xdist worker ----------------------------------------------------
class _Tally:
    def __init__(self) -> None:
        self.did: Counter[str] = Counter()  # every test that ran
        self.checked: Counter[str] = Counter()  # the tests that passed (their declarations hold)
        self.declared: dict[str, tally.Figure] = {}
        self.scenarios: Counter[str] = Counter()
        self.not_passed: list[str] = []


_TALLY = _Tally()


_TIMES = os.environ.get("FED_TEST_TIMES")  # a file: one line per test phase as it ends (for a run cut short)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Each test's share arrives in its teardown report (from an xdist worker or this process)."""
    if _TIMES and (report.when == "call" or report.outcome != "passed"):
        with open(_TIMES, "a", encoding="utf-8") as times:
            times.write(f"{report.duration:9.2f} {report.when:8} {report.outcome:7} {report.nodeid}\n")
    if report.when != "teardown":
        return
    for key, share in report.user_properties:
        if key != "fault-tally":
            continue
        _TALLY.did.update(share["did"])
        if share["passed"]:
            _TALLY.checked.update(share["did"])
            tally.add_declared(_TALLY.declared, tally.decode(share["declared"]))
            _TALLY.scenarios[share["scenario"]] += 1
        elif share["did"]:
            _TALLY.not_passed.append(report.nodeid)


def _is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """The run's total against the sum of the declarations of the tests that passed: a test whose own check was
    skipped or lost would show here."""
    if _is_worker(session.config) or not _TALLY.scenarios:
        return
    if tally.mismatches(_TALLY.declared, dict(_TALLY.checked)) and session.exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    if _is_worker(config) or not (_TALLY.did or _TALLY.scenarios):
        return
    write = terminalreporter.write_line
    terminalreporter.section("fault suite tally")
    kinds = [k for k in tally.ORDER if _TALLY.did[k]] + sorted(set(_TALLY.did) - set(tally.ORDER))
    faults = sum(_TALLY.checked[k] for k in tally.FAULT_KINDS)
    for kind in kinds:  # what the passed tests did, against their declarations; what failed tests did apart
        extra = _TALLY.did[kind] - _TALLY.checked[kind]
        write(f"{_TALLY.checked[kind]:>7}  {kind} (declared {_TALLY.declared.get(kind, 0)})"
              + (f"; {extra} more by tests that did not pass" if extra else ""))
    write(f"{faults:>7}  faults injected in all (SIGKILLs, import kills, broker restarts, alarms, outages, restores)")
    runs = sum(_TALLY.scenarios.values())
    write(f"scenarios passed: {runs} runs of {len(_TALLY.scenarios)} declared scenarios")
    problems = tally.mismatches(_TALLY.declared, dict(_TALLY.checked))
    if problems:
        write("TALLY MISMATCH (the total of the passed tests is not what they declare): " + "; ".join(problems),
              red=True)
    else:
        write("tally checked: the passed tests did exactly what they declare (minimums where marked >=)", green=True)
    if _TALLY.not_passed:
        write(f"not counted against declarations (the test did not pass): {', '.join(_TALLY.not_passed)}")


@pytest.fixture
def blackhole() -> Iterator[int]:
    """A listening TCP port that never accepts: connections complete in the kernel's backlog, then nothing."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        yield int(sock.getsockname()[1])
