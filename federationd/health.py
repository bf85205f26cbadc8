"""The daemon's health, as `federationd health` and `/healthz` report it: `{ok, daemon, consuming, database,
active}`.

Every running daemon writes a small heartbeat file in `state_dir` (`daemon.<pid>.json`: role, whether it
consumes, when it last went round its main loop), rewritten every few seconds and removed at a clean stop. The
CLI reads these files, checks the process is alive and the beat fresh, probes the database itself and asks the
lock (federationd/active.py) whether a daemon holds it. `ok` = a live daemon, the database answers, and the
active daemon consumes (a standby is healthy as a standby).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

STALE_SECONDS = 30.0  # a heartbeat older than this is a daemon that is wedged or gone
PATTERN = "daemon.*.json"


@dataclass(frozen=True)
class Beat:
    pid: int
    role: str  # "active" or "standby"
    consuming: bool
    database: bool
    at: float  # unix time of the main loop's last round

    def fresh(self, now: float) -> bool:
        return now - self.at <= STALE_SECONDS


def beat_path(state_dir: Path, pid: int) -> Path:
    return Path(state_dir) / f"daemon.{pid}.json"


def write(state_dir: Path, beat: Beat) -> None:
    """Atomically replace this process's heartbeat file."""
    path = beat_path(state_dir, beat.pid)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(beat)))
    tmp.replace(path)


def remove(state_dir: Path, pid: int) -> None:
    with contextlib.suppress(FileNotFoundError):
        beat_path(state_dir, pid).unlink()


def read_all(state_dir: Path) -> list[Beat]:
    beats = []
    for path in sorted(Path(state_dir).glob(PATTERN)):
        with contextlib.suppress(OSError, ValueError, TypeError, KeyError):
            beats.append(Beat(**json.loads(path.read_text())))
    return beats


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, another user's
    return True


def evaluate(beats: list[Beat], now: float, *, database: bool, lock_held: bool,
             alive: Any = pid_alive) -> dict[str, bool]:
    """The health document from what the CLI saw (pure but for `alive`)."""
    live = [beat for beat in beats if beat.fresh(now) and alive(beat.pid)]
    active = [beat for beat in live if beat.role == "active"]
    daemon = bool(live)
    is_active = bool(active) and lock_held
    consuming = any(beat.consuming for beat in active)
    ok = daemon and database and (consuming if is_active else not active)
    return {"ok": ok, "daemon": daemon, "consuming": consuming, "database": database, "active": is_active}


def now() -> float:
    return time.time()
