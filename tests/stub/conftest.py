"""Two in-process sites linked through the stub transport, for the tests of this folder."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from federationd.handlers.dispatch import Inbound
from federationd.metrics import Metrics
from tests.support.stub import StubNetwork, StubSite

A, B = "site-a", "site-b"


@pytest.fixture
def linked(tmp_path: Path) -> Iterator[tuple[StubNetwork, StubSite, StubSite]]:
    """`site-a` linked with `site-b`; B's inbound side counts into real metrics."""
    net = StubNetwork(tmp_path)
    a, b = net.add_site(A), net.add_site(B)
    net.link(A, B)
    b.inbound = Inbound(b.rt, Metrics())
    yield net, a, b
    net.close()
