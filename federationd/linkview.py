"""`link show SITE`: one link as its administrators compare it (codes, incarnation, who did what and when)."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from federationd import links
from federationd.broker.endpoints import shown
from federationd.identity import copied_database, installation_id
from federationd.runtime import Runtime
from federationd.status import paused_by
from federationd.store import load_site_state, reading
from federationd.tokens import iso


def key_fingerprint(key: str | None) -> str | None:
    """SHA-256 of the partner's raw signing key, like an SSH fingerprint (`SHA256:...`)."""
    if not key:
        return None
    try:
        raw = base64.b64decode(key, validate=True)
    except ValueError:
        return None
    return "SHA256:" + base64.b64encode(hashlib.sha256(raw).digest()).decode().rstrip("=")


def show(rt: Runtime, site: str) -> dict[str, Any]:
    """The pinned `link show --json` document, plus `role`, `key_fingerprint`, `stop_reason` and the access
    settings both ways: `partner_visit` and `partner_accept` (as the partner told us), `access_synced_at` (when
    the partner's broker last confirmed ours)."""
    from federationd.accesslist import partner_accept  # noqa: PLC0415
    from federationd.signin import department_parents  # noqa: PLC0415

    with reading(rt.engine) as conn:
        link = links.require(conn, site)
        state = load_site_state(conn)
        ours = department_parents(conn, rt.home)
    guard = (installation_id(rt.config.state_dir) != state.installation_id
             or copied_database(rt.config.state_dir, rt.engine))
    why = paused_by(rt.config, link, state.paused, guard)
    return {"site": link.site, "state": link.state, "paused": why is not None, "paused_by": why,
            "company": link.company, "name": link.name or link.company, "public_url": shown(link.public_url),
            "code": link.code, "incarnation": link.token_id, "requested_at": iso(link.requested_at),
            "requested_by": link.requested_by, "accepted_at": iso(link.accepted_at),
            "accepted_by": link.accepted_by, "started_at": iso(link.started_at), "role": link.role,
            "key_fingerprint": key_fingerprint(link.partner_key), "stop_reason": link.stop_reason,
            "partner_visit": json.loads(link.partner_visit) if link.partner_visit else None,
            "partner_accept": partner_accept(link, ours), "access_synced_at": iso(link.access_synced_at)}
