"""Log lines: journald priorities when stderr is the journal, the level, JSON lines, the partner as a field."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from federationd import logsetup


@pytest.fixture
def restore_root() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)


def _emit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *, journal: bool, fmt: str, level: str = "info",
          partners: set[str] | None = None) -> list[str]:
    path = tmp_path / "stderr"
    with path.open("w") as stream:
        info = os.fstat(stream.fileno())
        monkeypatch.setenv("JOURNAL_STREAM", f"{info.st_dev}:{info.st_ino}" if journal else "1:2")
        logsetup.configure(level, fmt, partners=lambda: partners or set(), stream=stream)
        log = logging.getLogger("federationd.test")
        log.debug("debug line")
        log.info("sent %d record(s) to %s", 3, "site-b")
        log.warning("about nobody")
        log.error("failed", extra={"site": "site-c"})
        with logsetup.about("site-d"):
            log.error("inside")
    return path.read_text().splitlines()


def test_journal_gets_priorities_and_no_timestamp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  restore_root: None) -> None:
    lines = _emit(tmp_path, monkeypatch, journal=True, fmt="text", partners={"site-b"})
    assert lines == ["<6>federationd.test: site=site-b sent 3 record(s) to site-b",
                     "<4>federationd.test: about nobody",
                     "<3>federationd.test: site=site-c failed",
                     "<3>federationd.test: site=site-d inside"]


def test_not_the_journal_gets_timestamps_and_no_priorities(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                           restore_root: None) -> None:
    lines = _emit(tmp_path, monkeypatch, journal=False, fmt="text", level="debug")
    assert len(lines) == 5 and not any(line.startswith("<") for line in lines)
    assert lines[0].endswith("Z DEBUG federationd.test: debug line") and lines[0][:4].isdigit()


def test_json_lines(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, restore_root: None) -> None:
    lines = _emit(tmp_path, monkeypatch, journal=True, fmt="json", level="warning", partners={"site-b"})
    assert [line[:3] for line in lines] == ["<4>", "<3>", "<3>"]
    documents = [json.loads(line[3:]) for line in lines]
    assert documents[0] == {"level": "warning", "logger": "federationd.test", "message": "about nobody"}
    assert documents[1]["site"] == "site-c" and documents[2]["site"] == "site-d"
    plain = _emit(tmp_path, monkeypatch, journal=False, fmt="json")
    assert all("ts" in json.loads(line) for line in plain)


def test_journal_stream_must_match_stderr(tmp_path: Path) -> None:
    with (tmp_path / "x").open("w") as stream:
        info = os.fstat(stream.fileno())
        assert logsetup.stderr_is_journal(stream, {"JOURNAL_STREAM": f"{info.st_dev}:{info.st_ino}"})
        assert not logsetup.stderr_is_journal(stream, {"JOURNAL_STREAM": f"{info.st_dev}:{info.st_ino + 1}"})
        assert not logsetup.stderr_is_journal(stream, {})
        assert not logsetup.stderr_is_journal(stream, {"JOURNAL_STREAM": "garbage"})
