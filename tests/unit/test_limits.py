"""The limits the manual states (federationd/limits.py): warnings past the recommended figures, refusals past
the maximum."""

from __future__ import annotations

import pytest

from federationd.limits import Limits, Usage, exceeded, findings, refusal

DEFAULT = Limits()
TINY = Limits(max_sites=1, max_employees=10, recommended_sites=1, recommended_employees_per_site=2,
              recommended_employees=5)


def test_the_manual_figures_are_the_defaults() -> None:
    assert (DEFAULT.recommended_sites, DEFAULT.max_sites) == (100, 200)
    assert DEFAULT.recommended_employees_per_site == 300
    assert (DEFAULT.recommended_employees, DEFAULT.max_employees) == (30_000, 100_000)


def test_nothing_to_say_within_the_recommended_figures() -> None:
    usage = Usage(home="a", sites=100, employees={"a": 300, "b": 300})
    assert findings(usage, DEFAULT) == []
    assert refusal(usage, DEFAULT, "c") is None


def test_past_the_recommended_figures() -> None:
    usage = Usage(home="a", sites=101, employees={"a": 300, "b": 301, "c": 29_400})
    found = {(f.limit, f.site): f for f in findings(usage, DEFAULT)}
    assert set(found) == {("recommended_sites", None), ("recommended_employees_per_site", "b"),
                          ("recommended_employees_per_site", "c"), ("recommended_employees", None)}
    assert found[("recommended_sites", None)].value == 101
    assert found[("recommended_employees", None)].value == 30_001
    message = found[("recommended_employees_per_site", "b")].message
    assert "b" in message and "301" in message and "limits.recommended_employees_per_site" in message
    assert "300" in message
    assert exceeded(findings(usage, DEFAULT)) == {
        "recommended_sites": True, "max_sites": False, "recommended_employees_per_site": True,
        "recommended_employees": True, "max_employees": False}


def test_a_new_link_at_the_maximum_of_sites_is_refused() -> None:
    usage = Usage(home="a", sites=200, employees={"a": 10})
    why = refusal(usage, DEFAULT, "z")
    assert why is not None
    assert "z" in why and "limits.max_sites" in why and "200" in why and "raise" in why
    assert refusal(Usage(home="a", sites=199, employees={}), DEFAULT, "z") is None


def test_a_new_link_at_the_maximum_of_employees_is_refused() -> None:
    usage = Usage(home="a", sites=0, employees={"a": 4, "b": 6})
    why = refusal(usage, TINY, "c")
    assert why is not None and "limits.max_employees" in why and "10" in why
    assert refusal(Usage(home="a", sites=0, employees={"a": 9}), TINY, "c") is None


def test_past_the_maximum_is_said_too() -> None:
    usage = Usage(home="a", sites=2, employees={"a": 11})
    limits = {f.limit for f in findings(usage, TINY)}
    assert {"max_sites", "max_employees", "recommended_sites", "recommended_employees"} <= limits


@pytest.mark.parametrize("bad", [
    {"max_sites": 0},
    {"recommended_sites": 300},  # above the default max_sites
    {"max_employees": 10, "recommended_employees": 20},
    {"max_employees": 10, "recommended_employees": 5, "recommended_employees_per_site": 11},
])
def test_config_refuses_impossible_limits(bad: dict[str, int]) -> None:
    from pydantic import ValidationError

    from federationd.config import LimitsSection

    with pytest.raises(ValidationError):
        LimitsSection.model_validate(bad)


def test_config_limits_default_to_the_manual() -> None:
    from federationd.config import LimitsSection

    assert LimitsSection().as_limits() == DEFAULT
    assert LimitsSection.model_validate({"max_sites": 300, "recommended_sites": 150}).as_limits().max_sites == 300
