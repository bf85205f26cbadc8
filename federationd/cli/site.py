"""Verbs for the site itself: `init`, `check-config` and `run`."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import click
from sqlalchemy.exc import SQLAlchemyError

from federationd import identity, logsetup, sealing
from federationd.cli.base import State, done, emit, guarded, json_option, main, pass_state
from federationd.config import permission_problem, unknown_partners
from federationd.errors import FederationError
from federationd.outbox import capture
from federationd.records import get_record
from federationd.store import ensure_site_state, migrate


@main.command()
@json_option
@pass_state
@guarded
def init(state: State, as_json: bool) -> None:
    """Create or migrate the database schema and this site's state (installation identity, signing and sealing
    keys in state_dir). Safe to run again: after every upgrade, it migrates.

    \b
    Example (as the service user, before the first start and after each upgrade):
      runuser -u federationd -- federationd init
    """
    config = state.config
    installation = identity.installation_id(config.state_dir, create=True)
    identity.signing_key(config.state_dir, create=True)
    sealing.load_key(config.state_dir, create=True)
    rt = state.runtime()
    migrate(rt.engine)
    with rt.engine.begin() as conn:
        site = ensure_site_state(conn, config.site.id, installation)
        company = get_record(conn, config.site.id, "company", config.site.id)
        wanted = {"company": config.site.company, "name": config.site.name}
        if company is None or company.deleted or company.data != wanted:
            capture.put(conn, "company", config.site.id, wanted)
    done(as_json, f"site {site.site_id}: database ready at schema head; state in {config.state_dir}",
         site=site.site_id, state_dir=str(config.state_dir))


def _known_partners(state: State) -> tuple[set[str] | None, str | None]:
    """The partners this site's database has a link with, or why they could not be read."""
    from federationd import links  # noqa: PLC0415
    from federationd.store import reading  # noqa: PLC0415

    url = state.config.database.url
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///").split("?")[0]).exists():
        return None, "links: not checked: the database does not exist yet (`federationd init` creates it)"
    rt = state.runtime()
    try:
        with reading(rt.engine) as conn:
            return {link.site for link in links.all_links(conn)}, None
    except (FederationError, SQLAlchemyError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return None, f"links: not checked against the database ({first[:200]}); run `federationd init` first?"
    finally:
        rt.dispose()


def _database_warnings(state: State) -> list[str]:
    """The limits (federationd/limits.py) this site's database is past, and the warning while `link change-url`
    set an endpoint the config's `broker.public_url` does not say yet; nothing when the database cannot be read
    (the links check above says why)."""
    from federationd import usage  # noqa: PLC0415
    from federationd.site_details import stored_url, url_mismatch  # noqa: PLC0415
    from federationd.store import reading  # noqa: PLC0415

    url = state.config.database.url
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///").split("?")[0]).exists():
        return []
    rt = state.runtime()
    try:
        with reading(rt.engine) as conn:
            warnings = [f"limits: {finding.message}" for finding in usage.findings(conn, state.config)]
            mismatch = url_mismatch(stored_url(conn), state.config.broker.public_url)
    except (FederationError, SQLAlchemyError):
        return []
    finally:
        rt.dispose()
    return warnings + ([mismatch] if mismatch else [])


def _schedule_warnings(state: State) -> list[str]:
    schedule = state.config.schedule
    if schedule.snapshot_windows and "utc_offset" not in schedule.model_fields_set:
        return ["schedule.snapshot_windows are read in UTC (schedule.utc_offset +00:00): set schedule.utc_offset "
                "(e.g. +09:00) if they are meant in this site's local time"]
    return []


@main.command("check-config")
@click.option("--json", "as_json", is_flag=True, help="Print {ok, file, site, links, warnings} as JSON.")
@pass_state
@guarded
def check_config(state: State, as_json: bool) -> None:
    """Validate the config file and warn about what is valid but suspicious (a `links:` entry naming no known
    partner, a config file others can read or write, snapshot windows without a UTC offset) and about the
    limits this site is past (more partner sites or employees than recommended). Changes nothing. Exits 78 on an
    invalid file.

    \b
    Example:
      federationd -c /etc/federationd/federationd.yaml check-config
    """
    config = state.config
    warnings = [problem for problem in [permission_problem(state.path)] if problem]
    known, unchecked = _known_partners(state) if config.links else (set(), None)
    if known is not None:
        warnings += unknown_partners(config, known)
    if unchecked:
        warnings.append(unchecked)
    warnings += _schedule_warnings(state) + _database_warnings(state)
    document = {"ok": True, "file": str(state.path), "site": config.site.id, "links": sorted(config.links),
                "warnings": warnings}

    def text() -> None:
        for warning in warnings:
            click.echo(f"federationd: warning: {warning}", err=True)
        click.echo(f"{state.path}: valid (site {config.site.id}, {len(config.links)} link section(s))")
    emit(as_json, document, text)


class _KnownPartners:
    """The partners this site has links with, for the `site` field of log lines; re-read at most once a minute."""

    def __init__(self, state: State) -> None:
        self._state = state
        self._sites: set[str] = set(state.config.links)
        self._read_at = 0.0

    def __call__(self) -> set[str]:
        now = time.monotonic()
        if now - self._read_at > PARTNERS_TTL_SECONDS:
            self._read_at = now
            known, _why = _known_partners(self._state)
            self._sites = (known or set()) | set(self._state.config.links)
        return self._sites


PARTNERS_TTL_SECONDS = 60.0


@main.command()
@click.option("--log-level", type=click.Choice(sorted(logsetup.LEVELS)), help="Overrides log.level.")
@pass_state
@guarded
def run(state: State, log_level: str | None) -> None:
    """Run the daemon in the foreground (for systemd Type=notify). SIGHUP reloads the config (validated first),
    SIGTERM drains and stops. Logs go to stderr: to the journal with priorities under systemd.

    \b
    Example:
      federationd -c /etc/federationd/federationd.yaml run --log-level debug
    """
    from federationd.daemon import Daemon  # noqa: PLC0415 - only `run` needs the daemon's imports

    config = state.config
    logsetup.configure(log_level or config.log.level, config.log.format, partners=_KnownPartners(state))
    logging.getLogger("alembic").setLevel(logging.WARNING)  # its per-start schema check is not news
    logging.getLogger("pika").setLevel(logging.CRITICAL)
    problem = permission_problem(state.path)
    if problem:
        logging.getLogger("federationd").warning("%s", problem)
    Daemon(state.path, config).run()
