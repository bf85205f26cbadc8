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

__all__ = ["ADMIN_DSN", "HOST", "PORT", "USER", "copy_database", "create_database", "drop_database", "pg_reachable"]

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
    return psycopg.connect(ADMIN_DSN, autocommit=True, connect_timeout=5)


def pg_reachable() -> bool:
    """Return True if the admin database accepts a connection within 2 seconds."""
    try:
        with psycopg.connect(ADMIN_DSN, connect_timeout=2) as conn:
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
