"""`federationd [-c FILE] VERB ...`: parse, call one function, print text or `--json` (SPEC 10).

Every verb exits 0 on success, or non-zero with one line on standard error saying what is wrong.
"""

from __future__ import annotations

import getpass
import json
import logging
import os
import socket
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from types import ModuleType
from typing import Any, NoReturn, TypeVar

import click
from sqlalchemy.exc import SQLAlchemyError

from federationd import __version__, identity
from federationd.config import Config, config_path, load_config, permission_problem
from federationd.errors import ConfigError, FederationError, RejectedChange, StoreError, TransportError
from federationd.outbox import capture
from federationd.records import get_record, list_records
from federationd.runtime import Runtime
from federationd.store import db_error, ensure_site_state, migrate, reading

RET_OK = 0
RET_FAILED = 1  # refused: unknown partner, bad token, invalid data, no such record, ...
RET_USAGE = 2  # click's own code for bad arguments
RET_CONFIG = 3
RET_UNAVAILABLE = 4  # a broker or the database could not be reached

F = TypeVar("F", bound=Callable[..., Any])


def fail(message: str, code: int = RET_FAILED) -> NoReturn:
    click.echo(f"federationd: {message}", err=True)
    sys.exit(code)


def guarded(func: F) -> F:
    """Turn our errors into one line on stderr and a named exit code."""
    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except ConfigError as exc:
            fail(str(exc), RET_CONFIG)
        except TransportError as exc:
            fail(str(exc), RET_UNAVAILABLE)
        except StoreError as exc:
            fail(str(exc), RET_UNAVAILABLE)
        except FederationError as exc:
            fail(str(exc))
        except SQLAlchemyError as exc:
            fail(str(db_error(exc)), RET_UNAVAILABLE)
    return wrapper  # type: ignore[return-value]


class State:
    def __init__(self, path: str | None) -> None:
        self.path = config_path(path)
        self._config: Config | None = None

    @property
    def config(self) -> Config:
        if self._config is None:
            self._config = load_config(self.path)
        return self._config

    def runtime(self) -> Runtime:
        return Runtime(self.config)


pass_state = click.make_pass_decorator(State)


def emit(as_json: bool, document: Any, text: Callable[[], None]) -> None:
    if as_json:
        click.echo(json.dumps(document, ensure_ascii=False, indent=None))
    else:
        text()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-c", "--config", "config_file", metavar="FILE", help="Site config (else $FEDERATIOND_CONFIG, else "
              "/etc/federationd/federationd.yaml).")
@click.version_option(__version__, prog_name="federationd")
@click.pass_context
def main(ctx: click.Context, config_file: str | None) -> None:
    """Link this groupware site with partner sites over RabbitMQ-over-TLS."""
    logging.basicConfig(level=logging.WARNING, format="federationd: %(levelname)s: %(message)s")
    # pika logs every failed connection attempt at ERROR with its internals; we translate the failure into one
    # line naming the partner (errors.TransportError) and log that instead.
    logging.getLogger("pika").setLevel(logging.CRITICAL)
    ctx.obj = State(config_file)


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
    for handler in logging.getLogger().handlers:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    problem = permission_problem(state.path)
    if problem:
        logging.getLogger("federationd").warning("%s", problem)
    Daemon(state.path, state.config).run()


# -- records -------------------------------------------------------------------------------------------------
@main.group()
def records() -> None:
    """Read and write records (home records for writes)."""


def _parse_data(text: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RejectedChange("invalid_data", f"--data is not valid JSON: {exc.msg} at column {exc.colno}") from None
    if not isinstance(data, dict):
        raise RejectedChange("invalid_data", "--data must be a JSON object")
    return data


@records.command("put")
@click.argument("category")
@click.argument("record_id", metavar="ID")
@click.option("--data", "data_text", required=True, help="The record's fields, as a JSON object.")
@click.option("--json", "as_json", is_flag=True)
@pass_state
@guarded
def records_put(state: State, category: str, record_id: str, data_text: str, as_json: bool) -> None:
    """Create or change a home record."""
    data = _parse_data(data_text)
    with state.runtime().engine.begin() as conn:
        record = capture.put(conn, category, record_id, data)
    emit(as_json, record.as_json(), lambda: click.echo(f"{category} {record_id}: version {record.version}"))


@records.command("delete")
@click.argument("category")
@click.argument("record_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True)
@pass_state
@guarded
def records_delete(state: State, category: str, record_id: str, as_json: bool) -> None:
    """Delete a home record (partners receive a tombstone)."""
    with state.runtime().engine.begin() as conn:
        record = capture.delete(conn, category, record_id)
    emit(as_json, record.as_json(), lambda: click.echo(f"{category} {record_id}: deleted (version "
                                                       f"{record.version})"))


@records.command("get")
@click.argument("category")
@click.argument("record_id", metavar="ID")
@click.option("--origin", help="A partner's site id (default: this site).")
@click.option("--json", "as_json", is_flag=True)
@pass_state
@guarded
def records_get(state: State, category: str, record_id: str, origin: str | None, as_json: bool) -> None:
    """Show one record; exit 1 if there is none."""
    site = origin or state.config.site.id
    with reading(state.runtime().engine) as conn:
        record = get_record(conn, site, category, record_id)
    if record is None:
        fail(f"no {category} {record_id!r} of origin {site!r}")
    emit(as_json, record.as_json(), lambda: click.echo(json.dumps(record.as_json(), ensure_ascii=False, indent=2)))


@records.command("list")
@click.argument("category")
@click.option("--origin", help="A partner's site id (default: this site).")
@click.option("--include-deleted", is_flag=True, help="Also list tombstones.")
@click.option("--json", "as_json", is_flag=True)
@pass_state
@guarded
def records_list(state: State, category: str, origin: str | None, include_deleted: bool, as_json: bool) -> None:
    """List records of one category."""
    site = origin or state.config.site.id
    with reading(state.runtime().engine) as conn:
        rows = list_records(conn, site, category, include_deleted)

    def text() -> None:
        for record in rows:
            mark = " (deleted)" if record.deleted else ""
            click.echo(f"{record.id}\tv{record.version}{mark}\t{json.dumps(record.data, ensure_ascii=False)}")
    emit(as_json, [record.as_json() for record in rows], text)


# -- links -------------------------------------------------------------------------------------------------
@main.group()
def link() -> None:
    """The link handshake and lifecycle."""


def _operator() -> str:
    user = os.environ.get("SUDO_USER") or getpass.getuser()
    return f"{user}@{socket.gethostname()}"


@link.command("request")
@click.option("--by", "requested_by", help="Who requests the link (default: the operator's user@host).")
@pass_state
@guarded
def link_request(state: State, requested_by: str | None) -> None:
    """Issue a link token to mail to the partner's administrator (valid 24 hours, single use)."""
    from federationd import handshake  # noqa: PLC0415 - the broker stack loads only for verbs that use it

    token = handshake.request(state.runtime(), requested_by or _operator())
    click.echo(f"Link token for {token.site} ({token.company}), valid until {token.public()['expires_at']}:")
    click.echo(token.encode())


@link.command("inspect")
@click.argument("token")
@click.option("--json", "as_json", is_flag=True)
def link_inspect(token: str, as_json: bool) -> None:
    """Show what a link token says, without any side effect."""
    from federationd.tokens import decode  # noqa: PLC0415

    try:
        details = decode(token).public()
    except FederationError as exc:
        fail(str(exc))
    def text() -> None:
        for key, value in details.items():
            click.echo(f"{key:13} {value}")
    emit(as_json, details, text)


@link.command("accept")
@click.argument("token")
@pass_state
@guarded
def link_accept(state: State, token: str) -> None:
    """Accept a partner's link token; the partner then starts (or rejects) the link."""
    from federationd import handshake  # noqa: PLC0415

    accepted = handshake.accept(state.runtime(), token)
    click.echo(f"accepted the link from {accepted.site} ({accepted.company}); waiting for it to start the link")


@link.command("start")
@click.argument("site")
@pass_state
@guarded
def link_start(state: State, site: str) -> None:
    """Start a link the partner accepted: both sides go `linked` and send each other a snapshot."""
    from federationd import handshake  # noqa: PLC0415

    handshake.start(state.runtime(), site)
    click.echo(f"link with {site} started")


@link.command("reject")
@click.argument("site")
@pass_state
@guarded
def link_reject(state: State, site: str) -> None:
    """Reject a link the partner accepted: both sides go `stopped`."""
    from federationd import handshake  # noqa: PLC0415

    handshake.reject(state.runtime(), site)
    click.echo(f"link with {site} rejected")


# -- operating links ---------------------------------------------------------------------------------------
def _lifecycle() -> ModuleType:
    from federationd import lifecycle  # noqa: PLC0415 - the broker stack loads only for verbs that use it

    return lifecycle


def _affected(sites: list[str], what: str) -> None:
    click.echo(f"{what}: {', '.join(sites)}" if sites else f"{what}: no linked partner")


@main.command()
@click.argument("site", required=False)
@pass_state
@guarded
def pause(state: State, site: str | None) -> None:
    """Pause one link, or the whole site: nothing is sent or consumed (partners' messages wait in the broker)."""
    _lifecycle().pause(state.runtime(), site)
    click.echo(f"paused {site or 'the whole site'}; the running daemon stops sending and consuming within a second")


@main.command()
@click.argument("site", required=False)
@pass_state
@guarded
def resume(state: State, site: str | None) -> None:
    """Undo `pause` (a pause set in the config file stays until the file says otherwise)."""
    still = _lifecycle().resume(state.runtime(), site)
    click.echo(f"resumed {site or 'the whole site'}")
    for reason in still:
        click.echo(f"federationd: warning: still paused: {reason}", err=True)


@main.command("send-now")
@click.argument("site", required=False)
@pass_state
@guarded
def send_now(state: State, site: str | None) -> None:
    """Send pending changes at once, skipping the quiet period (one partner, or all)."""
    _affected(_lifecycle().send_now(state.runtime(), site), "sending now to")


@main.command()
@click.argument("site", required=False)
@pass_state
@guarded
def clear(state: State, site: str | None) -> None:
    """Clear a send stuck "sending" and the schedule; pending changes go at the next send (nothing is lost)."""
    _affected(_lifecycle().clear(state.runtime(), site), "cleared the send schedule of")


@main.command()
@click.argument("site")
@pass_state
@guarded
def relink(state: State, site: str) -> None:
    """Resynchronise with a partner: full snapshots both ways under new epochs."""
    _lifecycle().relink(state.runtime(), site)
    click.echo(f"relink with {site}: our snapshot and the request for theirs go at the next send")


@link.command("release")
@click.argument("site")
@pass_state
@guarded
def link_release(state: State, site: str) -> None:
    """Release a link: both sides stop, credentials are revoked, the partner's people and org data are deleted
    here (schedules stay)."""
    _lifecycle().release(state.runtime(), site)
    click.echo(f"released the link with {site}")


@link.command("change-url")
@click.argument("url")
@pass_state
@guarded
def link_change_url(state: State, url: str) -> None:
    """Tell every partner our broker's new public endpoint (amqps://HOST:PORT/VHOST)."""
    told = _lifecycle().change_url(state.runtime(), url)
    _affected(told, "the new endpoint goes at the next send to")
    if state.config.broker.public_url.rstrip("/") != url.rstrip("/"):
        click.echo("federationd: warning: also set broker.public_url in the config file, so new link tokens carry "
                   "the new endpoint", err=True)


@main.command()
@click.option("--i-am-the-site", "confirmed", is_flag=True, help="Confirm this server is the real site.")
@pass_state
@guarded
def adopt(state: State, confirmed: bool) -> None:
    """Lift the guard against a copied database: declare this installation the site (SPEC 3.1)."""
    if not confirmed:
        fail("adopt makes this installation the site; say so with --i-am-the-site (never on a test copy)")
    _lifecycle().adopt(state.runtime())
    click.echo("this installation is now the site; restart or reload the daemon to resume")


# -- log and history -----------------------------------------------------------------------------------------
def _moment(text: str | None, option: str) -> float | None:
    """An ISO 8601 date/time (UTC if no offset), or a duration back from now (`2h`, `7d`)."""
    if text is None:
        return None
    from datetime import UTC, datetime  # noqa: PLC0415

    from federationd.durations import parse_duration  # noqa: PLC0415

    try:
        return datetime.now(UTC).timestamp() - parse_duration(text).total_seconds()
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise RejectedChange("invalid_option", f"{option} {text!r}: use an ISO 8601 time or a duration like 2h") \
            from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


@main.command("log")
@click.option("--site", help="Only this partner.")
@click.option("--direction", type=click.Choice(["send", "receive"]))
@click.option("--category")
@click.option("--since", help="ISO 8601 time, or a duration back from now (2h, 7d).")
@click.option("--until", help="ISO 8601 time, or a duration back from now.")
@click.option("--limit", type=click.IntRange(1, 10_000), default=10_000, show_default=True)
@click.option("--csv", "as_csv", is_flag=True, help="CSV with a header line.")
@click.option("--json", "as_json", is_flag=True)
@pass_state
@guarded
def log_(state: State, site: str | None, direction: str | None, category: str | None, since: str | None,
         until: str | None, limit: int, as_csv: bool, as_json: bool) -> None:
    """The link log, newest first (at most 10,000 rows; older than log.retention is purged)."""
    import csv  # noqa: PLC0415

    from federationd import linklog  # noqa: PLC0415

    query = linklog.LogQuery(site, direction, category, _moment(since, "--since"), _moment(until, "--until"), limit)
    with reading(state.runtime().engine) as conn:
        rows, total = linklog.read(conn, query)
    if total > len(rows):
        click.echo(f"federationd: showing the newest {len(rows)} of {total} matching rows (narrow with --since, "
                   "--until, --site or --category)", err=True)
    if as_json:
        click.echo(json.dumps(rows, ensure_ascii=False))
    elif as_csv:
        writer = csv.DictWriter(sys.stdout, fieldnames=["at", "site", "direction", "category", "message"])
        writer.writeheader()
        writer.writerows(rows)
    else:
        for row in rows:
            click.echo(f"{row['at']}  {row['site']:<16} {row['direction']:<7} {row['category'] or '-':<10} "
                       f"{row['message']}")


@main.command()
@click.argument("site")
@click.option("--json", "as_json", is_flag=True)
@pass_state
@guarded
def history(state: State, site: str, as_json: bool) -> None:
    """Last receive time per category from a partner; never-received categories show as such."""
    from sqlalchemy import select  # noqa: PLC0415

    from federationd import links  # noqa: PLC0415
    from federationd.categories import CATEGORIES  # noqa: PLC0415
    from federationd.schema import receive_history  # noqa: PLC0415
    from federationd.tokens import iso  # noqa: PLC0415

    with reading(state.runtime().engine) as conn:
        links.require(conn, site)
        seen = dict(conn.execute(select(receive_history.c.category, receive_history.c.last_received_at)
                                 .where(receive_history.c.site == site)).all())
    rows = [{"category": category, "last_received_at": iso(seen.get(category))} for category in CATEGORIES]

    def text() -> None:
        for row in rows:
            click.echo(f"{row['category']:<11} {row['last_received_at'] or 'never received'}")
    emit(as_json, rows, text)


# -- import and access --------------------------------------------------------------------------------------
@main.command("import")
@click.argument("category")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@pass_state
@guarded
def import_(state: State, category: str, file: Path) -> None:
    """Write every row of a CSV file (header names the fields, one `id`) in one transaction, under the bulk lock."""
    from federationd.outbox.importer import run_import  # noqa: PLC0415

    engine = state.runtime().engine
    if not sys.stderr.isatty():
        count = run_import(engine, category, file)
    else:
        from rich.progress import Progress  # noqa: PLC0415

        with Progress(transient=True) as bar:
            task = bar.add_task(f"importing {file.name}", total=None)
            count = run_import(engine, category, file,
                               progress=lambda done, total: bar.update(task, completed=done, total=total))
    click.echo(f"imported {count} {category} record(s) from {file}")


@main.group()
def access() -> None:
    """Visit and accept rules, and sign-in tickets (SPEC 7)."""


def _print_decision(answer: dict[str, Any]) -> None:
    verdict = "ALLOWED" if answer["allowed"] else "REFUSED"
    click.echo(f"{verdict}: role {answer['role']}, products {answer['products'] or 'all'}, restrictions "
               f"{answer['restrictions'] or 'none'} (rule: {answer['rule']})")


@access.command("check")
@click.argument("site")
@click.argument("employee")
@click.option("--from-ip", "ip", help="The client's address, for per-network roles.")
@click.option("--json", "as_json", is_flag=True)
@pass_state
@guarded
def access_check(state: State, site: str, employee: str, ip: str | None, as_json: bool) -> None:
    """May SITE's EMPLOYEE sign in here, with what, and which rule decided."""
    from federationd import signin  # noqa: PLC0415

    answer = signin.check(state.runtime(), site, employee, _address(ip)).as_json()
    emit(as_json, answer, lambda: _print_decision(answer))


@access.command("ticket")
@click.argument("site")
@click.argument("employee")
@pass_state
@guarded
def access_ticket(state: State, site: str, employee: str) -> None:
    """A sign-in ticket for one of our employees to present at SITE (60 seconds, single use)."""
    from federationd import signin  # noqa: PLC0415

    click.echo(signin.ticket(state.runtime(), site, employee))


@access.command("redeem")
@click.argument("ticket")
@click.option("--from-ip", "ip", help="The client's address, for per-network roles.")
@click.option("--json", "as_json", is_flag=True)
@pass_state
@guarded
def access_redeem(state: State, ticket: str, ip: str | None, as_json: bool) -> None:
    """Verify a partner's sign-in ticket (signature, audience, expiry, single use) and answer like `check`."""
    from federationd import signin  # noqa: PLC0415

    answer = signin.redeem(state.runtime(), ticket, _address(ip))

    def text() -> None:
        _print_decision(answer)
        click.echo(f"employee {answer['employee']} of {answer['origin']}")
    emit(as_json, answer, text)


def _address(ip: str | None) -> str | None:
    if ip is None:
        return None
    import ipaddress  # noqa: PLC0415

    try:
        return str(ipaddress.ip_address(ip))
    except ValueError:
        raise RejectedChange("invalid_option", f"--from-ip {ip!r} is not an IP address") from None


# -- status ------------------------------------------------------------------------------------------------
@main.command()
@click.option("--json", "as_json", is_flag=True)
@pass_state
@guarded
def status(state: State, as_json: bool) -> None:
    """One row per link: state, paused, last and next send, pending records, lag, last receive."""
    from federationd.status_view import print_status, status_rows  # noqa: PLC0415

    rt = state.runtime()
    rows = status_rows(rt)
    emit(as_json, [row.as_json() for row in rows], lambda: print_status(rt, rows))


def entry() -> None:  # pragma: no cover - console script shim
    main()


if __name__ == "__main__":  # pragma: no cover
    main()
