"""The package as shipped: a wheel carries its Alembic migrations, and `init` works from it (not the checkout)."""

from __future__ import annotations

import subprocess
import sys
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
