"""This installation's identity and signing key, kept in `state_dir` (not in the database).

`init` writes the installation id into both; a daemon that finds a database carrying another installation's id
(a production copy on a test server) starts with the whole site paused (SPEC 3.1).
"""

from __future__ import annotations

import base64
import json
import os
import uuid
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

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
