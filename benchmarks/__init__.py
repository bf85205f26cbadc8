"""Benchmarks of federationd (issue 7): `make bench` = `PYTHONPATH=. .venv/bin/python -m benchmarks`.

Every figure is a ratio against a baseline measured in the same run on the same machine. See
docs/performance.md for what each benchmark does, the goals, and the latest results.
"""
