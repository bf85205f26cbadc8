"""Bad input 8: a partner broker with a bad certificate (self-signed, wrong host name, expired) is refused, at
`link accept` and at every later connect, with one line that names the partner and the certificate problem."""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from federationd.tokens import decode
from tests.faults.common import (
    BAD_CERTS,
    FIGURES,
    UNREACHABLE,
    accept,
    boot_broker,
    converge,
    count_records,
    credential_of,
    database_text,
    link,
    link_row,
)
from tests.support.broker import TestBroker
from tests.support.pki import PKI
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration

# leaf -> words of which at least one must be in the error (besides "certificate" and the partner's id)
PROBLEMS = {"self_signed": ("self-signed", "self signed"), "wrong_host": ("hostname", "host name"),
            "expired": ("expired",)}


@pytest.fixture(scope="module")
def bad_brokers(tmp_path_factory: pytest.TempPathFactory, pki: PKI) -> Iterator[dict[str, TestBroker]]:
    """One broker per bad leaf, booted side by side."""
    with ThreadPoolExecutor(len(PROBLEMS)) as pool:
        futures = {leaf: pool.submit(boot_broker, tmp_path_factory.mktemp(f"broker-{leaf}"), pki, leaf)
                   for leaf in PROBLEMS}
        nodes = {leaf: future.result() for leaf, future in futures.items()}
    try:
        yield nodes
    finally:
        with ThreadPoolExecutor(len(nodes)) as pool:
            list(pool.map(TestBroker.stop, nodes.values()))


def _names_the_problem(text: str, leaf: str) -> bool:
    lowered = text.lower()
    return "certificate" in lowered and any(word in lowered for word in PROBLEMS[leaf])


def test_link_accept_refuses_a_partner_broker_with_a_bad_certificate(make_site, broker, bad_brokers):
    a, b = make_site("alpha", start=False), make_site("beta", start=False)
    token = decode(a.cli("link", "request").stdout.strip().splitlines()[-1])
    before = database_text(b)
    for leaf, bad in bad_brokers.items():
        bad.add_site(a.id)
        forged = type(token)(**{**token.__dict__, "public_url": bad.public_url(a.id)}).encode()
        result = accept(b, forged)
        FIGURES[BAD_CERTS] += 1
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 69, (leaf, result.stderr)
        assert len(lines) == 1 and a.id in lines[0] and _names_the_problem(lines[0], leaf), (leaf, lines)
        assert b.link_state(a.id) is None
    assert database_text(b) == before  # nothing stored
    assert f"fed.{b.id}.{a.id}" not in {u["name"] for u in broker.api("GET", "/api/users")}  # nor left behind


def _provision_as_b(bad: TestBroker, vhost: str, partner: str, user: str, password: str) -> str:
    """Give the bad broker everything A needs to deliver to B there (B's vhost, A's user with A's real password,
    the exchange and A's inbound queue): only the certificate can stop A's publish. Returns the queue's name."""
    q = urllib.parse.quote
    bad.add_site(vhost)
    bad.api("PUT", f"/api/users/{q(user, safe='')}", {"password": password, "tags": ""})
    bad.api("PUT", f"/api/permissions/{q(vhost, safe='')}/{q(user, safe='')}",
            {"configure": "", "write": ".*", "read": ""})
    queue = f"federation.inbound.{partner}"
    bad.api("PUT", f"/api/exchanges/{q(vhost, safe='')}/federation", {"type": "topic", "durable": True})
    bad.api("PUT", f"/api/queues/{q(vhost, safe='')}/{queue}", {"durable": True})
    bad.api("POST", f"/api/bindings/{q(vhost, safe='')}/e/federation/q/{queue}", {"routing_key": partner})
    return queue


def _queued(bad: TestBroker, vhost: str, queue: str) -> int:
    info = bad.api("GET", f"/api/queues/{urllib.parse.quote(vhost, safe='')}/{queue}")
    return int(info.get("messages") or 0) + int(info.get("messages_unacknowledged") or 0)


def test_every_connect_refuses_a_partner_broker_whose_certificate_turned_bad(make_site, bad_brokers):
    a = make_site("alpha", transport={"retry_max": "2s"})
    b = make_site("beta")
    link(a, b)
    good_url = b.cfg["broker"]["public_url"]
    user, password = credential_of(a, b.id)
    for leaf, bad in bad_brokers.items():
        queue = _provision_as_b(bad, b.id, a.id, user, password)
        b.cli("link", "change-url", bad.public_url(b.id))  # B tells A: my broker is now over there
        FIGURES[BAD_CERTS] += 1
        a.put("employee", f"during-{leaf}", {"name": leaf})
        wait_until(lambda: _names_the_problem(a.link_row(b.id).get("note") or "", leaf), 60,  # noqa: B023
                   what=f"A's status naming the {leaf} certificate problem")
        note = a.link_row(b.id)["note"]
        assert b.id in note and "\n" not in note, note
        assert a.metric("federationd_link_up", site=b.id) == 0
        assert _names_the_problem(" ".join(a.cli("status").stdout.split()), leaf)
        # the broker with the bad certificate would have taken A's batch (A's user, password, exchange and queue
        # are all there): nothing reached it, and A's user never got a connection open on it
        assert _queued(bad, b.id, queue) == 0, f"A published to a broker serving a {leaf} certificate"
        assert not [c for c in bad.connections() if c.get("user") == user], f"A connected to the {leaf} broker"
        assert link_row(a, b.id).sent_seq < a.json("records", "get", "employee", f"during-{leaf}")["version"]
    b.cli("link", "change-url", good_url)
    diff = converge(a, b, 90, ("company", "employee"))
    assert diff.clean, diff
    assert count_records(b, a.id, "employee") == len(PROBLEMS)


def test_an_unreachable_partner_broker_is_named_with_the_cause(make_site):
    """Regression (found by this suite, fixed in 72aa6c4): a refused connection was reported as
    'AMQPConnectorSocketConnectError', pika's class name, instead of the cause."""
    a, b = make_site("alpha", start=False), make_site("beta", start=False)
    token = decode(a.cli("link", "request").stdout.strip().splitlines()[-1])
    closed = type(token)(**{**token.__dict__, "public_url": "amqps://localhost:9/nowhere"}).encode()
    result = accept(b, closed)
    FIGURES[UNREACHABLE] += 1
    assert result.returncode == 69 and a.id in result.stderr
    assert "refused" in result.stderr.lower(), result.stderr
