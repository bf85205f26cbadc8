"""Fixtures of the fault suite: private brokers that tests may restart, alarm or misconfigure, and sites on them.

The session broker (tests/conftest.py) is shared by every other test: nothing here stops, alarms or kills it.
Tests that do that to a broker get a private one from `private_broker` (module-scoped: ~5 s to boot).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.faults import tally
from tests.faults.common import boot_broker
from tests.support.broker import TestBroker
from tests.support.pki import PKI
from tests.support.sites import Site, site_maker


@pytest.fixture(scope="module")
def private_broker(tmp_path_factory: pytest.TempPathFactory, pki: PKI) -> Iterator[TestBroker]:
    """A broker of this module alone: tests may stop_app, alarm or kill it."""
    node = boot_broker(tmp_path_factory.mktemp("private-broker"), pki)
    try:
        yield node
    finally:
        node.stop()


@pytest.fixture
def site_on(tmp_path: Path, backend: str) -> Iterator[Callable[..., Site]]:
    """`site_on(broker, name, start=True, **config)`: an initialised site whose own broker is `broker`."""
    with site_maker(tmp_path, backend) as make:
        yield make


_CALL_PASSED = pytest.StashKey[bool]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.when == "call":
        item.stash[_CALL_PASSED] = report.passed
    return report


@pytest.fixture(autouse=True)
def _tally(request: pytest.FixtureRequest) -> Iterator[None]:
    """This test's share of the tally: what it did, checked against what tests/faults/tally.py declares for it,
    and handed to the report (tests/conftest.py sums the reports of every xdist worker)."""
    before = tally.FIGURES.copy()
    yield
    did = {kind: n for kind, n in (tally.FIGURES - before).items() if n}
    name = tally.scenario(request.node.nodeid)
    declared = tally.DECLARED.get(name, {})
    passed = request.node.stash.get(_CALL_PASSED, False)
    request.node.user_properties.append(("fault-tally", {
        "scenario": name, "did": did, "declared": tally.encode(declared), "passed": passed}))
    if passed and (problems := tally.mismatches(declared, did)):
        pytest.fail(f"{name} did not do what tests/faults/tally.py declares for it: {'; '.join(problems)}",
                    pytrace=False)
