"""Smoke tests for tests/support: proves the harness itself works before other tests rely on it.

One module-scoped TLS-only broker serves most tests; one extra short-lived
broker serving a self-signed leaf proves that clients trusting the test CA
refuse it (its boot + stop cost ~6 s).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import socket
import ssl
import stat
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pika
import psycopg
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from tests.support.broker import BrokerUnavailable, SiteCreds, TestBroker, ensure_broker_binary
from tests.support.pg import create_database, drop_database, pg_reachable
from tests.support.pki import LEAVES, PKI, make_pki
from tests.support.waiting import GiveUp, wait_until

pytestmark = pytest.mark.integration


# ----------------------------------------------------------------- fixtures
# `pki` and `broker` deliberately shadow the session fixtures of conftest.py:
# these tests raise memory alarms and stop the app, which must not disturb
# the broker other modules share.


def require(available: bool, reason: str) -> None:
    """Skip when a service is missing locally; fail in CI (CI=true), as conftest.py does."""
    if not available:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason} (required in CI)")
        pytest.skip(reason)


def broker_installed() -> bool:
    try:
        ensure_broker_binary()
    except BrokerUnavailable:
        return False
    return True


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory, pki: PKI) -> Iterator[TestBroker]:
    require(broker_installed(), "rabbitmq-server is not installed (scripts/ensure-services.sh)")
    node = TestBroker(tmp_path_factory.mktemp("broker"), pki)
    node.start()
    try:
        yield node
    finally:
        node.stop()


@pytest.fixture(scope="module")
def site(broker: TestBroker) -> SiteCreds:
    return broker.add_site("site-a")


def verifying_context(cafile: Path) -> ssl.SSLContext:
    """What a correct client does: full chain and host-name verification against ``cafile``."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.check_hostname = True
    ctx.load_verify_locations(cafile=str(cafile))
    return ctx


def connect(broker: TestBroker, site_id: str, creds: SiteCreds, cafile: Path) -> pika.BlockingConnection:
    params = pika.URLParameters(broker.url(site_id, creds))
    params.ssl_options = pika.SSLOptions(verifying_context(cafile), server_hostname="localhost")
    params.connection_attempts = 1
    params.socket_timeout = 10
    return pika.BlockingConnection(params)


def tls_handshake(port: int, ctx: ssl.SSLContext) -> str:
    """Complete a TLS handshake with localhost:port and return the negotiated version."""
    with (
        socket.create_connection(("localhost", port), timeout=10) as raw,
        ctx.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        return str(tls.version())


def listening_addresses(port: int) -> set[str]:
    """Local addresses with a TCP socket in LISTEN state on ``port`` (from /proc/net/tcp*)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, _remote, state = line.split()[1:4]
            addr_hex, port_hex = local.split(":")
            if state == "0A" and int(port_hex, 16) == port:  # 0A = TCP_LISTEN
                raw = bytes.fromhex(addr_hex)
                # /proc stores each 32-bit word in host (little-endian) order.
                words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
                found.add(str(ipaddress.ip_address(words)))
    return found


# ---------------------------------------------------------------------- PKI


def test_pki_files_load_and_have_the_promised_properties(pki: PKI) -> None:
    now = dt.datetime.now(dt.UTC)
    ca = x509.load_pem_x509_certificate(pki.ca_cert.read_bytes())
    certs = {}
    for name in (*LEAVES, "client", "ca", "other_ca"):
        cert_path, key_path = getattr(pki, f"{name}_cert"), getattr(pki, f"{name}_key")
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = load_pem_private_key(key_path.read_bytes(), password=None)
        assert cert.public_key().public_numbers() == key.public_key().public_numbers()  # type: ignore[union-attr]
        assert stat.S_IMODE(key_path.stat().st_mode) == 0o644
        certs[name] = cert
    # The pair loads into an ssl context as a server would use it.
    ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(pki.server_cert, pki.server_key)

    def sans(cert: x509.Certificate) -> list[object]:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        return [*ext.get_values_for_type(x509.DNSName), *map(str, ext.get_values_for_type(x509.IPAddress))]

    for name in ("server", "expired", "wrong_host", "client"):
        certs[name].verify_directly_issued_by(ca)
    certs["self_signed"].verify_directly_issued_by(certs["self_signed"])
    assert sans(certs["server"]) == ["localhost", "127.0.0.1"]
    assert sans(certs["self_signed"]) == ["localhost", "127.0.0.1"]
    assert sans(certs["wrong_host"]) == ["wrong.example"]
    assert certs["server"].not_valid_before_utc < now < certs["server"].not_valid_after_utc
    assert certs["server"].not_valid_after_utc > now + dt.timedelta(days=1)
    assert certs["expired"].not_valid_after_utc < now
    assert certs["other_ca"].subject != ca.subject
    assert pki.leaf("wrong_host") == (pki.wrong_host_cert, pki.wrong_host_key)


def test_wait_until_returns_value_names_what_and_gives_up() -> None:
    calls = iter([0, None, ValueError("boom"), "ready"])

    def flaky() -> object:
        value = next(calls)
        if isinstance(value, Exception):
            raise value
        return value

    assert wait_until(flaky, timeout=5, interval=0.01) == "ready"
    with pytest.raises(TimeoutError, match=r"the moon.*ZeroDivisionError"):
        wait_until(lambda: 1 / 0, timeout=0.05, interval=0.01, what="the moon")

    def dead() -> bool:
        raise GiveUp("the process died")

    with pytest.raises(GiveUp):  # propagates at once instead of being retried for 60 s
        wait_until(dead, timeout=60)


# ------------------------------------------------------------------- broker


def test_broker_is_tls_only_and_private(broker: TestBroker) -> None:
    assert broker.node == f"fedtest{broker.amqps_port}@localhost"
    assert broker.node in broker.ctl("status")  # rabbitmqctl works without any AMQP listener
    overview = broker.api("GET", "/api/overview")
    assert overview["node"] == broker.node  # not rabbit@localhost from /etc/rabbitmq/rabbitmq-env.conf
    listeners = {(lst["protocol"], lst["port"]) for lst in overview["listeners"]}
    assert ("amqp/ssl", broker.amqps_port) in listeners
    assert ("https", broker.management_port) in listeners
    assert {p for p, _ in listeners} <= {"amqp/ssl", "https", "clustering"}, listeners  # no amqp, no http
    # Check the sockets the kernel actually has: /api/overview reports the
    # HTTPS listener as "::" on 3.10 although it binds management.ssl.ip.
    for port in (broker.amqps_port, broker.management_port, broker.dist_port):
        assert listening_addresses(port) == {"127.0.0.1"}, port
    assert broker.management_url == f"https://localhost:{broker.management_port}"
    # The HTTPS listener itself verifies against the test CA with host-name checking.
    assert tls_handshake(broker.management_port, verifying_context(broker.ca_file)) in {"TLSv1.3", "TLSv1.2"}


def test_quorum_queue_roundtrip_over_verified_tls(broker: TestBroker, site: SiteCreds) -> None:
    assert broker.public_url("site-a") == f"amqps://localhost:{broker.amqps_port}/site-a"
    queue = f"smoke-{uuid.uuid4().hex[:8]}"
    conn = connect(broker, "site-a", site, broker.ca_file)
    try:
        ch = conn.channel()
        ch.queue_declare(queue, durable=True, arguments={"x-queue-type": "quorum"})
        ch.confirm_delivery()  # basic_publish now raises unless the broker confirms
        ch.basic_publish("", queue, b"hello", pika.BasicProperties(delivery_mode=2), mandatory=True)

        info = broker.api("GET", f"/api/queues/{quote(site.vhost, safe='')}/{queue}")
        assert info["type"] == "quorum"

        # The management API shows this very connection, as TLS, as the site's user.
        def our_connection() -> dict[str, Any] | None:
            return next((c for c in broker.connections() if c.get("user") == site.user), None)

        seen = wait_until(our_connection, timeout=15, what="the site's connection in /api/connections")
        assert seen is not None
        assert seen["ssl"] is True and seen["vhost"] == "site-a"
        assert seen["ssl_protocol"] in {"tlsv1.3", "tlsv1.2"}
        assert all(c["ssl"] is True for c in broker.connections())

        for method, _props, body in ch.consume(queue, inactivity_timeout=10):
            assert method is not None, "no message consumed within 10 s"
            assert body == b"hello"
            ch.basic_ack(method.delivery_tag)
            break
        ch.cancel()
        ch.queue_delete(queue)
    finally:
        conn.close()


def test_site_user_is_confined_to_its_vhost(broker: TestBroker, site: SiteCreds) -> None:
    perms = broker.api("GET", f"/api/users/{quote(site.user, safe='')}/permissions")
    assert [(p["vhost"], p["configure"], p["write"], p["read"]) for p in perms] == [("site-a", ".*", ".*", ".*")]
    # The site's own credentials work against the management API (administrator tag).
    me = broker.api("GET", "/api/whoami", auth=(site.user, site.password))
    assert me["name"] == site.user and "administrator" in str(me["tags"])


def test_wrong_ca_is_refused(broker: TestBroker, pki: PKI) -> None:
    with pytest.raises(ssl.SSLCertVerificationError):
        tls_handshake(broker.amqps_port, verifying_context(pki.other_ca_cert))


def test_memory_alarm_and_app_restart(broker: TestBroker, site: SiteCreds) -> None:
    def mem_alarm() -> bool:
        return bool(broker.api("GET", f"/api/nodes/{quote(broker.node, safe='')}")["mem_alarm"])

    broker.set_memory_watermark(0.0)
    try:
        wait_until(mem_alarm, timeout=15, what="memory alarm on")
    finally:
        broker.set_memory_watermark(0.4)
    wait_until(lambda: not mem_alarm(), timeout=15, what="memory alarm off")

    broker.stop_app()
    with pytest.raises(OSError):  # ConnectionRefusedError: the listener is gone
        tls_handshake(broker.amqps_port, verifying_context(broker.ca_file))
    broker.start_app()
    connect(broker, "site-a", site, broker.ca_file).close()


def test_self_signed_broker_is_refused(tmp_path_factory: pytest.TempPathFactory, pki: PKI) -> None:
    require(broker_installed(), "rabbitmq-server is not installed (scripts/ensure-services.sh)")
    with TestBroker(tmp_path_factory.mktemp("selfsigned"), pki, leaf="self_signed") as node:
        creds = node.add_site("site-s")
        with pytest.raises(ssl.SSLCertVerificationError, match=r"self.signed"):
            tls_handshake(node.amqps_port, verifying_context(pki.ca_cert))
        # pika 1.4 re-raises the underlying ssl error from BlockingConnection
        # (not an AMQPConnectionError wrapper).
        with pytest.raises(ssl.SSLCertVerificationError, match=r"self.signed"):
            connect(node, "site-s", creds, pki.ca_cert)
        # Control: the node itself is healthy; trusting its certificate directly works.
        assert tls_handshake(node.amqps_port, verifying_context(pki.self_signed_cert))
    assert not node.running


# --------------------------------------------------------------- PostgreSQL


def test_scratch_postgres_database() -> None:
    require(pg_reachable(), "PostgreSQL is not reachable on 127.0.0.1:5432 (scripts/ensure-services.sh)")
    name = f"fedtest_smoke_{uuid.uuid4().hex[:8]}"
    url = create_database(name)
    assert url == f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    lingering = psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"))
    try:
        lingering.execute("CREATE TABLE t (x int)")
        lingering.commit()
        drop_database(name)  # must succeed although `lingering` is still connected
    finally:
        lingering.close()
    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres") as admin:
        assert admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is None


def test_site_metric_tells_absent_from_zero() -> None:
    """A missing or mislabelled sample is an error, not 0 (so `== 0` checks cannot pass on a metric that is not
    there); a test that expects absence says so with `default=`."""
    from tests.support.sites import Site

    site = Site.__new__(Site)  # no broker, no database: only the metrics text
    site.id = "alpha-1"
    site.metrics = lambda: '# HELP federationd_link_up x\nfederationd_link_up{site="beta-2"} 0.0\n'  # type: ignore[method-assign]
    assert site.metric("federationd_link_up", site="beta-2") == 0.0
    assert site.metric("federationd_link_up", site="gamma-3", default=None) is None
    with pytest.raises(LookupError, match=r'no sample federationd_link_up\{site="gamma-3"\}'):
        site.metric("federationd_link_up", site="gamma-3")
    with pytest.raises(LookupError):
        site.metric("federationd_link_up")  # the labels must match exactly
