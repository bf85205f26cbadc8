"""The CLI's frame: the `federationd` group, the config it loads, one-line errors and named exit codes.

Every verb exits 0 on success, or non-zero with one line on standard error saying what is wrong.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, Sequence
from functools import wraps
from typing import Any, NoReturn, TypeVar

import click
from sqlalchemy.exc import SQLAlchemyError

from federationd import __version__
from federationd.config import Config, config_path, load_config
from federationd.errors import ConfigError, FederationError, StoreError, TransportError
from federationd.runtime import Runtime
from federationd.store import db_error

# sysexits(3) codes, so that systemd and scripts read them right (`systemctl status` names them).
RET_OK = 0
RET_REFUSED = 1  # refused: unknown partner, bad token, invalid data, no such record, ...
RET_FAILED = RET_REFUSED  # the older name
RET_USAGE = 64  # EX_USAGE: bad arguments or options
RET_UNAVAILABLE = 69  # EX_UNAVAILABLE: a broker or the database could not be reached
RET_CONFIG = 78  # EX_CONFIG: the config file is missing, unreadable or invalid

EXIT_CODES_HELP = (
    "\b\nExit codes: 0 success; 1 refused (unknown partner, bad token, invalid data, ...); 64 usage error;\n"
    "69 a broker or the database unavailable; 78 configuration invalid.")

F = TypeVar("F", bound=Callable[..., Any])




def exit_code(exc: BaseException) -> int:
    """The one mapping from our error tree (and the libraries' errors the edges let through) to an exit code."""
    if isinstance(exc, ConfigError):
        return RET_CONFIG
    if isinstance(exc, (TransportError, StoreError, SQLAlchemyError)):
        return RET_UNAVAILABLE
    return RET_REFUSED


def fail(message: str, code: int = RET_REFUSED) -> NoReturn:
    click.echo(f"federationd: {message}", err=True)
    sys.exit(code)


def guarded(func: F) -> F:
    """Turn our errors into one line on stderr and a named exit code."""
    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except FederationError as exc:
            fail(str(exc), exit_code(exc))
        except SQLAlchemyError as exc:
            fail(str(db_error(exc)), exit_code(exc))
    return wrapper  # type: ignore[return-value]


class State:
    """One verb's config and runtime. The runtime is made once, on first use, and closed when the verb ends
    (`main` registers `close`), so a verb leaves no database connection open behind it, also when it runs inside
    another program (a test harness, a host's script through click's runner)."""

    def __init__(self, path: str | None) -> None:
        self.path = config_path(path)
        self._config: Config | None = None
        self._runtime: Runtime | None = None

    @property
    def config(self) -> Config:
        if self._config is None:
            self._config = load_config(self.path)
        return self._config

    def runtime(self) -> Runtime:
        if self._runtime is None:
            self._runtime = Runtime(self.config)
        return self._runtime

    def close(self) -> None:
        runtime, self._runtime = self._runtime, None
        if runtime is not None:
            runtime.dispose()


pass_state = click.make_pass_decorator(State)


json_option = click.option("--json", "as_json", is_flag=True, help="Print one JSON document on stdout.")


def done(as_json: bool, message: str, **fields: Any) -> None:
    """What a verb that only acts prints: `message`, or `{"ok": true, ...fields}` with --json."""
    emit(as_json, {"ok": True, **fields}, lambda: click.echo(message))


def emit(as_json: bool, document: Any, text: Callable[[], None]) -> None:
    if as_json:
        click.echo(json.dumps(document, ensure_ascii=False, indent=None))
    else:
        text()


class _Group(click.Group):
    """click's group, but a usage error exits 64 (EX_USAGE) instead of click's 2, and the list of verbs shows
    each one's summary whole (wrapped), not cut at the terminal's width."""

    group_class = type  # `link`, `records`, `access`: the same behaviour

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = []
        for name in self.list_commands(ctx):
            command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                rows.append((name, command.get_short_help_str(limit=1000)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None,
             complete_var: str | None = None, standalone_mode: bool = True, **extra: Any) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, False, **extra)
        try:
            result = super().main(args, prog_name, complete_var, False, **extra)
        except click.UsageError as exc:
            exc.show()
            sys.exit(RET_USAGE)
        except click.ClickException as exc:
            exc.show()
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("Aborted!", err=True)
            sys.exit(RET_REFUSED)
        sys.exit(result if isinstance(result, int) else RET_OK)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]}, epilog=EXIT_CODES_HELP)
@click.option("-c", "--config", "config_file", metavar="FILE", help="Site config (else $FEDERATIOND_CONFIG, else "
              "/etc/federationd/federationd.yaml).")
@click.version_option(__version__, prog_name="federationd")
@click.pass_context
def main(ctx: click.Context, config_file: str | None) -> None:
    """Link this groupware site with partner sites over RabbitMQ-over-TLS.

    \b
    Examples:
      federationd check-config && systemctl reload federationd
      federationd status
      federationd -c /etc/federationd/site-b.yaml link request
    \b
    Shell completion (bash; zsh and fish in docs/cli.md):
      eval "$(_FEDERATIOND_COMPLETE=bash_source federationd)"
    """
    logging.basicConfig(level=logging.WARNING, format="federationd: %(levelname)s: %(message)s")
    # pika logs every failed connection attempt at ERROR with its internals; we translate the failure into one
    # line naming the partner (errors.TransportError) and log that instead.
    logging.getLogger("pika").setLevel(logging.CRITICAL)
    ctx.obj = State(config_file)
    ctx.call_on_close(ctx.obj.close)
