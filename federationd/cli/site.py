"""Verbs for the site itself: `init`, `check-config` and `run`."""

from __future__ import annotations

import logging

import click

from federationd import identity
from federationd.cli.base import State, guarded, main, pass_state
from federationd.config import permission_problem
from federationd.outbox import capture
from federationd.records import get_record
from federationd.store import ensure_site_state, migrate


@main.command()
@pass_state
@guarded
def init(state: State) -> None:
    """Create or migrate the database schema and this site's state."""
    config = state.config
    installation = identity.installation_id(config.state_dir, create=True)
    identity.signing_key(config.state_dir, create=True)
    rt = state.runtime()
    migrate(rt.engine)
    with rt.engine.begin() as conn:
        site = ensure_site_state(conn, config.site.id, installation)
        company = get_record(conn, config.site.id, "company", config.site.id)
        wanted = {"company": config.site.company, "name": config.site.name}
        if company is None or company.deleted or company.data != wanted:
            capture.put(conn, "company", config.site.id, wanted)
    click.echo(f"site {site.site_id}: database ready at schema head; state in {config.state_dir}")


@main.command("check-config")
@pass_state
@guarded
def check_config(state: State) -> None:
    """Validate the config file without touching anything."""
    config = state.config
    problem = permission_problem(state.path)
    if problem:
        click.echo(f"federationd: warning: {problem}", err=True)
    click.echo(f"{state.path}: valid (site {config.site.id}, {len(config.links)} link section(s))")


@main.command()
@pass_state
@guarded
def run(state: State) -> None:
    """Run the daemon in the foreground (for systemd Type=notify)."""
    from federationd.daemon import Daemon  # noqa: PLC0415 - only `run` needs the daemon's imports

    logging.getLogger().setLevel(logging.INFO)
    logging.getLogger("alembic").setLevel(logging.WARNING)  # its per-start schema check is not news
    for handler in logging.getLogger().handlers:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    problem = permission_problem(state.path)
    if problem:
        logging.getLogger("federationd").warning("%s", problem)
    Daemon(state.path, state.config).run()
