"""The accept priority, visit rules and per-network roles of access.py (SPEC 7), as pure functions."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from federationd.access import Employee, ancestry, may_visit, resolve
from federationd.config import AcceptPolicy, VisitPolicy

PARENTS = {"sales": None, "sales-east": "sales", "sales-east-tokyo": "sales-east", "support": None}
POLICY = AcceptPolicy.model_validate({"default": {"role": "read"}, "rules": [
    {"position": "manager", "role": "edit"},
    {"department": "sales", "role": "read", "products": ["schedule", "presence"]},
    {"department": "sales-east", "role": "guest"},
    {"department": "sales", "position": "manager", "role": "admin"},
    {"employee": "e-17", "role": "none"},
    {"department": "support", "role": "edit", "networks": [
        {"cidr": "192.0.2.0/24", "role": "read"}, {"cidr": "192.0.2.128/25", "role": "audit"}]},
]})


@pytest.mark.parametrize(("employee", "ip", "role", "rule"), [
    (Employee("e-1"), None, "read", "site-wide default"),
    (Employee("e-2", position="manager"), None, "edit", "position manager"),
    (Employee("e-3", "sales"), None, "read", "department sales"),
    (Employee("e-4", "sales-east-tokyo"), None, "guest", "department sales-east"),  # the nearer department wins
    (Employee("e-5", "sales-east-tokyo", position="manager"), None, "admin", "department sales + position manager"),
    (Employee("e-17", "sales", position="manager"), None, "none", "employee e-17"),
    (Employee("e-6", "support"), None, "edit", "department support"),
    (Employee("e-6", "support"), "192.0.2.7", "read", "department support, network 192.0.2.0/24"),
    (Employee("e-6", "support"), "192.0.2.200", "audit", "department support, network 192.0.2.128/25"),
    (Employee("e-6", "support"), "198.51.100.1", "edit", "department support"),
    # department rules match the main department only
    (Employee("e-7", "support", departments=("sales",)), None, "edit", "department support"),
])
def test_accept_priority(employee, ip, role, rule):
    decision = resolve(employee, POLICY, PARENTS, ip)
    assert (decision.role, decision.rule, decision.allowed) == (role, rule, role != "none")


def test_products_and_restrictions_come_from_the_deciding_rule():
    assert resolve(Employee("e-3", "sales"), POLICY, PARENTS).products == ["schedule", "presence"]
    assert resolve(Employee("e-1"), POLICY, PARENTS).products is None


def test_ancestry_stops_at_cycles_and_unknown_parents():
    assert ancestry("a", {"a": "b", "b": "a"}) == ["a", "b"]
    assert ancestry("x", {}) == ["x"]
    assert ancestry(None, PARENTS) == []


@pytest.mark.parametrize(("employee", "allowed"), [
    (Employee("e-1", "sales-east-tokyo"), True),  # sub-department of a listed department
    (Employee("e-2", "support"), False),
    (Employee("e-3", "support", groups=("visitors",)), True),
    (Employee("e-4", "support", position="director"), True),
    (Employee("e-9"), True),  # listed by id
    (Employee("e-5", "support", departments=("sales",)), True),  # any of the employee's departments
])
def test_visit_rules(employee, allowed):
    visit = VisitPolicy(employees=["e-9"], departments=["sales"], groups=["visitors"], positions=["director"])
    assert may_visit(employee, visit, PARENTS) is allowed


def test_no_visit_rules_means_everybody():
    assert may_visit(Employee("anyone"), None, PARENTS)
    assert may_visit(Employee("anyone"), VisitPolicy(), PARENTS)


LEVELS = ["site", "position", "department-upper", "department-lower", "department+position", "employee"]


def _rule(level):
    return {
        "position": {"position": "manager"},
        "department-upper": {"department": "sales"},
        "department-lower": {"department": "sales-east"},
        "department+position": {"department": "sales", "position": "manager"},
        "employee": {"employee": "e-1"},
    }[level]


@settings(max_examples=150)
@given(st.lists(st.sampled_from(LEVELS[1:]), min_size=1, max_size=5, unique=True).flatmap(st.permutations))
def test_the_highest_matching_level_wins_whatever_the_rule_order(levels):
    """For an employee every rule matches, the decision is the highest level present, in any order."""
    policy = AcceptPolicy.model_validate({"default": {"role": "site"},
                                          "rules": [{**_rule(level), "role": level} for level in levels]})
    employee = Employee("e-1", "sales-east", position="manager")
    expected = max(levels, key=LEVELS.index)
    assert resolve(employee, policy, PARENTS).role == expected


def test_the_accept_table_lists_the_rules_in_the_order_resolve_applies_them() -> None:
    from federationd.access import table

    listed = table(POLICY, PARENTS)
    assert [(rule["level"], rule["match"]) for rule in listed["rules"]] == [
        ("employee", "employee e-17"), ("department+position", "department sales + position manager"),
        ("department", "department sales-east"), ("department", "department sales"),
        ("department", "department support"), ("position", "position manager")]
    assert listed["default"] == {"role": "read", "products": None, "restrictions": [], "networks": []}
    support = listed["rules"][4]
    assert support["networks"] == [{"cidr": "192.0.2.0/24", "role": "read"},
                                   {"cidr": "192.0.2.128/25", "role": "audit"}]
    # an employee under sales-east who is a manager: the first rule of the table that matches is the one applied
    assert resolve(Employee("e-5", "sales-east-tokyo", position="manager"), POLICY, PARENTS).rule == \
        listed["rules"][1]["match"]
