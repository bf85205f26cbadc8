"""`federationd health`'s decision from the heartbeat files (federationd/health.py)."""

from __future__ import annotations

from pathlib import Path

from federationd.health import Beat, evaluate, read_all, remove, write

NOW = 10_000.0


def beat(role: str = "active", consuming: bool = True, at: float = NOW, pid: int = 1) -> Beat:
    return Beat(pid=pid, role=role, consuming=consuming, database=True, at=at)


def health(beats: list[Beat], database: bool = True, lock_held: bool = True, dead: frozenset[int] = frozenset()):
    return evaluate(beats, NOW, database=database, lock_held=lock_held, alive=lambda pid: pid not in dead)


def test_an_active_consuming_daemon_is_ok() -> None:
    assert health([beat()]) == {"ok": True, "daemon": True, "consuming": True, "database": True, "active": True}


def test_no_daemon_is_not_ok() -> None:
    assert health([], lock_held=False) == {"ok": False, "daemon": False, "consuming": False, "database": True,
                                           "active": False}


def test_stale_or_dead_beats_do_not_count() -> None:
    assert health([beat(at=NOW - 60)])["daemon"] is False
    assert health([beat(pid=7)], dead=frozenset({7}))["daemon"] is False


def test_active_but_not_consuming_is_not_ok() -> None:
    result = health([beat(consuming=False)])
    assert result["active"] is True and result["ok"] is False


def test_a_standby_is_ok_as_a_standby() -> None:
    result = health([beat(role="standby", consuming=False)])
    assert result == {"ok": True, "daemon": True, "consuming": False, "database": True, "active": False}


def test_the_database_down_is_not_ok() -> None:
    assert health([beat()], database=False)["ok"] is False


def test_files_round_trip(tmp_path: Path) -> None:
    write(tmp_path, beat(pid=42))
    assert read_all(tmp_path) == [beat(pid=42)]
    remove(tmp_path, 42)
    assert read_all(tmp_path) == []
