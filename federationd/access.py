"""Visit and accept (docs/cli.md): who of a partner's employees may sign in here, and with what — pure decisions.

Visit rules are the origin's (which of its employees may visit us); accept rules are ours (what they get).
Accept priority, lowest first: site-wide < position < department (upper) < department (lower) <
department + position < employee. Department rules match the employee's main department, which includes its
sub-departments: the nearest department wins. A per-network role (CIDR) replaces the rule's role for a sign-in
from that network, the most specific network winning. Role `none` means no sign-in.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from federationd.config import AcceptGrant, AcceptPolicy, AcceptRule, VisitPolicy

NONE_ROLE = "none"


@dataclass(frozen=True)
class Employee:
    """The fields of an employee record that access rules look at."""

    id: str
    main_department: str | None = None
    departments: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    position: str | None = None

    @classmethod
    def from_data(cls, record_id: str, data: Mapping[str, Any]) -> Employee:
        def names(value: Any) -> tuple[str, ...]:
            return tuple(str(v) for v in value) if isinstance(value, list) else ()

        main = data.get("main_department")
        position = data.get("position")
        return cls(record_id, str(main) if main else None, names(data.get("departments")), names(data.get("groups")),
                   str(position) if position else None)


@dataclass(frozen=True)
class Decision:
    allowed: bool
    role: str
    products: list[str] | None  # None: every product
    restrictions: list[str]
    rule: str

    def as_json(self) -> dict[str, Any]:
        return {"allowed": self.allowed, "role": self.role, "products": self.products,
                "restrictions": self.restrictions, "rule": self.rule}


def ancestry(department: str | None, parents: Mapping[str, str | None]) -> list[str]:
    """`department`, its parent, grandparent, ... (stops at a cycle or an unknown parent)."""
    chain: list[str] = []
    current = department
    while current and current not in chain:
        chain.append(current)
        current = parents.get(current)
    return chain


def may_visit(employee: Employee, visit: VisitPolicy | None, parents: Mapping[str, str | None]) -> bool:
    """Whether the origin's visit rules let this employee sign in to the partner (no rules: everybody)."""
    if visit is None or not (visit.employees or visit.departments or visit.groups or visit.positions):
        return True
    if employee.id in visit.employees:
        return True
    if employee.position and employee.position in visit.positions:
        return True
    if set(employee.groups) & set(visit.groups):
        return True
    own = [employee.main_department, *employee.departments]
    reach = {d for department in own for d in ancestry(department, parents)}
    return bool(reach & set(visit.departments))


def _describe(rule: AcceptRule) -> str:
    parts = []
    if rule.employee:
        parts.append(f"employee {rule.employee}")
    if rule.department:
        parts.append(f"department {rule.department}")
    if rule.position:
        parts.append(f"position {rule.position}")
    return " + ".join(parts)


def _priority(rule: AcceptRule, employee: Employee, chain: list[str]) -> tuple[int, int] | None:
    """The rule's rank for this employee (higher wins), or None if it does not match."""
    if rule.employee is not None:
        return (5, 0) if rule.employee == employee.id else None
    if rule.position is not None and rule.position != employee.position:
        return None
    if rule.department is None:
        return (1, 0)  # position only
    if rule.department not in chain:
        return None
    nearness = -chain.index(rule.department)  # the lower (nearer) department wins
    return (4, nearness) if rule.position is not None else (3, nearness)


def _network_role(grant: AcceptGrant, ip: str | None) -> tuple[str, str] | None:
    if ip is None or not grant.networks:
        return None
    address = ipaddress.ip_address(ip)
    matches = [(ipaddress.ip_network(n.cidr), n.role) for n in grant.networks
               if address in ipaddress.ip_network(n.cidr)]
    if not matches:
        return None
    network, role = max(matches, key=lambda match: match[0].prefixlen)
    return role, str(network)


def resolve(employee: Employee, policy: AcceptPolicy, parents: Mapping[str, str | None],
            ip: str | None = None) -> Decision:
    """What this (visiting) employee gets here under our accept policy for their site."""
    chain = ancestry(employee.main_department, parents)
    best: tuple[tuple[int, int], int, AcceptRule] | None = None
    for index, rule in enumerate(policy.rules):
        rank = _priority(rule, employee, chain)
        # Equal ranks: the rule written first wins (-index keeps max() stable on it).
        if rank is not None and (best is None or (rank, -index) > (best[0], -best[1])):
            best = (rank, index, rule)
    grant: AcceptGrant = best[2] if best else policy.default
    described = _describe(best[2]) if best else "site-wide default"
    role = grant.role
    by_network = _network_role(grant, ip)
    if by_network is not None:
        role = by_network[0]
        described += f", network {by_network[1]}"
    return Decision(role != NONE_ROLE, role, list(grant.products) if grant.products is not None else None,
                    list(grant.restrictions), described)


def refused(reason: str) -> Decision:
    return Decision(False, NONE_ROLE, [], [], reason)


LEVELS = {5: "employee", 4: "department+position", 3: "department", 1: "position"}


def _level(rule: AcceptRule) -> int:
    if rule.employee is not None:
        return 5
    if rule.department is None:
        return 1
    return 4 if rule.position is not None else 3


def _grant_json(grant: AcceptGrant) -> dict[str, Any]:
    return {"role": grant.role, "products": list(grant.products) if grant.products is not None else None,
            "restrictions": list(grant.restrictions),
            "networks": [{"cidr": n.cidr, "role": n.role} for n in grant.networks]}


def table(policy: AcceptPolicy, parents: Mapping[str, str | None]) -> dict[str, Any]:
    """The effective accept table, `{default, rules}`: each rule with its level and what it matches, highest
    priority first (employee, department + position, department (the lower before the upper: `parents` is the
    partner's department tree), position); rules of equal rank stay in the order written, the first winning."""
    def rank(item: tuple[int, AcceptRule]) -> tuple[int, int, int]:
        index, rule = item
        depth = len(ancestry(rule.department, parents)) if rule.department else 0
        return (-_level(rule), -depth, index)

    ordered = [rule for _, rule in sorted(enumerate(policy.rules), key=rank)]
    return {"default": _grant_json(policy.default),
            "rules": [{"level": LEVELS[_level(rule)], "match": _describe(rule), **_grant_json(rule)}
                      for rule in ordered]}
