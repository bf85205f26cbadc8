"""`federationd [-c FILE] VERB ...`: parse, call one function, print text or `--json` (docs/cli.md).

The verbs live in modules by concern; importing them registers them on `main`.
"""

from federationd.cli import access, links, observe, operate, records, site  # noqa: F401 - registers the verbs
from federationd.cli.base import main

__all__ = ["main"]
