"""Wire format v1 (SPEC 5): message properties and bodies, encoded and decoded without any I/O.

Other sites, and other versions of federationd, depend on this format. A decoder never guesses: anything it
cannot read exactly is a `RejectedChange` with a machine-readable reason (it labels the rejection metric).
"""

from __future__ import annotations

import gzip
import json
import uuid
import zlib
from dataclasses import dataclass
from datetime import date
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationError,
    field_validator,
)

from federationd import __version__
from federationd.errors import RejectedChange

SCHEMA = 1
KINDS = ("changes", "snapshot", "control")
CONTENT_TYPE = "application/json"
GZIP_OVER_BYTES = 512  # smaller bodies are sent plain: gzip would only add overhead
MAX_BODY_BYTES = 64 * 1024 * 1024  # decompressed; bigger is refused as oversized (and guards against gzip bombs)
GZIP_LEVEL = 1  # measured: 4x faster than 6 on a 1,000-record batch, for messages about a third larger


class _Wire(BaseModel):
    # Unknown fields are ignored so that a newer sender's additions do not break an older receiver; types are
    # strict so that a string where a number belongs is refused, not coerced.
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)


BIGINT = 2**63 - 1  # the database columns' range


def _storable(value: str) -> str:
    """No NUL (PostgreSQL text cannot hold it) and no lone UTF-16 surrogate (not encodable as UTF-8)."""
    if "\x00" in value:
        raise ValueError("text with a NUL character")
    try:
        value.encode()
    except UnicodeEncodeError:
        raise ValueError("text that is not valid Unicode") from None
    return value


Text = Annotated[StrictStr, AfterValidator(_storable)]


class WireChange(_Wire):
    category: Text
    id: Text = Field(min_length=1, max_length=255)
    origin: Text
    version: StrictInt = Field(ge=1, le=BIGINT)
    deleted: StrictBool
    data: dict[str, Any]

    @field_validator("data")
    @classmethod
    def _storable(cls, value: dict[str, Any]) -> dict[str, Any]:
        try:
            json.dumps(value, ensure_ascii=False).encode()
        except (UnicodeEncodeError, ValueError):
            raise ValueError("data holds text that is not valid Unicode") from None
        return value


class SnapshotPart(_Wire):
    id: StrictStr = Field(min_length=1, max_length=64)
    part: StrictInt = Field(ge=1)
    final: StrictBool
    categories: list[StrictStr]
    counts: dict[str, StrictInt] | None = None  # on the final part: records per category in the whole snapshot
    since: StrictStr | None = None  # schedules: the window the snapshot resends (ISO date), if bounded

    @field_validator("since")
    @classmethod
    def _iso_date(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                date.fromisoformat(value)
            except ValueError:
                raise ValueError("since is not an ISO date") from None
        return value


class ChangesBody(_Wire):
    schema_: Literal[1] = Field(alias="schema")
    origin: Text
    epoch: StrictInt = Field(ge=0, le=BIGINT)
    first: StrictInt = Field(ge=0, le=BIGINT)
    last: StrictInt = Field(ge=0, le=BIGINT)
    changes: list[WireChange]
    snapshot: SnapshotPart | None = None


class ControlBody(_Wire):
    schema_: Literal[1] = Field(alias="schema")
    origin: StrictStr
    control: dict[str, Any]


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


def _inflate(body: bytes, encoding: str | None) -> bytes:
    if encoding in (None, "", "identity"):
        if len(body) > MAX_BODY_BYTES:
            raise RejectedChange("oversized", f"body of {len(body)} bytes exceeds {MAX_BODY_BYTES}")
        return body
    if encoding != "gzip":
        raise RejectedChange("bad_encoding", f"unknown content_encoding {encoding!r}")
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        raw = inflater.decompress(body, MAX_BODY_BYTES + 1)
    except zlib.error as exc:
        raise RejectedChange("bad_encoding", f"body is not valid gzip: {exc}") from None
    if len(raw) > MAX_BODY_BYTES or inflater.unconsumed_tail:
        raise RejectedChange("oversized", f"decompressed body exceeds {MAX_BODY_BYTES} bytes")
    if not inflater.eof:
        raise RejectedChange("bad_encoding", "body is truncated gzip")
    if inflater.unused_data:
        raise RejectedChange("bad_encoding", "data after the end of the gzip stream")
    return raw


def _first_problem(exc: ValidationError) -> str:
    error = exc.errors(include_input=False)[0]
    where = ".".join(str(part) for part in error["loc"]) or "body"
    return f"{where}: {error['msg']}"


def decode(kind: str | None, content_encoding: str | None, body: bytes) -> ChangesBody | ControlBody:
    """Decode and validate one message; raise RejectedChange(reason) for anything but a well-formed v1 body."""
    if kind not in KINDS:
        raise RejectedChange("bad_type", f"unknown message type {kind!r}")
    raw = _inflate(body, content_encoding)
    try:
        document = json.loads(raw)
    except (ValueError, RecursionError):  # JSONDecodeError, UnicodeDecodeError, over-long integer literals
        raise RejectedChange("bad_json", "body is not JSON") from None
    if not isinstance(document, dict):
        raise RejectedChange("bad_json", "body is not a JSON object")
    if type(document.get("schema")) is not int or document["schema"] != SCHEMA:  # true and 1.0 are not 1
        raise RejectedChange("unknown_schema", f"unknown schema {document.get('schema')!r} (this site reads 1)")
    model: type[ChangesBody] | type[ControlBody] = ControlBody if kind == "control" else ChangesBody
    try:
        decoded = model.model_validate(document)
    except ValidationError as exc:
        raise RejectedChange("invalid", f"invalid {kind} body: {_first_problem(exc)}") from None
    if kind == "snapshot" and isinstance(decoded, ChangesBody) and decoded.snapshot is None:
        raise RejectedChange("invalid", "snapshot message without its snapshot part header")
    if isinstance(decoded, ControlBody) and not isinstance(decoded.control.get("kind"), str):
        raise RejectedChange("invalid", "control message without a kind")
    return decoded


def check_origin(decoded: ChangesBody | ControlBody, partner: str, user_id: str | None, expected_user: str,
                 home: str) -> None:
    """The queue's partner, the AMQP user_id, the body's origin and every change's origin must all agree, and
    none may be this site: otherwise the whole message is refused."""
    if user_id != expected_user:
        raise RejectedChange("user_id_mismatch", f"user_id {user_id!r} is not {expected_user!r}")
    if decoded.origin != partner:
        raise RejectedChange("origin_mismatch", f"body origin {decoded.origin!r} on {partner!r}'s queue")
    if partner == home:
        raise RejectedChange("origin_mismatch", "a message claims to come from this site itself")
    if isinstance(decoded, ChangesBody):
        for change in decoded.changes:
            if change.origin != partner:
                raise RejectedChange("foreign_origin",
                                     f"change {change.category}/{change.id} claims origin {change.origin!r}")
