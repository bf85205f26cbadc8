"""One active daemon per site: a lock held for the daemon's life, kept by a thread of its own, and what the CLI
can tell about it.

PostgreSQL: a session advisory lock on a connection of its own (an engine of its own, never pooled). SQLite:
`fcntl.flock` on `state_dir/active.lock` (the kernel drops it when the process dies; one host only).

The lock session is bounded on both ends, so that a holder that died, stopped or lost the network loses the lock,
and stops acting before anyone else can take it (docs/scaling.md states the resulting takeover times):
- the holder confirms the lock every LOCK_CHECK_SECONDS; the server ends the session, which frees the lock, when
  it heard nothing for LOCK_IDLE_SECONDS (`idle_session_timeout`: the process stopped, its host died or lost the
  network) or TCP says the peer is gone (server keepalives, `tcp_user_timeout`). A killed process's session ends
  at once: its socket closes.
- the holder acts only while its last confirmation (timed from when the check was sent) is younger than
  LEASE_SECONDS < LOCK_IDLE_SECONDS: a check that hangs on a lost network fails within the client's
  `tcp_user_timeout`, and the lease runs out anyway, so the holder stops sending and consuming before the server
  can free the lock.
- a standby that takes the lock after having seen another holder waits TAKEOVER_GRACE_SECONDS before acting: a
  holder whose session was ended under it (an operator, a database restart) notices within one check and stops
  first.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

log = logging.getLogger(__name__)

# pg_advisory_lock's key: one lock per database, and a site owns its database. The two halves are what pg_locks
# shows as classid and objid.
LOCK_CLASS = 0x66656465  # "fede"
LOCK_OBJECT = 0x72617465  # "rate"
LOCK_KEY = (LOCK_CLASS << 32) | LOCK_OBJECT
LOCK_FILE = "active.lock"

LOCK_CHECK_SECONDS = 1.0  # how often the holder confirms the lock, and a standby tries it
LOCK_IDLE_SECONDS = 10  # the server ends a lock session it heard nothing from for this long
LEASE_SECONDS = 6.0  # the holder stops acting when its last confirmation is older than this
TAKEOVER_GRACE_SECONDS = 3.0  # a standby that saw another holder waits this long after taking the lock
# The lock session's TCP bounds, both ends: keepalives after 2 s idle, 1 s apart, 3 lost probes; data unacknowledged
# for 4 s ends the connection. A check therefore fails within about 4 s on a lost network, and the statement
# itself may take 3 s at most.
LOCK_TCP = {"keepalives": 1, "keepalives_idle": 2, "keepalives_interval": 1, "keepalives_count": 3,
            "tcp_user_timeout": 4000, "connect_timeout": 5}
LOCK_SERVER_OPTIONS = (f"-c idle_session_timeout={LOCK_IDLE_SECONDS * 1000} -c statement_timeout=3000 "
                       "-c tcp_keepalives_idle=2 -c tcp_keepalives_interval=1 -c tcp_keepalives_count=3 "
                       "-c tcp_user_timeout=4000")
APPLICATION_PREFIX = "federationd active lock: "

_WHO_HOLDS = text(
    "SELECT a.application_name FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid "
    "WHERE l.locktype = 'advisory' AND l.classid = :c AND l.objid = :o AND l.objsubid = 1 AND l.granted "
    "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())")


def daemon_label() -> str:
    """How this process names itself as the lock's holder: host name and pid."""
    return f"{socket.gethostname()} pid {os.getpid()}"


class ActiveLock(Protocol):
    def acquire(self) -> bool:
        """Take the lock if free (never waits); True if this process holds it now. Raises SQLAlchemyError when
        the database cannot be reached (the caller reports the outage)."""

    def held(self) -> bool:
        """Whether this process still holds the lock (False once the lock session is lost)."""

    def holder(self) -> str | None:
        """Who held the lock at the last failed `acquire` (its label), if known."""

    def release(self) -> None: ...

    @property
    def fences(self) -> bool:
        """Whether the lock can be lost while this process lives (then a lease and a takeover grace apply)."""


class FileLock:
    """SQLite: an exclusive flock on a file in `state_dir`, which holds the holder's label."""

    fences = False

    def __init__(self, state_dir: Path) -> None:
        self.path = Path(state_dir) / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> bool:
        if self._fd is not None:
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, f"{daemon_label()}\n".encode())
        self._fd = fd
        return True

    def held(self) -> bool:
        return self._fd is not None

    def holder(self) -> str | None:
        with contextlib.suppress(OSError):
            return self.path.read_text().strip() or None
        return None

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


def lock_engine(engine: Engine, label: str) -> Engine:
    """An engine for the lock session alone: the site's database URL, the lock's bounds, no pool."""
    return create_engine(engine.url, poolclass=NullPool, connect_args={
        **LOCK_TCP, "options": LOCK_SERVER_OPTIONS, "application_name": f"{APPLICATION_PREFIX}{label}"[:63]})


class AdvisoryLock:
    """PostgreSQL: a session advisory lock on a session of its own. A standby keeps its session and tries the lock
    on it each time; the session is dropped (never reused) on any error."""

    fences = True

    def __init__(self, engine: Engine, label: str | None = None) -> None:
        self._engine = lock_engine(engine, label or daemon_label())
        self._conn: Connection | None = None
        self._holding = False
        self._holder: str | None = None

    def _session(self) -> Connection:
        if self._conn is None:
            self._conn = self._engine.connect()
        return self._conn

    def acquire(self) -> bool:
        if self._holding:
            return self.held()
        try:
            conn = self._session()
            got = bool(conn.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": LOCK_KEY}).scalar_one())
            self._holder = None if got else _label(conn.execute(_WHO_HOLDS, {"c": LOCK_CLASS, "o": LOCK_OBJECT})
                                                   .scalar())
            conn.commit()
        except SQLAlchemyError:
            self._drop()
            raise
        self._holding = got
        return got

    def held(self) -> bool:
        if not self._holding or self._conn is None:
            return False
        try:
            mine = self._conn.execute(text(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = :c AND objid = :o "
                "AND objsubid = 1 AND granted AND pid = pg_backend_pid()"), {"c": LOCK_CLASS, "o": LOCK_OBJECT})
            held = bool(mine.scalar_one())
            self._conn.commit()
        except SQLAlchemyError as exc:
            log.error("lost the session that holds the active lock: %s", str(exc).strip().splitlines()[0])
            held = False
        if not held:
            self._drop()
        return held

    def holder(self) -> str | None:
        return self._holder

    def release(self) -> None:
        if self._conn is not None and self._holding:
            with contextlib.suppress(SQLAlchemyError):
                self._conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": LOCK_KEY})
                self._conn.commit()
        self._drop()
        self._engine.dispose()

    def _drop(self) -> None:
        conn, self._conn, self._holding = self._conn, None, False
        if conn is not None:
            with contextlib.suppress(SQLAlchemyError):
                conn.invalidate()  # a session that held (or tried) the lock ends with it
                conn.close()


def _label(application_name: object) -> str:
    name = str(application_name or "")
    return name[len(APPLICATION_PREFIX):] if name.startswith(APPLICATION_PREFIX) else "unknown (not federationd?)"


def make_lock(engine: Engine, state_dir: Path) -> ActiveLock:
    if engine.dialect.name == "postgresql":
        return AdvisoryLock(engine)
    return FileLock(state_dir)


class Keeper:
    """Takes and keeps the lock on a thread of its own, so that a busy main loop never lets it lapse.

    `acting()` is the one answer to "may this daemon send and consume now?": it holds the lock, its last
    confirmation is within the lease, and the takeover grace (if any) has passed. `on_lost` is called on the
    keeper's thread the moment the lock is lost, to stop sending and consuming at once."""

    def __init__(self, lock: ActiveLock, on_lost: Callable[[str], None], on_error: Callable[[Exception], None],
                 on_ok: Callable[[], None], interval: float = LOCK_CHECK_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.lock = lock
        self._clock = clock
        self._on_lost = on_lost
        self._on_error = on_error
        self._on_ok = on_ok
        self._interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._confirmed_at = float("-inf")  # monotonic time the last successful check was sent
        self._acting_from = float("inf")  # monotonic time from which the holder may act
        self._holding = False
        self._saw_other = False
        self.holder_seen: str | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="active-lock", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(LOCK_IDLE_SECONDS)
        self._holding = False
        self.lock.release()

    def acting(self) -> bool:
        now = self._clock()
        if not self._holding or now < self._acting_from:
            return False
        return not self.lock.fences or now - self._confirmed_at < LEASE_SECONDS

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.round()
            except Exception:  # never let the keeper die: without it the lease runs out and nothing acts
                log.exception("the active lock's keeper failed; trying again in %.0fs", self._interval)
            self._stop.wait(self._interval)

    def round(self) -> None:
        """One check: confirm the lock if held, else try to take it."""
        sent = self._clock()
        if self._holding:
            if self.lock.held():
                self._confirmed_at = sent
                return
            self._holding = False
            self._on_lost("this daemon lost the site's active lock (its database session ended)")
            return
        try:
            got = self.lock.acquire()
        except SQLAlchemyError as exc:
            self._on_error(exc)
            return
        self._on_ok()
        if not got:
            self._saw_other = True
            self.holder_seen = self.lock.holder()
            return
        self._confirmed_at = sent
        grace = TAKEOVER_GRACE_SECONDS if self.lock.fences and self._saw_other else 0.0
        self._acting_from = sent + grace
        self._saw_other = False
        self.holder_seen = None
        self._holding = True
        if grace:
            log.info("took the site's active lock; acting in %.0fs (the previous holder stops first)", grace)


def holder(engine: Engine, state_dir: Path) -> str | None:
    """For the CLI: who holds this site's lock right now (its label, e.g. "db2 pid 4242"), or None.
    (SQLite: try the flock without waiting, and read the file; PostgreSQL: pg_locks and pg_stat_activity.)"""
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            rows = conn.execute(_WHO_HOLDS, {"c": LOCK_CLASS, "o": LOCK_OBJECT}).all()
        return _label(rows[0][0]) if rows else None
    probe = FileLock(state_dir)
    if not probe.path.exists():
        return None
    if probe.acquire():
        probe.release()
        return None
    return probe.holder() or "unknown"


def someone_active(engine: Engine, state_dir: Path) -> bool:
    """For the CLI: does a daemon hold this site's lock right now?"""
    return holder(engine, state_dir) is not None
