"""What pauses a link, as `status` and `link show` report it: the guard first, then the YAML, then the CLI."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from federationd.status import paused_by


def _config(site_wide: bool = False, per_link: bool = False) -> SimpleNamespace:
    return SimpleNamespace(paused=site_wide, link=lambda _site: SimpleNamespace(paused=per_link))


@pytest.mark.parametrize(("config", "link_paused", "site_paused", "guard", "expected"), [
    (_config(), False, False, False, None),
    (_config(), True, False, False, "cli"),
    (_config(), False, True, False, "cli"),
    (_config(per_link=True), False, False, False, "yaml"),
    (_config(site_wide=True), True, False, False, "yaml"),
    (_config(site_wide=True), True, True, True, "guard"),
])
def test_paused_by(config, link_paused, site_paused, guard, expected):
    link = SimpleNamespace(site="site-b", paused=link_paused)
    assert paused_by(config, link, site_paused, guard) == expected  # type: ignore[arg-type]
