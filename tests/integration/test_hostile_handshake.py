"""Hostile handshakes (issue 11): one test per attack, on the real TLS broker, SQLite and PostgreSQL.

An attacker here holds what a mail reader holds (the token) and a broker of its own; it publishes with pika
in-process, exactly what its own federationd would have sent. The operators read the verification codes to each
other by phone: in these tests, what one site printed is what the other types.
"""

from __future__ import annotations

import base64
import json
import math
import ssl
import time
import uuid
from typing import Any

import pika
import pytest
from sqlalchemy import select, update

from federationd import codes, tickets, wire
from federationd.identity import signing_key
from federationd.schema import link_log
from federationd.schema import links as link_rows
from federationd.schema import tokens as token_rows
from federationd.tokens import decode
from tests.faults.common import credential_of
from tests.support.sites import Site, coded, link
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration

NO_CODE = "000-000-000-000-000"
SHOW_KEYS = {"site", "state", "paused", "paused_by", "company", "name", "public_url", "code", "incarnation",
             "requested_at", "requested_by", "accepted_at", "accepted_by", "started_at"}


# -- an attacker's tools ----------------------------------------------------------------------------------------
def _publish(broker: Any, vhost: str, user: str, password: str, routing_key: str, body: dict[str, Any],
             kind: str = "control", times: int = 1) -> None:
    context = ssl.create_default_context(cafile=str(broker.ca_file))
    params = pika.ConnectionParameters(
        host="localhost", port=broker.amqps_port, virtual_host=vhost,
        credentials=pika.PlainCredentials(user, password),
        ssl_options=pika.SSLOptions(context, server_hostname="localhost"))
    connection = pika.BlockingConnection(params)
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        for _ in range(times):
            message = wire.encode(kind, body)
            channel.basic_publish("federation", routing_key, message.body,
                                  pika.BasicProperties(**message.properties(user)), mandatory=True)
    finally:
        if connection.is_open:
            connection.close()


def _raw_key() -> str:
    return base64.b64encode(uuid.uuid4().bytes * 2).decode()


def _acceptance(token_text: str, claimed_site: str, public_url: str, key: str | None = None,
                **extra: Any) -> dict[str, Any]:
    token = decode(token_text)
    return wire.control_body(claimed_site, "accept", token_id=token.token_id,
                             token_digest=codes.token_digest(token_text), accepted_by="mallory@evil",
                             company="Evil Co.", name="Evil", public_url=public_url, user="thief",
                             password="thief-password", key=key or _raw_key(), incarnation=token.token_id, **extra)


def _accept_as_thief(broker: Any, token_text: str, body: dict[str, Any]) -> None:
    token = decode(token_text)
    _publish(broker, token.site, token.user, token.password, f"handshake.{token.token_id}", body)


def _as_partner(broker: Any, home: Site, partner: Site, body: dict[str, Any], kind: str = "control",
                times: int = 1) -> None:
    """Publish to `home`'s broker with the credential `home` gave `partner` (read from the partner's database)."""
    user, password = credential_of(partner, home.id)  # opened with the partner's sealing key
    _publish(broker, home.id, user, password, partner.id, body, kind, times)


def _users(broker: Any) -> set[str]:
    return {u["name"] for u in broker.api("GET", "/api/users")}


def _show(site: Site, partner: str) -> dict[str, Any]:
    return dict(site.json("link", "show", partner))


def _log(site: Site, partner: str | None, contains: str) -> int:
    """Link-log rows about `partner` (None: any) that contain `contains`."""
    query = select(link_log.c.message)
    if partner is not None:
        query = query.where(link_log.c.site == partner)
    with site.engine() as engine, engine.connect() as conn:
        rows = conn.execute(query).scalars().all()
    return sum(contains in row for row in rows)


def _incarnation(site: Site, partner: str) -> str:
    return str(_show(site, partner)["incarnation"])


# -- the attacks ----------------------------------------------------------------------------------------------
def test_thief_accepting_first_gets_nothing_without_the_acceptors_code(make_site, broker):
    a, b, thief = make_site("alpha"), make_site("beta"), make_site("thief", start=False)
    issued = a.json("link", "request")
    _accept_as_thief(broker, issued["token"], _acceptance(issued["token"], b.id, thief.cfg["broker"]["public_url"]))
    wait_until(lambda: a.link_state(b.id) == "awaiting_start", 60, what="A sees the thief's acceptance as B's")
    shown = _show(a, b.id)
    assert set(shown) >= SHOW_KEYS and shown["state"] == "awaiting_start" and shown["paused_by"] is None
    assert shown["code"] and shown["accepted_by"] == "mallory@evil" and shown["incarnation"]

    # the real B finds the token used (once A has revoked its one-time user, right after reading the thief's
    # acceptance); A's operator has no code from B, and a wrong one is refused
    token_user = decode(issued["token"]).user
    wait_until(lambda: token_user not in _users(broker), 60, what="the used token's broker user revoked at A")
    refused = b.cli("link", "accept", issued["token"], "--code", issued["code"], check=False)
    assert refused.returncode == 1 and "already used" in refused.stderr
    no_code = a.cli("link", "start", b.id, check=False)
    assert no_code.returncode == 64 and "--code" in no_code.stderr
    wrong = a.cli("link", "start", b.id, "--code", NO_CODE, check=False)
    assert wrong.returncode == 1 and "does not match" in wrong.stderr and len(wrong.stderr.splitlines()) == 1
    assert f"fed.{a.id}.{b.id}" not in _users(broker) and a.link_state(b.id) == "awaiting_start"

    # A rejects the impostor (unreachable: its credential is bogus) and links with the real B
    a.cli("link", "reject", b.id, "--local")
    assert a.link_state(b.id) == "stopped"
    link(a, b)


@pytest.mark.parametrize("edit", ["key", "public_url", "site"])
def test_an_edited_token_is_refused_at_accept_for_its_code(make_site, broker, edit):
    a, b = make_site("alpha", start=False), make_site("beta", start=False)
    issued = a.json("link", "request")
    token = decode(issued["token"])
    value = {"key": _raw_key(), "public_url": "amqps://evil.example:5671/evil", "site": "site-zz"}[edit]
    edited = type(token)(**{**token.__dict__, edit: value}).encode()
    users = _users(broker)
    result = b.cli("link", "accept", edited, "--code", issued["code"], check=False)
    assert result.returncode == 1 and "changed on its way" in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert b.json("status") == [] and _users(broker) == users  # nothing stored, nothing provisioned
    assert b.json("link", "inspect", edited)["code"] != issued["code"]


def test_acceptor_release_from_awaiting_start_leaves_nobody_stuck(make_site):
    a, b = make_site("alpha"), make_site("beta")
    issued = a.json("link", "request")
    accepted = b.json("link", "accept", issued["token"], "--code", issued["code"])
    wait_until(lambda: a.link_state(b.id) == "awaiting_start", 60, what="A sees B's acceptance")
    b.cli("link", "release", a.id, "--yes")
    assert b.link_state(a.id) == "stopped"
    started = a.cli("link", "start", b.id, "--code", accepted["code"], check=False)
    assert started.returncode == 1 and "withdrew" in started.stderr, started.stderr
    assert a.link_state(b.id) == "stopped" and "withdrew" in _show(a, b.id)["stop_reason"]
    link(a, b)  # the pair links again


def test_requester_refusals_are_told_back_and_both_stop(make_site):
    a, b, c = make_site("alpha"), make_site("beta"), make_site("gamma")
    # for another site: A issued the token for "site-zz"
    issued = a.json("link", "request", "--for", "site-zz")
    b.json("link", "accept", issued["token"], "--code", issued["code"])
    wait_until(lambda: b.link_state(a.id) == "stopped", 60, what="B told that A refused its acceptance")
    assert "issued for 'site-zz'" in b.link_row(a.id)["note"]
    assert "issued for 'site-zz'" in _show(b, a.id)["stop_reason"]
    assert a.link_state(b.id) is None
    # expired at the requester (its clock says so, whatever the token's text says)
    issued = a.json("link", "request")
    a.stop()  # so that its housekeeping cannot revoke the expired token's user before C's acceptance is queued
    with a.engine() as engine, engine.begin() as conn:
        conn.execute(update(token_rows).values(expires_at=time.time() - 1))
    c.json("link", "accept", issued["token"], "--code", issued["code"])
    a.start()
    wait_until(lambda: c.link_state(a.id) == "stopped", 60, what="C told that its acceptance came too late")
    assert "expired" in c.link_row(a.id)["note"]
    link(a, b)  # a stopped link never blocks a new handshake


def test_squatted_site_id_with_a_bad_url_is_refused_and_the_real_partner_links(make_site, broker):
    a, b = make_site("alpha"), make_site("beta")
    issued = a.json("link", "request")
    _accept_as_thief(broker, issued["token"], _acceptance(issued["token"], b.id, "amqps://[broken"))
    wait_until(lambda: _log(a, None, "invalid public URL"), 60, what="A refusing the squatter")
    assert a.link_state(b.id) is None
    accepted = b.json("link", "accept", issued["token"], "--code", issued["code"])  # same token, still unused
    wait_until(lambda: a.link_state(b.id) == "awaiting_start", 60, what="A sees the real B")
    a.cli("link", "start", b.id, "--code", accepted["code"])
    wait_until(lambda: b.link_state(a.id) == "linked", 60, what="linked")


def test_a_stale_release_from_an_earlier_incarnation_is_dropped(make_site, broker):
    a, b = make_site("alpha"), make_site("beta")
    link(a, b)
    b.cli("pause", a.id)  # B stops consuming: what A's broker user publishes waits in the queue
    for incarnation in ("0123456789abcdef", None):
        fields = {"incarnation": incarnation} if incarnation else {}
        _as_partner(broker, b, a, wire.control_body(a.id, "release", **fields))
    b.cli("resume", a.id)
    wait_until(lambda: _log(b, a.id, "of an earlier link") == 2, 60, what="both stale releases dropped at B")
    assert b.link_state(a.id) == "linked" and a.link_state(b.id) == "linked"
    a.put("employee", "after", {"name": "Still linked"})
    wait_until(lambda: b.records("employee", origin=a.id), 60, what="data still flows")


def test_nan_infinite_and_huge_times_are_refused_cleanly(make_site):
    a, b = make_site("alpha"), make_site("beta")
    issued = a.json("link", "request")
    raw = json.loads(base64.urlsafe_b64decode(issued["token"][9:] + "=" * (-len(issued["token"][9:]) % 4)))
    for name, value in (("expires_at", math.nan), ("expires_at", math.inf), ("requested_at", 1e20)):
        text = "fedlink1." + base64.urlsafe_b64encode(json.dumps({**raw, name: value}).encode()).decode()
        for verb in (("link", "inspect", text), ("link", "accept", *coded(text))):
            result = b.cli(*verb, check=False)
            assert result.returncode == 1 and "damaged" in result.stderr and "Traceback" not in result.stderr
            assert "finite" in result.stderr, result.stderr
    link(a, b)
    a.put("employee", "e-1", {"name": "Visitor"})
    wait_until(lambda: b.records("employee", origin=a.id), 60, what="A's employee at B")
    key = signing_key(a.dir / "state")
    for iat, exp in ((math.nan, math.inf), (time.time(), math.inf), (1e20, 1e20 + 60)):
        body = json.dumps({"iss": a.id, "aud": b.id, "sub": "e-1", "iat": iat, "exp": exp, "jti": uuid.uuid4().hex},
                          separators=(",", ":"), sort_keys=True).encode()
        ticket = f"{tickets.PREFIX}{tickets._b64(body)}.{tickets._b64(key.sign(body))}"
        result = b.cli("access", "redeem", ticket, check=False)
        assert result.returncode == 1 and "finite" in result.stderr and "Traceback" not in result.stderr


def test_a_malformed_partner_key_is_refused_and_never_breaks_redeem_for_others(make_site, broker):
    a, b, c = make_site("alpha"), make_site("beta"), make_site("gamma")
    issued = a.json("link", "request")
    _accept_as_thief(broker, issued["token"], _acceptance(issued["token"], c.id, c.cfg["broker"]["public_url"],
                                                          key=base64.b64encode(b"short").decode()))
    wait_until(lambda: _log(a, c.id, "signing key"), 60, what="A refusing an acceptance with a bad key")
    assert a.link_state(c.id) is None
    link(a, b)
    link(c, b)
    with b.engine() as engine, engine.begin() as conn:  # a key stored before keys were validated
        conn.execute(update(link_rows).where(link_rows.c.site == c.id).values(partner_key="bm90IGEga2V5"))
    a.put("employee", "e-1", {"name": "Visitor"})
    wait_until(lambda: b.records("employee", origin=a.id), 60, what="A's employee at B")
    answer = b.json("access", "redeem", a.cli("access", "ticket", b.id, "e-1").stdout.strip())
    assert answer["allowed"] is True and answer["origin"] == a.id


def test_a_future_epoch_is_refused(make_site, broker):
    a, b = make_site("alpha"), make_site("beta")
    link(a, b)
    poisoned = {"category": "employee", "id": "frozen", "origin": b.id, "version": 1, "deleted": False,
                "data": {"name": "poisoned"}}
    _as_partner(broker, a, b, wire.changes_body(b.id, int(time.time()) + 10 * 86400, [poisoned]), "changes")
    wait_until(lambda: _log(a, b.id, "future_epoch"), 60, what="the future epoch refused at A")
    b.put("employee", "frozen", {"name": "honest"})
    wait_until(lambda: a.records("employee", origin=b.id), 60, what="B's honest record at A")
    assert a.records("employee", origin=b.id)[0]["data"] == {"name": "honest"}


def test_a_relink_flood_gives_at_most_one_snapshot(make_site, broker):
    a, b = make_site("alpha"), make_site("beta")
    link(a, b)
    wait_until(lambda: _log(a, b.id, "sent a full snapshot") == 1, 60, what="A's initial snapshot")
    body = wire.control_body(b.id, "relink", incarnation=_incarnation(b, a.id))
    _as_partner(broker, a, b, body, times=100)
    wait_until(lambda: _log(a, b.id, "asked for a relink") == 100, 60, what="every request handled at A")
    a.put("employee", "marker", {"name": "after the flood"})
    wait_until(lambda: b.records("employee", origin=a.id), 60, what="a send after the flood")
    assert _log(a, b.id, "sent a full snapshot") <= 2  # the initial one and at most one more


def test_link_reject_end_to_end(make_site):
    a, b = make_site("alpha"), make_site("beta")
    issued = a.json("link", "request")
    b.json("link", "accept", issued["token"], "--code", issued["code"])
    wait_until(lambda: a.link_state(b.id) == "awaiting_start", 60, what="A sees B's acceptance")
    a.cli("link", "reject", b.id)
    assert a.link_state(b.id) == "stopped"
    wait_until(lambda: b.link_state(a.id) == "stopped", 60, what="B told of the rejection")
    assert "rejected" in b.link_row(a.id)["note"]
    link(a, b)


def test_a_revocation_is_retried_until_the_user_is_gone(make_site, broker):
    a, b = make_site("alpha"), make_site("beta")
    link(a, b)
    user = f"fed.{a.id}.{b.id}"
    assert user in _users(broker)
    a.stop()
    good = a.cfg["broker"]["management_url"]
    a.cfg["broker"]["management_url"] = "https://localhost:9"  # the management API is unreachable
    a.write_config()
    a.cli("link", "release", b.id, "--yes")
    assert a.link_state(b.id) == "stopped" and user in _users(broker)
    a.cfg["broker"]["management_url"] = good
    a.write_config()
    a.start()
    wait_until(lambda: user not in _users(broker), 60, what="the partner's user revoked once the API answers")
