"""The one-pass decoder (`wire._fast_changes`) decides exactly what the checked path decides: for any body it takes,
the same changes, fields and values; and every body it does not take (a bad change, a NUL escape, NaN, UTF-16, a
huge number, a lone surrogate) goes to the checked path, which says why. Its data is stored by `sql.canonical`,
which must read back as what `sql.dumps` wrote."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from federationd import wire
from federationd.categories import find_credential
from federationd.handlers.changes import _screen
from federationd.sql import canonical, dumps
from federationd.wire import ChangesBody

PARTNER = "site-b"

json_leaves = (st.none() | st.booleans() | st.integers(-(2**70), 2**70)
               | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=12))
json_data = st.dictionaries(st.text(max_size=8), st.recursive(
    json_leaves, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=10), max_size=5)
changes = st.lists(st.fixed_dictionaries({
    "category": st.sampled_from(["employee", "schedule", "gossip"]), "id": st.text(min_size=1, max_size=8),
    "origin": st.just(PARTNER), "version": st.integers(1, 2**63 - 1), "deleted": st.booleans(), "data": json_data,
}), max_size=4)


def checked(raw: bytes, kind: str = "changes") -> ChangesBody:
    body = wire._decode_checked(kind, raw)
    assert isinstance(body, ChangesBody)
    return body


def same(fast: ChangesBody, slow: ChangesBody) -> None:
    assert fast.as_document() == slow.as_document()
    assert fast.skipped == slow.skipped == []
    assert [change.data for change in fast.changes] == [change.data for change in slow.changes]


@settings(max_examples=300)
@given(changes=changes, epoch=st.integers(0, 2**63 - 1), ascii_only=st.booleans(), snapshot=st.booleans())
def test_the_fast_path_decodes_what_the_checked_path_decodes(changes: list[dict[str, Any]], epoch: int,
                                                            ascii_only: bool, snapshot: bool) -> None:
    header = {"id": "s-1", "part": 1, "final": True, "categories": ["employee"], "counts": {"employee": 1},
              "since": "2026-11-01"} if snapshot else None
    document = wire.changes_body(PARTNER, epoch, changes, header)
    raw = json.dumps(document, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")
    fast = wire._fast_changes(raw)
    slow = wire._decode_checked("changes", raw)
    assert isinstance(slow, ChangesBody)
    if fast is None:  # only a key text no database can store sends a valid body this way
        assert slow.skipped
        return
    assert fast.plain and not slow.plain
    same(fast, slow)
    assert wire.decode("changes", None, raw) == fast


def _body(**change: Any) -> bytes:
    base = {"category": "employee", "id": "e-1", "origin": PARTNER, "version": 1, "deleted": False,
            "data": {"name": "Sato"}}
    return json.dumps(wire.changes_body(PARTNER, 1, [{**base, **change}])).encode()


OTHERS = {
    "a NUL in an id": _body(id="e\x001"),
    "NaN in data": _body(data={"x": float("nan")}),
    "infinity in data": _body(data={"x": float("inf")}),
    "a number past the double range in data": _body(data={"x": 1.5}).replace(b"1.5", b"1e400"),
    "a NUL in a category": _body(category="employee\x00"),
    "a NUL in an origin": _body(origin=f"{PARTNER}\x00"),
    "a lone surrogate in data": _body(data={"x": "\ud800"}),
    "a version as text": _body(version="1"),
    "a version of 1.0": _body(version=1.0),
    "deleted as 0": _body(deleted=0),
    "an empty id": _body(id=""),
    "UTF-16": json.dumps(wire.changes_body(PARTNER, 1, [])).encode("utf-16"),
    "a byte order mark": b"\xef\xbb\xbf" + json.dumps(wire.changes_body(PARTNER, 1, [])).encode(),
    "since that is no date": json.dumps(wire.changes_body(PARTNER, 1, [], {
        "id": "s", "part": 1, "final": False, "categories": [], "since": "soon"})).encode(),
    "schema true": json.dumps({**wire.changes_body(PARTNER, 1, []), "schema": True}).encode(),
}


@pytest.mark.parametrize("raw", OTHERS.values(), ids=OTHERS.keys())
def test_anything_else_takes_the_checked_path(raw: bytes) -> None:
    assert wire._fast_changes(raw) is None


def test_a_plain_body_takes_the_fast_path() -> None:
    data = {"name": "佐藤", "x": 1.5, "big": 10**400, "n": None, "nul": "a\x00b", "\x00": [True]}
    decoded = wire.decode("changes", None, _body(data=data))
    assert isinstance(decoded, ChangesBody) and decoded.plain
    assert decoded.changes[0].data == data


@settings(max_examples=300)
@given(data=json_data)
def test_canonical_storage_reads_back_as_dumps_wrote_it(data: dict[str, Any]) -> None:
    assume(find_credential(data) is None)  # such a change is skipped, not stored
    decoded = wire.decode("changes", None, json.dumps(wire.changes_body(PARTNER, 1, [{
        "category": "employee", "id": "e-1", "origin": PARTNER, "version": 1, "deleted": False,
        "data": data}])).encode())
    assert isinstance(decoded, ChangesBody) and decoded.plain
    [(change, text)] = _screen(decoded)[0]
    assert json.loads(text) == json.loads(dumps(change.data)) == data
    assert text == canonical(change.data)
    assert list(json.loads(text)) == sorted(data)
