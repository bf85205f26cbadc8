"""The database: engine set-up (SQLite WAL or PostgreSQL), schema migration, and the site's own state row."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, insert, select, text, update
from sqlalchemy.exc import OperationalError, ProgrammingError, SQLAlchemyError

from federationd.errors import StoreError
from federationd.schema import site_state

SQLITE_BUSY_TIMEOUT_MS = 30_000

# PostgreSQL: no call waits forever on a database that vanished or a lock that is never released. A statement
# may run two minutes (a snapshot read of 100,000 records takes seconds), a lock wait one minute (a CSV import
# holds the site's sequence row for its whole transaction); TCP keepalives notice a dead peer within about a
# minute (30 s idle, then 3 probes 10 s apart), which also frees the active-daemon lock of a vanished host.
PG_CONNECT_TIMEOUT_SECONDS = 10
PG_STATEMENT_TIMEOUT_MS = 120_000
PG_LOCK_TIMEOUT_MS = 60_000
PG_KEEPALIVES = {"keepalives": 1, "keepalives_idle": 30, "keepalives_interval": 10, "keepalives_count": 3}
PG_POOL_TIMEOUT_SECONDS = 30


def make_engine(url: str) -> Engine:
    """An engine for `database.url`. SQLite gets WAL with `synchronous=FULL` (an acknowledged commit survives a
    power cut), a busy timeout and write transactions that take the write lock up front (`BEGIN IMMEDIATE`), so
    two writers queue instead of failing on a lock upgrade. PostgreSQL gets connect, statement and lock timeouts
    and TCP keepalives."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})
        event.listen(engine, "connect", _sqlite_connect)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    options = f"-c statement_timeout={PG_STATEMENT_TIMEOUT_MS} -c lock_timeout={PG_LOCK_TIMEOUT_MS}"
    return create_engine(url, pool_pre_ping=True, pool_size=8, max_overflow=8, pool_timeout=PG_POOL_TIMEOUT_SECONDS,
                         connect_args={"connect_timeout": PG_CONNECT_TIMEOUT_SECONDS, "options": options,
                                       **PG_KEEPALIVES})


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None  # we issue BEGIN ourselves (see _sqlite_begin)
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.close()


def _sqlite_begin(connection: Connection) -> None:
    mode = connection.get_execution_options().get("sqlite_begin", "IMMEDIATE")
    connection.exec_driver_sql(f"BEGIN {mode}")


@contextmanager
def reading(engine: Engine) -> Iterator[Connection]:
    """A read-only transaction that does not take SQLite's write lock."""
    with engine.connect() as raw:
        conn = raw.execution_options(sqlite_begin="DEFERRED")
        with conn.begin():
            yield conn


# Alembic is imported where it is used: every CLI verb imports this module, only init and run migrate or check.
def _alembic_config(connection: Connection) -> Any:
    from alembic.config import Config as AlembicConfig  # noqa: PLC0415

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", "federationd:migrations")
    cfg.attributes["connection"] = connection
    return cfg


def migrate(engine: Engine) -> None:
    """Create or upgrade the schema to the newest migration (never drop-and-create)."""
    from alembic import command  # noqa: PLC0415

    try:
        with engine.begin() as conn:
            command.upgrade(_alembic_config(conn), "head")
    except SQLAlchemyError as exc:
        raise StoreError(f"cannot migrate the database: {_reason(exc)}") from None


def schema_is_current(engine: Engine) -> bool:
    from alembic.runtime.migration import MigrationContext  # noqa: PLC0415
    from alembic.script import ScriptDirectory  # noqa: PLC0415

    with reading(engine) as conn:
        current = MigrationContext.configure(conn).get_current_revision()
        head = ScriptDirectory.from_config(_alembic_config(conn)).get_current_head()
    return current == head


@dataclass(frozen=True)
class SiteState:
    site_id: str
    installation_id: str
    epoch: int
    next_seq: int
    paused: bool = False


def new_epoch(previous: int, now: float | None = None) -> int:
    """An epoch newer than `previous` and than any epoch this site handed out before a database restore.

    Epochs follow the wall clock (unix seconds) so that a database restored from an older backup, whose stored
    epoch went back in time, still starts a newer one than the partners remember."""
    return max(previous + 1, int(now if now is not None else time.time()))


def ensure_site_state(conn: Connection, site_id: str, installation_id: str | None = None,
                      now: float | None = None) -> SiteState:
    """Create the site's state row on first `init`; refuse a database that belongs to another site. `now` (unix
    seconds) is the clock's, for the first epoch."""
    row: Any = conn.execute(select(site_state).where(site_state.c.id == 1)).mappings().first()
    if row is None:
        now = time.time() if now is None else now
        values: dict[str, Any] = {
            "id": 1,
            "site_id": site_id,
            "installation_id": installation_id or uuid.uuid4().hex,
            "epoch": new_epoch(0, now),
            "next_seq": 0,
            "created_at": now,
        }
        conn.execute(insert(site_state).values(**values))
        row = values
    elif row["site_id"] != site_id:
        raise StoreError(f"the database belongs to site {row['site_id']!r}, not {site_id!r}")
    return SiteState(row["site_id"], row["installation_id"], row["epoch"], row["next_seq"])


def load_site_state(conn: Connection) -> SiteState:
    row = conn.execute(select(site_state).where(site_state.c.id == 1)).mappings().first()
    if row is None:
        raise StoreError("the database is not initialised: run `federationd init`")
    return SiteState(row["site_id"], row["installation_id"], row["epoch"], row["next_seq"], bool(row["paused"]))


def set_installation_id(conn: Connection, installation_id: str) -> None:
    conn.execute(update(site_state).where(site_state.c.id == 1).values(installation_id=installation_id))


# One statement: the row lock of the UPDATE orders two concurrent bumps, so the epoch never goes back.
_BUMP_EPOCH = text("UPDATE site_state SET epoch = CASE WHEN epoch + 1 > :now THEN epoch + 1 ELSE :now END "
                   "WHERE id = 1 RETURNING epoch")


def bump_epoch(conn: Connection, now: float | None = None) -> int:
    """Start a new epoch (before a snapshot) and return it: `new_epoch` of the stored one, in one statement."""
    moment = int(now if now is not None else time.time())
    epoch = conn.execute(_BUMP_EPOCH, {"now": moment}).scalar_one_or_none()
    if epoch is None:
        raise StoreError("the database is not initialised: run `federationd init`")
    return int(epoch)


def _reason(exc: SQLAlchemyError) -> str:
    if isinstance(exc, (OperationalError, ProgrammingError)):
        return str(exc.orig).splitlines()[0] if exc.orig is not None else "operational error"
    return type(exc).__name__


_SCHEMA_HINTS = ("no such table", "no such column", "does not exist")


def db_error(exc: SQLAlchemyError) -> StoreError:
    """Translate a SQLAlchemy error into a one-line StoreError (no SQL, no parameters, no URL)."""
    reason = _reason(exc)
    if any(hint in reason for hint in _SCHEMA_HINTS):
        return StoreError(f"database error: {reason} (is the schema current? run `federationd init`)")
    return StoreError(f"database error: {reason}")
