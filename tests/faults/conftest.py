"""Fixtures of the fault suite: private brokers that tests may restart, alarm or misconfigure, and sites on them.

The session broker (tests/conftest.py) is shared by every other test: nothing here stops, alarms or kills it.
Tests that do that to a broker get a private one from `private_broker` (module-scoped: ~5 s to boot).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.faults.common import FIGURES, boot_broker
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


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if FIGURES:
        terminalreporter.section("fault suite figures")
        for name, value in sorted(FIGURES.items()):
            terminalreporter.write_line(f"{name}: {value}")
