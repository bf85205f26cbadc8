"""The repository documents itself: README, docs, config, deploy and every `--help` point nowhere outside it."""

from __future__ import annotations

import re
from pathlib import Path

import click
from click.testing import CliRunner

from federationd.cli import main

REPO = Path(__file__).resolve().parents[1]
OUTSIDE = re.compile(r"\.\./shared|SPEC(\.md|\s*\d|\b)")


def _help_texts() -> dict[str, str]:
    runner = CliRunner()
    texts = {}

    def visit(command: click.Command, path: list[str]) -> None:
        texts[" ".join(path) or "federationd"] = runner.invoke(main, [*path, "--help"]).output
        if isinstance(command, click.Group):
            for name, sub in command.commands.items():
                visit(sub, [*path, name])
    visit(main, [])
    return texts


def test_no_reference_outside_the_repository() -> None:
    files = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), *sorted((REPO / "config").glob("*")),
             *sorted(p for p in (REPO / "deploy").rglob("*") if p.is_file())]
    found = [f"{path.relative_to(REPO)}:{n}: {line.strip()}" for path in files
             for n, line in enumerate(path.read_text().splitlines(), 1) if OUTSIDE.search(line)]
    found += [f"`{verb} --help`: {line.strip()}" for verb, text in _help_texts().items()
              for line in text.splitlines() if OUTSIDE.search(line)]
    assert found == []


def test_the_pattern_catches_what_it_must() -> None:
    for bad in ("see ../shared/SPEC.md", "(SPEC 3.1)", "SPEC section 8", "the SPEC says"):
        assert OUTSIDE.search(bad), bad
    assert not OUTSIDE.search("a specification in docs/protocol.md")
