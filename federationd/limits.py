"""The limits the manual states for one site: how many partner sites and employees it is designed for.

The manual recommends at most 100 linked sites and 300 employees per site, and 30,000 employees in total; it
allows 200 sites and 100,000 employees at most. Past a recommended figure federationd warns (`status`,
`check-config`, `federationd_limit_exceeded`); at a maximum a new link is refused, naming the limit, its bound
and the `limits:` key that raises it (for a site that has measured that it can carry more).

Pure: the figures come in (`Usage`, read by `usage.py`), verdicts go out.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

# The config keys, which are also the `limit` label values of `federationd_limit_exceeded`.
RECOMMENDED_SITES = "recommended_sites"
MAX_SITES = "max_sites"
RECOMMENDED_EMPLOYEES_PER_SITE = "recommended_employees_per_site"
RECOMMENDED_EMPLOYEES = "recommended_employees"
MAX_EMPLOYEES = "max_employees"
KEYS = (RECOMMENDED_SITES, MAX_SITES, RECOMMENDED_EMPLOYEES_PER_SITE, RECOMMENDED_EMPLOYEES, MAX_EMPLOYEES)


@dataclass(frozen=True)
class Limits:
    max_sites: int = 200
    max_employees: int = 100_000
    recommended_sites: int = 100
    recommended_employees_per_site: int = 300
    recommended_employees: int = 30_000


@dataclass(frozen=True)
class Usage:
    """What this site carries: `sites`, the partners linked or awaiting start; `employees`, the employees held
    (not deleted) per origin site, this one included."""

    home: str
    sites: int
    employees: dict[str, int] = field(default_factory=dict)

    @property
    def total_employees(self) -> int:
        return sum(self.employees.values())


@dataclass(frozen=True)
class Finding:
    limit: str  # one of KEYS
    value: int
    bound: int
    message: str
    site: str | None = None  # the site whose employees are counted, for the per-site limit


def _how_to_raise(key: str) -> str:
    return f"a site that has measured it can carry more raises limits.{key} in its config file"


def findings(usage: Usage, limits: Limits) -> list[Finding]:
    """Every figure past its recommended value or its maximum, site-wide ones first."""
    found: list[Finding] = []
    sites, total = usage.sites, usage.total_employees
    if sites > limits.max_sites:
        found.append(Finding(MAX_SITES, sites, limits.max_sites, f"{sites} partner sites linked, more than the "
                             f"maximum of {limits.max_sites} (limits.max_sites): no new link is accepted"))
    if sites > limits.recommended_sites:
        found.append(Finding(RECOMMENDED_SITES, sites, limits.recommended_sites,
                             f"{sites} partner sites linked, more than the recommended {limits.recommended_sites} "
                             "(limits.recommended_sites): each send takes longer and receives come more often"))
    if total > limits.max_employees:
        found.append(Finding(MAX_EMPLOYEES, total, limits.max_employees,
                             f"{total} employees held in total, more than the maximum of {limits.max_employees} "
                             "(limits.max_employees): no new link is accepted"))
    if total > limits.recommended_employees:
        found.append(Finding(RECOMMENDED_EMPLOYEES, total, limits.recommended_employees,
                             f"{total} employees held in total, more than the recommended "
                             f"{limits.recommended_employees} (limits.recommended_employees): screens open slower"))
    for site, count in sorted(usage.employees.items()):
        if count > limits.recommended_employees_per_site:
            whose = "this site" if site == usage.home else f"partner {site}"
            found.append(Finding(RECOMMENDED_EMPLOYEES_PER_SITE, count, limits.recommended_employees_per_site,
                                 f"{site}: {count} employees at {whose}, more than the recommended "
                                 f"{limits.recommended_employees_per_site} per site "
                                 "(limits.recommended_employees_per_site)", site=site))
    return found


def exceeded(found: Iterable[Finding]) -> dict[str, bool]:
    """Each limit's key: whether a figure is past it (the `federationd_limit_exceeded` gauge)."""
    past = {finding.limit for finding in found}
    return {key: key in past for key in KEYS}


def refusal(usage: Usage, limits: Limits, partner: str | None) -> str | None:
    """Why a new link with `partner` (not counted in `usage`; None: not known yet) is refused, or None."""
    what = f"link with {partner!r}" if partner else "a new link"
    if usage.sites >= limits.max_sites:
        return (f"{what} refused: this site already has {usage.sites} partner site(s) linked or "
                f"awaiting start, and limits.max_sites allows {limits.max_sites} at most (default 200); "
                f"{_how_to_raise(MAX_SITES)}")
    total = usage.total_employees
    if total >= limits.max_employees:
        return (f"{what} refused: this site already holds {total} employees in total, and "
                f"limits.max_employees allows {limits.max_employees} at most (default 100000); "
                f"{_how_to_raise(MAX_EMPLOYEES)}")
    return None
