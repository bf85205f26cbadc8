"""Wire format v1 (docs/protocol.md): message properties and bodies, encoded and decoded without any I/O.

Other sites, and other versions of federationd, depend on this format. A decoder never guesses: anything it
cannot read exactly is a `RejectedChange` with a machine-readable reason (it labels the rejection metric).
"""

from __future__ import annotations

import gzip
import json
import re
import uuid
import zlib
from dataclasses import dataclass, field
from datetime import date
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from federationd import __version__, bounds
from federationd.bounds import quoted
from federationd.errors import RejectedChange

SCHEMA = 1
KINDS = ("changes", "snapshot", "control")
CONTENT_TYPE = "application/json"
GZIP_OVER_BYTES = 512  # smaller bodies are sent plain: gzip would only add overhead
MAX_BODY_BYTES = bounds.MAX_BODY_BYTES  # decompressed; bigger is refused as oversized (gzip bombs included)
_INFLATE_STEP = 1024 * 1024
GZIP_LEVEL = 1  # measured: 4x faster than 6 on a 1,000-record batch, for messages about a third larger


BIGINT = 2**63 - 1  # the database columns' range
# A body's text can hold a lone UTF-16 surrogate (which UTF-8 cannot encode, so no database can store it) only
# through a `\uD800`-`\uDFFF` escape or as surrogate bytes (ED A0-BF ..), which `json.loads` lets through for
# bytes (it decodes them with "surrogatepass"). A UTF-8 body with neither needs no per-change check (a valid
# escaped pair also matches: it is then checked, as before).
_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F]|\xed[\xa0-\xbf]")
# Only a body with a NUL escape can hold a NUL (JSON refuses raw control characters in text).
_NUL_ESCAPE = b"\\u0000"

Version = Annotated[int, Meta(ge=1, le=BIGINT)]
Unsigned = Annotated[int, Meta(ge=0, le=BIGINT)]


# The wire's types, as msgspec structs: decoding checks them in C, in one pass over a whole message. Unknown fields
# are ignored so that a newer sender's additions do not break an older receiver; types are strict so that a string
# where a number belongs (or true where 1 belongs, or 1.0) is refused, not coerced. The texts' own rules (no NUL,
# valid Unicode) are checked by `decode` (docs/decisions.md, "msgspec on the receive path").
class WireChange(msgspec.Struct, frozen=True, gc=False):
    category: str
    id: Annotated[str, Meta(min_length=1, max_length=255)]
    origin: str
    version: Version
    deleted: bool
    data: dict[str, Any]


class SnapshotPart(msgspec.Struct, frozen=True):
    id: Annotated[str, Meta(min_length=1, max_length=64)]
    part: Version
    final: bool
    categories: list[str]
    counts: dict[str, int] | None = None  # on the final part: records per category in the whole snapshot
    since: str | None = None  # schedules: the window the snapshot resends (ISO date), if bounded


class _Envelope(msgspec.Struct, frozen=True):
    """A changes or snapshot body with its changes left unchecked, each to be checked (and skipped if invalid) on
    its own."""

    schema: Literal[1]
    origin: str
    epoch: Unsigned
    first: Unsigned
    last: Unsigned
    changes: list[Any]
    snapshot: SnapshotPart | None = None


class _Changes(_Envelope, frozen=True):
    """The same body with every change valid: what a well-behaved sender sends (the field keeps its place)."""

    changes: list[WireChange]


class _Control(msgspec.Struct, frozen=True):
    schema: Literal[1]
    origin: str
    control: dict[str, Any]


_FAST = msgspec.json.Decoder(_Changes)


def _storable(value: str) -> str | None:
    """Why `value` cannot be stored (NUL, which PostgreSQL text cannot hold; a lone UTF-16 surrogate, which UTF-8
    cannot encode), or None."""
    if "\x00" in value:
        return "text with a NUL character"
    try:
        value.encode()
    except UnicodeEncodeError:
        return "text that is not valid Unicode"
    return None


@dataclass(frozen=True)
class Skipped:
    """A change of a message that cannot apply on its own (bad values, unknown category, credential field,
    oversized): skipped, logged and counted; the rest of the message applies (docs/protocol.md)."""

    category: str | None  # as sent, when it is text (a snapshot's counts include it)
    id: str | None
    reason: str
    message: str


@dataclass(frozen=True)
class ChangesBody:
    """A decoded `changes` or `snapshot` message."""

    origin: str
    epoch: int
    first: int
    last: int
    changes: list[WireChange]
    snapshot: SnapshotPart | None = None
    skipped: list[Skipped] = field(default_factory=list)  # the changes found invalid on their own
    # Every change's data was parsed by msgspec from a valid UTF-8 body: JSON types only, finite numbers, valid
    # Unicode, so `sql.canonical` stores it as it is (else it may hold NaN or infinities: `sql.dumps`).
    plain: bool = False

    @classmethod
    def model_validate(cls, document: dict[str, Any]) -> ChangesBody:
        """A body from a document already parsed (a control message's record): validated as `decode` does."""
        return _checked_changes(document, checked=False)

    def as_document(self) -> dict[str, Any]:
        """The body as wire JSON values (absent optional fields left out)."""
        body: dict[str, Any] = {"schema": SCHEMA, "origin": self.origin, "epoch": self.epoch, "first": self.first,
                                "last": self.last, "changes": msgspec.to_builtins(self.changes)}
        if self.snapshot is not None:
            body["snapshot"] = {k: v for k, v in msgspec.to_builtins(self.snapshot).items() if v is not None}
        return body


@dataclass(frozen=True)
class ControlBody:
    origin: str
    control: dict[str, Any]

    def as_document(self) -> dict[str, Any]:
        return {"schema": SCHEMA, "origin": self.origin, "control": self.control}


@dataclass(frozen=True)
class Outgoing:
    """One message ready for `basic_publish`."""

    kind: str
    body: bytes
    content_encoding: str | None
    message_id: str

    def properties(self, user_id: str) -> dict[str, Any]:
        return {"delivery_mode": 2, "content_type": CONTENT_TYPE, "content_encoding": self.content_encoding,
                "type": self.kind, "message_id": self.message_id, "user_id": user_id,
                "app_id": f"federationd/{__version__}"}


def encode(kind: str, body: dict[str, Any]) -> Outgoing:
    return _pack(kind, json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode())


def _pack(kind: str, raw: bytes) -> Outgoing:
    if kind not in KINDS:
        raise ValueError(f"unknown message type {kind!r}")
    if len(raw) > GZIP_OVER_BYTES:
        return Outgoing(kind, gzip.compress(raw, compresslevel=GZIP_LEVEL, mtime=0), "gzip", uuid.uuid4().hex)
    return Outgoing(kind, raw, None, uuid.uuid4().hex)


def changes_body(origin: str, epoch: int, changes: list[dict[str, Any]],
                 snapshot: dict[str, Any] | None = None) -> dict[str, Any]:
    versions = [change["version"] for change in changes]
    body: dict[str, Any] = {"schema": SCHEMA, "origin": origin, "epoch": epoch,
                            "first": min(versions, default=0), "last": max(versions, default=0), "changes": changes}
    if snapshot is not None:
        body["snapshot"] = snapshot
    return body


def change_json(category: str, record_id: str, origin: str, version: int, deleted: bool, data_json: str) -> str:
    """One change as wire JSON, with `data_json` (JSON text this site wrote itself) spliced in unparsed."""
    head = json.dumps({"category": category, "id": record_id, "origin": origin, "version": version,
                       "deleted": deleted}, separators=(",", ":"), ensure_ascii=False)
    return f'{head[:-1]},"data":{data_json}}}'


def encode_changes(kind: str, origin: str, epoch: int, changes: list[str], first: int, last: int,
                   snapshot: dict[str, Any] | None = None) -> Outgoing:
    """A changes or snapshot message from changes already in wire JSON (`change_json`): the body is
    `changes_body`'s, built by joining text instead of dumping dicts (the hot path of a bulk send)."""
    head: dict[str, Any] = {"schema": SCHEMA, "origin": origin, "epoch": epoch, "first": first, "last": last}
    if snapshot is not None:
        head["snapshot"] = snapshot
    text = json.dumps(head, separators=(",", ":"), ensure_ascii=False)
    return _pack(kind, f'{text[:-1]},"changes":[{",".join(changes)}]}}'.encode())


def control_body(origin: str, kind: str, **fields: Any) -> dict[str, Any]:
    return {"schema": SCHEMA, "origin": origin, "control": {"kind": kind, **fields}}


def _inflate(body: bytes, encoding: str | None, limit: int, bound: str) -> bytes:
    """The body, decompressed; never more than `limit` + 1 bytes are inflated, whatever the ratio."""
    if encoding in (None, "", "identity"):
        if len(body) > limit:
            raise RejectedChange("oversized", f"body of {len(body):,} bytes exceeds the bound of {limit:,} bytes "
                                 f"per {bound}")
        return body
    if encoding != "gzip":
        raise RejectedChange("bad_encoding", f"unknown content_encoding {quoted(encoding)}")
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    raw = bytearray()
    pending = body
    try:  # in steps of at most _INFLATE_STEP bytes, so the output never outgrows the bound by more than one step
        while not inflater.eof and len(raw) <= limit:
            chunk = inflater.decompress(pending, _INFLATE_STEP)
            pending = inflater.unconsumed_tail
            if not chunk and not pending:
                break  # all input read, no more output: truncated (said below)
            raw += chunk
    except zlib.error as exc:
        raise RejectedChange("bad_encoding", f"body is not valid gzip: {exc}") from None
    if len(raw) > limit:
        raise RejectedChange("oversized", f"decompressed body exceeds the bound of {limit:,} bytes per {bound}")
    if not inflater.eof:
        raise RejectedChange("bad_encoding", "body is truncated gzip")
    if inflater.unused_data:
        raise RejectedChange("bad_encoding", "data after the end of the gzip stream")
    return bytes(raw)


def _problem(exc: msgspec.ValidationError | str, index: int | None = None) -> str:
    """msgspec's "Expected `int`, got `str` - at `$.changes[3].version`" as "changes[3].version: Expected ..."."""
    text = str(exc)
    what, _, where = text.partition(" - at `$")
    where = where.rstrip("`").lstrip(".")
    if index is not None:
        where = f"change {index}: {where}" if where else f"change {index}"
    return bounds.clip(f"{where}: {what}" if where else what)


def _values(raw: bytes) -> int:
    """An upper bound on the JSON values (keys included) in `raw`, from its separators, without parsing it."""
    return raw.count(b",") + raw.count(b":") + raw.count(b"[") + raw.count(b"{") + 1


def _check_shape(raw: bytes) -> None:
    values = _values(raw)
    if values > bounds.MAX_JSON_VALUES:
        raise RejectedChange("oversized", f"body holds up to {values:,} JSON values, over the bound of "
                             f"{bounds.MAX_JSON_VALUES:,} per message")


def _check_count(changes: object) -> None:
    if isinstance(changes, list) and len(changes) > bounds.MAX_CHANGES:
        raise RejectedChange("oversized", f"{len(changes):,} changes in one message, over the bound of "
                             f"{bounds.MAX_CHANGES:,} changes per message")


def _check_since(part: SnapshotPart | None) -> None:
    if part is not None and part.since is not None:
        try:
            date.fromisoformat(part.since)
        except ValueError:
            raise msgspec.ValidationError("since is not an ISO date - at `$.snapshot.since`") from None


def _fast_changes(raw: bytes) -> ChangesBody | None:
    """The whole message in one pass, when every change in it is valid and its text needs no check of its own;
    None sends it to the checked path (`_checked_changes`), which says what is wrong and skips bad changes.

    msgspec reads UTF-8 only and refuses invalid UTF-8, lone surrogate escapes, NaN and infinities, so what it
    decodes is storable text and plain JSON. A NUL is fine in data (stored escaped), not in the texts that become
    key columns: a body with a NUL escape has those checked, and one in them is left to the checked path."""
    try:
        body = _FAST.decode(raw)
        _check_since(body.snapshot)
    except (msgspec.MsgspecError, ValueError, RecursionError):
        return None
    if _NUL_ESCAPE in raw and ("\x00" in body.origin or any(
            "\x00" in change.category or "\x00" in change.id or "\x00" in change.origin for change in body.changes)):
        return None
    _check_count(body.changes)
    return ChangesBody(body.origin, body.epoch, body.first, body.last, body.changes, body.snapshot, plain=True)


def _checked_change(raw: object, index: int, checked: bool) -> WireChange | Skipped:
    try:
        change = msgspec.convert(raw, WireChange)
    except msgspec.ValidationError as exc:
        category = raw.get("category") if isinstance(raw, dict) else None
        record_id = raw.get("id") if isinstance(raw, dict) else None
        return Skipped(category if isinstance(category, str) else None,
                       record_id if isinstance(record_id, str) else None, "invalid", _problem(exc, index))
    problem = next(((name, why) for name, value in (("category", change.category), ("id", change.id),
                                                     ("origin", change.origin))
                    if (why := _storable(value)) is not None), None)
    if problem is None and not checked:  # the body has surrogate escapes or bytes: one may be in the data
        try:
            json.dumps(change.data, ensure_ascii=False).encode()
        except (UnicodeEncodeError, ValueError):
            problem = ("data", "data holds text that is not valid Unicode")
    if problem is not None:
        return Skipped(change.category, change.id, "invalid", bounds.clip(f"change {index}: {problem[0]}: "
                                                                          f"{problem[1]}"))
    return change


def _checked_changes(document: dict[str, Any], checked: bool) -> ChangesBody:
    """Validate the message, then each change on its own: an invalid change is skipped, not the message."""
    _check_count(document.get("changes"))
    envelope = msgspec.convert(document, _Envelope)
    _check_since(envelope.snapshot)
    problem = _storable(envelope.origin)
    if problem is not None:
        raise msgspec.ValidationError(f"{problem} - at `$.origin`")
    valid: list[WireChange] = []
    skipped: list[Skipped] = []
    for index, raw in enumerate(envelope.changes):
        result = _checked_change(raw, index, checked)
        if isinstance(result, Skipped):
            skipped.append(result)
        else:
            valid.append(result)
    return ChangesBody(envelope.origin, envelope.epoch, envelope.first, envelope.last, valid, envelope.snapshot,
                       skipped)


def _parse(raw: bytes) -> dict[str, Any]:
    try:
        document = json.loads(raw)
    except (ValueError, RecursionError):  # JSONDecodeError, UnicodeDecodeError, over-long integer literals
        raise RejectedChange("bad_json", "body is not JSON") from None
    if not isinstance(document, dict):
        raise RejectedChange("bad_json", "body is not a JSON object")
    if type(document.get("schema")) is not int or document["schema"] != SCHEMA:  # true and 1.0 are not 1
        raise RejectedChange("unknown_schema", f"unknown schema {quoted(document.get('schema'))} (this site reads 1)")
    return document


def decode(kind: str | None, content_encoding: str | None, body: bytes) -> ChangesBody | ControlBody:
    """Decode and validate one message; raise RejectedChange(reason) for anything but a well-formed v1 body."""
    if kind not in KINDS:
        raise RejectedChange("bad_type", f"unknown message type {quoted(kind)}")
    if kind == "control":
        raw = _inflate(body, content_encoding, min(MAX_BODY_BYTES, bounds.MAX_CONTROL_BYTES), "control message")
    else:
        raw = _inflate(body, content_encoding, MAX_BODY_BYTES, "message")
    _check_shape(raw)
    fast = None if kind == "control" else _fast_changes(raw)
    decoded = fast if fast is not None else _decode_checked(kind, raw)
    if kind == "snapshot" and isinstance(decoded, ChangesBody) and decoded.snapshot is None:
        raise RejectedChange("invalid", "snapshot message without its snapshot part header")
    if isinstance(decoded, ControlBody) and not isinstance(decoded.control.get("kind"), str):
        raise RejectedChange("invalid", "control message without a kind")
    return decoded


def _decode_checked(kind: str, raw: bytes) -> ChangesBody | ControlBody:
    """The path of every control message, and of a changes body with anything to say about it: `json.loads` (which
    reads UTF-16 and UTF-32, NaN and surrogates, so that each is refused here with its reason), then the checks."""
    document = _parse(raw)
    try:
        if kind == "control":
            control = msgspec.convert(document, _Control)
            return ControlBody(control.origin, control.control)
        checked = json.detect_encoding(raw) == "utf-8" and _SURROGATE.search(raw) is None
        return _checked_changes(document, checked)
    except msgspec.ValidationError as exc:
        raise RejectedChange("invalid", f"invalid {kind} body: {_problem(exc)}") from None


def check_origin(decoded: ChangesBody | ControlBody, partner: str, user_id: str | None, expected_user: str,
                 home: str) -> None:
    """The queue's partner, the AMQP user_id, the body's origin and every change's origin must all agree, and
    none may be this site: otherwise the whole message is refused."""
    if user_id != expected_user:
        raise RejectedChange("user_id_mismatch", f"user_id {quoted(user_id)} is not {expected_user!r}")
    if decoded.origin != partner:
        raise RejectedChange("origin_mismatch", f"body origin {quoted(decoded.origin)} on {partner!r}'s queue")
    if partner == home:
        raise RejectedChange("origin_mismatch", "a message claims to come from this site itself")
    if isinstance(decoded, ChangesBody):
        for change in decoded.changes:
            if change.origin != partner:
                raise RejectedChange("foreign_origin", f"change {quoted(change.category)}/{quoted(change.id)} "
                                     f"claims origin {quoted(change.origin)}")
