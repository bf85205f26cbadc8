"""Bad input 7: what a partner's credential can do on our broker. `fed.H.P` may publish to exchange `federation`
with routing key P and nothing else: another routing key, another exchange, reading any queue, declaring, binding,
purging or deleting anything, another vhost, the management API: all refused by the broker itself. After
`federationd link release`, its live connection is closed and it cannot authenticate again."""

from __future__ import annotations

import pika
import pika.exceptions
import pytest

from federationd import wire
from tests.faults.common import (
    FIGURES,
    REFUSED,
    change,
    confirming_channel,
    connect_as,
    count_records,
    credential_of,
    epoch_of,
    link,
    publish,
    raw,
    wait_closed,
)
from tests.support.broker import ManagementAPIError
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration


def _refused(connection: pika.BlockingConnection, attempt, code: int = 403) -> str:
    """Run `attempt(channel)` on a fresh channel; the broker must close that channel with `code`."""
    channel = confirming_channel(connection)
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as closed:
        attempt(channel)
    assert closed.value.reply_code == code, closed.value
    FIGURES[REFUSED] += 1
    return str(closed.value.reply_text)


def test_partner_credential_can_only_publish_its_own_routing_key_until_released(make_site, broker):
    a, b = make_site("alpha"), make_site("beta")
    link(a, b)
    wait_until(lambda: count_records(a, b.id, "company") == 1, 60, what="B's snapshot at A (its new epoch)")
    user, password = credential_of(b, a.id)
    assert user == f"fed.{a.id}.{b.id}"
    body = raw(wire.changes_body(b.id, epoch_of(b), [change(b.id, "probe", 1)]))
    inbound_b, inbound_other = f"federation.inbound.{b.id}", "federation.handshake"

    connection = connect_as(broker, a.id, user, password)
    try:
        attempts = {
            "another routing key": lambda ch: publish(ch, "site-zz", body, user_id=user),
            "our own routing key": lambda ch: publish(ch, a.id, body, user_id=user),
            "a handshake key": lambda ch: publish(ch, "handshake.0123", body, user_id=user),
            "the dead-letter exchange": lambda ch: publish(ch, b.id, body, user_id=user, exchange="federation.dead"),
            "the default exchange, straight into a queue": lambda ch: publish(ch, inbound_b, body, user_id=user,
                                                                             exchange=""),
            "amq.topic": lambda ch: publish(ch, b.id, body, user_id=user, exchange="amq.topic"),
            "basic_get on its own inbound queue": lambda ch: ch.basic_get(inbound_b),
            "basic_get on the handshake queue": lambda ch: ch.basic_get(inbound_other),
            "basic_get on its dead-letter queue": lambda ch: ch.basic_get(f"federation.dead.{b.id}"),
            "consume its inbound queue": lambda ch: ch.basic_consume(inbound_b, lambda *_: None),
            "declare a queue": lambda ch: ch.queue_declare("partner-made", durable=True),
            "declare an exchange": lambda ch: ch.exchange_declare("partner-made", exchange_type="fanout"),
            "bind a queue": lambda ch: ch.queue_bind(inbound_b, "federation", routing_key="#"),
            "purge a queue": lambda ch: ch.queue_purge(inbound_b),
            "delete a queue": lambda ch: ch.queue_delete(inbound_b),
            "delete the exchange": lambda ch: ch.exchange_delete("federation"),
        }
        problems = {}
        for name, attempt in attempts.items():
            try:
                text = _refused(connection, attempt)
            except BaseException as exc:  # collect all, report together
                problems[name] = repr(exc)
                if not connection.is_open:
                    connection = connect_as(broker, a.id, user, password)
            else:
                assert "ACCESS_REFUSED" in text, (name, text)
        assert not problems, problems

        # and what it may do: publish its own routing key, confirmed
        publish(confirming_channel(connection), b.id, body, user_id=user)
    finally:
        if connection.is_open:
            connection.close()

    with pytest.raises(pika.exceptions.ProbableAccessDeniedError):  # another site's vhost
        connect_as(broker, b.id, user, password)
    with pytest.raises(ManagementAPIError) as management:  # no management tags
        broker.api("GET", f"/api/queues/{a.id}", auth=(user, password))
    assert management.value.status == 401
    wait_until(lambda: "probe" in {r["id"] for r in a.records("employee", origin=b.id)}, 60,
               what="the one allowed publish applied")
    assert "partner-made" not in {q["name"] for q in broker.api("GET", f"/api/queues/{a.id}")}

    # release: the partner's live connection is closed and it cannot authenticate again
    connection = connect_as(broker, a.id, user, password)
    try:
        channel = confirming_channel(connection)
        publish(channel, b.id, raw(wire.changes_body(b.id, epoch_of(b), [])), user_id=user)
        a.cli("link", "release", b.id, "--yes")
        closed = wait_closed(connection, 30, "the broker closing the released partner's live connection")
        assert isinstance(closed, pika.exceptions.ConnectionClosedByBroker), repr(closed)
        assert closed.reply_code == 320, closed  # CONNECTION_FORCED
    finally:
        if connection.is_open:
            connection.close()
    with pytest.raises(pika.exceptions.ProbableAuthenticationError):
        connect_as(broker, a.id, user, password)
    users = {u["name"] for u in broker.api("GET", "/api/users")}
    assert user not in users
    # B is told and revokes A's user on its own broker too
    wait_until(lambda: f"fed.{b.id}.{a.id}" not in {u["name"] for u in broker.api("GET", "/api/users")}, 60,
               what="B revoking A's user")
