"""`access list SITE`: the list tab of the access settings — what this site applies to a partner's employees
(the effective accept table in priority order), which of our employees may visit it, and the accept rules the
partner last told us it applies to ours."""

from __future__ import annotations

import json
from typing import Any

from federationd import links
from federationd.access import table
from federationd.config import AcceptPolicy
from federationd.runtime import Runtime
from federationd.signin import department_parents
from federationd.store import reading


def partner_accept(link: links.Link, ours: dict[str, str | None]) -> dict[str, Any] | None:
    """The partner's accept table for our employees (ranked on our department tree), or None if not told."""
    if link.partner_accept is None:
        return None
    return table(AcceptPolicy.model_validate(json.loads(link.partner_accept)), ours)


def listing(rt: Runtime, site: str) -> dict[str, Any]:
    """The `access list --json` document: `{visit, accept: {default, rules}, partner_accept}`."""
    with reading(rt.engine) as conn:
        link = links.require(conn, site)
        theirs = department_parents(conn, site)
        ours = department_parents(conn, rt.home)
    section = rt.config.link(site)
    return {"visit": section.visit.model_dump() if section.visit is not None else None,
            "accept": table(section.accept, theirs), "partner_accept": partner_accept(link, ours)}


def _grant_text(grant: dict[str, Any]) -> str:
    products = ", ".join(grant["products"]) if grant["products"] is not None else "all"
    networks = ", ".join(f"{n['cidr']}: {n['role']}" for n in grant["networks"]) or "-"
    return f"role {grant['role']:8} products {products}; restrictions {', '.join(grant['restrictions']) or '-'}; " \
           f"networks {networks}"


def accept_lines(accept: dict[str, Any] | None) -> list[str]:
    """An accept table as text, one rule a line, highest priority first, the site-wide default last."""
    if accept is None:
        return ["  (not told yet)"]
    lines = [f"  {rule['level']:20} {rule['match']:40} {_grant_text(rule)}" for rule in accept["rules"]]
    lines.append(f"  {'default':20} {'everybody else':40} {_grant_text(accept['default'])}")
    return lines


def text_lines(site: str, document: dict[str, Any]) -> list[str]:
    visit = document["visit"]
    if visit is None or not any(visit.values()):
        visit_text = "everybody"
    else:
        visit_text = "; ".join(f"{key} {', '.join(values)}" for key, values in visit.items() if values)
    return [f"accept (what {site}'s employees get here, highest priority first):", *accept_lines(document["accept"]),
            f"visit (which of our employees may sign in at {site}): {visit_text}",
            f"partner accept (what {site} says our employees get there):",
            *accept_lines(document["partner_accept"])]
