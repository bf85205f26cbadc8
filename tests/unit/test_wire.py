"""Unit tests for federationd.wire: wire format v1 (SPEC 5), encoded and decoded without any broker.

`decode` must return a validated model or raise `RejectedChange` with a machine-readable `.reason` (it labels
`federationd_rejected_records_total`); any other exception would escape the dispatcher and stop the consumer.
"""

from __future__ import annotations

import gzip
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from federationd import __version__, wire
from federationd.errors import RejectedChange
from federationd.wire import ChangesBody, ControlBody

PARTNER = "site-b"
HOME = "site-a"
USER = f"fed.{HOME}.{PARTNER}"  # partner P's user on home H's broker (SPEC 5)


def change(record_id: str = "e-17", version: int = 150, *, origin: str = PARTNER, deleted: bool = False,
           category: str = "employee", data: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"category": category, "id": record_id, "origin": origin, "version": version, "deleted": deleted,
            "data": {"name": "Sato"} if data is None else data}


def small_changes() -> dict[str, Any]:
    return wire.changes_body(PARTNER, 3, [change()])


def large_changes() -> dict[str, Any]:
    return wire.changes_body(PARTNER, 3, [change(f"e-{n}", 100 + n, data={"name": f"社員 {n}", "kana": "しゃいん"})
                                         for n in range(50)])


def snapshot_body(*, final: bool = True) -> dict[str, Any]:
    header: dict[str, Any] = {"id": "snap-1", "part": 4, "final": final, "categories": ["employee", "schedule"]}
    if final:
        header["counts"] = {"employee": 1, "schedule": 0}
    return wire.changes_body(PARTNER, 4, [change()], snapshot=header)


def control() -> dict[str, Any]:
    return wire.control_body(PARTNER, "change_url", public_url="amqps://mq.site-b.example:5671/federation")


def raw(document: Any) -> bytes:
    return json.dumps(document).encode()


def rejected(kind: str | None, encoding: str | None, body: bytes) -> RejectedChange:
    with pytest.raises(RejectedChange) as caught:
        wire.decode(kind, encoding, body)
    return caught.value


# -- encode / decode round trips ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("kind", "body", "encoding"), [
    ("changes", small_changes(), None),
    ("changes", large_changes(), "gzip"),
    ("changes", wire.changes_body(PARTNER, 0, []), None),
    ("snapshot", snapshot_body(final=False), None),
    ("snapshot", {**snapshot_body(), "changes": large_changes()["changes"]}, "gzip"),
    ("control", control(), None),
    ("control", wire.control_body(PARTNER, "accept", blob="x" * 2000), "gzip"),
], ids=["changes-plain", "changes-gzip", "changes-empty", "snapshot-plain", "snapshot-gzip", "control-plain",
        "control-gzip"])
def test_round_trip(kind: str, body: dict[str, Any], encoding: str | None) -> None:
    out = wire.encode(kind, body)
    assert out.kind == kind
    assert out.content_encoding == encoding
    if encoding == "gzip":
        assert out.body[:2] == b"\x1f\x8b"
        assert json.loads(gzip.decompress(out.body)) == body
    else:
        assert json.loads(out.body) == body
    decoded = wire.decode(out.kind, out.content_encoding, out.body)
    assert decoded.as_document() == body


def test_gzip_threshold() -> None:
    """Bodies over GZIP_OVER_BYTES are compressed, smaller ones are not."""
    small = wire.control_body(PARTNER, "x", pad="")
    overhead = len(json.dumps(small, separators=(",", ":")))
    at_limit = wire.control_body(PARTNER, "x", pad="p" * (wire.GZIP_OVER_BYTES - overhead))
    over_limit = wire.control_body(PARTNER, "x", pad="p" * (wire.GZIP_OVER_BYTES - overhead + 1))
    assert wire.encode("control", at_limit).content_encoding is None
    assert wire.encode("control", over_limit).content_encoding == "gzip"


def test_decoded_changes_carry_their_fields() -> None:
    decoded = wire.decode("changes", None, raw(small_changes()))
    assert isinstance(decoded, ChangesBody)
    assert (decoded.origin, decoded.epoch, decoded.first, decoded.last) == (PARTNER, 3, 150, 150)
    assert decoded.snapshot is None
    [only] = decoded.changes
    assert (only.category, only.id, only.origin, only.version, only.deleted) == ("employee", "e-17", PARTNER, 150,
                                                                                 False)
    assert only.data == {"name": "Sato"}


def test_decoded_control_keeps_its_fields() -> None:
    decoded = wire.decode("control", None, raw(control()))
    assert isinstance(decoded, ControlBody)
    assert decoded.control == {"kind": "change_url", "public_url": "amqps://mq.site-b.example:5671/federation"}


def test_unknown_fields_are_ignored_for_forward_compatibility() -> None:
    body = small_changes()
    body["added_by_a_newer_version"] = {"x": 1}
    body["changes"][0]["also_new"] = True
    assert isinstance(wire.decode("changes", None, raw(body)), ChangesBody)


@pytest.mark.parametrize("encoding", [None, "", "identity"])
def test_plain_encodings(encoding: str | None) -> None:
    assert isinstance(wire.decode("changes", encoding, raw(small_changes())), ChangesBody)


def test_changes_body_first_and_last() -> None:
    body = wire.changes_body(PARTNER, 2, [change("a", 7), change("b", 3), change("c", 9)])
    assert (body["schema"], body["first"], body["last"]) == (1, 3, 9)
    assert "snapshot" not in body
    assert (wire.changes_body(PARTNER, 2, [])["first"], wire.changes_body(PARTNER, 2, [])["last"]) == (0, 0)


def test_properties_follow_the_wire_contract() -> None:
    out = wire.encode("changes", large_changes())
    props = out.properties(USER)
    assert props == {"delivery_mode": 2, "content_type": "application/json", "content_encoding": "gzip",
                     "type": "changes", "message_id": out.message_id, "user_id": USER,
                     "app_id": f"federationd/{__version__}"}
    assert wire.encode("control", control()).properties(USER)["content_encoding"] is None


def test_message_ids_are_unique() -> None:
    assert len({wire.encode("changes", small_changes()).message_id for _ in range(100)}) == 100


def test_encode_refuses_an_unknown_type() -> None:
    with pytest.raises(ValueError, match="unknown message type"):
        wire.encode("gossip", small_changes())


# -- decode refusals ---------------------------------------------------------------------------------------------

def _without(body: dict[str, Any], field: str) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k != field}


def _change_with(**fields: Any) -> dict[str, Any]:
    body = small_changes()
    body["changes"][0].update(fields)
    return body


def _change_without(field: str) -> dict[str, Any]:
    body = small_changes()
    del body["changes"][0][field]
    return body


GARBAGE = b"\x00\x01 definitely not json \xff"
VALID_GZIP = gzip.compress(raw(small_changes()))

REFUSALS = [
    # (id, kind, content_encoding, body, reason)
    ("not-gzip", "changes", "gzip", raw(small_changes()), "bad_encoding"),
    ("gzip-of-garbage", "changes", "gzip", b"\x1f\x8b\x08\x00" + b"\xff" * 40, "bad_encoding"),
    ("truncated-gzip", "changes", "gzip", VALID_GZIP[: len(VALID_GZIP) // 2], "bad_encoding"),
    ("gzip-missing-trailer", "changes", "gzip", VALID_GZIP[:-4], "bad_encoding"),
    ("empty-gzip", "changes", "gzip", b"", "bad_encoding"),
    ("unknown-encoding", "changes", "br", raw(small_changes()), "bad_encoding"),
    ("gzipped-garbage", "changes", "gzip", gzip.compress(GARBAGE), "bad_json"),
    ("non-json", "changes", None, b"schema=1", "bad_json"),
    ("not-utf8", "changes", None, GARBAGE, "bad_json"),
    ("empty-body", "changes", None, b"", "bad_json"),
    ("json-array", "changes", None, raw([small_changes()]), "bad_json"),
    ("json-string", "control", None, raw("hello"), "bad_json"),
    ("json-null", "changes", None, b"null", "bad_json"),
    ("deeply-nested", "control", None, b"[" * 100_000 + b"]" * 100_000, "bad_json"),
    ("schema-2", "changes", None, raw({**small_changes(), "schema": 2}), "unknown_schema"),
    ("schema-string", "changes", None, raw({**small_changes(), "schema": "1"}), "unknown_schema"),
    ("schema-missing", "changes", None, raw(_without(small_changes(), "schema")), "unknown_schema"),
    ("control-schema-0", "control", None, raw({**control(), "schema": 0}), "unknown_schema"),
    ("epoch-negative", "changes", None, raw({**small_changes(), "epoch": -1}), "invalid"),
    ("epoch-string", "changes", None, raw({**small_changes(), "epoch": "3"}), "invalid"),
    ("changes-not-list", "changes", None, raw({**small_changes(), "changes": {}}), "invalid"),
    ("origin-as-int", "changes", None, raw({**small_changes(), "origin": 7}), "invalid"),
    ("unknown-type", "gossip", None, raw(small_changes()), "bad_type"),
    ("no-type", None, None, raw(small_changes()), "bad_type"),
    ("type-wrong-case", "Changes", None, raw(small_changes()), "bad_type"),
    ("snapshot-without-header", "snapshot", None, raw(small_changes()), "invalid"),
    ("snapshot-bad-header", "snapshot", None,
     raw({**small_changes(), "snapshot": {"id": "s", "part": 0, "final": True, "categories": []}}), "invalid"),
    ("snapshot-header-final-string", "snapshot", None,
     raw({**small_changes(), "snapshot": {"id": "s", "part": 1, "final": "yes", "categories": []}}), "invalid"),
    ("control-without-kind", "control", None, raw({"schema": 1, "origin": PARTNER, "control": {"x": 1}}), "invalid"),
    ("control-kind-not-string", "control", None, raw({"schema": 1, "origin": PARTNER, "control": {"kind": 3}}),
     "invalid"),
    ("control-not-object", "control", None, raw({"schema": 1, "origin": PARTNER, "control": "accept"}), "invalid"),
    ("control-missing", "control", None, raw({"schema": 1, "origin": PARTNER}), "invalid"),
    ("control-body-as-changes", "changes", None, raw(control()), "invalid"),
]


# One change that is invalid on its own is skipped (counted, logged); the message and its other changes apply.
SKIPS = [
    ("version-as-string", raw(_change_with(version="5"))),
    ("version-zero", raw(_change_with(version=0))),
    ("version-float", raw(_change_with(version=5.0))),
    ("deleted-as-1", raw(_change_with(deleted=1))),
    ("deleted-as-string", raw(_change_with(deleted="false"))),
    ("data-as-list", raw(_change_with(data=[1, 2]))),
    ("id-empty", raw(_change_with(id=""))),
    ("id-too-long", raw(_change_with(id="x" * 256))),
    ("id-as-int", raw(_change_with(id=17))),
    ("change-not-object", raw({**small_changes(), "changes": ["e-1"]})),
]


@pytest.mark.parametrize(("kind", "encoding", "body", "reason"), [r[1:] for r in REFUSALS],
                         ids=[r[0] for r in REFUSALS])
def test_decode_refuses(kind: str | None, encoding: str | None, body: bytes, reason: str) -> None:
    exc = rejected(kind, encoding, body)
    assert exc.reason == reason
    assert str(exc)  # a message for the log line


@pytest.mark.parametrize("field", ["origin", "epoch", "first", "last", "changes"])
def test_missing_body_field_is_invalid(field: str) -> None:
    exc = rejected("changes", None, raw(_without(small_changes(), field)))
    assert exc.reason == "invalid"
    assert field in str(exc)


@pytest.mark.parametrize("body", [r[1] for r in SKIPS], ids=[r[0] for r in SKIPS])
def test_an_invalid_change_is_skipped_not_its_message(body: bytes) -> None:
    decoded = wire.decode("changes", None, body)
    assert isinstance(decoded, wire.ChangesBody)
    assert decoded.changes == []
    assert [skip.reason for skip in decoded.skipped] == ["invalid"]
    assert decoded.skipped[0].message


def test_an_invalid_change_leaves_the_others() -> None:
    document = small_changes()
    good = document["changes"][0]
    document["changes"] = [good, {**good, "id": "e-18", "version": "x"}, {**good, "id": "e-19"}]
    decoded = wire.decode("changes", None, raw(document))
    assert isinstance(decoded, wire.ChangesBody)
    assert [change.id for change in decoded.changes] == ["e-17", "e-19"]
    assert [(skip.category, skip.id, skip.reason) for skip in decoded.skipped] == [("employee", "e-18", "invalid")]


@pytest.mark.parametrize("field", ["category", "id", "origin", "version", "deleted", "data"])
def test_missing_change_field_is_skipped(field: str) -> None:
    decoded = wire.decode("changes", None, raw(_change_without(field)))
    assert isinstance(decoded, wire.ChangesBody)
    assert decoded.changes == []
    [skip] = decoded.skipped
    assert skip.reason == "invalid"
    assert field in skip.message


def test_wrong_field_type_message_names_the_field() -> None:
    decoded = wire.decode("changes", None, raw(_change_with(version="5")))
    assert isinstance(decoded, wire.ChangesBody)
    assert "change 0: version" in decoded.skipped[0].message


def test_snapshot_final_part_counts_must_be_integers() -> None:
    body = snapshot_body()
    body["snapshot"]["counts"] = {"employee": "1"}
    assert rejected("snapshot", None, raw(body)).reason == "invalid"


# -- size limits -------------------------------------------------------------------------------------------------

def test_plain_body_over_the_limit_is_oversized(monkeypatch: pytest.MonkeyPatch) -> None:
    body = raw(small_changes())
    monkeypatch.setattr(wire, "MAX_BODY_BYTES", len(body))
    assert isinstance(wire.decode("changes", None, body), ChangesBody)  # exactly at the limit is fine
    monkeypatch.setattr(wire, "MAX_BODY_BYTES", len(body) - 1)
    assert rejected("changes", None, body).reason == "oversized"


def test_gzip_body_inflating_over_the_limit_is_oversized(monkeypatch: pytest.MonkeyPatch) -> None:
    body = raw(small_changes())
    compressed = gzip.compress(body)
    monkeypatch.setattr(wire, "MAX_BODY_BYTES", len(body))
    assert isinstance(wire.decode("changes", "gzip", compressed), ChangesBody)
    monkeypatch.setattr(wire, "MAX_BODY_BYTES", len(body) - 1)
    assert rejected("changes", "gzip", compressed).reason == "oversized"


def test_gzip_bomb_is_oversized_not_inflated(monkeypatch: pytest.MonkeyPatch) -> None:
    limit = 1024 * 1024
    monkeypatch.setattr(wire, "MAX_BODY_BYTES", limit)
    bomb = gzip.compress(b'{"schema":1,"pad":"' + b"0" * (20 * limit) + b'"}', compresslevel=9)
    assert len(bomb) < limit // 10  # small on the wire ...
    assert rejected("changes", "gzip", bomb).reason == "oversized"  # ... refused once it inflates past the limit


def test_gzip_bomb_of_garbage_is_oversized_before_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(wire, "MAX_BODY_BYTES", 4096)
    assert rejected("control", "gzip", gzip.compress(b"\x00" * 100_000)).reason == "oversized"


# -- regressions: bugs found by these tests, fixed in the package ---------------------------------------------

@pytest.mark.parametrize("kind", ["changes", "control"])
def test_huge_integer_literal_is_rejected_not_raised(kind: str) -> None:
    body = b'{"schema":1,"origin":"site-b","epoch":' + b"9" * 5000 + b',"first":0,"last":0,"changes":[],' \
           b'"control":{"kind":"x"}}'
    assert rejected(kind, None, body).reason in {"bad_json", "invalid"}


@pytest.mark.parametrize("schema", [True, 1.0])
def test_schema_must_be_the_integer_1(schema: Any) -> None:
    assert rejected("changes", None, raw({**small_changes(), "schema": schema})).reason == "unknown_schema"


@pytest.mark.parametrize("tail", [b"trailing garbage", gzip.compress(b'{"more":1}')], ids=["garbage", "member"])
def test_data_after_the_gzip_stream_is_refused(tail: bytes) -> None:
    assert rejected("changes", "gzip", VALID_GZIP + tail).reason == "bad_encoding"


# -- check_origin ------------------------------------------------------------------------------------------------

def decoded(body: dict[str, Any], kind: str = "changes") -> ChangesBody | ControlBody:
    return wire.decode(kind, None, raw(body))


def test_check_origin_passes_when_everything_agrees() -> None:
    wire.check_origin(decoded(small_changes()), PARTNER, USER, USER, HOME)
    wire.check_origin(decoded(control(), "control"), PARTNER, USER, USER, HOME)
    wire.check_origin(decoded(wire.changes_body(PARTNER, 1, [])), PARTNER, USER, USER, HOME)


ORIGIN_REFUSALS = [
    # (id, body, partner, user_id, home, reason)
    ("user-id-mismatch", small_changes(), PARTNER, "fed.site-a.site-c", HOME, "user_id_mismatch"),
    ("user-id-missing", small_changes(), PARTNER, None, HOME, "user_id_mismatch"),
    ("body-origin-not-partner", wire.changes_body("site-c", 1, [change(origin="site-c")]), PARTNER, USER, HOME,
     "origin_mismatch"),
    ("control-origin-not-partner", wire.control_body("site-c", "release"), PARTNER, USER, HOME, "origin_mismatch"),
    ("partner-is-home", wire.changes_body(HOME, 1, [change(origin=HOME)]), HOME, f"fed.{HOME}.{HOME}", HOME,
     "origin_mismatch"),
    ("one-foreign-change", wire.changes_body(PARTNER, 1, [change("a", 1), change("b", 2, origin="site-c"),
                                                          change("c", 3)]), PARTNER, USER, HOME, "foreign_origin"),
    ("change-claims-home", wire.changes_body(PARTNER, 1, [change(origin=HOME)]), PARTNER, USER, HOME,
     "foreign_origin"),
]


@pytest.mark.parametrize(("body", "partner", "user_id", "home", "reason"), [r[1:] for r in ORIGIN_REFUSALS],
                         ids=[r[0] for r in ORIGIN_REFUSALS])
def test_check_origin_refuses(body: dict[str, Any], partner: str, user_id: str | None, home: str,
                              reason: str) -> None:
    kind = "control" if "control" in body else "changes"
    with pytest.raises(RejectedChange) as caught:
        wire.check_origin(decoded(body, kind), partner, user_id, f"fed.{home}.{partner}", home)
    assert caught.value.reason == reason


# -- fuzz: decode never raises anything but RejectedChange -------------------------------------------------------

KIND_VALUES = st.sampled_from([*wire.KINDS, None, "", "gossip"])
ENCODINGS = st.sampled_from([None, "", "identity", "gzip", "deflate"])
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=8)
FIELDS = ["schema", "origin", "epoch", "first", "last", "changes", "snapshot", "control", "category", "id",
          "version", "deleted", "data", "kind", "part", "final", "categories", "counts"]


def decode_or_reject(kind: str | None, encoding: str | None, body: bytes) -> None:
    try:
        result = wire.decode(kind, encoding, body)
    except RejectedChange as exc:
        assert exc.reason in {"bad_type", "bad_encoding", "oversized", "bad_json", "unknown_schema", "invalid"}
    else:
        assert isinstance(result, ChangesBody | ControlBody)


@settings(max_examples=200)
@given(kind=KIND_VALUES, encoding=ENCODINGS, body=st.binary(max_size=300))
def test_fuzz_arbitrary_bytes(kind: str | None, encoding: str | None, body: bytes) -> None:
    decode_or_reject(kind, encoding, body)
    decode_or_reject(kind, "gzip", gzip.compress(body))


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(kind=KIND_VALUES, document=st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=8),
       schema_one=st.booleans(), gzipped=st.booleans())
def test_fuzz_arbitrary_json_dicts(kind: str | None, document: dict[str, Any], schema_one: bool,
                                   gzipped: bool) -> None:
    if schema_one:  # get past the schema check half of the time, into validation
        document["schema"] = 1
    body = json.dumps(document).encode()
    decode_or_reject(kind, "gzip" if gzipped else None, gzip.compress(body) if gzipped else body)


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(kind=st.sampled_from(wire.KINDS), mutations=st.lists(st.tuples(st.sampled_from(FIELDS), json_values),
                                                           min_size=1, max_size=3),
       in_change=st.booleans())
def test_fuzz_mutated_valid_bodies(kind: str, mutations: list[tuple[str, Any]], in_change: bool) -> None:
    body = control() if kind == "control" else snapshot_body() if kind == "snapshot" else small_changes()
    target = body["changes"][0] if in_change and "changes" in body else body
    for field, value in mutations:
        target[field] = value
    decode_or_reject(kind, None, raw(body))
