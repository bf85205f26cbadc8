"""What B can never do to A, and what a link token can be used for (issue 3, "Bad input")."""

from __future__ import annotations

import json
import ssl
import time

import pika
import pytest
from sqlalchemy import MetaData, select

from federationd import links, wire
from federationd.store import reading
from federationd.tokens import decode
from tests.support.sites import coded, link, start_code
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration


def _partner_channel(broker, site, user, password):
    context = ssl.create_default_context(cafile=str(broker.ca_file))
    params = pika.ConnectionParameters(
        host="localhost", port=broker.amqps_port, virtual_host=site,
        credentials=pika.PlainCredentials(user, password),
        ssl_options=pika.SSLOptions(context, server_hostname="localhost"))
    connection = pika.BlockingConnection(params)
    channel = connection.channel()
    channel.confirm_delivery()
    return connection, channel


def _publish(channel, user, routing_key, body, kind="changes"):
    message = wire.encode(kind, body)
    channel.basic_publish("federation", routing_key, message.body, pika.BasicProperties(**message.properties(user)),
                          mandatory=True)


def _credential_of(site, partner):
    with site.engine() as engine, reading(engine) as conn:
        row = links.get(conn, partner)
    return row.remote_user, row.remote_password


def _change(origin, record_id, version, name):
    return {"category": "employee", "id": record_id, "origin": origin, "version": version, "deleted": False,
            "data": {"name": name}}


def test_forged_messages_are_rejected_and_honest_ones_behind_them_apply(make_site, broker):
    a, b = make_site("alpha"), make_site("beta")
    link(a, b)
    a.put("employee", "boss", {"name": "The Boss"})
    wait_until(lambda: b.records("employee", origin=a.id), 60, what="A's employee at B")
    user, password = _credential_of(b, a.id)
    assert user == f"fed.{a.id}.{b.id}"
    epoch = int(time.time()) + 3600  # ahead of every epoch A holds (within the allowed skew): a forgery would win

    connection, channel = _partner_channel(broker, a.id, user, password)
    try:
        # 1. B claims A's own record, inside a body that honestly says origin B
        _publish(channel, user, b.id, wire.changes_body(b.id, epoch, [_change(a.id, "boss", 10**9, "pwned")]))
        # 2. B claims to be a third site
        _publish(channel, user, b.id, wire.changes_body("site-zz", epoch, [_change("site-zz", "x", 1, "ghost")]))
        # 3. B claims to be A
        _publish(channel, user, b.id, wire.changes_body(a.id, epoch, [_change(a.id, "boss", 10**9, "pwned")]))
        # 4. an honest message right behind them
        _publish(channel, user, b.id, wire.changes_body(b.id, epoch, [_change(b.id, "honest", 10**9, "Honest")]))
        # 5. B tries another routing key: the broker refuses (topic permission), closing the channel
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as refused:
            _publish(channel, user, "site-zz", wire.changes_body(b.id, epoch, []))
        assert refused.value.reply_code == 403
    finally:
        if connection.is_open:
            connection.close()

    wait_until(lambda: a.records("employee", origin=b.id), 60, what="the honest record at A")
    assert [r["id"] for r in a.records("employee", origin=b.id)] == ["honest"]
    assert a.json("records", "get", "employee", "boss")["data"] == {"name": "The Boss"}
    assert a.records("employee", origin="site-zz") == []
    wait_until(lambda: a.metric("federationd_rejected_records_total", site=b.id, reason="foreign_origin") == 1, 30,
               what="the foreign-origin rejection counted")
    assert a.metric("federationd_rejected_records_total", site=b.id, reason="origin_mismatch") == 2
    dead = broker.api("GET", f"/api/queues/{a.id}/federation.dead.{b.id}")
    wait_until(lambda: broker.api("GET", f"/api/queues/{a.id}/federation.dead.{b.id}")["messages"] == 3, 30,
               what=f"3 messages in A's dead-letter queue for B (had {dead.get('messages')})")


def test_link_token_is_single_use_and_inspect_has_no_side_effect(make_site, broker):
    # C's daemon stays stopped: its own start-up writes (details, outbox trim) must not race the "nothing
    # changed" dumps; inspect and a refused accept need no daemon.
    a, b, c = make_site("alpha"), make_site("beta"), make_site("gamma", start=False)
    token = a.cli("link", "request").stdout.strip().splitlines()[-1]

    users_before = {u["name"] for u in broker.api("GET", "/api/users")}
    queues_before = {q["name"] for q in broker.api("GET", f"/api/queues/{c.id}")}
    dump_before = _dump(c)
    shown = c.json("link", "inspect", token)
    assert set(shown) == {"site", "company", "name", "public_url", "requested_at", "requested_by", "expires_at",
                          "code"}
    assert shown["site"] == a.id and "password" not in json.dumps(shown)
    assert _dump(c) == dump_before
    assert {u["name"] for u in broker.api("GET", "/api/users")} == users_before
    assert {q["name"] for q in broker.api("GET", f"/api/queues/{c.id}")} == queues_before

    b.cli("link", "accept", *coded(token))
    wait_until(lambda: a.link_state(b.id) == "awaiting_start", 60, what="A sees B's acceptance")
    reused = c.cli("link", "accept", *coded(token), check=False)
    assert reused.returncode != 0
    assert "already used" in reused.stderr and len(reused.stderr.strip().splitlines()) == 1
    assert c.link_state(a.id) is None and _dump(c) == dump_before
    assert f"fed.{c.id}.{a.id}" not in {u["name"] for u in broker.api("GET", "/api/users")}

    # an expired token is refused at the acceptor, before anything is sent or stored
    fresh = decode(a.cli("link", "request").stdout.strip().splitlines()[-1])
    expired = type(fresh)(**{**fresh.__dict__, "expires_at": fresh.requested_at - 1}).encode()
    refused = c.cli("link", "accept", *coded(expired), check=False)
    assert refused.returncode == 1 and "expired" in refused.stderr
    assert _dump(c) == dump_before

    a.cli("link", "start", b.id, *start_code(a, b.id))
    wait_until(lambda: b.link_state(a.id) == "linked", 60, what="B linked")
    token_user = f"fed.{a.id}.token.{decode(token).token_id}"
    assert token_user not in {u["name"] for u in broker.api("GET", "/api/users")}


def test_unknown_partner_and_unreachable_broker_fail_with_one_line(make_site):
    a = make_site("alpha", start=False)
    result = a.cli("link", "start", "nobody", "--code", "000-000-000-000-000", check=False)
    assert result.returncode == 1 and "unknown partner 'nobody'" in result.stderr
    token = decode(make_site("beta", start=False).cli("link", "request").stdout.strip().splitlines()[-1])
    dead_end = type(token)(**{**token.__dict__, "public_url": "amqps://localhost:9/nowhere"}).encode()
    dump_before = _dump(a)
    result = a.cli("link", "accept", *coded(dead_end), check=False)
    assert result.returncode == 69, result.stderr
    assert token.site in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert _dump(a) == dump_before


def test_config_errors_name_the_key_and_never_the_password(make_site):
    a = make_site("alpha", start=False)
    a.cfg["schedule"]["quiet_period"] = "fifteen"
    a.write_config()
    assert a.password in a.config_path.read_text()  # the real password is in the file the error comes from
    result = a.cli("status", check=False)
    assert result.returncode == 78
    assert "schedule.quiet_period" in result.stderr and str(a.config_path) in result.stderr
    assert a.password not in result.stderr
    a.cfg["schedule"]["quiet_period"] = "1s"
    a.cfg["surprise"] = True
    a.write_config()
    result = a.cli("status", check=False)
    assert result.returncode == 78 and "unknown key 'surprise'" in result.stderr


def _dump(site):
    """Every row of every table, for "nothing changed" assertions."""
    meta = MetaData()
    with site.engine() as engine:
        meta.reflect(engine)
        with engine.connect() as conn:
            return {name: sorted(map(repr, conn.execute(select(table)).all())) for name, table in meta.tables.items()}
