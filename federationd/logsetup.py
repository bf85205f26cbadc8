"""How the daemon's log lines look: journald priorities, the level, text or JSON lines, the partner as a field.

When stderr is the journal (systemd sets `$JOURNAL_STREAM` to the device and inode of the stream it gave us), each
line starts with `<N>` (the syslog priority journald files it under) and carries no timestamp of its own: journald
stamps it. Elsewhere (a terminal, a file) lines carry a UTC timestamp. With `log.format: json` every line is one
JSON object: `ts` (when not on the journal), `level`, `logger`, `message`, and `site` when it concerns a partner.

The partner a line is about comes from `extra={"site": ...}`, else from `about(site)` around the code, else from
the first argument of the message that names a known partner.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator
from typing import IO, Any

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
FORMATS = ("text", "json")
# syslog priorities (sd-daemon(3)): <7> debug, <6> info, <4> warning, <3> error, <2> critical
_PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}

_about: contextvars.ContextVar[str | None] = contextvars.ContextVar("federationd_log_site", default=None)


@contextlib.contextmanager
def about(site: str) -> Iterator[None]:
    """Log lines inside this block concern partner `site`."""
    token = _about.set(site)
    try:
        yield
    finally:
        _about.reset(token)


def stderr_is_journal(stream: IO[str] | None = None, environ: dict[str, str] | None = None) -> bool:
    """Whether `stream` (stderr) is the journal stream systemd named in $JOURNAL_STREAM ("DEVICE:INODE")."""
    value = (environ if environ is not None else os.environ).get("JOURNAL_STREAM", "")
    device, sep, inode = value.partition(":")
    if not sep or not device.isdigit() or not inode.isdigit():
        return False
    try:
        info = os.fstat((stream or sys.stderr).fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return (info.st_dev, info.st_ino) == (int(device), int(inode))


def priority(levelno: int) -> int:
    for threshold in (logging.CRITICAL, logging.ERROR, logging.WARNING, logging.INFO):
        if levelno >= threshold:
            return _PRIORITY[threshold]
    return _PRIORITY[logging.DEBUG]


class _SiteFilter(logging.Filter):
    def __init__(self, partners: Callable[[], set[str]]) -> None:
        super().__init__()
        self._partners = partners

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "site", None) is None:
            record.site = _about.get() or self._from_args(record.args)
        return True

    def _from_args(self, args: Any) -> str | None:
        values = args.values() if isinstance(args, dict) else args if isinstance(args, tuple) else ()
        candidates = [v for v in values if isinstance(v, str)]
        if not candidates:
            return None
        known = self._partners()
        return next((v for v in candidates if v in known), None)


class Formatter(logging.Formatter):
    def __init__(self, *, journal: bool, as_json: bool) -> None:
        super().__init__()
        self.journal = journal
        self.as_json = as_json

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.exc_info:
            message = f"{message}\n{self.formatException(record.exc_info)}"
        site = getattr(record, "site", None)
        prefix = f"<{priority(record.levelno)}>" if self.journal else ""
        if self.as_json:
            document: dict[str, Any] = {} if self.journal else {"ts": self._iso(record.created)}
            document.update(level=record.levelname.lower(), logger=record.name, message=message)
            if site:
                document["site"] = site
            return prefix + json.dumps(document, ensure_ascii=False)
        about_site = f"site={site} " if site else ""
        head = "" if self.journal else f"{self._iso(record.created)} {record.levelname} "
        text = f"{head}{record.name}: {about_site}{message}"
        if self.journal:  # one journal entry per line: every continuation line keeps the priority
            text = text.replace("\n", f"\n{prefix}")
        return prefix + text

    @staticmethod
    def _iso(created: float) -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created)) + f".{int(created % 1 * 1000):03d}Z"


def configure(level: str, fmt: str = "text", partners: Callable[[], set[str]] = set,
              stream: IO[str] | None = None) -> logging.Handler:
    """Send the root logger's lines to `stream` (stderr) at `level`, as text or JSON; returns the handler."""
    stream = stream or sys.stderr
    handler = logging.StreamHandler(stream)
    handler.setFormatter(Formatter(journal=stderr_is_journal(stream), as_json=fmt == "json"))
    handler.addFilter(_SiteFilter(partners))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    set_level(level)
    return handler


def set_level(level: str) -> None:
    logging.getLogger().setLevel(LEVELS[level])
