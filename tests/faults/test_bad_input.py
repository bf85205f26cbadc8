"""Bad input 6: malformed and hostile messages from an authenticated partner, published on our broker with the
partner's own credential (as the partner's daemon would). Each malformed, forged or rule-breaking message is refused
into `federation.dead.PARTNER`; a message with one bad record (bad values, unknown category, credential field) is
applied without that record. Either way the refusal is counted in `federationd_rejected_records_total{site,reason}`
under the right reason, logged, and never blocks the queue: a good message right behind them is applied. A refused
message is never half-applied; a snapshot part that arrives without its first part is not bad at all."""

from __future__ import annotations

import gzip
import zlib
from collections import Counter

import pika.exceptions
import pytest

from federationd import wire
from tests.faults.common import (
    FIGURES,
    MALFORMED,
    change,
    confirming_channel,
    connect_as,
    converge,
    count_records,
    credential_of,
    epoch_of,
    link,
    publish,
    raw,
)
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration


def _bomb(origin: str) -> bytes:
    """A gzip body that inflates past wire.MAX_BODY_BYTES (64 MiB) from well under 1 MiB on the wire."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    head = b'{"schema":1,"origin":"' + origin.encode() + b'","pad":"'
    parts = [compressor.compress(head)]
    block = b"0" * (1024 * 1024)
    parts.extend(compressor.compress(block) for _ in range(wire.MAX_BODY_BYTES // len(block) + 2))
    parts.append(compressor.compress(b'"}') + compressor.flush())
    return b"".join(parts)


SKIPPED = {"wrong field type", "deleted as 0", "unknown category", "half valid", "credential field"}


def _bad_messages(home: str, partner: str, user: str, epoch: int) -> list[tuple[str, dict, str, int]]:
    """(name, publish kwargs, expected reason, records counted); the SKIPPED ones apply without their bad record."""
    def body(*changes: dict, origin: str = partner, **extra: object) -> bytes:
        return raw({**wire.changes_body(origin, epoch, list(changes)), **extra})

    good = change(partner, "half-good", 10**6, "applied: only its neighbour is bad", category="position")
    return [
        ("says gzip, is not", {"body": body(change(partner, "x1", 7)), "encoding": "gzip"}, "bad_encoding", 1),
        ("gzip of garbage", {"body": gzip.compress(bytes(range(256)) * 8), "encoding": "gzip"}, "bad_json", 1),
        ("not JSON", {"body": b"schema=1&origin=" + partner.encode()}, "bad_json", 1),
        ("empty body", {"body": b""}, "bad_json", 1),
        ("unknown schema", {"body": body(change(partner, "x2", 7), schema=2)}, "unknown_schema", 1),
        ("wrong field type", {"body": body({**change(partner, "x3", 7), "version": "7"}, first=7, last=7)},
         "invalid", 1),
        ("deleted as 0", {"body": body({**change(partner, "x4", 7), "deleted": 0})}, "invalid", 1),
        ("unknown category", {"body": body(change(partner, "x5", 7, category="payroll"))}, "unknown_category", 1),
        ("half valid", {"body": body(good, change(partner, "x6", 8, category="payroll"))}, "unknown_category", 1),
        ("credential field", {"body": body(change(partner, "x7", 9, data={"profile": {"Password": "x"}}))},
         "credential_field", 1),
        ("missing user_id", {"body": body(change(partner, "x8", 9)), "user_id": None}, "user_id_mismatch", 1),
        ("origin of a third site", {"body": body(change("site-zz", "x9", 9), origin="site-zz")},
         "origin_mismatch", 1),
        ("origin is us", {"body": body(change(home, "x10", 9), origin=home)}, "origin_mismatch", 1),
        ("our record inside", {"body": body(change(partner, "ok", 9), change(home, "company", 10**9))},
         "foreign_origin", 2),
        ("gzip bomb", {"body": _bomb(partner), "encoding": "gzip"}, "oversized", 1),
        ("unknown type", {"body": body(change(partner, "x11", 9)), "kind": "gossip"}, "bad_type", 1),
        ("no type", {"body": body(change(partner, "x12", 9)), "kind": None}, "bad_type", 1),
        ("unknown encoding", {"body": body(change(partner, "x13", 9)), "encoding": "br"}, "bad_encoding", 1),
        ("unknown control", {"body": raw(wire.control_body(partner, "self_destruct")), "kind": "control"},
         "unknown_control", 1),
        ("control: change_url to plain http", {"body": raw(wire.control_body(partner, "change_url",
                                                                            public_url="http://evil.example/x")),
                                                "kind": "control"}, "invalid_control", 1),
        ("control: watermark of strings", {"body": raw(wire.control_body(partner, "watermark", epoch="9", seq="9")),
                                           "kind": "control"}, "invalid_control", 1),
        ("control: visit policy of the wrong shape", {"body": raw(wire.control_body(
            partner, "visit_policy", visit={"employees": "everyone"})), "kind": "control"}, "invalid_control", 1),
        ("control: site_details with a 256-character company", {"body": raw(wire.control_body(
            partner, "site_details", company="x" * 256, name="HQ")), "kind": "control"}, "invalid_control", 1),
        ("control: site_details with a control character", {"body": raw(wire.control_body(
            partner, "site_details", company="Co.", name="bell\x07")), "kind": "control"}, "invalid_control", 1),
        ("control: start while linked", {"body": raw(wire.control_body(partner, "start", user="x", password="y")),
                                         "kind": "control"}, "unexpected_control", 1),
        ("control: an acceptance on the data queue", {"body": raw(wire.control_body(partner, "accept",
                                                                                     token_id="0" * 16)),
                                                      "kind": "control"}, "unknown_control", 1),
        ("control without a kind", {"body": raw({"schema": 1, "origin": partner, "control": {}}),
                                    "kind": "control"}, "invalid", 1),
    ]


def _part_without_its_first(partner: str, epoch: int) -> bytes:
    """Well formed: applied, and the snapshot waits for its other parts (it never completes here)."""
    return raw({**wire.changes_body(partner, epoch, [change(partner, "x14", 9, category="position")]),
                "snapshot": {"id": "nope", "part": 2, "final": False, "categories": ["position"]}})


def test_bad_messages_are_dead_lettered_counted_logged_and_never_block(make_site, broker):
    a, b = make_site("alpha"), make_site("beta")
    link(a, b)
    wait_until(lambda: count_records(a, b.id, "company") == 1, 60, what="B's snapshot at A")
    user, password = credential_of(b, a.id)  # B's credential on A's broker, as B's daemon uses it
    epoch = epoch_of(b)
    bad = _bad_messages(a.id, b.id, user, epoch)

    connection = connect_as(broker, a.id, user, password)
    try:
        channel = confirming_channel(connection)
        for _name, kwargs, _reason, _count in bad:
            options = {"kind": "changes", "user_id": user, **kwargs}
            publish(channel, b.id, options.pop("body"), **options)
        # a user_id that is not the connection's user: the broker itself refuses it (406), nothing is queued
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as refused:
            publish(channel, b.id, raw(wire.changes_body(b.id, epoch, [change(b.id, "spoof", 9)])),
                    user_id=f"fed.{a.id}.site-zz")
        assert refused.value.reply_code == 406 and "PRECONDITION_FAILED" in refused.value.reply_text
        # right behind them: honest messages
        channel = confirming_channel(connection)
        publish(channel, b.id, _part_without_its_first(b.id, epoch), kind="snapshot", user_id=user)
        publish(channel, b.id, raw(wire.changes_body(b.id, epoch, [change(b.id, "honest", 1, "Honest",
                                                                          category="group")])), user_id=user)
    finally:
        if connection.is_open:
            connection.close()
    FIGURES[MALFORMED] += len(bad) + 1
    b.put("employee", "b-real", {"name": "B's own change, sent by B's daemon"})  # and the partner's own traffic

    wait_until(lambda: count_records(a, b.id, "group") == 1 and count_records(a, b.id, "employee") == 1, 60,
               what="the honest messages behind the bad ones applied at A")
    assert [r["id"] for r in a.records("group", origin=b.id)] == ["honest"]
    assert [r["id"] for r in a.records("employee", origin=b.id, include_deleted=True)] == ["b-real"]
    wait_until(lambda: {r["id"] for r in a.records("position", origin=b.id)} == {"half-good", "x14"}, 60,
               what="the good record beside a bad one, and the early snapshot part, applied")
    assert a.records("employee", origin="site-zz", include_deleted=True) == []
    assert a.json("records", "get", "company", a.id)["data"]["company"] == a.cfg["site"]["company"]
    diff = converge(b, a, 60, ("company", "employee"))
    assert diff.clean, diff

    expected = Counter()
    for _name, _kwargs, reason, count in bad:
        expected[reason] += count
    wait_until(lambda: all(a.metric("federationd_rejected_records_total", site=b.id, reason=reason) == n
                           for reason, n in expected.items()), 30,
               what=f"rejections counted by reason: {dict(expected)}")
    dead = [(name, reason) for name, _kwargs, reason, _count in bad if name not in SKIPPED]
    wait_until(lambda: broker.api("GET", f"/api/queues/{a.id}/federation.dead.{b.id}").get("messages") == len(dead),
               30, what=f"{len(dead)} messages in A's dead-letter queue for B")
    logged = a.log_text()
    for _name, reason in dead:
        assert f"rejected a message from {b.id} to the dead-letter queue ({reason})" in logged, reason
    for name, _kwargs, reason, _count in bad:
        if name in SKIPPED:
            assert f"{b.id}: skipped 1 bad record(s) of a changes message (1 {reason})" in logged, name
    rows = [r["message"] for r in a.json("log", "--site", b.id, "--direction", "receive")]
    assert Counter(m.split("(", 1)[1].split(")", 1)[0] for m in rows if m.startswith("rejected a message")) == \
        Counter(reason for _name, reason in dead)
    assert sum(m.startswith("skipped 1 bad record(s)") for m in rows) == len(SKIPPED)
    assert "Traceback" not in logged
    assert a.proc.poll() is None


POISON = [  # values wire.decode accepts but that a database column cannot hold
    ("version of 2**63", lambda p, e: wire.changes_body(p, e, [change(p, "big-version", 2**63)])),
    ("epoch of 2**63", lambda p, e: wire.changes_body(p, 2**63, [change(p, "big-epoch", 5)])),
    ("NUL in an id", lambda p, e: wire.changes_body(p, e, [change(p, "nul\x00id", 5)])),  # that record: skipped
    ("a watermark over BIGINT", lambda p, e: wire.control_body(p, "watermark", epoch=2**64, seq=1)),
]


def test_values_the_database_refuses_do_not_block_the_queue(make_site, broker):
    """Regression (found by this suite, fixed in 72aa6c4): on PostgreSQL such a change failed in the database with
    a DataError that the dispatcher requeued forever, blocking the partner's queue; now the decoder refuses it."""
    a, b = make_site("alpha"), make_site("beta")
    link(a, b)
    wait_until(lambda: count_records(a, b.id, "company") == 1, 60, what="B's snapshot at A (its new epoch)")
    user, password = credential_of(b, a.id)
    epoch = epoch_of(b)
    connection = connect_as(broker, a.id, user, password)
    try:
        channel = confirming_channel(connection)
        for _name, make in POISON:
            body = make(b.id, epoch)
            publish(channel, b.id, raw(body), user_id=user, kind="control" if "control" in body else "changes")
        publish(channel, b.id, raw(wire.changes_body(b.id, epoch, [change(b.id, "behind", 1)])), user_id=user)
    finally:
        connection.close()
    FIGURES[MALFORMED] += len(POISON)
    wait_until(lambda: "behind" in {r["id"] for r in a.records("employee", origin=b.id)}, 60,
               what="the good message behind the poison applied")
    held = {r["id"] for r in a.records("employee", origin=b.id, include_deleted=True)}
    assert not {"big-version", "big-epoch"} & held
    assert "nul\x00id" not in held
    dead = len(POISON) - 1  # the NUL id is one bad record: skipped, its message acked
    wait_until(lambda: broker.api("GET", f"/api/queues/{a.id}/federation.dead.{b.id}").get("messages") == dead,
               30, what=f"{dead} poison messages dead-lettered")
