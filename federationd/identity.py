"""This installation's identity and signing key, kept in `state_dir` (not in the database).

`init` writes the installation id into both; a daemon that finds a database carrying another installation's id
(a production copy on a test server) starts with the whole site paused. Several daemons of one site (an
active/standby pair) each hold a copy of the same `state_dir`: the same installation.

On PostgreSQL `state_dir` also remembers which database the site runs on (the server's system identifier and the
database's name, recorded by the first daemon start and by `adopt`): a copy of both the database and `state_dir`
(a cloned server, a restore on a test server) runs on another server or under another name, and is guarded too.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import uuid
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy import Engine, text
from sqlalchemy.exc import SQLAlchemyError

from federationd.errors import ConfigError

IDENTITY_FILE = "identity.json"
SIGNING_KEY_FILE = "signing_key.pem"


def _state_dir(state_dir: Path, create: bool) -> Path:
    if create:
        try:
            state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise ConfigError(f"state_dir {str(state_dir)!r}: cannot create it: {exc.strerror}") from None
    return state_dir


def installation_id(state_dir: Path, create: bool = False) -> str | None:
    """The id in `state_dir/identity.json`; with `create`, make one if there is none."""
    path = _state_dir(state_dir, create) / IDENTITY_FILE
    if path.exists():
        return str(json.loads(path.read_text())["installation_id"])
    if not create:
        return None
    new = uuid.uuid4().hex
    _write_private(path, json.dumps({"installation_id": new}).encode())
    return new


def write_installation_id(state_dir: Path, value: str) -> None:
    _write_private(_state_dir(state_dir, True) / IDENTITY_FILE, json.dumps({"installation_id": value}).encode())


def database_fingerprint(engine: Engine) -> str | None:
    """What tells this PostgreSQL database from a copy of it: the server's system identifier (a streaming standby
    promoted by Patroni or a managed service keeps it) and the database's name. None on SQLite, or where the
    server does not say."""
    if engine.dialect.name != "postgresql":
        return None
    try:
        with engine.connect() as conn:
            row = conn.execute(text("SELECT system_identifier, current_database() FROM pg_control_system()")).one()
    except SQLAlchemyError:
        return None
    return f"{row[0]}/{row[1]}"


def recorded_database(state_dir: Path) -> str | None:
    path = state_dir / IDENTITY_FILE
    if not path.exists():
        return None
    value = json.loads(path.read_text()).get("database")
    return str(value) if value else None


def record_database(state_dir: Path, fingerprint: str) -> None:
    """Remember in `state_dir` the database this installation runs on (next to its installation id)."""
    path = _state_dir(state_dir, True) / IDENTITY_FILE
    document = json.loads(path.read_text()) if path.exists() else {}
    _write_private(path, json.dumps({**document, "database": fingerprint}).encode())


def copied_database(state_dir: Path, engine: Engine, record: bool = False) -> bool:
    """Whether the database is not the one this `state_dir` recorded (a copy of both on another server or under
    another name). With `record` (the daemon's start), records the database when none is recorded yet (the first
    start after `init` or an upgrade)."""
    live = database_fingerprint(engine)
    if live is None:
        return False
    recorded = recorded_database(state_dir)
    if recorded is None:
        if record:
            with contextlib.suppress(OSError):  # a state_dir the daemon may not write: nothing recorded
                record_database(state_dir, live)
        return False
    return recorded != live


def signing_key(state_dir: Path, create: bool = False) -> Ed25519PrivateKey:
    """The site's Ed25519 key for sign-in tickets (made by `init`)."""
    path = _state_dir(state_dir, create) / SIGNING_KEY_FILE
    if path.exists():
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ConfigError(f"{path}: not an Ed25519 key")
        return key
    if not create:
        raise ConfigError(f"{path}: missing; run `federationd init`")
    key = Ed25519PrivateKey.generate()
    _write_private(path, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return key


def public_key_b64(key: Ed25519PrivateKey) -> str:
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode()


def load_public_key(b64: str) -> Ed25519PublicKey:
    return Ed25519PublicKey.from_public_bytes(base64.b64decode(b64))


def _write_private(path: Path, content: bytes) -> None:
    temporary = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(content)
    os.replace(temporary, path)
