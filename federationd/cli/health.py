"""`federationd health`: what the heartbeat files, the database and the active lock say (federationd/health.py),
and who holds the site's active lock (for `health` and `status`)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from federationd import active, health
from federationd.runtime import Runtime


def active_daemon(rt: Runtime) -> str | None:
    """The label ("HOST pid PID") of the daemon that holds the site's active lock, wherever it runs; None if no
    daemon holds it or the database does not answer."""
    try:
        return active.holder(rt.engine, rt.config.state_dir)
    except (SQLAlchemyError, OSError):
        return None


def check(rt: Runtime) -> dict[str, Any]:
    state_dir = rt.config.state_dir
    try:
        rt.probe_database()
        database = True
    except SQLAlchemyError:
        database = False
    holder = active_daemon(rt)
    document: dict[str, Any] = health.evaluate(health.read_all(state_dir), health.now(), database=database,
                                               lock_held=holder is not None)
    document["active_daemon"] = holder
    return document


def role_line(rt: Runtime) -> str:
    """One line for `status`: which daemon of this site is active, if any (this host's heartbeats, and the lock's
    holder wherever it runs)."""
    live = [beat for beat in health.read_all(rt.config.state_dir)
            if beat.fresh(health.now()) and health.pid_alive(beat.pid)]
    roles = sorted(f"{beat.role} (pid {beat.pid})" for beat in live)
    holder = active_daemon(rt)
    held = f"; the site's active lock is held by {holder}" if holder else ""
    if roles:
        return "daemon: " + ", ".join(roles) + held
    return f"daemon: active elsewhere ({holder} holds the site's lock)" if holder else "daemon: not running"
