"""What a partner sends cannot grow our logs: refusals are one short line, link-log rows are clipped and capped
per partner per day (federationd/bounds.py)."""

from __future__ import annotations

import gzip
import json
import logging

import pytest

from federationd import bounds, linklog, wire
from federationd.broker.delivery import Delivery, Outcome
from federationd.broker.provisioning import partner_user
from tests.stub.conftest import A, B


def _longest_line(caplog: pytest.LogCaptureFixture) -> int:
    return max(len(record.getMessage()) for record in caplog.records)


@pytest.mark.parametrize("kind", ["control", "changes"])
def test_ten_mb_strings_are_refused_and_the_log_stays_short(linked, caplog, kind: str) -> None:
    _net, _a, b = linked
    huge = "\u3042" * 10_000_000
    if kind == "control":
        body = wire.control_body(A, huge, public_url=huge)
    else:
        body = {**wire.changes_body(A, 1, []), "schema": huge}
    raw = gzip.compress(json.dumps(body, ensure_ascii=False).encode(), compresslevel=1)
    with caplog.at_level(logging.INFO):
        outcome = b.inbound.handle(Delivery(A, A, kind, "gzip", partner_user(B, A), raw))
    assert outcome is Outcome.REJECT
    assert _longest_line(caplog) < 600
    assert max(len(m) for m in b.log_messages(A)) <= linklog.MAX_MESSAGE_CHARS + 60


def test_a_huge_kind_and_user_id_are_clipped(linked, caplog) -> None:
    _net, _a, b = linked
    with caplog.at_level(logging.INFO):
        b.inbound.handle(Delivery(A, A, "k" * 1_000_000, None, "u" * 1_000_000, b"{}"))
        b.inbound.handle(Delivery(A, A, "changes", None, "u" * 1_000_000,
                                  json.dumps(wire.changes_body(A, 1, [])).encode()))
    assert _longest_line(caplog) < 600
    assert max(len(m) for m in b.log_messages(A)) <= linklog.MAX_MESSAGE_CHARS + 60


def test_link_log_rows_are_capped_per_partner_per_day(linked) -> None:
    _net, _a, b = linked
    day = 20_000 * 86_400.0
    with b.rt.engine.begin() as conn:
        for i in range(bounds.MAX_LOG_ROWS_PER_DAY + 7):
            linklog.write(conn, day + i, A, "receive", f"row {i}")
        linklog.write(conn, day + 500, "site-c", "receive", "another partner is not capped by A's rows")
        linklog.write(conn, day + 86_400, A, "receive", "the next day starts afresh")
    rows = b.log_messages(A)
    assert len(rows) == bounds.MAX_LOG_ROWS_PER_DAY + 2
    assert rows[bounds.MAX_LOG_ROWS_PER_DAY] == (
        f"7 more link-log row(s) for this partner suppressed on 2024-10-04 "
        f"(bound: {bounds.MAX_LOG_ROWS_PER_DAY:,} rows per partner per day)")
    assert rows[-1] == "the next day starts afresh"
    assert b.log_messages("site-c") == ["another partner is not capped by A's rows"]
    with b.rt.engine.begin() as conn:
        linklog.purge(conn, day + 3 * 86_400)
    assert b.scalar("SELECT count(*) FROM link_log_suppressed") == 0
