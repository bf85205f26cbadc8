"""Scratch PostgreSQL databases for tests.

This module owns talking to the local PostgreSQL server as its superuser
(``postgres``, trust auth, 127.0.0.1:5432): probing whether it is there and
creating / dropping one throwaway database per test or module.  Tests get a
SQLAlchemy URL for the psycopg 3 driver and never see the admin connection.
"""

from __future__ import annotations

import re

import psycopg
from psycopg import sql

__all__ = ["ADMIN_DSN", "HOST", "PORT", "USER", "applied", "audit_applies", "block_role", "copy_database",
           "create_database", "create_role", "drop_database", "drop_role", "pg_reachable", "url_as"]

HOST = "127.0.0.1"
PORT = 5432
USER = "postgres"
ADMIN_DSN = f"postgresql://{USER}@{HOST}:{PORT}/postgres"

# Database names go into DDL; keep them to plain identifiers so a typo cannot
# turn into SQL, and so the name needs no quoting inside the returned URL.
_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def _check_name(name: str) -> str:
    if not _NAME.match(name):
        raise ValueError(f"invalid test database name {name!r}: use [a-z_][a-z0-9_]*, at most 63 chars")
    if name in {"postgres", "template0", "template1"}:
        raise ValueError(f"refusing to touch the system database {name!r}")
    return name


def _admin() -> psycopg.Connection:
    # CREATE/DROP DATABASE cannot run inside a transaction block.
    return psycopg.connect(ADMIN_DSN, autocommit=True, connect_timeout=30)


def pg_reachable() -> bool:
    """Return True if the admin database accepts a connection within 10 seconds (a server that is down refuses
    at once; only a loaded one takes long, and in CI a false "unreachable" fails the whole run)."""
    try:
        with psycopg.connect(ADMIN_DSN, connect_timeout=10) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error:
        return False
    return True


def create_database(name: str) -> str:
    """Create an empty database ``name`` and return its SQLAlchemy URL.

    A leftover database of the same name (from a crashed run) is dropped first,
    so every caller starts from an empty database.
    """
    _check_name(name)
    drop_database(name)
    with _admin() as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return f"postgresql+psycopg://{USER}@{HOST}:{PORT}/{name}"


def drop_database(name: str) -> None:
    """Drop database ``name`` if it exists, disconnecting anyone still using it."""
    _check_name(name)
    with _admin() as conn:
        # A pooled engine the test forgot to dispose would otherwise make
        # DROP DATABASE fail with "is being accessed by other users".
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            (name,),
        )
        # WITH (FORCE) (PostgreSQL 13+) also closes the window in which a new
        # session could connect between the terminate above and the DROP.
        force = sql.SQL(" WITH (FORCE)") if conn.info.server_version >= 130000 else sql.SQL("")
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}{}").format(sql.Identifier(name), force))


def copy_database(source: str, target: str) -> None:
    """Make `target` a copy of `source` (a backup, or a restore from one): CREATE DATABASE ... TEMPLATE.

    Nobody may be connected to `source`; stop the daemon first, as an operator taking a cold backup would."""
    _check_name(source)
    drop_database(target)
    with _admin() as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            (source,),
        )
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(_check_name(target)),
                                                                       sql.Identifier(source)))


def allow_connections(name: str, allowed: bool) -> None:
    """Make database `name` refuse (or accept again) every new connection, superusers' too, and close the ones it
    has: the database "goes away" for its clients while the server stays up."""
    _check_name(name)
    with _admin() as conn:
        conn.execute(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS {}").format(
            sql.Identifier(name), sql.SQL("true" if allowed else "false")))
        if not allowed:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s "
                "AND pid <> pg_backend_pid()", (name,))


# -- a role per daemon, so that a test can cut one daemon off the database and not another ----------------------
def create_role(name: str) -> None:
    """A login role that may read and write every table (`pg_read_all_data`, `pg_write_all_data`), as a daemon
    needs; dropped first if a crashed run left it."""
    _check_name(name)
    drop_role(name)
    with _admin() as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(name)))
        conn.execute(sql.SQL("GRANT pg_read_all_data, pg_write_all_data TO {}").format(sql.Identifier(name)))


def drop_role(name: str) -> None:
    _check_name(name)
    with _admin() as conn:
        conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", (name,))
        conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))


def block_role(name: str, blocked: bool = True) -> int:
    """Cut role `name` off the server (NOLOGIN, and its sessions terminated), or let it log in again; returns how
    many sessions were terminated."""
    _check_name(name)
    with _admin() as conn:
        conn.execute(sql.SQL("ALTER ROLE {} {}").format(sql.Identifier(name),
                                                        sql.SQL("NOLOGIN" if blocked else "LOGIN")))
        if not blocked:
            return 0
        rows = conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s",
                            (name,)).fetchall()
    return len(rows)


def url_as(url: str, role: str) -> str:
    """`url` (this module's form, postgresql+psycopg://USER@HOST:PORT/DB) connecting as `role`."""
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{_check_name(role)}@{rest.partition('@')[2]}"


# -- every apply, as the database saw it --------------------------------------------------------------------------
def audit_applies(database: str) -> None:
    """Log every row written to `records` in database `database` (insert or update, in commit order within a
    session) to a table `applied_log`: what was applied, once per apply, for checking order and duplicates."""
    _check_name(database)
    with psycopg.connect(f"postgresql://{USER}@{HOST}:{PORT}/{database}", autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS applied_log (n bigserial PRIMARY KEY, origin text, category text, "
                     "id text, epoch bigint, version bigint, deleted boolean)")
        conn.execute("CREATE OR REPLACE FUNCTION log_apply() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                     "INSERT INTO applied_log (origin, category, id, epoch, version, deleted) VALUES "
                     "(NEW.origin, NEW.category, NEW.id, NEW.epoch, NEW.version, NEW.deleted); RETURN NULL; END $$")
        conn.execute("DROP TRIGGER IF EXISTS log_apply ON records")
        conn.execute("CREATE TRIGGER log_apply AFTER INSERT OR UPDATE ON records FOR EACH ROW "
                     "EXECUTE FUNCTION log_apply()")


def applied(database: str, origin: str) -> list[tuple[str, str, int, int]]:
    """The applies `audit_applies` logged for `origin`'s records: (category, id, epoch, version), in order."""
    _check_name(database)
    with psycopg.connect(f"postgresql://{USER}@{HOST}:{PORT}/{database}") as conn:
        rows = conn.execute("SELECT category, id, epoch, version FROM applied_log WHERE origin = %s ORDER BY n",
                            (origin,)).fetchall()
    return [(str(c), str(i), int(e), int(v)) for c, i, e, v in rows]
