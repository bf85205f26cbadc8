"""The control outbox: control messages for a partner, delivered by the daemon in order, before any data.

Release, relink and change-url are recorded here by the verb (so they survive a partner that is down, and a
daemon restart) and sent by the next send to that partner, with the same confirms and backoff as data.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, delete, insert, select

from federationd.schema import control_outbox, links

ACCESS_CONTROLS = frozenset({"visit_policy", "accept_policy"})  # our access settings: confirmed on delivery


@dataclass(frozen=True)
class Control:
    id: int
    site: str
    kind: str
    fields: dict[str, Any]


def queue(conn: Connection, site: str, kind: str, now: float, **fields: Any) -> None:
    """Queue a control for `site`, stamped with the link's incarnation (the token it grew from): the partner
    drops a control of an earlier incarnation left in its queue."""
    if "incarnation" not in fields:
        fields["incarnation"] = conn.execute(select(links.c.token_id).where(links.c.site == site)).scalar()
    conn.execute(insert(control_outbox).values(site=site, kind=kind, body=json.dumps(fields), created_at=now))


def replace(conn: Connection, site: str, kind: str, now: float, **fields: Any) -> None:
    """Queue a control that supersedes any of the same kind still waiting (only the newest matters)."""
    conn.execute(delete(control_outbox).where(control_outbox.c.site == site, control_outbox.c.kind == kind))
    queue(conn, site, kind, now, **fields)


def waiting(conn: Connection, site: str) -> list[Control]:
    rows = conn.execute(select(control_outbox).where(control_outbox.c.site == site).order_by(control_outbox.c.id))
    return [Control(row.id, row.site, row.kind, json.loads(row.body)) for row in rows]


def delivered(conn: Connection, control_id: int) -> None:
    conn.execute(delete(control_outbox).where(control_outbox.c.id == control_id))


def drop(conn: Connection, site: str) -> None:
    """Forget what was waiting for `site` (it released us: there is nobody to tell)."""
    conn.execute(delete(control_outbox).where(control_outbox.c.site == site))
