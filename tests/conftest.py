"""Fixtures: one private TLS RabbitMQ node per session, and sites on SQLite or PostgreSQL.

Integration tests run once per database backend. PostgreSQL is used when reachable; in CI (CI=true) an
unreachable PostgreSQL or a missing broker binary is a failure, not a skip.
"""

from __future__ import annotations

import functools
import itertools
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.broker import TestBroker, ensure_broker_binary
from tests.support.pg import create_database, drop_database, pg_reachable
from tests.support.pki import PKI, make_pki
from tests.support.sites import Site, site_maker

IN_CI = os.environ.get("CI") == "true"
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
