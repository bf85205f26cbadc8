"""Shared tools of the fault suite: the Jepsen-style comparison, raw publishing as a partner, secret searches.

Every fault test ends the same way: `compare(origin, partner, categories)` reads both sides through the CLI
(`records list CATEGORY --include-deleted --json`) and returns the records that were lost, went stale or appeared
unexpectedly. The suite's tally (faults injected, records compared, hostile messages, ...) lives in
tests/faults/tally.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import ssl
import subprocess
import threading
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pika
import pika.exceptions
import pytest
from sqlalchemy import MetaData, select

from federationd import links, wire
from federationd.outbox import capture
from federationd.records import list_records
from federationd.store import load_site_state, reading
from tests.faults.tally import (  # re-exported: the scenarios count through common
    ALARMS,
    BAD_CERTS,
    BROKER_RESTARTS,
    COMPARED,
    FIGURES,
    FUZZED,
    IMPORT_KILLS,
    MALFORMED,
    OUTAGES,
    REFUSED,
    RESTORES,
    SIGKILLS,
    TRUNCATED,
    UNREACHABLE,
)
from tests.support import sites
from tests.support.broker import BrokerUnavailable, TestBroker, ensure_broker_binary
from tests.support.pki import PKI
from tests.support.sites import Site
from tests.support.waiting import wait_until

__all__ = ["ALARMS", "BAD_CERTS", "BROKER_RESTARTS", "COMPARED", "FIGURES", "FUZZED", "IMPORT_KILLS", "MALFORMED",
           "OUTAGES", "REFUSED", "RESTORES", "SIGKILLS", "TRUNCATED", "UNREACHABLE"]

#: Categories the fault scenarios write; compare() reads them on both sides.
CATEGORIES = ("company", "employee", "department")


@dataclass(frozen=True)
class Diff:
    lost: list[tuple[str, str]]  # live at the origin, missing or deleted at the partner
    stale: list[tuple[str, str]]  # both hold it, but the partner's version or data differ
    unexpected: list[tuple[str, str]]  # live at the partner, deleted at or absent from the origin
    compared: int

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter((self.lost, self.stale, self.unexpected))

    @property
    def clean(self) -> bool:
        return not (self.lost or self.stale or self.unexpected)


def _diff(mine: dict[tuple[str, str], dict[str, Any]], theirs: dict[tuple[str, str], dict[str, Any]]) -> Diff:
    lost, stale, unexpected = [], [], []
    for key, record in sorted(mine.items()):
        copy = theirs.get(key)
        if not record["deleted"]:
            if copy is None or copy["deleted"]:
                lost.append(key)
            elif (copy["version"], copy["data"]) != (record["version"], record["data"]):
                stale.append(key)
        elif copy is not None and copy["deleted"] and copy["version"] > record["version"]:
            stale.append(key)  # a tombstone newer than the origin's own: something invented a version
    for key, copy in sorted(theirs.items()):
        if not copy["deleted"] and (key not in mine or mine[key]["deleted"]):
            unexpected.append(key)
    return Diff(lost, stale, unexpected, len(mine))


def compare(origin: Site, partner: Site, categories: Iterable[str] = CATEGORIES) -> Diff:
    """Record by record, through the CLI (`records list CATEGORY --include-deleted --json`, the partner's with
    `--origin ORIGIN`): the origin's home records against the partner's copies of them."""
    cats = tuple(categories)
    with ThreadPoolExecutor(4) as pool:  # CLI calls side by side: each is mostly interpreter start-up
        mine_lists = pool.map(lambda c: origin.records(c, include_deleted=True), cats)
        theirs_lists = pool.map(lambda c: partner.records(c, origin=origin.id, include_deleted=True), cats)
        mine = {(c, r["id"]): r for c, rows in zip(cats, mine_lists, strict=True) for r in rows}
        theirs = {(c, r["id"]): r for c, rows in zip(cats, theirs_lists, strict=True) for r in rows}
    diff = _diff(mine, theirs)
    FIGURES[COMPARED] += diff.compared
    return diff


def quick_diff(origin: Site, partner: Site, categories: Iterable[str] = CATEGORIES) -> Diff:
    """The same comparison read in-process (fast enough to poll while waiting for convergence)."""
    def read(site: Site, who: str) -> dict[tuple[str, str], dict[str, Any]]:
        with site.engine() as engine, reading(engine) as conn:
            return {(c, r.id): r.as_json() for c in categories for r in list_records(conn, who, c, True)}
    return _diff(read(origin, origin.id), read(partner, origin.id))


def converge(origin: Site, partner: Site, timeout: float = 90, categories: Iterable[str] = CATEGORIES) -> Diff:
    """Wait until the partner's copy equals the origin's, then measure it through the CLI."""
    cats = tuple(categories)
    with contextlib.suppress(TimeoutError):  # the CLI comparison below reports what differs
        wait_until(lambda: quick_diff(origin, partner, cats).clean, timeout, interval=0.25,
                   what=f"{partner.id}'s copy of {origin.id}'s records to equal the origin's")
    return compare(origin, partner, cats)


def link_state(site: Site, partner: str) -> str | None:
    with site.engine() as engine, reading(engine) as conn:
        row = links.get(conn, partner)
    return row.state if row else None


def link(a: Site, b: Site, timeout: float = 60) -> str:
    """The handshake exactly as tests/support/sites.link does it (one definition, so that a change of the handshake,
    e.g. verification codes, reaches the fault suite too); then waits until both databases say linked. Returns the
    token."""
    token = sites.link(a, b, timeout)
    wait_until(lambda: link_state(a, b.id) == "linked" and link_state(b, a.id) == "linked", timeout,
               interval=0.05, what=f"{a.id} and {b.id} linked")
    return token


def accept(site: Site, token: str, check: bool = False) -> subprocess.CompletedProcess[str]:
    """`link accept TOKEN` at `site`, with the verification code `link inspect` computes from the token as received
    when the handshake has codes (the code an honest operator would have been read over the phone)."""
    shown = site.cli("link", "inspect", "--json", token, check=False)
    code = json.loads(shown.stdout).get("code") if shown.returncode == 0 and shown.stdout.strip() else None
    return site.cli("link", "accept", token, *(["--code", str(code)] if code else []), check=check)


def kill9(site: Site) -> None:
    """SIGKILL the site's daemon (its whole process group). Not a power cut: what the daemon wrote but did not
    fsync survives in the OS page cache."""
    assert site.proc is not None and site.proc.poll() is None, f"{site.id}'s daemon is not running: nothing to kill"
    site.stop(signal.SIGKILL)
    FIGURES[SIGKILLS] += 1


def count_records(site: Site, origin: str, category: str) -> int:
    with site.engine() as engine, reading(engine) as conn:
        return len(list_records(conn, origin, category, False))


def epoch_of(site: Site) -> int:
    with site.engine() as engine, reading(engine) as conn:
        return load_site_state(conn).epoch


def link_row(site: Site, partner: str) -> links.Link:
    with site.engine() as engine, reading(engine) as conn:
        return links.require(conn, partner)


def credential_of(site: Site, partner: str) -> tuple[str, str]:
    """Our user and password on `partner`'s broker, as our database holds them."""
    row = link_row(site, partner)
    assert row.remote_user and row.remote_password
    return row.remote_user, row.remote_password


# -- brokers -------------------------------------------------------------------------------------------------
def boot_broker(root: Path, pki: PKI, leaf: str = "server") -> TestBroker:
    """A started private TestBroker serving `leaf`. Without RabbitMQ installed the test is skipped locally and
    fails under CI=true; a broker that is installed but does not boot is always an error."""
    try:
        ensure_broker_binary()
    except BrokerUnavailable as exc:  # only "not installed" may skip, and never in CI
        if os.environ.get("CI") == "true":
            pytest.fail(f"no rabbitmq-server: {exc} (required in CI)")
        pytest.skip(f"no rabbitmq-server: {exc}")
    node = TestBroker(root, pki, leaf=leaf)  # type: ignore[arg-type]
    node.start()
    return node


# -- load --------------------------------------------------------------------------------------------------------
class Writer(threading.Thread):
    """Keeps changing the origin's records until stopped: CLI puts and deletes, and host-API bursts."""

    def __init__(self, site: Site, seed: int) -> None:
        super().__init__(name=f"writer-{site.id}", daemon=True)
        self.site = site
        self.rng = random.Random(seed)
        self.halt = threading.Event()
        self.error: BaseException | None = None
        self.writes = 0

    def run(self) -> None:
        try:
            while not self.halt.is_set():
                self._one()
        except BaseException as exc:  # reported by stop()
            self.error = exc

    def _one(self) -> None:
        site, rng = self.site, self.rng
        n = rng.randrange(40)
        if rng.random() < 0.75:
            site.put("employee", f"e{n}", {"name": f"Employee {n}", "rev": rng.randrange(10**6)})
            self.writes += 1
        else:
            result = site.cli("records", "delete", "employee", f"e{n}", check=False)
            assert result.returncode in (0, 1), result.stderr  # 1: there was no such live record
            self.writes += result.returncode == 0
        if rng.random() < 0.5:  # a host-API burst in one transaction
            start = rng.randrange(100)
            rows = [(f"d{k}", {"name": f"Dept {k}", "parent": None, "order": rng.randrange(100)})
                    for k in range(start, start + rng.randrange(1, 60))]
            with site.engine() as engine, engine.begin() as conn:
                capture.put_many(conn, "department", rows)
            self.writes += len(rows)

    def stop(self) -> None:
        self.halt.set()
        self.join(60)
        if self.error is not None:
            raise AssertionError(f"the writer failed: {self.error!r}") from self.error


# -- talking AMQP as a partner -----------------------------------------------------------------------------------
def connect_as(broker: TestBroker, vhost: str, user: str, password: str) -> pika.BlockingConnection:
    context = ssl.create_default_context(cafile=str(broker.ca_file))
    params = pika.ConnectionParameters(
        host="localhost", port=broker.amqps_port, virtual_host=vhost,
        credentials=pika.PlainCredentials(user, password),
        ssl_options=pika.SSLOptions(context, server_hostname="localhost"), connection_attempts=1,
        heartbeat=30, blocked_connection_timeout=30)
    return pika.BlockingConnection(params)


def confirming_channel(connection: pika.BlockingConnection) -> Any:
    channel = connection.channel()
    channel.confirm_delivery()
    return channel


def publish(channel: Any, routing_key: str, body: bytes, *, kind: str | None = "changes",
            encoding: str | None = None, user_id: str | None = None, exchange: str = "federation") -> None:
    """basic_publish with the wire's properties, but every one of them under the caller's control."""
    properties = pika.BasicProperties(delivery_mode=2, content_type=wire.CONTENT_TYPE, content_encoding=encoding,
                                      type=kind, message_id="fault-suite", user_id=user_id,
                                      app_id="federationd/fault-suite")
    channel.basic_publish(exchange, routing_key, body, properties, mandatory=True)


def change(origin: str, record_id: str, version: int, name: str = "x", category: str = "employee",
           **overrides: Any) -> dict[str, Any]:
    return {"category": category, "id": record_id, "origin": origin, "version": version, "deleted": False,
            "data": {"name": name}, **overrides}


def raw(document: Any) -> bytes:
    return json.dumps(document).encode()


# -- looking for secrets -----------------------------------------------------------------------------------------
def database_text(site: Site) -> str:
    """Every value of every row of every table, as text (for "this secret is stored nowhere" checks)."""
    meta = MetaData()
    parts: list[str] = []
    with site.engine() as engine:
        meta.reflect(engine)
        with reading(engine) as conn:
            for table in meta.sorted_tables:
                for row in conn.execute(select(table)):
                    parts.extend(str(value) for value in row)
    return "\n".join(parts)


def raw_files(site: Site) -> bytes:
    """The bytes of the SQLite files (free pages included) and of state_dir."""
    blobs = []
    for path in [*site.dir.glob("site.db*"), *(site.dir / "state").rglob("*")]:
        if path.is_file():
            blobs.append(path.read_bytes())
    return b"\n".join(blobs)


def leaks(secrets: dict[str, str], places: dict[str, str]) -> list[str]:
    """Which secret shows up where, e.g. ["A's broker password in B's daemon log"]."""
    return [f"{name} in {where}" for name, secret in secrets.items() if secret
            for where, text in places.items() if secret in text]


def wait_closed(connection: pika.BlockingConnection, timeout: float, what: str) -> BaseException:
    """Pump the connection until the broker closes it; return the exception pika raised."""
    caught: list[BaseException] = []

    def closed() -> bool:
        try:
            connection.process_data_events(time_limit=0.2)
        except (pika.exceptions.AMQPError, OSError) as exc:
            caught.append(exc)
            return True
        return not connection.is_open
    wait_until(closed, timeout, what=what)
    return caught[0] if caught else pika.exceptions.ConnectionClosed(0, "closed")
