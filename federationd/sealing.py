"""Partner credentials sealed at rest with a key kept in `state_dir`, never in the database.

The database holds, per link, the password we present to the partner's broker. It is stored sealed (Fernet:
AES-128-CBC with HMAC-SHA256) under `state_dir/sealing.key`, which `init` creates (mode 0600). A copy of the
database without that `state_dir` (a backup, a test server's copy) carries no usable partner credential: opening
fails, the link reads as having no credential, and a relink provisions fresh ones.

The key is attached to the database engine that `Runtime` builds, so that `links` seals and opens the column
without knowing where the key lives.
"""

from __future__ import annotations

import logging
import os
import weakref
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy import Connection, Engine

from federationd.errors import ConfigError

log = logging.getLogger(__name__)

KEY_FILE = "sealing.key"
PREFIX = "sealed1:"

_keys: weakref.WeakKeyDictionary[Engine, Fernet] = weakref.WeakKeyDictionary()


def key_path(state_dir: Path) -> Path:
    return state_dir / KEY_FILE


def load_key(state_dir: Path, create: bool = False) -> Fernet | None:
    """The sealing key in `state_dir`; with `create`, make one (0600) if there is none."""
    path = key_path(state_dir)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        data = None
    except PermissionError:  # an operator's verb run as another user: it cannot use partner credentials anyway
        log.debug("cannot read %s: partner credentials stay sealed", path)
        return None
    if data is not None:
        try:
            return Fernet(data.strip())
        except ValueError as exc:
            raise ConfigError(f"{path}: not a usable sealing key ({exc})") from None
    if not create:
        return None
    key = Fernet.generate_key()
    temporary = path.with_suffix(".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key + b"\n")
    os.replace(temporary, path)
    return Fernet(key)


def attach(engine: Engine, key: Fernet | None) -> None:
    """Seal and open the credentials of this engine's database with `key`."""
    if key is not None:
        _keys[engine] = key


def seal(conn: Connection, value: str | None) -> str | None:
    if value is None or value.startswith(PREFIX):
        return value
    key = _keys.get(conn.engine)
    if key is None:
        raise ConfigError("no sealing key in state_dir: run `federationd init` before storing partner credentials")
    return PREFIX + key.encrypt(value.encode()).decode()


def open_sealed(conn: Connection, value: str | None, what: str) -> str | None:
    """The clear value, or None when it cannot be opened here (another installation's key, or none)."""
    if value is None or not value.startswith(PREFIX):
        return value  # stored before sealing existed: still usable; the next credential change seals it
    key = _keys.get(conn.engine)
    try:
        if key is None:
            raise InvalidToken
        return key.decrypt(value.removeprefix(PREFIX).encode()).decode()
    except InvalidToken:
        log.warning("%s: the stored credential was sealed with another state_dir's key (a copied database?); "
                    "treating it as absent: relink to provision a new one", what)
        return None
