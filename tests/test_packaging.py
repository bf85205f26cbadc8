"""The package as shipped: a wheel carries its Alembic migrations, and `init` works from it (not the checkout)."""

from __future__ import annotations

import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = """
import sys, federationd
from federationd.store import make_engine, migrate, schema_is_current
assert federationd.__file__.startswith(sys.argv[1]), federationd.__file__
engine = make_engine("sqlite:///" + sys.argv[2])
migrate(engine)
print("current" if schema_is_current(engine) else "behind")
"""


def test_wheel_ships_the_migrations_and_init_works_from_it(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp_path), str(ROOT)], check=True, capture_output=True, timeout=300)
    wheel = next(tmp_path.glob("federationd-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    for needed in ("federationd/migrations/env.py", "federationd/migrations/script.py.mako",
                   "federationd/migrations/versions/0001_initial_schema.py", "federationd/py.typed"):
        assert needed in names, needed
    unpacked = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(unpacked)
    # the unpacked wheel comes first on the path, ahead of the editable checkout
    result = subprocess.run([sys.executable, "-c", SCRIPT, str(unpacked), str(tmp_path / "site.db")],
                            capture_output=True, text=True, env={"PYTHONPATH": str(unpacked)}, cwd=tmp_path,
                            timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "current"


def test_sdist_and_wheel_carry_the_operators_files(tmp_path):
    """The unit files, rules, dashboard, example config and docs travel with the package, not only the code."""
    subprocess.run([sys.executable, "-c", "from setuptools import build_meta as b; import sys; "
                    "b.build_sdist(sys.argv[1])", str(tmp_path)], cwd=ROOT, check=True, capture_output=True,
                   timeout=300)
    sdist = next(tmp_path.glob("federationd-*.tar.gz"))
    with tarfile.open(sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    for needed in ("deploy/federationd.service", "deploy/federationd@.service", "deploy/sysusers.d/federationd.conf",
                   "deploy/prometheus/federationd-rules.yml", "deploy/grafana/federationd-dashboard.json",
                   "config/site-a.example.yaml", "docs/protocol.md", "docs/cli.md", "docs/configuration.md",
                   "LICENSE", "CHANGELOG.md", "constraints.txt"):
        assert needed in names, needed
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp_path), str(ROOT)], check=True, capture_output=True, timeout=300)
    wheel = zipfile.ZipFile(next(tmp_path.glob("federationd-*.whl"))).namelist()
    for needed in ("share/federationd/deploy/federationd.service", "share/doc/federationd/configuration.md",
                   "share/federationd/deploy/grafana/federationd-dashboard.json"):
        assert any(name.endswith(".data/data/" + needed) for name in wheel), needed


def test_sqlite_sites_need_no_postgresql_driver(tmp_path):
    """With psycopg missing, a SQLite site loads its config and migrates; a PostgreSQL URL says what to install."""
    script = """
import sys
sys.modules["psycopg"] = None  # as if not installed
from federationd.config import Config
from federationd.store import make_engine, migrate, schema_is_current
engine = make_engine("sqlite:///" + sys.argv[1])
migrate(engine)
assert schema_is_current(engine)
try:
    Config.model_validate({"site": {"id": "a", "company": "c", "name": "n"}, "state_dir": "/x",
                           "database": {"url": "postgresql+psycopg://u@h/db"},
                           "broker": {"url": "amqps://u:p@h:5671/v", "management_url": "https://h:15671",
                                      "public_url": "amqps://h:5671/v"}})
except Exception as exc:
    print(exc)
"""
    result = subprocess.run([sys.executable, "-c", script, str(tmp_path / "site.db")], capture_output=True,
                            text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert "federationd[postgresql]" in result.stdout
