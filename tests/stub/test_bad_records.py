"""One bad record never sinks its batch: it is skipped, logged (short, partner named) and counted by reason;
the rest of the message applies in the same transaction. Credential fields are exact names, not substrings."""

from __future__ import annotations

import json
import logging

import pytest

from federationd import bounds, wire
from federationd.broker.delivery import Delivery, Outcome
from federationd.broker.provisioning import partner_user
from federationd.errors import RejectedChange
from tests.stub.conftest import A, B
from tests.support.stub import StubSite


def _change(record_id: str, version: int, data: object, category: str = "employee") -> dict[str, object]:
    return {"category": category, "id": record_id, "origin": A, "version": version, "deleted": False, "data": data}


def _delivery(body: dict[str, object] | bytes, kind: str = "changes", encoding: str | None = None) -> Delivery:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return Delivery(A, A, kind, encoding, partner_user(B, A), raw)


def _rejected(b: StubSite, reason: str) -> float:
    value = b.inbound.metrics.registry.get_sample_value(  # type: ignore[union-attr]
        "federationd_rejected_records_total", {"site": A, "reason": reason})
    return value or 0.0


def test_a_secretary_is_honest_and_one_credential_record_is_skipped(linked, caplog) -> None:
    _net, _a, b = linked
    honest = [_change(f"e-{i}", 10 + i, {"name": f"n{i}", "secretary": "Suzuki", "tokens_used": i})
              for i in range(5)]
    bad = _change("e-bad", 20, {"name": "x", "profile": {"Password": "hunter2"}})
    with caplog.at_level(logging.WARNING):
        outcome = b.inbound.handle(_delivery(wire.changes_body(A, 7, [*honest[:2], bad, *honest[2:]])))
    assert outcome is Outcome.ACK
    held = b.records_of(A)
    assert sorted(record_id for _c, record_id in held) == [f"e-{i}" for i in range(5)]
    assert json.loads(held[("employee", "e-0")][1])["secretary"] == "Suzuki"
    assert _rejected(b, "credential_field") == 1
    assert "hunter2" not in caplog.text
    [line] = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert A in line and "credential_field" in line and "e-bad" in line
    assert any("skipped 1 bad record(s) (1 credential_field)" in m for m in b.log_messages(A))


@pytest.mark.parametrize(("bad", "reason"), [
    (_change("x", 9, {"name": "p"}, category="payroll"), "unknown_category"),
    (_change("x", 9, {"api_key": "k"}), "credential_field"),
    (_change("x", "9", {"name": "string version"}), "invalid"),
    (_change("x", 2**63, {"name": "over BIGINT"}), "invalid"),
    (_change("nul\x00id", 9, {"name": "NUL in an id"}), "invalid"),
    ("not an object", "invalid"),
    (_change("x", 9, {"blob": "y" * (bounds.MAX_RECORD_BYTES + 1)}), "oversized_record"),
])
def test_each_kind_of_bad_record_is_skipped_alone(linked, bad: object, reason: str) -> None:
    _net, _a, b = linked
    body = wire.changes_body(A, 7, [_change("good-1", 1, {"name": "g"})])
    body["changes"] = [body["changes"][0], bad, _change("good-2", 2, {"name": "h"})]
    message = wire.encode("changes", body)
    assert b.inbound.handle(_delivery(message.body, encoding=message.content_encoding)) is Outcome.ACK
    assert {record_id for _c, record_id in b.records_of(A)} == {"good-1", "good-2"}
    assert _rejected(b, reason) == 1


def test_a_forged_record_still_refuses_the_whole_message(linked) -> None:
    _net, _a, b = linked
    body = wire.changes_body(A, 7, [_change("good", 1, {"name": "g"}), {**_change("ours", 2, {}), "origin": B}])
    assert b.inbound.handle(_delivery(body)) is Outcome.REJECT
    assert b.records_of(A) == {}
    assert _rejected(b, "foreign_origin") == 2


def test_capture_refuses_a_20_mb_record_naming_the_record_and_the_bound(linked) -> None:
    _net, a, _b = linked
    with pytest.raises(RejectedChange) as refused:
        a.put("employee", "e-huge", {"name": "big", "photo": "x" * 20_000_000})
    assert refused.value.reason == "oversized_record"
    assert "'e-huge'" in str(refused.value) and f"{bounds.MAX_RECORD_BYTES:,} bytes per record" in str(refused.value)
    assert len(str(refused.value)) < 300
    assert a.records_of(A) == {}


def test_capture_refuses_exact_credential_names_only(linked) -> None:
    _net, a, _b = linked
    a.put("employee", "e-1", {"name": "n", "secretary": "Ito", "tokens_used": 3, "last_login_at": "x"})
    with pytest.raises(RejectedChange) as refused:
        a.put("employee", "e-2", {"name": "n", "auth": {"LoginId": "sato"}})
    assert refused.value.reason == "credential_field" and "auth.LoginId" in str(refused.value)


def test_a_record_stored_before_the_bound_is_left_out_of_sends_not_the_link(linked, caplog) -> None:
    """A record over the bound already in the database (captured by an older version) is never sent; the
    records around it are."""
    net, a, b = linked
    a.put("employee", "e-1", {"name": "before"})
    with a.rt.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE records SET data = ? WHERE id = 'e-1'",
                             (json.dumps({"blob": "z" * (bounds.MAX_RECORD_BYTES + 10)}),))
    a.put("employee", "e-2", {"name": "after"})
    with caplog.at_level(logging.ERROR):
        net.send(A, B)
    assert set(net.deliver_all(B)) == {Outcome.ACK}
    assert {record_id for _c, record_id in b.records_of(A)} == {"e-2"}
    assert "not sending employee/e-1" in caplog.text
    net.request_snapshot(A, B)
    net.send(A, B)
    assert set(net.deliver_all(B)) == {Outcome.ACK}
    assert {record_id for _c, record_id in b.records_of(A)} == {"e-2"}
