"""`federationd check-config` on snapshot windows and limits, through the console script."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.test_exit_codes import cli, write_config


@pytest.mark.parametrize(("schedule", "said"), [
    ("schedule: {snapshot_windows: []}\n", "schedule.snapshot_windows: snapshot_windows is empty"),
    ("schedule: {snapshot_windows: ['09:00-09:00']}\n", "invalid window '09:00-09:00': it is empty"),
    ("schedule: {snapshot_windows: ['9-17']}\n", "write it as HH:MM-HH:MM"),
    ("schedule: {snapshot_windows: ['09:00-25:00']}\n", "times run from 00:00 to 24:00"),
    ("schedule: {utc_offset: 'Asia/Tokyo'}\n", "invalid UTC offset 'Asia/Tokyo'"),
    ("limits: {max_sites: 50}\n", "recommended_sites (100) must not be above max_sites (50)"),
    ("limits: {max_site: 50}\n", "unknown key 'limits.max_site' (did you mean 'max_sites'?)"),
])
def test_bad_windows_and_limits_exit_78_naming_the_key(tmp_path: Path, schedule: str, said: str) -> None:
    result = cli(write_config(tmp_path, extra=schedule), "check-config")
    assert result.returncode == 78 and said in result.stderr, result.stderr


def test_windows_without_an_offset_are_warned_about(tmp_path: Path) -> None:
    config = write_config(tmp_path, extra="schedule: {snapshot_windows: ['00:00-08:30', '18:30-24:00']}\n")
    result = cli(config, "check-config", "--json")
    assert result.returncode == 0, result.stderr
    assert any("schedule.utc_offset" in w for w in json.loads(result.stdout)["warnings"])
    config.write_text(config.read_text().replace("18:30-24:00']}", "18:30-24:00'], utc_offset: '+09:00'}"))
    result = cli(config, "check-config", "--json")
    assert result.returncode == 0 and json.loads(result.stdout)["warnings"] == [], result.stdout
