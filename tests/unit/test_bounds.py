"""Every bound on what a partner sends is enforced and named in its refusal (federationd/bounds.py)."""

from __future__ import annotations

import gzip
import json
import zlib

import pytest

from federationd import bounds, wire
from federationd.config import TransportSection
from federationd.errors import RejectedChange


def _refusal(kind: str, encoding: str | None, body: bytes) -> RejectedChange:
    with pytest.raises(RejectedChange) as caught:
        wire.decode(kind, encoding, body)
    return caught.value


def bomb(inflated: int, head: bytes = b'{"schema":1,"origin":"site-b","pad":"') -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = b"0" * (1024 * 1024)
    parts = [compressor.compress(head)]
    parts.extend(compressor.compress(block) for _ in range(inflated // len(block)))
    parts.append(compressor.compress(b'"}') + compressor.flush())
    return b"".join(parts)


def tiny_changes(count: int) -> bytes:
    change = '{"category":"employee","id":"e","origin":"site-b","version":1,"deleted":false,"data":{}}'
    return (f'{{"schema":1,"origin":"site-b","epoch":1,"first":1,"last":1,"changes":[{",".join([change] * count)}]}}'
            ).encode()


def test_a_decompression_bomb_is_refused_at_the_default_bound() -> None:
    body = bomb(64 * 1024 * 1024)
    assert len(body) < 200_000
    exc = _refusal("changes", "gzip", body)
    assert exc.reason == "oversized"
    assert "16,777,216 bytes per message" in str(exc)


def test_a_body_of_empty_objects_is_refused_before_parsing() -> None:
    body = gzip.compress(b'{"schema":1,"origin":"site-b","pad":[' + b"{}," * 3_000_000 + b'{}]}')
    exc = _refusal("changes", "gzip", body)
    assert exc.reason == "oversized"
    assert f"{bounds.MAX_JSON_VALUES:,} per message" in str(exc)


def test_a_message_of_100000_tiny_changes_is_refused_naming_a_bound() -> None:
    exc = _refusal("changes", "gzip", gzip.compress(tiny_changes(100_000)))
    assert exc.reason == "oversized"
    assert "per message" in str(exc)


def test_changes_per_message_bound() -> None:
    assert isinstance(wire.decode("changes", None, tiny_changes(bounds.MAX_CHANGES)), wire.ChangesBody)
    exc = _refusal("changes", None, tiny_changes(bounds.MAX_CHANGES + 1))
    assert exc.reason == "oversized"
    assert f"{bounds.MAX_CHANGES + 1:,} changes in one message, over the bound of {bounds.MAX_CHANGES:,}" in str(exc)


def test_ten_mb_strings_in_a_control_message_are_refused_with_a_short_message() -> None:
    body = json.dumps(wire.control_body("site-b", "change_url", public_url="amqps://" + "h" * 10_000_000)).encode()
    exc = _refusal("control", "gzip", gzip.compress(body))
    assert exc.reason == "oversized"
    assert f"{bounds.MAX_CONTROL_BYTES:,} bytes per control message" in str(exc)
    assert len(str(exc)) < 200


def test_partner_strings_in_refusals_are_clipped() -> None:
    exc = _refusal("x" * 100_000, None, b"{}")
    assert exc.reason == "bad_type"
    assert len(str(exc)) < 2 * bounds.MAX_LOGGED_CHARS
    assert "more characters" in str(exc)


def test_clip() -> None:
    assert bounds.clip("short") == "short"
    assert bounds.clip("x" * 1000) == "x" * 200 + "... (800 more characters)"
    assert bounds.quoted("a") == "'a'"


@pytest.mark.parametrize(("key", "value"), [("batch_bytes", bounds.MAX_BATCH_BYTES + 1),
                                            ("batch_records", bounds.MAX_CHANGES + 1)])
def test_batches_stay_below_what_receivers_and_brokers_take(key: str, value: int) -> None:
    with pytest.raises(ValueError, match=key):
        TransportSection.model_validate({key: value})
    assert min(16 * bounds.MIB, bounds.MAX_BODY_BYTES) > bounds.MAX_BATCH_BYTES + bounds.MAX_RECORD_BYTES
