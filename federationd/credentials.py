"""Where passwords come from when a URL leaves them out, and the checks on the files that hold secrets.

A URL in the config may carry its password (percent-encoded), or leave it out. Then it is read from the file
given in the config (`broker.password_file`, `broker.management_password_file`, `database.password_file`), else
from systemd's `$CREDENTIALS_DIRECTORY/broker`, `/management` or `/database` (the unit's `LoadCredential=`).
A file that other users could write, or that belongs to neither root nor the user running federationd, is
refused: whoever can change it can redirect the daemon or read what it sends.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from urllib.parse import quote, urlsplit

from federationd.errors import ConfigError

CREDENTIALS_ENV = "CREDENTIALS_DIRECTORY"
MAX_SECRET_BYTES = 4096


def ownership_problem(path: Path, what: str) -> str | None:
    """Why `path` cannot be trusted (writable by others, or owned by another user), or None."""
    try:
        info = path.stat()
    except OSError as exc:
        return f"{what} {path}: cannot read it: {exc.strerror}"
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return f"{what} {path} is writable by other users: chmod go-w it (0640 or 0600)"
    if info.st_uid not in (0, os.geteuid()):
        return f"{what} {path} is owned by uid {info.st_uid}, neither root nor the user running federationd"
    return None


def check_trusted(path: Path, what: str) -> None:
    problem = ownership_problem(path, what)
    if problem:
        raise ConfigError(problem)


def read_secret(name: str, explicit: Path | None, key: str) -> str | None:
    """The secret from `explicit` (the config's `*_password_file`), else `$CREDENTIALS_DIRECTORY/name`, else None.

    One trailing newline is dropped (files written by `echo` end with one); the rest is the password as is.
    """
    if explicit is not None:
        check_trusted(explicit, key)
        if explicit.stat().st_mode & stat.S_IROTH:
            raise ConfigError(f"{key} {explicit} is readable by other users: chmod 0600 or 0640 it")
        return _read(explicit, key)
    directory = os.environ.get(CREDENTIALS_ENV)
    if directory and (Path(directory) / name).is_file():
        return _read(Path(directory) / name, f"${CREDENTIALS_ENV}/{name}")  # systemd owns this directory
    return None


def _read(path: Path, what: str) -> str:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{what} {path}: cannot read it: {exc.strerror}") from None
    if len(data) > MAX_SECRET_BYTES:
        raise ConfigError(f"{what} {path}: longer than {MAX_SECRET_BYTES} bytes; is it the right file?")
    text = data.decode("utf-8", errors="strict").removesuffix("\n")
    if not text:
        raise ConfigError(f"{what} {path} is empty")
    return text


def has_password(url: str) -> bool:
    return bool(urlsplit(url).password)


def has_user(url: str) -> bool:
    return bool(urlsplit(url).username)


def with_password(url: str, password: str) -> str:
    """`url` with `password` (percent-encoded) after its user name."""
    parts = urlsplit(url)
    userinfo, _, host = parts.netloc.rpartition("@")
    user = userinfo.partition(":")[0]
    return parts._replace(netloc=f"{user}:{quote(password, safe='')}@{host}").geturl()


def without_userinfo(url: str) -> str:
    parts = urlsplit(url)
    return parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()
